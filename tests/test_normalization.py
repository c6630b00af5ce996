"""BatchNorm1d and LayerNorm against torch (values, gradients, running statistics, train and
eval mode, 30-step trajectories, every option) and against central finite differences in
float64; their buffers in state_dict, files and checkpoints; batch statistics of one sample
refused; models without a Dense layer."""
from __future__ import annotations

import numpy as np
import pytest

import steepest as st
from conftest import to_torch, torch_state

NORMS = [st.BatchNorm1d(6), st.BatchNorm1d(6, momentum=None), st.BatchNorm1d(6, affine=False),
         st.BatchNorm1d(6, track_running_stats=False), st.BatchNorm1d(6, eps=1e-2, momentum=0.5),
         st.LayerNorm(6), st.LayerNorm(6, bias=False), st.LayerNorm((6,), eps=1e-3),
         st.LayerNorm(6, elementwise_affine=False)]
TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-4, atol=2e-5)}


def tensor(torch, a):
    return torch.from_numpy(np.ascontiguousarray(a))


def assert_state_close(ours, theirs, **tol):
    assert list(ours) == list(theirs)
    for k in ours:
        assert np.shape(ours[k]) == np.shape(theirs[k]), k
        np.testing.assert_allclose(ours[k], theirs[k], err_msg=k, **tol)


def normalized(norm, dtype="float64", seed=1):
    """Dense(4, 6) -> norm -> Tanh -> Dense(6, 3)."""
    return st.Sequential(st.Dense(4, 6), norm, st.Tanh(), st.Dense(6, 3), dtype=dtype, seed=seed)


# -- against torch --------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", NORMS, ids=repr)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_values_gradients_and_running_statistics_match_torch(norm, dtype, training, torch, rng):
    model = normalized(norm, dtype)
    tmodel = to_torch(model).train(training)
    X = (rng.normal(size=(10, 4)) * 3 + 2).astype(dtype)
    y = rng.normal(size=(10, 3)).astype(dtype)
    tol = TOL[dtype]
    model.zero_grad()
    out = model.forward(X, training=training)
    loss = st.losses.MSE()
    value = loss.forward(out, y)
    model.backward(loss.backward())
    tout = tmodel(tensor(torch, X))
    tvalue = torch.nn.functional.mse_loss(tout, tensor(torch, y))
    tvalue.backward()
    np.testing.assert_allclose(out, tout.detach().numpy(), **tol)
    assert value == pytest.approx(tvalue.item(), rel=tol["rtol"])
    assert_state_close({n: p.grad for n, p in model.named_parameters()},
                       {n: p.grad.numpy() for n, p in tmodel.named_parameters()}, **tol)
    assert_state_close(model.state_dict(), torch_state(tmodel), **tol)  # running statistics


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("fused", [True, False], ids=["train_step", "step_by_step"])
def test_thirty_steps_match_torch(dtype, fused, torch, rng):
    """Adam over a net with both normalizations: weights, running statistics, losses and the
    eval-mode outputs after 30 steps."""
    model = st.Sequential(st.Dense(5, 12), st.BatchNorm1d(12), st.ReLU(), st.Dense(12, 8),
                          st.LayerNorm(8), st.GELU(approximate="tanh"),
                          st.BatchNorm1d(8, momentum=None), st.Dense(8, 4), dtype=dtype, seed=3)
    tmodel = to_torch(model).train()
    X = (rng.normal(size=(40, 5)) * 2 - 1).astype(dtype)
    y = rng.integers(0, 4, 40)
    opt = st.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.01)
    topt = torch.optim.Adam(tmodel.parameters(), lr=0.01, weight_decay=0.01)
    loss = st.losses.CrossEntropy()
    values, tvalues = [], []
    for t in range(30):
        rows = slice(8 * (t % 5), 8 * (t % 5) + 8)
        if fused:
            values.append(model.train_step(X[rows], y[rows], loss, opt))
        else:
            opt.zero_grad()
            values.append(loss.forward(model.forward(X[rows], training=True), y[rows]))
            model.backward(loss.backward())
            opt.step()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tmodel(tensor(torch, X[rows])),
                                                  torch.tensor(y[rows]))
        tloss.backward()
        topt.step()
        tvalues.append(tloss.item())
    tol = TOL[dtype]
    np.testing.assert_allclose(values, tvalues, rtol=tol["rtol"] * 10)
    assert_state_close(model.state_dict(), torch_state(tmodel), **tol)
    assert model.state_dict()["1.num_batches_tracked"] == 30
    np.testing.assert_allclose(model.predict(X), tmodel.eval()(tensor(torch, X)).detach().numpy(),
                               **tol)
    assert np.abs(model.state_dict()["1.running_mean"]).max() > 0.05  # they moved


