"""The Python API: zero-copy views, in-place updates, save/load, descriptions, threads."""
from __future__ import annotations

import gc
import zipfile

import numpy as np
import pytest

import steepest as st


def small(dtype="float32", seed=0):
    return st.Sequential(st.Dense(4, 8), st.ReLU(), st.Dropout(0.25), st.Dense(8, 8, bias=False),
                         st.LeakyReLU(0.2), st.Dense(8, 3), dtype=dtype, seed=seed)


def _step(model, rng, opt=None):
    opt = opt or st.optim.Adam(model.parameters(), lr=0.01)
    X, y = rng.normal(size=(16, 4)), rng.integers(0, 3, 16)
    model.train_step(X, y, st.losses.CrossEntropy(), opt)
    return opt


# -- zero-copy views and in-place updates --------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_parameters_are_views_of_the_core_buffers(dtype):
    model = small(dtype)
    flat, grads = model.flat_params(), model.flat_grads()
    assert flat.dtype == np.dtype(dtype) and flat.size == model.num_parameters() == 4 * 8 + 8 + \
        8 * 8 + 8 * 3 + 3
    total = 0
    for name, p in model.named_parameters():
        assert p.name == name
        assert np.shares_memory(p.data, flat) and np.shares_memory(p.grad, grads)
        assert not np.shares_memory(p.data, grads)
        assert np.shares_memory(model.state_dict()[name], p.data)
        assert p.data.dtype == np.dtype(dtype) and p.data.shape == p.grad.shape == p.shape
        total += p.data.size
    assert total == flat.size
    # the flat layout is the size table: weight then bias, layer after layer, no gaps
    np.testing.assert_array_equal(np.concatenate([p.data.ravel() for p in model.parameters()]),
                                  flat)
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "3.weight",
                                                        "5.weight", "5.bias"]


def test_views_are_the_same_memory_after_step_and_fit(rng):
    model = small()
    views = model.state_dict()
    datas = [p.data for p in model.parameters()]
    grads = [p.grad for p in model.parameters()]
    before = {k: v.copy() for k, v in views.items()}
    addresses = {k: v.__array_interface__["data"][0] for k, v in views.items()}
    opt = _step(model, rng)
    for k, v in model.state_dict().items():
        assert v.__array_interface__["data"][0] == addresses[k]
        assert not np.array_equal(views[k], before[k]), k  # changed in place
        np.testing.assert_array_equal(views[k], v)
    opt.zero_grad()
    out = model.forward(rng.normal(size=(5, 4)), training=True)
    model.backward(np.ones_like(out))
    assert all(np.abs(g).sum() > 0 for g in grads)  # backward filled the views
    X, y = rng.normal(size=(40, 4)), rng.integers(0, 3, 40)
    snapshot = [d.copy() for d in datas]
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=2, verbose=0)
    for d, p, s in zip(datas, model.parameters(), snapshot):
        assert d.__array_interface__["data"][0] == p.data.__array_interface__["data"][0]
        assert not np.array_equal(d, s)
    assert all(np.shares_memory(p.data, model.flat_params()) for p in model.parameters())


def test_writing_a_view_changes_the_model(rng):
    model = st.Sequential(st.Dense(3, 2), dtype="float64", seed=0)
    w, b = (p.data for p in model.parameters())
    w[...] = 0
    b[...] = [1.5, -2.0]
    np.testing.assert_array_equal(model.predict(rng.normal(size=(4, 3))), [[1.5, -2.0]] * 4)


def test_views_keep_the_model_alive(rng):
    model = small("float64")
    w = model.state_dict()["0.weight"]
    g = model.parameters()[0].grad
    expected = w.copy()
    del model
    gc.collect()
    np.testing.assert_array_equal(w, expected)
    assert np.isfinite(g).all()


