"""What a training step minimizes beyond torch's losses: the scale and l2 options of every
loss, PoissonNLL, sample weights, float64 sums, the full-batch loss_and_grad and an epoch in a
given row order."""
from __future__ import annotations

import numpy as np
import pytest

import steepest as st


def model(dtype="float64", seed=0, outputs=3):
    return st.Sequential(st.Dense(5, 12), st.Tanh(), st.Dense(12, outputs), dtype=dtype,
                         seed=seed)


def data(rng, n=20, outputs=3):
    return rng.normal(size=(n, 5)), rng.integers(0, outputs, n)


def test_loss_options_config_and_repr():
    loss = st.losses.Huber(0.5, scale=2.0, l2=1e-3)
    assert repr(loss) == "Huber(delta=0.5, scale=2.0, l2=0.001)"
    assert loss.config() == {"type": "Huber", "delta": 0.5, "scale": 2.0, "l2": 0.001}
    assert st.losses.CrossEntropy().config() == {"type": "CrossEntropy", "label_smoothing": 0.0}
    assert repr(st.losses.MSE(l2=0.5)) == "MSE(l2=0.5)"
    for bad, error in ((dict(scale=0), ValueError), (dict(l2=-1), ValueError),
                       (dict(scale="2"), TypeError)):
        with pytest.raises(error, match="scale|l2"):
            st.losses.MSE(**bad)


def test_scale_multiplies_the_loss_and_its_gradient(rng):
    out, y = rng.normal(size=(7, 3)), rng.integers(0, 3, 7)
    for make in (st.losses.CrossEntropy, st.losses.MSE, st.losses.PoissonNLL):
        target = y if make is st.losses.CrossEntropy else np.abs(rng.normal(size=(7, 3)))
        plain, scaled = make(), make(scale=2.5)
        assert scaled(out, target) == pytest.approx(2.5 * plain(out, target), rel=1e-14)
        np.testing.assert_allclose(scaled.backward(), 2.5 * plain.backward(), rtol=1e-14)


def test_poisson_nll_against_torch(torch, rng):
    out = rng.normal(size=(9, 2))
    y = rng.poisson(2.0, size=(9, 2)).astype(np.float64)
    loss = st.losses.PoissonNLL()
    value = loss(out, y)
    t_out = torch.tensor(out, requires_grad=True)
    want = torch.nn.PoissonNLLLoss(log_input=True, full=False)(t_out, torch.tensor(y))
    want.backward()
    assert value == pytest.approx(want.item(), rel=1e-14)
    np.testing.assert_allclose(loss.backward(), t_out.grad.numpy(), rtol=1e-13)
    with pytest.raises(ValueError, match=r"y must hold counts or rates >= 0 for PoissonNLL"):
        loss(out, -y)


def test_loss_and_grad_is_the_derivative_of_its_value(rng):
    # l2 on the weights (not the biases) and sample weights: central differences in float64
    m = model()
    X, y = data(rng)
    loss = st.losses.CrossEntropy(scale=1.5, l2=0.3)
    sw = rng.uniform(0.5, 2.0, len(y))
    X, y = m.check_data(X, y, loss)
    sw = m.check_sample_weight(sw, len(y))
    value = m.loss_and_grad(X, y, loss, sw)
    grad = m.flat_grads().copy()
    flat, eps = m.flat_params(), 1e-6
    for i in rng.choice(flat.size, 25, replace=False):
        keep = flat[i]
        flat[i] = keep + eps
        up = m.loss_and_grad(X, y, loss, sw)
        flat[i] = keep - eps
        down = m.loss_and_grad(X, y, loss, sw)
        flat[i] = keep
        assert grad[i] == pytest.approx((up - down) / (2 * eps), rel=1e-6, abs=1e-9)
    assert m.loss_and_grad(X, y, loss, sw) == value  # no update


