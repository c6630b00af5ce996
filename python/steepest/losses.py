"""Loss functions with mean reduction and fused, numerically stable gradients (torch.nn semantics).

Step by step::

    value = loss.forward(out, y)   # a float
    dout = loss.backward()         # d(value)/d(out), the start of backpropagation

Sample weights (forward's, train_step's, fit's and evaluate's ``sample_weight``) make the loss
the weighted mean sum_i w_i l_i / sum_i w_i of the rows' losses l_i (scikit-learn's MLP and
Keras's convention); with CrossEntropy's class weights and class labels the denominator is
sum_i w_i weight[y_i], torch's weighted mean. Rows of weight 0 count for nothing; a batch whose
weights sum to 0 has loss 0 and no gradient.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike

from . import _checks, _core, labels


class Loss:
    """Options of every loss (keyword-only): scale multiplies the loss and its gradient; l2
    adds l2 / 2 ||W||^2 / (the batch's samples, or the sum of their sample weights) over every
    Dense weight W, biases excepted, in training steps (scikit-learn's alpha)."""

    kind = None
    classification = False  # targets are class labels: evaluate reports accuracy

    def __init__(self, *, scale: float = 1.0, l2: float = 0.0) -> None:
        self._spec = _core.LossSpec()
        self._spec.kind = self.kind
        self.scale = self._spec.scale = _checks.real(scale, "scale", low=0.0, low_open=True)
        self.l2 = self._spec.l2 = _checks.real(l2, "l2", low=0.0)
        self._grad = None

    def _options(self) -> dict:
        """scale and l2 where they differ from the defaults, for config and repr."""
        return {k: v for k, v in (("scale", self.scale), ("l2", self.l2))
                if v != (1.0 if k == "scale" else 0.0)}

    def _repr(self, *args) -> str:
        args = list(args) + [f"{k}={v}" for k, v in self._options().items()]
        return f"{type(self).__name__}({', '.join(args)})"

    def targets(self, y, n_samples: int, n_outputs: int, dtype, name: str = "y",
                classes=None) -> np.ndarray:
        """Validated, converted targets for a model with n_outputs outputs (the core's rules for
        this loss, e.g. BinaryCrossEntropy's probabilities in [0, 1]). classes: the label of
        each output (see steepest.labels) for the classification losses."""
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
        sample_weight = _checks.sample_weight(sample_weight, "sample_weight", out.shape[0])
        value, self._grad, _ = _core.loss_forward(self._spec, out, y, sample_weight)
        return value

    __call__ = forward

    def backward(self) -> np.ndarray:
        """d(loss)/d(out) of the last forward call, shape (N, C)."""
        if self._grad is None:
            raise RuntimeError("call forward(out, y) before backward()")
        return self._grad

    def scored(self, y: np.ndarray) -> int:
        """How many rows of y (as targets() returns it) the accuracy counts."""
        return len(y)

    def config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, **self._options()}

    def __repr__(self) -> str:
        return self._repr()


class MSE(Loss):
    """mean((out - y)^2)."""

    kind = _core.LossKind.MSE


class L1(Loss):
    """mean(|out - y|)."""

    kind = _core.LossKind.L1


class Huber(Loss):
    """mean of 0.5 d^2 where |d| < delta, else delta (|d| - delta / 2) (torch.nn.HuberLoss)."""

    kind = _core.LossKind.Huber

    def __init__(self, delta: float = 1.0, **options: float) -> None:
        super().__init__(**options)
        self.delta = self._spec.delta = _checks.real(delta, "delta", low=0.0, low_open=True)

    def config(self):
        return {"type": "Huber", "delta": self.delta, **self._options()}

    def __repr__(self):
        return self._repr(f"delta={self.delta}")


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


def _non_default(loss: Loss, **defaults: Any) -> dict[str, Any]:
    """The loss's torch options that differ from their defaults (config and repr)."""
    return {k: getattr(loss, k) for k, default in defaults.items()
            if getattr(loss, k) != default}


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy on logits with targets in [0, 1] (torch.nn.BCEWithLogitsLoss):
    l = -weight_c [pos_weight_c t log s(o) + (1 - t) log(1 - s(o))] per output c, mean over the
    outputs and rows. weight rescales each output's loss, pos_weight the positive part (> 1
    favours recall); both one value per output (torch broadcasts them the same way).

    One output is a binary classifier: its targets may also be any two labels (strings,
    booleans, {1, 2}, ...), which fit maps to 0 and 1 through the model's classes_. Several
    outputs are a multi-label classifier: targets (N, outputs) in [0, 1]."""

    kind = _core.LossKind.BinaryCrossEntropy
    classification = True

    def __init__(self, weight: Optional[ArrayLike] = None,
                 pos_weight: Optional[ArrayLike] = None, **options: float) -> None:
        super().__init__(**options)
        self.weight = _per_output(weight, "weight")
        self.pos_weight = _per_output(pos_weight, "pos_weight")
        self._spec.weight = self.weight or []
        self._spec.pos_weight = self.pos_weight or []

    def config(self):
        return {"type": "BinaryCrossEntropy",
                **_non_default(self, weight=None, pos_weight=None), **self._options()}

    def __repr__(self):
        return self._repr(*(f"{k}={v}" for k, v in _non_default(
            self, weight=None, pos_weight=None).items()))

    def targets(self, y, n_samples, n_outputs, dtype, name="y", classes=None):
        if classes is not None and n_outputs == 1:  # two labels: negative, positive
            index = labels.encode(y, classes, name)
            _checks.same_length(index, name, n_samples)
            return index.astype(dtype)[:, None]
        labels.require_numbers(y, name)
        return super().targets(y, n_samples, n_outputs, dtype, name)

    def learn_classes(self, y, n_outputs: int, name: str = "y"):
        """None when y are targets in [0, 1] (used as they are); else, for one output, the
        two distinct labels of y, sorted: [negative, positive]."""
        if n_outputs != 1 or _in_unit_interval(y):
            return None
        classes = np.unique(labels.label_array(y, name))
        if classes.size != 2:
            raise ValueError(
                f"{name} holds {classes.size} distinct labels {labels.preview(classes)}; one "
                "output trained with BinaryCrossEntropy needs two (negative, positive) or "
                "targets in [0, 1]")
        return classes

    @staticmethod
    def correct(out: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per row: every output on the right side of 0 (subset accuracy, as scikit-learn's
        accuracy_score for several labels)."""
        return ((out > 0) == (y > 0.5)).all(axis=1)

    @staticmethod
    def probabilities(out: np.ndarray) -> np.ndarray:
        """The probability of each label (N, outputs): the sigmoid of each logit."""
        return sigmoid(out)


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
                 ignore_index: int = -100, **options: float) -> None:
        super().__init__(**options)
        self.label_smoothing = self._spec.label_smoothing = _checks.real(
            label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.weight = _per_output(weight, "weight")
        self._spec.weight = self.weight or []
        self.ignore_index = self._spec.ignore_index = _checks.integer(
            ignore_index, "ignore_index", low=-2**63)

    def targets(self, y, n_samples, n_outputs, dtype, name="y", classes=None):
        probabilities = (np.asarray(y) if classes is None and n_outputs > 1 and np.ndim(y) == 2
                         else None)
        if probabilities is not None and probabilities.dtype.kind == "f":  # soft targets
            return _checks.values(y, name, n_samples, n_outputs, dtype, self._spec)
        if classes is not None:
            index = labels.encode(y, classes, name)
            _checks.same_length(index, name, n_samples)
            return index
        y = labels.label_array(y, name)  # Python numbers in an object array become numbers
        labels.require_numbers(y, name)
        return _checks.labels(y, name, n_samples, n_outputs, dtype, self._spec)

    def learn_classes(self, y, n_outputs: int, name: str = "y"):
        """None when y are class indices in [0, n_outputs) (used as they are); else the
        distinct labels of y, sorted, one per output."""
        y = labels.label_array(y, name)
        if y.dtype.kind == "f" and y.ndim == 2:  # class probabilities
            return None
        kept = y[y != self.ignore_index] if y.dtype.kind in "iuf" else y
        if y.dtype.kind in "iuf" and (not kept.size or (kept.min() >= 0 and
                                                        kept.max() < n_outputs)):
            return None
        classes = np.unique(y)
        if classes.size != n_outputs:
            raise ValueError(
                f"{name} holds {classes.size} distinct labels {labels.preview(classes)} but "
                f"the model has {n_outputs} outputs: CrossEntropy needs one output per class "
                f"(as class indices, labels must be in [0, {n_outputs - 1}])")
        return classes

    def correct(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per row: the largest logit at the label's index (at the largest class
        probability's); False for the rows with ignore_index (see scored)."""
        if y.ndim == 2:
            return out.argmax(axis=1) == y.argmax(axis=1)
        return (out.argmax(axis=1) == y) & (y != self.ignore_index)

    def scored(self, y: np.ndarray) -> int:
        return len(y) if y.ndim == 2 else int(np.count_nonzero(y != self.ignore_index))

    @staticmethod
    def probabilities(out: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C): the softmax of the logits."""
        return softmax(out)

    def config(self):
        return {"type": "CrossEntropy", "label_smoothing": self.label_smoothing,
                **_non_default(self, weight=None, ignore_index=-100), **self._options()}

    def __repr__(self):
        return self._repr(*(f"{k}={v}" for k, v in _non_default(
            self, label_smoothing=0.0, weight=None, ignore_index=-100).items()))


class PoissonNLL(Loss):
    """mean(exp(out) - y out): the negative log-likelihood of counts y under a Poisson rate
    exp(out) (torch.nn.PoissonNLLLoss with log_input=True, full=False); out is the log of the
    rate, y >= 0."""

    kind = _core.LossKind.PoissonNLL


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (N, C), in z's dtype; each row on its own (a row's result
    does not depend on the others)."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) elementwise, in z's dtype, without overflow on either tail."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def _in_unit_interval(y) -> bool:
    """True for numeric (not boolean) y whose values are all in [0, 1]."""
    y = np.asarray(y)
    return (y.dtype.kind in "iuf" and y.size > 0 and bool(np.isfinite(y).all())
            and y.min() >= 0 and y.max() <= 1)


LOSSES = {cls.__name__: cls for cls in (MSE, L1, Huber, BinaryCrossEntropy, CrossEntropy,
                                        PoissonNLL)}


def check_loss(loss) -> None:
    """Refuses (TypeError) anything but a steepest loss."""
    if not isinstance(loss, Loss):
        raise TypeError(f"loss must be a steepest loss (st.losses.*), got {loss!r}")
