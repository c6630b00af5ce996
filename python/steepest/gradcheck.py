"""Backpropagation checked against central finite differences."""
from __future__ import annotations

import numpy as np

from . import _checks


def gradcheck(model, loss, X, y, eps: float = 1e-6, max_checks=None, seed: int = 0,
              atol: float = 1e-7) -> float:
    """Max relative error between backprop's gradient and central finite differences.

    The check runs on a float64 copy of the model (same weights), dropout off. For every
    parameter entry (or `max_checks` entries drawn at random), the numerical derivative is
    (L(p + eps) - L(p - eps)) / (2 eps); the error of an entry is |a - n| / max(|a| + |n|, atol).
    Values around 1e-7 or below mean backprop is right; kinks (ReLU at 0) can raise a few.
    """
    from .model import Sequential

    eps = _checks.real(eps, "eps", low=0.0, low_open=True)
    probe = Sequential(*model.layers, dtype="float64", seed=model.seed)
    probe.load_state_dict(model.state_dict())
    X, y = probe._data(X, y, loss)

    def value():
        return loss.forward(probe.predict(X), y)

    probe.zero_grad()
    loss.forward(probe.forward(X, training=False), y)
    probe.backward(loss.backward())
    analytic = probe._net.grads.copy()
    flat = probe._net.params
    index = np.arange(flat.size)
    if max_checks is not None and max_checks < flat.size:
        index = np.random.default_rng(seed).choice(flat.size, size=max_checks, replace=False)
    numeric = np.empty(index.size)
    for j, i in enumerate(index):
        old = flat[i]
        flat[i] = old + eps
        plus = value()
        flat[i] = old - eps
        minus = value()
        flat[i] = old
        numeric[j] = (plus - minus) / (2 * eps)
    a = analytic[index]
    return float(np.max(np.abs(a - numeric) / np.maximum(np.abs(a) + np.abs(numeric), atol)))
