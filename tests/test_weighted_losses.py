"""Weighted losses against torch as the oracle (CrossEntropy's class weights, ignore_index,
label smoothing and class-probability targets; BCEWithLogitsLoss's weight and pos_weight),
float64 finite differences for the new gradients, and per-sample weights in train_step, fit
and evaluate (sum_i w_i l_i / sum_i w_i)."""
from __future__ import annotations

import numpy as np
import pytest

import steepest as st
from conftest import mlp, numeric_grad, to_torch, torch_state

C = 5


def logits_and_labels(rng, n=12, ignored=()):
    out = rng.normal(size=(n, C)) * 3
    y = rng.integers(0, C, n)
    y[list(ignored)] = -100
    return out, y


def probabilities(rng, n=12):
    p = rng.uniform(size=(n, C)) ** 3
    return p / p.sum(axis=1, keepdims=True)


CLASS_WEIGHT = np.array([0.5, 2.0, 1.0, 0.0, 3.5])
CE_CASES = [
    dict(),
    dict(weight=CLASS_WEIGHT),
    dict(label_smoothing=0.2),
    dict(weight=CLASS_WEIGHT, label_smoothing=0.3),
    dict(weight=CLASS_WEIGHT, label_smoothing=0.1, ignore_index=3),
]


def torch_ce(torch, kw, dtype="float64"):
    kw = dict(kw)
    if "weight" in kw:
        kw["weight"] = torch.tensor(np.asarray(kw["weight"], dtype))
    return torch.nn.CrossEntropyLoss(**kw)


def check_against_torch(torch, loss, tloss, out, y, ty, dtype, sample_weight=None, tol=None):
    out = out.astype(dtype)
    tout = torch.tensor(out).requires_grad_()
    tvalue = tloss(tout, ty)
    tvalue.backward()
    tol = tol or (dict(rtol=1e-12, atol=1e-14) if dtype == "float64" else
                  dict(rtol=2e-5, atol=1e-6))
    assert loss.forward(out, y, sample_weight) == pytest.approx(tvalue.item(),
                                                                 rel=tol["rtol"] * 10)
    grad = loss.backward()
    assert grad.dtype == np.dtype(dtype)
    np.testing.assert_allclose(grad, tout.grad.numpy(), **tol)


@pytest.mark.parametrize("kw", CE_CASES, ids=repr)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cross_entropy_with_labels_matches_torch(kw, dtype, torch, rng):
    out, y = logits_and_labels(rng, ignored=(1, 7))
    if "ignore_index" in kw:
        y[[1, 7]] = kw["ignore_index"]
    loss = st.losses.CrossEntropy(**kw)
    check_against_torch(torch, loss, torch_ce(torch, kw, dtype), out, y, torch.tensor(y),
                        dtype)


@pytest.mark.parametrize("kw", CE_CASES[:4], ids=repr)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cross_entropy_with_probabilities_matches_torch(kw, dtype, torch, rng):
    out, p = rng.normal(size=(12, C)) * 3, probabilities(rng).astype(dtype)
    loss = st.losses.CrossEntropy(**kw)
    check_against_torch(torch, loss, torch_ce(torch, kw, dtype), out, p, torch.tensor(p),
                        dtype)


BCE_CASES = [dict(weight=[0.5, 2.0, 1.0, 0.0, 3.0]),
             dict(pos_weight=[3.0, 0.25, 1.0, 10.0, 0.0]),
             dict(weight=[0.5, 2.0, 1.0, 1.5, 3.0], pos_weight=[3.0, 0.25, 1.0, 10.0, 0.0])]


@pytest.mark.parametrize("kw", BCE_CASES, ids=repr)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_binary_cross_entropy_weights_match_torch(kw, dtype, torch, rng):
    out = rng.normal(size=(12, C)) * 4  # both tails of log(1 + exp(-o))
    t = rng.uniform(size=(12, C)).astype(dtype)
    t[:4] = np.round(t[:4])
    tloss = torch.nn.BCEWithLogitsLoss(**{k: torch.tensor(np.array(v, dtype))
                                          for k, v in kw.items()})
    check_against_torch(torch, st.losses.BinaryCrossEntropy(**kw), tloss, out, t,
                        torch.tensor(t), dtype)


