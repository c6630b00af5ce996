"""Backpropagation against central finite differences, in float64.

Every layer, activation and loss is checked twice: with st.gradcheck (the library's own
checker, gradients with respect to every parameter) and with a finite-difference loop written
here (losses with respect to their input; dropout with a fixed mask). Inputs are kept away from
the kinks (ReLU/LeakyReLU/ELU at 0, L1 at 0, Huber at |d| = delta).
"""
from __future__ import annotations

import numpy as np
import pytest

import steepest as st
from conftest import numeric_grad

ACTIVATIONS = [st.ReLU(), st.LeakyReLU(0.1), st.ELU(), st.ELU(alpha=0.5), st.GELU(),
               st.GELU(approximate="tanh"), st.SiLU(), st.Sigmoid(), st.Tanh(), st.Softplus(),
               st.Softplus(beta=3.0, threshold=2.0), st.Softmax()]
KINKED = (st.ReLU, st.LeakyReLU, st.ELU)


def gradcheck(model, loss, X, y, **kw):
    """st.gradcheck with eps=1e-5: at 1e-6 the rounding error of the loss (~1e-16 / eps)
    dominates for the smallest gradient entries (~1e-5)."""
    return st.gradcheck(model, loss, X, y, eps=1e-5, atol=1e-6, **kw)


def preactivations(model, X):
    """Output of the first Dense layer, computed with numpy from the model's weights."""
    sd = model.state_dict()
    return X @ sd["0.weight"].T + sd["0.bias"]


def away_from_kinks(model, X, margin=1e-3):
    """Asserts that no first-layer pre-activation is within `margin` of 0 (a kink)."""
    z = preactivations(model, X)
    assert np.abs(z).min() > margin, "test data sits on a kink; pick another seed"


@pytest.mark.parametrize("act", ACTIVATIONS, ids=repr)
def test_gradcheck_every_activation(act, rng):
    model = st.Sequential(st.Dense(5, 7), act, st.Dense(7, 3), dtype="float64", seed=1)
    X = rng.normal(size=(6, 5))
    y = rng.normal(size=(6, 3))
    if isinstance(act, KINKED):
        away_from_kinks(model, X)
    err = gradcheck(model, st.losses.MSE(), X, y)
    assert err < 1e-6, err


def test_elu_gradient_far_below_zero():
    """ELU's derivative alpha exp(x) keeps its relative accuracy where exp(x) is far below
    the rounding of alpha (exp(x) - 1) + alpha: at -36 and beyond, down to -700."""
    w = np.array([[-20.0], [-36.0], [-37.5], [-40.0], [-100.0], [-700.0]])
    model = st.Sequential(st.Dense(1, 6), st.ELU(alpha=1.5), dtype="float64", seed=0)
    model.load_state_dict({"0.weight": w, "0.bias": np.zeros(6)})
    model.zero_grad()
    model.forward(np.ones((1, 1)), training=True)  # the ELU's input is w itself
    model.backward(np.ones((1, 6)))
    np.testing.assert_allclose(model.state_dict()["0.weight"], w)
    grad = model.parameters()[0].grad[:, 0]
    np.testing.assert_allclose(grad, 1.5 * np.exp(w[:, 0]), rtol=1e-15, atol=0)
    assert grad[-1] > 0


