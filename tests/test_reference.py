"""A plain float64 numpy MLP (forward, backward, SGD and Adam steps) as the reference."""
from __future__ import annotations

from math import erf

import numpy as np
import pytest

import steepest as st

_erf = np.vectorize(erf)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# name -> (layer, f(x), f'(x))
ACTS = {
    "relu": (st.ReLU(), lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0),
    "leaky": (st.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x),
              lambda x: np.where(x > 0, 1.0, 0.2)),
    "elu": (st.ELU(1.5), lambda x: np.where(x > 0, x, 1.5 * np.expm1(x)),
            lambda x: np.where(x > 0, 1.0, 1.5 * np.exp(x))),
    "gelu": (st.GELU(), lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))),
             lambda x: 0.5 * (1 + _erf(x / np.sqrt(2)))
             + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)),
    "silu": (st.SiLU(), lambda x: x * _sigmoid(x),
             lambda x: _sigmoid(x) * (1 + x * (1 - _sigmoid(x)))),
    "sigmoid": (st.Sigmoid(), _sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x))),
    "tanh": (st.Tanh(), np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "softplus": (st.Softplus(), lambda x: np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20)))),
                 lambda x: np.where(x > 20, 1.0, _sigmoid(x))),
}


class NumpyMLP:
    """Dense -> act -> Dense -> act -> Dense, MSE or softmax cross-entropy, in float64."""

    def __init__(self, state, f, df):
        self.W = [state[k].astype(np.float64).copy() for k in ("0.weight", "2.weight", "4.weight")]
        self.b = [state[k].astype(np.float64).copy() for k in ("0.bias", "2.bias", "4.bias")]
        self.f, self.df = f, df

    def forward(self, X):
        self.xs, self.zs = [], []
        h = X
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            self.xs.append(h)
            z = h @ W.T + b
            self.zs.append(z)
            h = z if i == len(self.W) - 1 else self.f(z)
        return h

    @staticmethod
    def mse(out, y):
        return np.mean((out - y) ** 2), 2 * (out - y) / out.size

    @staticmethod
    def cross_entropy(out, y):
        z = out - out.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        n = len(y)
        d = np.exp(logp)
        d[np.arange(n), y] -= 1
        return -logp[np.arange(n), y].mean(), d / n

    def backward(self, dout):
        self.dW, self.db = [None] * 3, [None] * 3
        d = dout
        for i in reversed(range(3)):
            if i < 2:
                d = d * self.df(self.zs[i])
            self.dW[i] = d.T @ self.xs[i]
            self.db[i] = d.sum(axis=0)
            d = d @ self.W[i]

    def sgd(self, lr):
        for i in range(3):
            self.W[i] -= lr * self.dW[i]
            self.b[i] -= lr * self.db[i]

    def state(self):
        out = {}
        for i, k in enumerate(("0", "2", "4")):
            out[k + ".weight"], out[k + ".bias"] = self.W[i], self.b[i]
        return out

    def grads(self):
        out = {}
        for i, k in enumerate(("0", "2", "4")):
            out[k + ".weight"], out[k + ".bias"] = self.dW[i], self.db[i]
        return out


def build(act, seed=0, dtype="float64"):
    return st.Sequential(st.Dense(5, 8), ACTS[act][0], st.Dense(8, 6), ACTS[act][0],
                         st.Dense(6, 3), dtype=dtype, seed=seed)


def assert_dicts_close(a, b, **tol):
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], err_msg=k, **tol)