def test_loss_options_accept_torch_tensors_and_refuse_bad_values(torch):
    loss = st.losses.CrossEntropy(weight=torch.tensor([1.0, 2.0]), ignore_index=0)
    assert loss.weight == [1.0, 2.0]
    assert repr(loss) == "CrossEntropy(weight=[1.0, 2.0], ignore_index=0)"
    options = {k: v for k, v in loss.config().items() if k != "type"}
    assert st.losses.CrossEntropy(**options).config() == loss.config()
    bce = st.losses.BinaryCrossEntropy(pos_weight=[2.0])
    assert bce.config() == {"type": "BinaryCrossEntropy", "pos_weight": [2.0]}
    for bad in ([-1.0, 1.0], [np.nan], [[1.0]], []):
        with pytest.raises(ValueError, match="weight"):
            st.losses.CrossEntropy(weight=bad)
        with pytest.raises(ValueError, match="pos_weight"):
            st.losses.BinaryCrossEntropy(pos_weight=bad)
    with pytest.raises(ValueError, match="one per output"):  # 2 weights, 5 outputs
        st.losses.CrossEntropy(weight=[1.0, 2.0]).forward(np.zeros((3, C)), [0, 1, 2])


def test_a_batch_of_ignored_rows_has_no_loss_and_no_gradient():
    loss = st.losses.CrossEntropy()
    assert loss.forward(np.ones((3, C)), [-100, -100, -100]) == 0.0
    assert not loss.backward().any()


# -- per-sample weights --------------------------------------------------------------------------

def per_row_torch(torch, loss, out, y):
    """torch's unreduced per-row losses (a row of BCE: the mean over its outputs) and what
    each row counts for in the normalizer (CrossEntropy with labels: its class weight)."""
    tout = torch.tensor(out)
    if isinstance(loss, st.losses.CrossEntropy):
        kw = {"label_smoothing": loss.label_smoothing, "ignore_index": loss.ignore_index}
        if loss.weight is not None:
            kw["weight"] = torch.tensor(loss.weight, dtype=torch.float64)
        rows = torch.nn.functional.cross_entropy(tout, torch.tensor(y), reduction="none", **kw)
        if y.ndim == 1:
            cw = np.ones(C) if loss.weight is None else np.array(loss.weight)
            counts = np.where(y == loss.ignore_index, 0.0, cw[np.where(y < 0, 0, y)])
            return rows.numpy(), counts
        return rows.numpy(), np.ones(len(y))
    rows = torch.nn.functional.mse_loss(tout, torch.tensor(y), reduction="none")
    return rows.numpy().mean(axis=1), np.ones(len(y))


@pytest.mark.parametrize("case", ["mse", "labels", "weighted-labels", "probabilities"])
def test_sample_weights_give_the_weighted_mean(case, torch, rng):
    out = rng.normal(size=(12, C))
    if case == "mse":
        loss, y = st.losses.MSE(), rng.normal(size=(12, C))
    elif case == "probabilities":
        loss, y = st.losses.CrossEntropy(label_smoothing=0.1), probabilities(rng)
    else:
        loss = st.losses.CrossEntropy(weight=CLASS_WEIGHT if case == "weighted-labels" else None)
        y = logits_and_labels(rng, ignored=(4,))[1]
    w = rng.uniform(0, 3, 12)
    w[2] = 0.0
    rows, counts = per_row_torch(torch, loss, out, y)
    expected = np.sum(w * rows) / np.sum(w * counts)
    assert loss.forward(out, y, sample_weight=w) == pytest.approx(expected, rel=1e-12)
    # The gradient: finite differences of the weighted value, float64.
    grad = loss.backward()
    numeric = numeric_grad(lambda o: loss.forward(o, y, w), out)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_new_gradients_match_finite_differences(rng):
    """CrossEntropy (probabilities, class weights, smoothing) and BCE (pos_weight, weight)."""
    out = rng.normal(size=(6, C))
    cases = [(st.losses.CrossEntropy(0.2, weight=CLASS_WEIGHT), probabilities(rng, 6)),
             (st.losses.CrossEntropy(0.2, weight=CLASS_WEIGHT, ignore_index=2),
              np.array([0, 2, 4, 1, 2, 3])),
             (st.losses.BinaryCrossEntropy(weight=[1, 2, 3, 0.5, 1], pos_weight=[4, 1, 0.5, 2, 0]),
              rng.uniform(size=(6, C)))]
    w = rng.uniform(0.1, 2, 6)
    for loss, y in cases:
        loss.forward(out, y, w)
        grad = loss.backward()
        numeric = numeric_grad(lambda o: loss.forward(o, y, w), out)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9, err_msg=repr(loss))