def test_backward_accumulates_and_zero_grad_resets(rng):
    model = st.Sequential(st.Dense(3, 4), st.Tanh(), st.Dense(4, 2), dtype="float64", seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    x, dy = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    model.zero_grad()
    model.forward(x, training=True)
    model.backward(dy)
    once = model.flat_grads().copy()
    model.backward(dy)  # as torch: gradients add up until zero_grad
    np.testing.assert_allclose(model.flat_grads(), 2 * once, rtol=1e-14)
    opt.zero_grad()
    assert not model.flat_grads().any()
    model.forward(x, training=True)
    model.backward(dy)
    model.zero_grad()
    assert not model.flat_grads().any()


def test_forward_returns_a_new_array(rng):
    model = small()
    x1, x2 = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    out1 = model.forward(x1)
    keep = out1.copy()
    out2 = model.forward(x2)
    np.testing.assert_array_equal(out1, keep)
    assert not np.shares_memory(out1, out2)
    assert not np.shares_memory(out1, model.flat_params())


def test_optimizer_step_is_in_place_on_the_flat_buffer(rng):
    model = st.Sequential(st.Dense(3, 2), dtype="float64", seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.5)
    flat = model.flat_params()
    start = flat.copy()
    model.flat_grads()[...] = 1.0
    opt.step()
    np.testing.assert_allclose(flat, start - 0.5)


def test_optimizer_over_some_parameters_only(rng):
    """An optimizer given part of the parameters updates only those."""
    model = st.Sequential(st.Dense(3, 4), st.Tanh(), st.Dense(4, 2), dtype="float64", seed=0)
    last = [p for n, p in model.named_parameters() if n.startswith("2.")]
    opt = st.optim.SGD(last, lr=0.5)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    model.train_step(rng.normal(size=(6, 3)), rng.normal(size=(6, 2)), st.losses.MSE(), opt)
    after = model.state_dict()
    np.testing.assert_array_equal(after["0.weight"], before["0.weight"])
    np.testing.assert_array_equal(after["0.bias"], before["0.bias"])
    assert not np.array_equal(after["2.weight"], before["2.weight"])


def test_optimizer_state_dict_round_trip(rng):
    a, b = small("float64", seed=1), small("float64", seed=1)
    oa = st.optim.Adam(a.parameters(), lr=0.01, amsgrad=True)
    ob = st.optim.Adam(b.parameters(), lr=0.01, amsgrad=True)
    for _ in range(3):
        _step(a, rng, oa)
    b.load_state_dict(a.state_dict())
    ob.load_state_dict(oa.state_dict())
    b.rng_state = a.rng_state  # the dropout masks' source
    assert ob.steps == 3
    state = np.random.default_rng(5)
    X, y = state.normal(size=(16, 4)), state.integers(0, 3, 16)
    for m, o in ((a, oa), (b, ob)):
        m.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=o, epochs=2, shuffle=False,
              verbose=0)
    np.testing.assert_array_equal(a.flat_params(), b.flat_params())


# -- save / load ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_bit_exact(dtype, rng, tmp_path):
    model = st.Sequential(st.Dense(4, 8, init="he_normal"), st.ELU(0.7), st.Dropout(0.3),
                          st.Dense(8, 8, bias=False), st.LeakyReLU(0.05), st.Dense(8, 6),
                          st.GELU(), st.Dense(6, 3), st.Softmax(), dtype=dtype, seed=42)
    with pytest.warns(UserWarning, match="ends with Softmax, but CrossEntropy takes logits"):
        _step(model, rng, st.optim.SGD(model.parameters(), lr=0.1))
    model.save(tmp_path / "model.npz")
    loaded = st.load(tmp_path / "model.npz")
    assert loaded.dtype == model.dtype and loaded.seed == model.seed
    assert loaded.config() == model.config()
    assert repr(loaded) == repr(model)
    assert list(loaded.state_dict()) == list(model.state_dict())
    for k, v in model.state_dict().items():
        assert loaded.state_dict()[k].dtype == v.dtype
        assert loaded.state_dict()[k].tobytes() == v.tobytes()
    X = rng.normal(size=(7, 4))
    assert loaded.predict(X).tobytes() == model.predict(X).tobytes()
    st.load(str(tmp_path / "model.npz"))  # str paths too


def test_saved_file_is_plain_npz_without_pickle(rng, tmp_path):
    model = small()
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as f:
        names = set(f.files)
        assert {"0.weight", "0.bias", "3.weight", "5.weight", "5.bias"} <= names
        np.testing.assert_array_equal(f["5.weight"], model.state_dict()["5.weight"])
    with zipfile.ZipFile(path) as z:
        assert all(n.endswith(".npy") for n in z.namelist())


