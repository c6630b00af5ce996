"""Loss functions with mean reduction and fused, numerically stable gradients (torch.nn semantics).

Step by step::

    value = loss.forward(out, y)   # a float
    dout = loss.backward()         # d(value)/d(out), the start of backpropagation
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _checks, _core


class Loss:
    kind = None
    classification = False  # integer labels (CrossEntropy) instead of real targets

    def __init__(self) -> None:
        self._spec = _core.LossSpec()
        self._spec.kind = self.kind
        self._grad = None

    def targets(self, y, n_samples: int, n_outputs: int, dtype, name: str = "y") -> np.ndarray:
        """Validated, converted targets for a model with n_outputs outputs (the core's rules for
        this loss, e.g. BinaryCrossEntropy's probabilities in [0, 1])."""
        return _checks.values(y, name, n_samples, n_outputs, dtype, self._spec)

    def forward(self, out: ArrayLike, y: ArrayLike) -> float:
        """The loss of predictions out (N, C) against targets y; keeps d(loss)/d(out)."""
        out = np.asarray(out)
        if out.dtype not in (np.float32, np.float64):
            out = _checks.numeric(out, "out").astype(np.float64)
        if out.ndim != 2:
            raise ValueError(f"out must be 2-D (samples, outputs), got shape {out.shape}")
        if out.shape[0] == 0:
            raise ValueError("out is empty: it has no samples")
        out = np.ascontiguousarray(out)
        _checks.check_finite(out, "out")
        y = self.targets(y, out.shape[0], out.shape[1], out.dtype)
        value, self._grad = _core.loss_forward(self._spec, out, y)
        return value

    __call__ = forward

    def backward(self) -> np.ndarray:
        """d(loss)/d(out) of the last forward call, shape (N, C)."""
        if self._grad is None:
            raise RuntimeError("call forward(out, y) before backward()")
        return self._grad

    def config(self) -> dict[str, Any]:
        return {"type": type(self).__name__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MSE(Loss):
    """mean((out - y)^2)."""

    kind = _core.LossKind.MSE


class L1(Loss):
    """mean(|out - y|)."""

    kind = _core.LossKind.L1


class Huber(Loss):
    """mean of 0.5 d^2 where |d| < delta, else delta (|d| - delta / 2) (torch.nn.HuberLoss)."""

    kind = _core.LossKind.Huber

    def __init__(self, delta: float = 1.0) -> None:
        super().__init__()
        self.delta = self._spec.delta = _checks.real(delta, "delta", low=0.0, low_open=True)

    def config(self):
        return {"type": "Huber", "delta": self.delta}

    def __repr__(self):
        return f"Huber(delta={self.delta})"


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy on logits with targets in [0, 1] (torch.nn.BCEWithLogitsLoss)."""

    kind = _core.LossKind.BinaryCrossEntropy


class CrossEntropy(Loss):
    """Cross-entropy on logits (N, C) with integer labels (N,) in [0, C) and optional label
    smoothing (torch.nn.CrossEntropyLoss). Log-sum-exp: no overflow for large logits."""

    kind = _core.LossKind.CrossEntropy
    classification = True

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = self._spec.label_smoothing = _checks.real(
            label_smoothing, "label_smoothing", low=0.0, high=1.0)

    def targets(self, y, n_samples, n_outputs, dtype, name="y"):
        return _checks.labels(y, name, n_samples, n_outputs, dtype, self._spec)

    def config(self):
        return {"type": "CrossEntropy", "label_smoothing": self.label_smoothing}

    def __repr__(self):
        ls = f"label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return f"CrossEntropy({ls})"


LOSSES = {cls.__name__: cls for cls in (MSE, L1, Huber, BinaryCrossEntropy, CrossEntropy)}


def check_loss(loss) -> None:
    """Refuses (TypeError) anything but a steepest loss."""
    if not isinstance(loss, Loss):
        raise TypeError(f"loss must be a steepest loss (st.losses.*), got {loss!r}")