def test_fit_matches_a_torch_loop(torch, rng):
    """fit(shuffle=False) over a BatchNorm net: the same steps as a torch loop."""
    X, y = rng.normal(size=(48, 5)), rng.integers(0, 3, 48)
    model = st.Sequential(st.Dense(5, 10), st.BatchNorm1d(10), st.ReLU(), st.Dense(10, 3),
                          dtype="float64", seed=2)
    tmodel = to_torch(model).train()
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    for epoch in range(3):
        for s in range(0, 48, 16):
            topt.zero_grad()
            torch.nn.functional.cross_entropy(tmodel(tensor(torch, X[s:s + 16])),
                                              torch.tensor(y[s:s + 16])).backward()
            topt.step()
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=st.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9), epochs=3, batch_size=16, shuffle=False,
        verbose=0)
    assert_state_close(model.state_dict(), torch_state(tmodel), **TOL["float64"])


def test_state_dict_keys_shapes_and_dtypes_match_torch(torch):
    model = st.Sequential(st.Dense(4, 6), st.BatchNorm1d(6), st.ReLU(), st.LayerNorm(6),
                          st.BatchNorm1d(6, affine=False), st.BatchNorm1d(6,
                                                                          track_running_stats=False),
                          st.LayerNorm(6, bias=False), st.Dense(6, 2), seed=0)
    ours, theirs = model.state_dict(), to_torch(model, "float32").state_dict()
    assert list(ours) == list(theirs)
    for k, v in theirs.items():
        assert ours[k].shape == tuple(v.shape) and ours[k].dtype == v.numpy().dtype, k
    assert [n for n, _ in model.named_parameters()] == \
        [n for n, _ in to_torch(model).named_parameters()]
    assert [n for n, _ in model.named_buffers()] == [n for n, _ in to_torch(model).named_buffers()]


def test_weights_and_buffers_from_torch(torch, rng):
    """A trained torch model's state_dict (buffers included) loads into steepest, which then
    predicts as torch's eval mode."""
    torch.manual_seed(0)
    nn = torch.nn
    tmodel = nn.Sequential(nn.Linear(4, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.LayerNorm(7),
                           nn.Linear(7, 2)).double()
    tmodel(torch.randn(32, 4, dtype=torch.float64) * 3 + 1)  # running statistics move
    model = st.Sequential(st.Dense(4, 7), st.BatchNorm1d(7), st.ReLU(), st.LayerNorm(7),
                          st.Dense(7, 2), dtype="float64")
    model.load_state_dict(tmodel.state_dict())
    assert model.state_dict()["1.num_batches_tracked"] == 1
    X = rng.normal(size=(5, 4))
    np.testing.assert_allclose(model.predict(X), tmodel.eval()(tensor(torch, X)).detach().numpy(),
                               rtol=1e-12, atol=1e-14)


# -- finite differences -------------------------------------------------------------------------

@pytest.mark.parametrize("norm", NORMS, ids=repr)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_gradcheck(norm, training, rng):
    model = normalized(norm)
    # statistics away from their initial 0 and 1
    model.forward(rng.normal(size=(16, 4)) * 2 + 1, training=True)
    X, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 3))
    # atol 1e-4: in training, the bias of the Dense layer before a BatchNorm has gradient 0
    # exactly (the batch mean removes it); its finite difference is rounding noise (~1e-11).
    err = st.gradcheck(model, st.losses.MSE(), X, y, eps=1e-5, atol=1e-4, training=training)
    assert err < 1e-6, err