def test_bad_sample_weights_are_refused_by_name(rng):
    model = mlp(4, 6, 3)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    X, y = rng.normal(size=(8, 4)), rng.integers(0, 3, 8)
    loss = st.losses.CrossEntropy()
    for bad, message in [(-np.ones(8), "sample_weight must not be negative"),
                         (np.full(8, np.nan), "sample_weight contains NaN or infinity"),
                         (np.zeros(8), "sample_weight is all zero"),
                         (np.ones(7), "sample_weight has 7 samples but X has 8"),
                         (np.ones((8, 1)), "sample_weight must be 1-D")]:
        with pytest.raises(ValueError, match=message):
            model.train_step(X, y, loss, opt, sample_weight=bad)
        with pytest.raises(ValueError, match=message):
            model.fit(X, y, loss=loss, optimizer=opt, sample_weight=bad, verbose=0)
        with pytest.raises(ValueError, match=message):
            model.evaluate(X, y, loss, sample_weight=bad)
        with pytest.raises(ValueError, match=message):
            loss.forward(np.zeros((8, 3)), y, bad)
    with pytest.raises(ValueError, match=r"validation_data\[2\] must not be negative"):
        model.fit(X, y, loss=loss, optimizer=opt, validation_data=(X, y, -np.ones(8)),
                  verbose=0)


@pytest.mark.parametrize("loss", [st.losses.MSE(), st.losses.CrossEntropy(0.1)], ids=repr)
def test_integer_weights_equal_repeated_rows(loss, rng):
    """Full batch: weight k on a row is that row k times (float64, up to rounding)."""
    X = rng.normal(size=(10, 4))
    y = rng.normal(size=(10, 3)) if isinstance(loss, st.losses.MSE) else rng.integers(0, 3, 10)
    w = np.array([1, 3, 0, 2, 1, 1, 4, 0, 2, 1])
    weighted, repeated = mlp(4, 8, 3, seed=3), mlp(4, 8, 3, seed=3)
    for model, data, kw in [(weighted, (X, y), {"sample_weight": w}),
                            (repeated, (np.repeat(X, w, axis=0), np.repeat(y, w, axis=0)), {})]:
        opt = st.optim.Adam(model.parameters(), lr=0.01)
        history = model.fit(*data, loss=loss, optimizer=opt, epochs=15, batch_size=None,
                            verbose=0, **kw)
        model.final_loss = history["loss"][-1]
    for k, v in weighted.state_dict().items():
        np.testing.assert_allclose(v, repeated.state_dict()[k], rtol=1e-12, atol=1e-14)
    assert weighted.final_loss == pytest.approx(repeated.final_loss, rel=1e-12)
    assert weighted.evaluate(X, y, loss, sample_weight=w)["loss"] == pytest.approx(
        repeated.evaluate(np.repeat(X, w, axis=0), np.repeat(y, w, axis=0), loss)["loss"],
        rel=1e-12)