def test_loaded_model_trains_like_the_original(rng, tmp_path):
    model = small("float64", seed=3)
    model.save(tmp_path / "m.npz")
    loaded = st.load(tmp_path / "m.npz")
    X, y = rng.normal(size=(30, 4)), rng.integers(0, 3, 30)
    for m in (model, loaded):
        m.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=st.optim.SGD(m.parameters(), lr=0.1),
              epochs=2, verbose=0)
    np.testing.assert_array_equal(model.flat_params(), loaded.flat_params())


@pytest.mark.parametrize("init", ["torch_default", "he_normal", "zeros"])  # uniform, normal draws
def test_a_model_built_without_initializing_skips_the_same_draws(init, rng):
    layers = [st.Dense(5, 7, init=init), st.Tanh(), st.Dropout(0.2), st.Dense(7, 3, bias=False)]
    drawn = st.Sequential(*layers, dtype="float64", seed=4)
    skipped = st.Sequential(*layers, dtype="float64", seed=4, initialize=False)
    assert not skipped.flat_params().any()
    assert skipped.rng_state == drawn.rng_state
    skipped.load_state_dict(drawn.state_dict())
    X, y = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)
    for m in (drawn, skipped):
        m.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=st.optim.SGD(m.parameters(), lr=0.1),
              epochs=2, batch_size=8, verbose=0)
    assert skipped.flat_params().tobytes() == drawn.flat_params().tobytes()
    with pytest.raises(TypeError, match="initialize"):
        st.Sequential(*layers, initialize=0)


def test_load_refuses_other_files(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ValueError):
        st.load(text)
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="steepest"):
        st.load(tmp_path / "plain.npz")


# -- descriptions --------------------------------------------------------------------------------

def test_repr_and_summary(capsys):
    model = small()
    text = repr(model)
    for part in ("Sequential(", "(0): Dense(4, 8)", "(1): ReLU()", "(2): Dropout(p=0.25)",
                 "(3): Dense(8, 8, bias=False)", "LeakyReLU(negative_slope=0.2)",
                 "(5): Dense(8, 3)", "float32", "131 parameters"):
        assert part in text, part
    summary = model.summary()
    assert capsys.readouterr().out.strip() == summary.strip()
    lines = summary.splitlines()
    assert len(lines) == 2 + 6 + 1  # header, rule, one row per layer, total
    assert "Dense(4, 8)" in lines[2] and "(N, 8)" in lines[2] and lines[2].rstrip().endswith("40")
    assert lines[5].rstrip().endswith("64")
    assert "131" in lines[-1] and "float32" in lines[-1] and "524" in lines[-1]  # 131 * 4 bytes
    assert repr(model.parameters()[0]).startswith("Parameter('0.weight', shape=(8, 4)")
    assert "lr=0.01" in repr(st.optim.SGD(model.parameters(), lr=0.01))


def test_sequential_accepts_a_list():
    a = st.Sequential([st.Dense(2, 3), st.Tanh(), st.Dense(3, 1)], seed=0)
    b = st.Sequential(st.Dense(2, 3), st.Tanh(), st.Dense(3, 1), seed=0)
    np.testing.assert_array_equal(a.flat_params(), b.flat_params())
    assert a.in_features == 2 and a.out_features == 1


# -- initializers --------------------------------------------------------------------------------

@pytest.mark.parametrize("init,kind,scale", [
    ("glorot_uniform", "uniform", np.sqrt(6 / (300 + 200))),
    ("xavier_uniform", "uniform", np.sqrt(6 / (300 + 200))),
    ("he_uniform", "uniform", np.sqrt(6 / 300)),
    ("glorot_normal", "normal", np.sqrt(2 / (300 + 200))),
    ("he_normal", "normal", np.sqrt(2 / 300)),
    ("kaiming_normal", "normal", np.sqrt(2 / 300)),
    ("lecun_normal", "normal", np.sqrt(1 / 300)),
    ("normal", "normal", 0.01),
])
def test_initializers(init, kind, scale):
    model = st.Sequential(st.Dense(300, 200, init=init), dtype="float64", seed=0)
    w, b = model.state_dict()["0.weight"], model.state_dict()["0.bias"]
    assert not b.any()  # only torch_default draws the bias
    assert abs(w.mean()) < 0.01 * scale * 10
    if kind == "uniform":
        assert np.abs(w).max() <= scale and np.abs(w).max() > 0.99 * scale
        assert w.std() == pytest.approx(scale / np.sqrt(3), rel=0.02)
    else:
        assert w.std() == pytest.approx(scale, rel=0.02)