def test_gradcheck_with_dropout_in_training_mode(rng):
    """gradcheck(training=True) replays the same dropout masks in every pass."""
    model = st.Sequential(st.Dense(4, 8), st.BatchNorm1d(8), st.ReLU(), st.Dropout(0.3),
                          st.Dense(8, 3), dtype="float64", seed=0)
    X, y = rng.normal(size=(9, 4)), rng.integers(0, 3, 9)
    assert st.gradcheck(model, st.losses.CrossEntropy(), X, y, eps=1e-5, atol=1e-4,
                        training=True) < 1e-6


def test_layernorm_first_and_batchnorm_before_the_output(rng):
    """Normalization layers with parameters as the first layer (no input gradient needed) and
    as the last."""
    model = st.Sequential(st.LayerNorm(5), st.Dense(5, 4), st.Sigmoid(), st.BatchNorm1d(4),
                          dtype="float64", seed=1)
    X, y = rng.normal(size=(6, 5)) * 2, rng.normal(size=(6, 4))
    assert st.gradcheck(model, st.losses.MSE(), X, y, eps=1e-5, atol=1e-6, training=True) < 1e-6


# -- modes, buffers and the optimizer -------------------------------------------------------------

def test_train_and_eval_modes_pick_forwards_default(rng):
    model = normalized(st.BatchNorm1d(6))
    X = rng.normal(size=(8, 4)) * 2 + 3
    assert model.training is False
    eval_out = model(X)
    assert model.state_dict()["1.num_batches_tracked"] == 0
    assert model.train() is model and model.training
    train_out = model(X)
    assert model.state_dict()["1.num_batches_tracked"] == 1
    np.testing.assert_array_equal(train_out, model.forward(X, training=True))
    assert not np.allclose(train_out, eval_out)
    model.eval()
    np.testing.assert_array_equal(model(X), model.predict(X))
    with pytest.raises(TypeError, match="mode"):
        model.train(1)


def test_buffers_are_never_optimized(rng):
    model = normalized(st.BatchNorm1d(6))
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
    assert [n for n, _ in model.named_buffers()] == ["1.running_mean", "1.running_var",
                                                     "1.num_batches_tracked"]
    opt = st.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.5)
    assert opt.state_buffers()["exp_avg"].size == model.num_parameters() == 6 * 4 + 6 + 12 + 21
    X, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 3))
    model.train_step(X, y, st.losses.MSE(), opt)
    stats = {k: v.copy() for k, v in model.named_buffers()}
    opt.zero_grad()
    model.flat_grads()[...] = 1.0
    opt.step()  # a step alone moves the parameters, never the buffers
    for k, v in model.named_buffers():
        np.testing.assert_array_equal(v, stats[k])
    assert np.shares_memory(model.state_dict()["1.running_mean"], model.flat_buffers())


def test_batch_statistics_of_one_sample_are_refused(rng):
    model = normalized(st.BatchNorm1d(6))
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    x, y = rng.normal(size=(1, 4)), rng.normal(size=(1, 3))
    with pytest.raises(ValueError, match="batch of 1"):
        model.forward(x, training=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        model.train_step(x, y, st.losses.MSE(), opt)
    X, Y = rng.normal(size=(33, 4)), rng.normal(size=(33, 3))
    with pytest.raises(ValueError, match="batches of 32 over 33 samples leave a last batch of 1"):
        model.fit(X, Y, loss=st.losses.MSE(), optimizer=opt, batch_size=32, verbose=0)
    with pytest.raises(ValueError, match="batches of 1"):
        model.fit(X, Y, loss=st.losses.MSE(), optimizer=opt, batch_size=1, verbose=0)
    assert opt.steps == 0 and model.state_dict()["1.num_batches_tracked"] == 0
    model.predict(x)  # eval mode: running statistics, any batch
    untracked = normalized(st.BatchNorm1d(6, track_running_stats=False))
    with pytest.raises(ValueError, match="batch of 1"):
        untracked.predict(x)
    # without running statistics, eval mode normalizes with the whole input's statistics
    X = rng.normal(size=(600, 4))  # more rows than predict's chunks
    np.testing.assert_allclose(untracked.predict(X), untracked.forward(X, training=True),
                               rtol=1e-12)
    ln = normalized(st.LayerNorm(6))  # LayerNorm's statistics are per sample: batch 1 is fine
    ln.train_step(x, y, st.losses.MSE(), st.optim.SGD(ln.parameters(), lr=0.1))


def test_load_state_dict_checks_buffers(rng):
    model = normalized(st.BatchNorm1d(6))
    state = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="missing"):
        model.load_state_dict({k: v for k, v in state.items() if "running" not in k})
    bad = dict(state, **{"1.num_batches_tracked": np.array(-1)})
    with pytest.raises(ValueError, match="non-negative integer"):
        model.load_state_dict(bad)
    bad = dict(state, **{"1.running_var": np.full(6, np.nan)})
    with pytest.raises(ValueError, match="NaN"):
        model.load_state_dict(bad)
    state["1.running_mean"][:] = 3.0
    state["1.num_batches_tracked"] = np.array(7)
    model.load_state_dict(state)
    assert model.state_dict()["1.num_batches_tracked"] == 7
    np.testing.assert_array_equal(model.state_dict()["1.running_mean"], 3.0)


