"""Backpropagation checked against central finite differences."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike

from . import _checks
from .losses import Loss


def gradcheck(model: Any, loss: Loss, X: ArrayLike, y: ArrayLike, eps: float = 1e-6,
              max_checks: Optional[int] = None, seed: int = 0, atol: float = 1e-7,
              training: bool = False) -> float:
    """Max relative error between backprop's gradient and central finite differences.

    The check runs on a float64 copy of the model (same weights and buffers), in eval mode
    (dropout off, BatchNorm's running statistics), or with training=True in training mode
    (BatchNorm's batch statistics; dropout with the same masks in every pass). For every
    parameter entry (or `max_checks` entries drawn at random), the numerical derivative is
    (L(p + eps) - L(p - eps)) / (2 eps); the error of an entry is |a - n| / max(|a| + |n|, atol).
    Values around 1e-7 or below mean backprop is right; kinks (ReLU at 0) can raise a few.
    """
    eps = _checks.real(eps, "eps", low=0.0, low_open=True)
    probe = type(model)(*model.layers, dtype="float64", seed=model.seed,
                        in_features=model.in_features)
    probe.load_state_dict(model.state_dict())
    X, y = probe.check_data(X, y, loss)
    index = None
    if max_checks is not None and max_checks < probe.num_parameters():
        index = np.random.default_rng(seed).choice(probe.num_parameters(), size=max_checks,
                                                   replace=False)
    analytic = backprop_gradient(probe, loss, X, y, training)
    numeric = numerical_gradient(probe, loss, X, y, eps, index, training)
    return float(relative_errors(analytic if index is None else analytic[index], numeric,
                                 atol).max())


def backprop_gradient(model, loss, X, y, training: bool = False) -> np.ndarray:
    """d(loss)/d(params) by backpropagation (one forward and one backward pass), as a copy of
    the flat gradient buffer; X, y already validated for the model; eval mode unless
    training (then the random generator is left as it was, for numerical_gradient's passes)."""
    rng = model.rng_state
    model.zero_grad()
    loss.forward(model.forward(X, training=training), y)
    model.backward(loss.backward())
    model.rng_state = rng
    return model.flat_grads().copy()


def numerical_gradient(model, loss, X, y, eps: float = 1e-6, index=None,
                       training: bool = False) -> np.ndarray:
    """d(loss)/d(params) by central finite differences (two forward passes per entry), for
    the flat parameter entries in `index` (all when None); eval mode, or training mode with
    every pass drawing the same dropout masks."""
    flat = model.flat_params()
    rng = model.rng_state

    def value():
        if not training:
            return loss.forward(model.predict(X), y)
        model.rng_state = rng
        return loss.forward(model.forward(X, training=True), y)

    index = np.arange(flat.size) if index is None else index
    numeric = np.empty(len(index))
    for j, i in enumerate(index):
        old = flat[i]
        flat[i] = old + eps
        plus = value()
        flat[i] = old - eps
        minus = value()
        flat[i] = old
        numeric[j] = (plus - minus) / (2 * eps)
    return numeric


def relative_errors(analytic, numeric, atol: float = 1e-7) -> np.ndarray:
    """|a - n| / max(|a| + |n|, atol), entry by entry."""
    return np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), atol)