def test_integer_sample_weights_count_samples(rng):
    X, y = data(rng, n=12)
    w = rng.integers(0, 4, 12).astype(float)
    loss = st.losses.CrossEntropy(l2=0.01)
    weighted, repeated = model(), model()
    a = weighted.loss_and_grad(*weighted.check_data(X, y, loss), loss, w)
    b = repeated.loss_and_grad(*repeated.check_data(X.repeat(w.astype(int), axis=0),
                                                    y.repeat(w.astype(int)), loss), loss)
    assert a == pytest.approx(b, rel=1e-13)
    np.testing.assert_allclose(weighted.flat_grads(), repeated.flat_grads(), rtol=1e-11,
                               atol=1e-14)


@pytest.mark.parametrize("float64_sums", [False, True])
def test_a_weighted_epoch_is_an_epoch_over_repeated_rows(float64_sums, rng):
    X, y = data(rng, n=15)
    w = rng.integers(0, 5, 15).astype(float)
    loss = st.losses.CrossEntropy(l2=1e-3)
    results = []
    for Xs, ys, ws in ((X, y, w), (X.repeat(w.astype(int), axis=0), y.repeat(w.astype(int)),
                                   None)):
        m = model("float32")
        m.float64_sums = float64_sums
        opt = st.optim.Adam(m.parameters(), lr=0.01)
        Xc, yc = m.check_data(Xs, ys, loss)
        for _ in range(20):  # full batch: the order of the rows does not change the mean
            m.train_epoch(Xc, yc, loss, opt, len(yc), shuffle=True,
                          sample_weight=m.check_sample_weight(ws, len(yc)))
        results.append(m.predict(X))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-4, atol=1e-5)


def test_float64_sums_change_only_rounding(rng):
    X, y = data(rng, n=40)
    loss = st.losses.CrossEntropy()
    grads = []
    for on in (False, True):
        m = model("float32")
        m.float64_sums = on
        assert m.float64_sums is on
        m.loss_and_grad(*m.check_data(X, y, loss), loss)
        grads.append(m.flat_grads().copy())
    reference = model()  # float64
    reference.loss_and_grad(*reference.check_data(X, y, loss), loss)
    for g in grads:
        np.testing.assert_allclose(g, reference.flat_grads(), rtol=1e-4, atol=1e-6)
    # the float64 sums are the closer to the float64 model
    assert np.abs(grads[1] - reference.flat_grads()).max() <= \
        np.abs(grads[0] - reference.flat_grads()).max()


def test_train_epoch_in_a_given_order(rng):
    X, y = data(rng, n=30)
    order = rng.permutation(30)
    loss = st.losses.CrossEntropy()
    a, b = model(), model()
    oa, ob = st.optim.SGD(a.parameters(), lr=0.1), st.optim.SGD(b.parameters(), lr=0.1)
    a.train_epoch(*a.check_data(X, y, loss), loss, oa, 8, order=order)
    b.train_epoch(*b.check_data(X[order], y[order], loss), loss, ob, 8, shuffle=False)
    np.testing.assert_array_equal(a.flat_params(), b.flat_params())
    swapped = order.copy()
    swapped[0] = 30  # bad orders: out of range, negative, a row twice, floats, a row short
    swapped_negative = order.copy()
    swapped_negative[0] = -1
    for bad in (swapped, swapped_negative, np.zeros(30, np.int64), order.astype(float),
                order[:-1]):
        with pytest.raises(ValueError, match="order must be a permutation of the rows"):
            a.train_epoch(*a.check_data(X, y, loss), loss, oa, 8, order=bad)


@pytest.mark.parametrize("bad, error, match", [
    (np.ones(5), ValueError, r"sample_weight has 5 samples but X has 20"),
    (-np.ones(20), ValueError, r"sample_weight must not be negative"),
    (np.zeros(20), ValueError, r"sample_weight is all zero"),
    (np.full(20, np.nan), ValueError, r"sample_weight contains NaN"),
    (np.ones((20, 1)), ValueError, r"sample_weight must be 1-D"),
    (np.array(["a"] * 20), TypeError, r"sample_weight must be a numeric array"),
])
def test_bad_sample_weights(bad, error, match, rng):
    m = model()
    with pytest.raises(error, match=match):
        m.check_sample_weight(bad, 20)
    assert m.check_sample_weight(None, 20) is None