# -- files, checkpoints, descriptions ------------------------------------------------------------

def _trained(rng, dtype="float32"):
    model = st.Sequential(st.Standardize(), st.Dense(4, 8), st.BatchNorm1d(8, momentum=None),
                          st.ReLU(), st.Dropout(0.2), st.Dense(8, 6), st.LayerNorm(6, bias=False),
                          st.Softplus(beta=2.0), st.Dense(6, 3), dtype=dtype, seed=5)
    X, y = rng.normal(size=(40, 4)) * 5 + 2, rng.integers(0, 3, 40)
    model.fit(X, y, loss=st.losses.CrossEntropy(), epochs=2, batch_size=8, verbose=0,
              optimizer=st.optim.Adam(model.parameters(), lr=0.01))
    return model, X, y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_and_load_are_bitwise(dtype, rng, tmp_path):
    model, X, _ = _trained(rng, dtype)
    model.save(tmp_path / "m.npz")
    loaded = st.load(tmp_path / "m.npz")
    assert loaded.config() == model.config() and repr(loaded) == repr(model)
    assert list(loaded.state_dict()) == list(model.state_dict())
    for k, v in model.state_dict().items():
        w = loaded.state_dict()[k]
        assert w.dtype == v.dtype and w.shape == v.shape and w.tobytes() == v.tobytes(), k
    assert loaded.state_dict()["2.num_batches_tracked"] == 10
    assert loaded.predict(X).tobytes() == model.predict(X).tobytes()


def test_checkpoint_resume_is_bitwise(rng, tmp_path):
    """An interrupted run resumed from its checkpoint ends with the same weights and buffers
    (running statistics, counts, Standardize's statistics) as an uninterrupted one."""
    X, y = rng.normal(size=(50, 4)) * 3, rng.integers(0, 3, 50)

    def run(epochs, path):
        model = st.Sequential(st.Standardize(), st.Dense(4, 8), st.BatchNorm1d(8), st.ReLU(),
                              st.Dropout(0.25), st.Dense(8, 3), seed=9)
        opt = st.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=epochs,
                  batch_size=16, verbose=0, checkpoint=path)
        return model

    whole = run(4, tmp_path / "whole.ckpt")
    run(2, tmp_path / "part.ckpt")
    resumed = run(4, tmp_path / "part.ckpt")
    for k, v in whole.state_dict().items():
        assert resumed.state_dict()[k].tobytes() == v.tobytes(), k
    assert whole.state_dict()["2.num_batches_tracked"] == 16


def test_early_stopping_restores_the_best_epochs_buffers(rng):
    X, y = rng.normal(size=(64, 4)), rng.integers(0, 3, 64)
    model = normalized(st.BatchNorm1d(6), "float32")
    seen = {}

    class Record(st.callbacks.Callback):
        def on_epoch_end(self, epoch, logs):
            seen[epoch] = {k: v.copy() for k, v in self.model.state_dict().items()}
            logs["score"] = [3.0, 1.0, 2.0, 2.5, 2.7][epoch]

    stop = st.callbacks.EarlyStopping(monitor="score", patience=2)
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=st.optim.SGD(model.parameters(),
              lr=0.1), epochs=5, batch_size=16, verbose=0, callbacks=[Record(), stop])
    assert stop.best_epoch == 1
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, seen[1][k], err_msg=k)