def test_weights_travel_with_their_rows_when_shuffled(rng):
    """Rows of weight 0 count for nothing, wherever the shuffle puts them: their targets may
    be anything. Weights of 1 are bitwise no weights."""
    X = rng.normal(size=(24, 4))
    y = rng.normal(size=(24, 2))
    w = (rng.uniform(size=24) > 0.4).astype(float)
    junk = y.copy()
    junk[w == 0] = 1e3
    results = []
    for targets, weights in [(y, w), (junk, w), (y, None), (y, np.ones(24))]:
        model = mlp(4, 6, 2, seed=1)
        opt = st.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        model.fit(X, targets, loss=st.losses.MSE(), optimizer=opt, epochs=3, batch_size=5,
                  sample_weight=weights, verbose=0)
        results.append(model.flat_params().copy())
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[2], results[3])
    assert not np.array_equal(results[0], results[2])


def test_train_step_with_weights_matches_a_torch_trajectory(torch, rng):
    """30 steps of class-weighted, smoothed, partly ignored CrossEntropy with sample weights."""
    X = rng.normal(size=(40, 6))
    y = rng.integers(0, 4, 40)
    y[::7] = -1
    w = rng.uniform(0, 2, 40)
    cw = [0.5, 1.0, 2.0, 1.5]
    model = st.Sequential(st.Dense(6, 12), st.Tanh(), st.Dense(12, 4), dtype="float64", seed=4)
    tmodel = to_torch(model)
    loss = st.losses.CrossEntropy(0.1, weight=cw, ignore_index=-1)
    opt = st.optim.Adam(model.parameters(), lr=0.01)
    topt = torch.optim.Adam(tmodel.parameters(), lr=0.01)
    tcw = torch.tensor(cw, dtype=torch.float64)
    tX, ty, tw = torch.tensor(X), torch.tensor(y), torch.tensor(w)
    for t in range(30):
        rows = slice(8 * (t % 5), 8 * (t % 5) + 8)
        value = model.train_step(X[rows], y[rows], loss, opt, sample_weight=w[rows])
        topt.zero_grad()
        per_row = torch.nn.functional.cross_entropy(tmodel(tX[rows]), ty[rows], weight=tcw,
                                                    ignore_index=-1, label_smoothing=0.1,
                                                    reduction="none")
        kept = ty[rows] != -1
        denominator = (tw[rows] * torch.where(kept, tcw[ty[rows].clamp(min=0)], 0.0)).sum()
        tvalue = (tw[rows] * per_row).sum() / denominator
        tvalue.backward()
        topt.step()
        assert value == pytest.approx(tvalue.item(), rel=1e-10)
    tstate = torch_state(tmodel)
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(v, tstate[k], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(weight=CLASS_WEIGHT[:4], label_smoothing=0.05),
                                dict(ignore_index=2)], ids=repr)
def test_fit_matches_a_torch_loop_with_the_loss_options(kw, torch, rng):
    X = rng.normal(size=(40, 6))
    y = rng.integers(0, 4, 40)
    model = st.Sequential(st.Dense(6, 10), st.ReLU(), st.Dense(10, 4), dtype="float64", seed=6)
    tmodel = to_torch(model)
    loss = st.losses.CrossEntropy(**kw)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.5)
    tloss = torch_ce(torch, kw)
    for t in range(30):
        rows = slice(8 * (t % 5), 8 * (t % 5) + 8)
        topt.zero_grad()
        tloss(tmodel(torch.tensor(X[rows])), torch.tensor(y[rows])).backward()
        topt.step()
    opt = st.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    history = model.fit(X, y, loss=loss, optimizer=opt, epochs=6, batch_size=8, shuffle=False,
                        verbose=0)
    tstate = torch_state(tmodel)
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(v, tstate[k], rtol=1e-10, atol=1e-12)
    if "ignore_index" in kw:  # the accuracy counts the rows that are not ignored
        kept = y != 2
        # (measured during the epoch, before each update: only its bounds are known here)
        assert 0.0 <= history["accuracy"][-1] <= 1.0
        final = model.evaluate(X, y, loss)["accuracy"]
        assert final == pytest.approx(np.mean(model.predict_classes(X)[kept] == y[kept]))