@pytest.mark.parametrize("act", sorted(ACTS))
def test_forward_backward_match_numpy(act, rng):
    model = build(act)
    X = rng.normal(size=(9, 5))
    y = rng.normal(size=(9, 3))
    ref = NumpyMLP(model.state_dict(), *ACTS[act][1:])
    out_ref = ref.forward(X)
    np.testing.assert_allclose(model.predict(X), out_ref, rtol=1e-12, atol=1e-14)
    out = model.forward(X, training=True)
    np.testing.assert_allclose(out, out_ref, rtol=1e-12, atol=1e-14)

    loss = st.losses.MSE()
    value_ref, dout_ref = ref.mse(out_ref, y)
    assert loss.forward(out, y) == pytest.approx(value_ref, rel=1e-12)
    np.testing.assert_allclose(loss.backward(), dout_ref, rtol=1e-12, atol=1e-15)
    model.zero_grad()
    model.backward(loss.backward())
    ref.backward(dout_ref)
    assert_dicts_close({n: p.grad for n, p in model.named_parameters()}, ref.grads(),
                       rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("act", ["relu", "tanh", "gelu"])
def test_sgd_steps_match_numpy(act, rng):
    """20 plain SGD steps with cross-entropy: fused train_step, the step-by-step API and the
    numpy reference agree in float64."""
    fused, manual = build(act, seed=4), build(act, seed=4)
    ref = NumpyMLP(fused.state_dict(), *ACTS[act][1:])
    loss = st.losses.CrossEntropy()
    opt_f = st.optim.SGD(fused.parameters(), lr=0.3)
    opt_m = st.optim.SGD(manual.parameters(), lr=0.3)
    X = rng.normal(size=(40, 5))
    y = rng.integers(0, 3, 40)
    for step in range(20):
        rows = slice(8 * (step % 5), 8 * (step % 5) + 8)
        xb, yb = X[rows], y[rows]
        value_ref, dout = ref.cross_entropy(ref.forward(xb), yb)
        ref.backward(dout)
        ref.sgd(0.3)
        assert fused.train_step(xb, yb, loss, opt_f) == pytest.approx(value_ref, rel=1e-11)
        opt_m.zero_grad()
        value = loss.forward(manual.forward(xb, training=True), yb)
        manual.backward(loss.backward())
        opt_m.step()
        assert value == pytest.approx(value_ref, rel=1e-11)
    assert_dicts_close(fused.state_dict(), ref.state(), rtol=1e-10, atol=1e-12)
    assert_dicts_close(manual.state_dict(), ref.state(), rtol=1e-10, atol=1e-12)
    start = build(act, seed=4).state_dict()["0.weight"]
    assert not np.allclose(fused.state_dict()["0.weight"], start)  # training moved the weights


def test_full_batch_fit_is_gradient_descent(rng):
    """fit with batch_size=None: exactly one gradient step on the whole data set per epoch."""
    model = build("tanh", seed=1)
    ref = NumpyMLP(model.state_dict(), *ACTS["tanh"][1:])
    X, y = rng.normal(size=(30, 5)), rng.normal(size=(30, 3))
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    history = model.fit(X, y, loss=st.losses.MSE(), optimizer=opt, epochs=7, batch_size=None,
                        verbose=0)
    losses = []
    for _ in range(7):
        value, dout = ref.mse(ref.forward(X), y)
        losses.append(value)
        ref.backward(dout)
        ref.sgd(0.1)
    assert opt.steps == 7
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-11)
    assert_dicts_close(model.state_dict(), ref.state(), rtol=1e-10, atol=1e-12)


def test_adam_matches_numpy(rng):
    model = build("silu", seed=2)
    ref = NumpyMLP(model.state_dict(), *ACTS["silu"][1:])
    opt = st.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.95), eps=1e-6,
                        weight_decay=0.01)
    X, y = rng.normal(size=(16, 5)), rng.normal(size=(16, 3))
    params = ref.W + ref.b
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(1, 21):
        model.train_step(X, y, st.losses.MSE(), opt)
        _, dout = ref.mse(ref.forward(X), y)
        ref.backward(dout)
        for i, (p, g) in enumerate(zip(params, ref.dW + ref.db)):
            g = g + 0.01 * p
            m[i] = 0.8 * m[i] + 0.2 * g
            v[i] = 0.95 * v[i] + 0.05 * g * g
            p -= 0.01 * (m[i] / (1 - 0.8 ** t)) / (np.sqrt(v[i] / (1 - 0.95 ** t)) + 1e-6)
    assert_dicts_close(model.state_dict(), ref.state(), rtol=1e-9, atol=1e-12)


def test_float32_model_close_to_float64_reference(rng):
    model = build("tanh", seed=3, dtype="float32")
    ref = NumpyMLP(model.state_dict(), *ACTS["tanh"][1:])
    X = rng.normal(size=(9, 5))
    out = model.predict(X)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref.forward(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act", sorted(ACTS))
def test_activation_values_and_derivatives(act, rng):
    """Each activation alone: a Dense layer with identity weights feeds it x directly; the
    weight gradient of that layer then holds f'(x) * dy."""
    layer, f, df = ACTS[act]
    model = st.Sequential(st.Dense(6, 6), layer, dtype="float64", seed=0)
    sd = model.state_dict()
    sd["0.weight"][...] = np.eye(6)
    sd["0.bias"][...] = 0
    x = rng.normal(size=(1, 6)) * 3
    x[0, 0] = 25.0  # softplus' linear regime
    np.testing.assert_allclose(model.predict(x), f(x), rtol=1e-13, atol=1e-15)
    dy = rng.normal(size=(1, 6))
    model.zero_grad()
    model.forward(x, training=True)
    model.backward(dy)
    np.testing.assert_allclose(model.named_parameters()[1][1].grad,
                               (dy * df(x))[0], rtol=1e-12, atol=1e-15)


def test_softmax_layer_matches_numpy(rng):
    model = st.Sequential(st.Dense(4, 4), st.Softmax(), dtype="float64", seed=0)
    sd = model.state_dict()
    x = rng.normal(size=(3, 4)) * 50  # large: needs the max shift
    z = x @ sd["0.weight"].T + sd["0.bias"]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    out = model.predict(x)
    np.testing.assert_allclose(out, p, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-14)
    dy = rng.normal(size=(3, 4))
    model.zero_grad()
    model.forward(x, training=True)
    model.backward(dy)
    dz = p * (dy - (dy * p).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(model.named_parameters()[1][1].grad, dz.sum(axis=0), atol=1e-12)