def test_repr_summary_and_config(capsys):
    model = st.Sequential(st.Standardize(), st.Dense(4, 6), st.BatchNorm1d(6, momentum=None),
                          st.LayerNorm(6, elementwise_affine=False), st.GELU(approximate="tanh"),
                          st.Softplus(beta=2.0, threshold=10.0), st.Dense(6, 2), seed=0)
    text = repr(model)
    for part in ("(0): Standardize()", "(2): BatchNorm1d(6, eps=1e-05, momentum=None, "
                 "affine=True, track_running_stats=True)",
                 "(3): LayerNorm((6,), eps=1e-05, elementwise_affine=False)",
                 "GELU(approximate='tanh')", "Softplus(beta=2.0, threshold=10.0)"):
        assert part in text, part
    summary = model.summary()
    capsys.readouterr()
    assert "and 22 buffer values" in summary  # 4 + 4 + 1 (Standardize), 6 + 6 + 1 (BatchNorm)
    assert summary.splitlines()[4].rstrip().endswith("12")  # BatchNorm1d's weight and bias
    config = model.config()
    assert config["in_features"] == 4
    assert config["layers"][3] == {"type": "LayerNorm", "normalized_shape": [6], "eps": 1e-5,
                                   "elementwise_affine": False, "bias": True}
    assert st.Sequential.from_config(config).config() == config


@pytest.mark.parametrize("bad, error", [
    (lambda: st.BatchNorm1d(0), ValueError), (lambda: st.BatchNorm1d(4, momentum=1.5), ValueError),
    (lambda: st.BatchNorm1d(4, eps=0), ValueError), (lambda: st.BatchNorm1d(4, affine=1), TypeError),
    (lambda: st.LayerNorm((2, 3)), ValueError), (lambda: st.LayerNorm(4, bias="no"), TypeError),
    (lambda: st.GELU(approximate="erf"), ValueError), (lambda: st.Softplus(beta=0), ValueError),
])
def test_bad_options_are_refused(bad, error):
    with pytest.raises(error):
        bad()


# -- models without a Dense layer -----------------------------------------------------------------

def test_models_without_a_dense_layer(torch, rng):
    X = rng.normal(size=(5, 4)) * 2 + 1
    drop = st.Sequential(st.Dropout(0.25), in_features=4, dtype="float64")
    np.testing.assert_array_equal(drop.predict(X), X)
    assert drop.num_parameters() == 0 and drop.out_features == 4
    ln = st.Sequential(st.LayerNorm(4), dtype="float64")  # the width from the layer
    np.testing.assert_allclose(ln.predict(X), torch.nn.LayerNorm(4).double()(
        tensor(torch, X)).detach().numpy(), rtol=1e-12, atol=1e-14)
    opt = st.optim.SGD(ln.parameters(), lr=0.1)
    ln.fit(X, rng.normal(size=(5, 4)), loss=st.losses.MSE(), optimizer=opt, verbose=0)
    assert opt.steps == 1


def test_the_input_width_comes_from_the_first_layer_that_states_it(rng, tmp_path):
    model = st.Sequential(st.Dropout(0.1), st.ReLU(), st.BatchNorm1d(3), st.Dense(3, 2), seed=0)
    assert model.in_features == 3
    with pytest.raises(ValueError, match="in_features=10"):
        st.Sequential(st.Dropout(0.25))
    with pytest.raises(ValueError, match="layer 1 .* expects 3 features but the layer before it "
                                         "gives 5"):
        st.Sequential(st.Dense(4, 5), st.BatchNorm1d(3))
    with pytest.raises(ValueError, match="expects 4 features but the input has 6"):
        st.Sequential(st.Dense(4, 5), in_features=6)
    with pytest.raises(TypeError, match="in_features"):
        st.Sequential(st.ReLU(), in_features="4")
    model = st.Sequential(st.Tanh(), in_features=3)
    model.save(tmp_path / "m.npz")
    assert st.load(tmp_path / "m.npz").in_features == 3