def test_class_weight_balanced_and_dict(rng):
    X = rng.normal(size=(30, 4))
    y = np.array([0] * 20 + [1] * 7 + [2] * 3)
    loss = st.losses.CrossEntropy()
    balanced = 30 / (3 * np.array([20, 7, 3]))  # scikit-learn's "balanced"
    w = rng.uniform(0.5, 1.5, 30)
    runs = {}
    for name, kw in [("balanced", {"class_weight": "balanced"}),
                     ("explicit", {"sample_weight": balanced[y]}),
                     ("dict", {"class_weight": {1: 2.0, 2: 0.5}}),
                     ("dict-explicit", {"sample_weight": np.array([1.0, 2.0, 0.5])[y]}),
                     ("both", {"class_weight": "balanced", "sample_weight": w}),
                     ("both-explicit", {"sample_weight": w * (w.sum() / (3 * np.bincount(
                         y, weights=w)))[y]})]:
        model = mlp(4, 6, 3, seed=2)
        opt = st.optim.SGD(model.parameters(), lr=0.1)
        model.fit(X, y, loss=loss, optimizer=opt, epochs=2, batch_size=7, verbose=0, **kw)
        runs[name] = model.flat_params()
    np.testing.assert_allclose(runs["balanced"], runs["explicit"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(runs["dict"], runs["dict-explicit"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(runs["both"], runs["both-explicit"], rtol=1e-12, atol=1e-14)
    model = mlp(4, 6, 3)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="class_weight has the key 5"):
        model.fit(X, y, loss=loss, optimizer=opt, class_weight={5: 1.0}, verbose=0)
    with pytest.raises(ValueError, match="class_weight must be"):
        model.fit(X, y, loss=loss, optimizer=opt, class_weight="auto", verbose=0)
    with pytest.raises(ValueError, match="class_weight needs"):
        model.fit(X, rng.normal(size=(30, 3)), loss=st.losses.MSE(), optimizer=opt,
                  class_weight="balanced", verbose=0)


def test_validation_weights_and_split_keep_their_rows(rng):
    X = rng.normal(size=(20, 4))
    y = rng.integers(0, 3, 20)
    w = rng.uniform(0, 2, 20)
    loss = st.losses.CrossEntropy()
    model = mlp(4, 6, 3, seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    history = model.fit(X, y, loss=loss, optimizer=opt, epochs=1, batch_size=4, verbose=0,
                        sample_weight=w, validation_split=0.25)
    assert history["val_loss"][-1] == pytest.approx(
        model.evaluate(X[15:], y[15:], loss, sample_weight=w[15:])["loss"], rel=1e-12)
    history = model.fit(X, y, loss=loss, optimizer=opt, epochs=1, verbose=0,
                        validation_data=(X[:5], y[:5], w[:5]))
    assert history["val_loss"][-1] == pytest.approx(
        model.evaluate(X[:5], y[:5], loss, sample_weight=w[:5])["loss"], rel=1e-12)


def test_weighted_fit_resumes_from_a_checkpoint_bitwise(tmp_path, rng):
    X, y = rng.normal(size=(20, 4)), rng.integers(0, 3, 20)
    w = rng.uniform(0, 2, 20)

    def run(epochs, path, weights=w):
        model = mlp(4, 6, 3, seed=9)
        opt = st.optim.Adam(model.parameters(), lr=0.01)
        model.fit(X, y, loss=st.losses.CrossEntropy(weight=[1, 2, 3]), optimizer=opt,
                  epochs=epochs, batch_size=6, verbose=0, sample_weight=weights,
                  checkpoint=path)
        return model.flat_params()

    whole = run(4, None)
    run(2, tmp_path / "ck")
    np.testing.assert_array_equal(run(4, tmp_path / "ck"), whole)
    with pytest.raises(ValueError, match="checkpoint"):  # other weights: another run
        run(4, tmp_path / "ck", weights=w[::-1].copy())