def test_zeros_init_and_seeded_reproducibility():
    assert not st.Sequential(st.Dense(5, 5, init="zeros"), seed=0).flat_params().any()
    a = st.Sequential(st.Dense(5, 5), seed=3).flat_params()
    b = st.Sequential(st.Dense(5, 5), seed=3).flat_params()
    c = st.Sequential(st.Dense(5, 5), seed=4).flat_params()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert st.Sequential(st.Dense(5, 5)).seed != st.Sequential(st.Dense(5, 5)).seed


# -- threads -------------------------------------------------------------------------------------

def test_set_and_get_num_threads():
    old = st.get_num_threads()
    assert old >= 1
    try:
        st.set_num_threads(1)
        assert st.get_num_threads() == 1
        st.set_num_threads(3)
        assert st.get_num_threads() == 3
    finally:
        st.set_num_threads(old)
    assert st.get_num_threads() == old
    with pytest.raises(ValueError, match="n"):
        st.set_num_threads(0)
    with pytest.raises(TypeError, match="n"):
        st.set_num_threads("2")


def test_public_names():
    for name in ("Sequential", "Dense", "ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Sigmoid",
                 "Tanh", "Softplus", "Softmax", "Dropout", "gradcheck", "load",
                 "set_num_threads", "get_num_threads", "clip_grad_norm_"):
        assert hasattr(st, name), name
    for name in ("MSE", "L1", "Huber", "BinaryCrossEntropy", "CrossEntropy"):
        assert hasattr(st.losses, name)
    for name in ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad"):
        assert hasattr(st.optim, name)
    for name in ("StepLR", "ExponentialLR", "CosineAnnealingLR", "LinearWarmup",
                 "ReduceLROnPlateau", "ConstantLR", "LinearLR", "PolynomialLR",
                 "CosineAnnealingWarmRestarts", "OneCycleLR", "SequentialLR",
                 "ChainedScheduler"):
        assert hasattr(st.schedules, name)
    for name in ("EarlyStopping", "ModelCheckpoint", "CSVLogger"):
        assert hasattr(st.callbacks, name)
    assert isinstance(st.__version__, str)


@pytest.mark.parametrize("n", [1, 255, 256, 257, 1000])
def test_predict_in_chunks_equals_one_forward_pass(n, rng):
    """predict works through the rows in chunks; the result equals one full forward pass."""
    model = st.Sequential(st.Dense(6, 16), st.GELU(), st.Dropout(0.5), st.Dense(16, 16),
                          st.Softmax(), st.Dense(16, 4), dtype="float64", seed=0)
    X = rng.normal(size=(n, 6))
    full = model.forward(X, training=False)
    np.testing.assert_allclose(model.predict(X), full, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(model.predict(X[-1:]), full[-1:], rtol=1e-13, atol=1e-15)


def test_backward_after_training_needs_a_new_forward(rng):
    """train_step and fit reuse the core's forward buffers: a backward() for an earlier
    forward() would read another batch's activations (and beyond the end of grad), so it is
    refused. predict/evaluate do not touch those buffers and leave the forward pass intact."""
    model = st.Sequential(st.Dense(3, 4), st.Tanh(), st.Dense(4, 2), dtype="float64", seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    loss = st.losses.CrossEntropy()
    x, dy = rng.normal(size=(2, 3)), rng.normal(size=(2, 2))
    X, y = rng.normal(size=(500, 3)), rng.integers(0, 2, 500)

    model.forward(x, training=True)
    model.train_step(X, y, loss, opt)
    with pytest.raises(RuntimeError, match="forward"):
        model.backward(dy)
    model.forward(x, training=True)
    model.fit(X, y, loss=loss, optimizer=opt, epochs=1, verbose=0)
    with pytest.raises(RuntimeError, match="forward"):
        model.backward(dy)

    model.zero_grad()
    model.forward(x, training=True)
    model.backward(dy)
    expected = model.flat_grads().copy()
    model.zero_grad()
    model.forward(x, training=True)
    model.predict(X)
    model.evaluate(X, y, loss)
    model.backward(dy)
    np.testing.assert_array_equal(model.flat_grads(), expected)