def test_softplus_threshold_switches_to_identity():
    """beta x above the threshold: the identity and gradient 1 (as torch.nn.Softplus);
    below: log1p(exp(beta x)) / beta and sigmoid(beta x)."""
    x = np.array([[-3.0, 0.5, 1.9, 2.1, 300.0]])
    model = st.Sequential(st.Dense(5, 5, bias=False), st.Softplus(beta=2.0, threshold=4.0),
                          dtype="float64", seed=0)
    model.load_state_dict({"0.weight": np.eye(5)})
    z = 2.0 * x[0]
    want = np.where(z > 4.0, x[0], np.log1p(np.exp(np.minimum(z, 4.0))) / 2.0)
    np.testing.assert_allclose(model.predict(x)[0], want, rtol=1e-15)
    model.zero_grad()
    model.forward(x, training=True)
    model.backward(np.ones((1, 5)))
    slope = np.where(z > 4.0, 1.0, 1 / (1 + np.exp(-np.minimum(z, 4.0))))
    np.testing.assert_allclose(np.diag(model.parameters()[0].grad), slope * x[0], rtol=1e-15)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradcheck_dense_layers(bias, dtype, rng):
    """Three Dense layers (dX flows through two of them); weights from a float32 model are
    checked on gradcheck's float64 copy."""
    model = st.Sequential(st.Dense(4, 6, bias=bias), st.Tanh(), st.Dense(6, 5, bias=bias),
                          st.Sigmoid(), st.Dense(5, 2, bias=bias), dtype=dtype, seed=3)
    X = rng.normal(size=(7, 4))
    y = rng.normal(size=(7, 2))
    assert gradcheck(model, st.losses.MSE(), X, y) < 1e-6


def test_gradcheck_single_linear_layer(rng):
    model = st.Sequential(st.Dense(3, 2), dtype="float64", seed=0)
    X, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    assert gradcheck(model, st.losses.MSE(), X, y) < 1e-7


def test_gradcheck_dropout_eval_mode(rng):
    """gradcheck runs with dropout off: Dropout is then the identity in the chain."""
    model = st.Sequential(st.Dense(4, 6), st.Tanh(), st.Dropout(0.5), st.Dense(6, 3),
                          dtype="float64", seed=0)
    X, y = rng.normal(size=(5, 4)), rng.integers(0, 3, 5)
    assert gradcheck(model, st.losses.CrossEntropy(), X, y) < 1e-6


@pytest.mark.parametrize("loss,targets", [
    (st.losses.MSE(), "real"), (st.losses.L1(), "real"), (st.losses.Huber(0.7), "real"),
    (st.losses.BinaryCrossEntropy(), "prob"), (st.losses.CrossEntropy(), "labels"),
    (st.losses.CrossEntropy(label_smoothing=0.2), "labels")], ids=repr)
def test_gradcheck_every_loss(loss, targets, rng):
    model = st.Sequential(st.Dense(4, 6), st.GELU(), st.Dense(6, 3), dtype="float64", seed=2)
    X = rng.normal(size=(8, 4))
    y = {"real": rng.normal(size=(8, 3)) * 3, "prob": rng.uniform(size=(8, 3)),
         "labels": rng.integers(0, 3, 8)}[targets]
    if targets == "real":  # keep |out - y| away from 0 (L1) and from delta (Huber)
        d = np.abs(model.predict(X) - y)
        assert d.min() > 1e-3 and np.abs(d - 0.7).min() > 1e-3
    assert gradcheck(model, loss, X, y) < 1e-6


def test_gradcheck_max_checks_and_float32_model(rng):
    model = st.Sequential(st.Dense(10, 20), st.SiLU(), st.Dense(20, 4), seed=5)
    X, y = rng.normal(size=(6, 10)), rng.integers(0, 4, 6)
    assert st.gradcheck(model, st.losses.CrossEntropy(), X, y, max_checks=40) < 1e-6
    assert model.dtype == np.float32  # the user's model is untouched


def test_gradcheck_detects_a_wrong_gradient(rng, monkeypatch):
    """The checker is not a tautology: a loss whose backward is off by 10% is caught."""
    model = st.Sequential(st.Dense(3, 2), dtype="float64", seed=0)
    X, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    loss = st.losses.MSE()
    good = loss.backward.__func__
    monkeypatch.setattr(loss, "backward", lambda: 1.1 * good(loss))
    assert st.gradcheck(model, loss, X, y) > 1e-2


# -- losses as pure functions of (out, y): our own finite differences ----------------------------

