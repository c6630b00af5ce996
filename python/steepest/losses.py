"""Loss functions with mean reduction and fused, numerically stable gradients (torch.nn semantics).

Step by step::

    value = loss.forward(out, y)   # a float
    dout = loss.backward()         # d(value)/d(out), the start of backpropagation

Sample weights (forward's, train_step's, fit's and evaluate's ``sample_weight``) make the loss
the weighted mean sum_i w_i l_i / sum_i w_i of the rows' losses l_i (scikit-learn's MLP and
Keras's convention); with CrossEntropy's class weights the denominator is sum_i w_i
weight[y_i], torch's weighted mean. Rows of weight 0 count for nothing; a batch whose weights
sum to 0 has loss 0 and no gradient.
"""
from __future__ import annotations

from typing import Any, Optional

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

    def forward(self, out: ArrayLike, y: ArrayLike,
                sample_weight: Optional[ArrayLike] = None) -> float:
        """The loss of predictions out (N, C) against targets y, weighted by sample_weight (N,)
        when given; keeps d(loss)/d(out)."""
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
        if sample_weight is not None:
            sample_weight = _checks.sample_weights(sample_weight, "sample_weight", out.shape[0],
                                                   out.dtype)
        value, self._grad, _ = _core.loss_forward(self._spec, out, y, sample_weight)
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


def _per_output(value, name: str) -> Optional[list[float]]:
    """A loss's per-class or per-output weights (torch's weight / pos_weight): None, or a 1-D
    array-like (numpy, list, torch tensor) of finite values >= 0, as a list."""
    if value is None:
        return None
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    w = _checks.numeric(value, name).astype(np.float64)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"{name} must be 1-D, one value per output, got shape {w.shape}")
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError(f"{name} must hold finite values >= 0")
    return w.tolist()


def _options(loss: Loss, **defaults: Any) -> dict[str, Any]:
    """The loss's options that differ from their defaults (config and repr)."""
    return {k: getattr(loss, k) for k, v in defaults.items() if getattr(loss, k) != v}


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy on logits with targets in [0, 1] (torch.nn.BCEWithLogitsLoss):
    l = -weight_c [pos_weight_c t log s(o) + (1 - t) log(1 - s(o))] per output c, mean over
    the outputs and rows. weight rescales each output's loss, pos_weight the positive part
    (> 1 favours recall); both one value per output (torch broadcasts them the same way)."""

    kind = _core.LossKind.BinaryCrossEntropy

    def __init__(self, weight: Optional[ArrayLike] = None,
                 pos_weight: Optional[ArrayLike] = None) -> None:
        super().__init__()
        self.weight = _per_output(weight, "weight")
        self.pos_weight = _per_output(pos_weight, "pos_weight")
        self._spec.weight = self.weight or []
        self._spec.pos_weight = self.pos_weight or []

    def config(self):
        return {"type": "BinaryCrossEntropy", **_options(self, weight=None, pos_weight=None)}

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in _options(self, weight=None,
                                                          pos_weight=None).items())
        return f"BinaryCrossEntropy({args})"


class CrossEntropy(Loss):
    """Cross-entropy on logits (N, C) (torch.nn.CrossEntropyLoss; log-sum-exp: no overflow
    for large logits) against integer labels (N,) in [0, C), or class probabilities (N, C)
    of a float dtype (soft targets, C > 1).

    label_smoothing eps mixes the targets with the uniform distribution: (1 - eps) y + eps / C.
    weight: one weight per class; with labels the mean is sum_i weight[y_i] l_i / sum_i
    weight[y_i] (torch's weighted mean), with probabilities each class's term is weighted and
    the mean is over the rows. ignore_index: rows with this label add nothing to the loss,
    its gradient or its denominator (nor to the accuracy); a batch where every row is ignored
    has loss 0 (torch: NaN)."""

    kind = _core.LossKind.CrossEntropy
    classification = True

    def __init__(self, label_smoothing: float = 0.0, *, weight: Optional[ArrayLike] = None,
                 ignore_index: int = -100) -> None:
        super().__init__()
        self.label_smoothing = self._spec.label_smoothing = _checks.real(
            label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.weight = _per_output(weight, "weight")
        self._spec.weight = self.weight or []
        self.ignore_index = self._spec.ignore_index = _checks.integer(
            ignore_index, "ignore_index", low=-2**63)

    def targets(self, y, n_samples, n_outputs, dtype, name="y"):
        probabilities = np.asarray(y) if n_outputs > 1 and np.ndim(y) == 2 else None
        if probabilities is not None and probabilities.dtype.kind == "f":  # soft targets
            return _checks.values(y, name, n_samples, n_outputs, dtype, self._spec)
        return _checks.labels(y, name, n_samples, n_outputs, dtype, self._spec)

    def correct(self, out: np.ndarray, y: np.ndarray) -> tuple[int, int]:
        """(rows whose largest logit is at their label, or at their largest class
        probability; rows counted: those without ignore_index)."""
        if y.ndim == 2:
            return int(np.count_nonzero(out.argmax(axis=1) == y.argmax(axis=1))), len(y)
        kept = y != self.ignore_index
        return int(np.count_nonzero(out.argmax(axis=1)[kept] == y[kept])), int(kept.sum())

    def config(self):
        return {"type": "CrossEntropy", "label_smoothing": self.label_smoothing,
                **_options(self, weight=None, ignore_index=-100)}

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in _options(
            self, label_smoothing=0.0, weight=None, ignore_index=-100).items())
        return f"CrossEntropy({args})"


LOSSES = {cls.__name__: cls for cls in (MSE, L1, Huber, BinaryCrossEntropy, CrossEntropy)}


def check_loss(loss) -> None:
    """Refuses (TypeError) anything but a steepest loss."""
    if not isinstance(loss, Loss):
        raise TypeError(f"loss must be a steepest loss (st.losses.*), got {loss!r}")