def _loss_cases(rng):
    out = rng.normal(size=(5, 4)) * 2
    real = out + rng.choice([-1, 1], size=out.shape) * rng.uniform(0.1, 2.0, size=out.shape)
    return [
        (st.losses.MSE(), out, real),
        (st.losses.L1(), out, real),  # |out - y| >= 0.1: no kink
        (st.losses.Huber(1.0), out, out + np.where(rng.uniform(size=out.shape) < 0.5, 0.4, -1.6)),
        (st.losses.Huber(0.3), out, real + 0.05 * (np.abs(real - out - 0.3) < 0.01)),
        (st.losses.BinaryCrossEntropy(), out, rng.uniform(size=out.shape)),
        (st.losses.BinaryCrossEntropy(), out, (rng.uniform(size=out.shape) < 0.5) * 1.0),
        (st.losses.CrossEntropy(), out, rng.integers(0, 4, 5)),
        (st.losses.CrossEntropy(label_smoothing=0.1), out, rng.integers(0, 4, 5)),
        (st.losses.CrossEntropy(label_smoothing=1.0), out, rng.integers(0, 4, 5)),
    ]


@pytest.mark.parametrize("case", range(9))
def test_loss_gradient_by_finite_differences(case, rng):
    loss, out, y = _loss_cases(rng)[case]
    value = loss.forward(out, y)
    analytic = loss.backward().copy()
    assert analytic.shape == out.shape and analytic.dtype == np.float64
    numeric = numeric_grad(lambda o: loss.forward(o, y), out)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)
    assert loss.forward(out, y) == value  # a pure function of (out, y)


def test_cross_entropy_large_logits_no_overflow():
    loss = st.losses.CrossEntropy()
    out = np.array([[1000.0, 0.0, -1000.0], [5000.0, 5001.0, 4999.0]])
    y = np.array([1, 1])
    value = loss.forward(out, y)
    grad = loss.backward()
    assert np.isfinite(value) and np.isfinite(grad).all()
    shifted = out - out.max(axis=1, keepdims=True)  # softmax is shift-invariant
    assert value == pytest.approx(loss.forward(shifted, y), rel=1e-12)
    np.testing.assert_allclose(grad, loss.backward(), atol=1e-15)
    assert value == pytest.approx((1000.0 + np.log1p(np.exp(-1.0) + np.exp(-2.0))) / 2,
                                  rel=1e-12)


def test_bce_large_logits_no_overflow():
    loss = st.losses.BinaryCrossEntropy()
    out = np.array([[800.0, -800.0]])
    value = loss.forward(out, np.array([[0.0, 1.0]]))
    assert value == pytest.approx(800.0)
    np.testing.assert_allclose(loss.backward(), [[0.5, -0.5]])


# -- dropout with a fixed mask -------------------------------------------------------------------

def test_dropout_fixed_mask_finite_differences(rng):
    """In training mode the mask comes from the model's RNG; restoring the RNG state before every
    forward pass fixes the mask, so backprop through dropout can be checked numerically."""
    model = st.Sequential(st.Dense(4, 8), st.Tanh(), st.Dropout(0.4), st.Dense(8, 2),
                          dtype="float64", seed=7)
    X, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 2))
    loss = st.losses.MSE()
    state = model.rng_state

    def value(flat):
        model.flat_params()[...] = flat
        model.rng_state = state
        return loss.forward(model.forward(X, training=True), y)

    p0 = model.flat_params().copy()
    model.zero_grad()
    value(p0)
    model.backward(loss.backward())
    analytic = model.flat_grads().copy()
    numeric = numeric_grad(value, p0)
    model.flat_params()[...] = p0
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)
    # and the mask really dropped something: the gradient differs from the eval-mode one
    model.zero_grad()
    loss.forward(model.forward(X, training=False), y)
    model.backward(loss.backward())
    assert not np.allclose(model.flat_grads(), analytic)
