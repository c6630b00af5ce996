"""Diagnostics of training: are the gradients reaching every layer, are the units alive?

Per Dense layer: the weight norm ||W||, the gradient norm, and the update-to-weight ratio
||delta W|| / ||W|| (around 1e-3 per step is the classic healthy value; far smaller means the
layer barely learns, far larger means it is being overwritten). Per activation layer: the
fraction of dead ReLU units (zero for every sample row) and of saturated sigmoid/tanh
activations (in the flat tails, where the derivative is nearly zero). A ``GradientWarning``
is issued when the gradient vanishes on its way back to the first layer, or explodes.

    model.fit(X, y, ..., callbacks=[st.diagnostics.Diagnostics(X)])
    model.history["update_ratio"][-1]     # per Dense layer, the last epoch
    print(st.diagnostics.report(model, X, y, st.losses.CrossEntropy()))

The callback costs one forward pass over a fixed sample of at most 256 rows per epoch and a
few O(parameters) norms; it keeps one copy of the weights to measure the updates.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from . import _checks
from .callbacks import Callback
from .data import Shards
from .gradcheck import backprop_gradient
from .layers import Activation, Dense, ReLU, Sigmoid, Tanh

# A sigmoid output outside [0.01, 0.99] (|pre-activation| > 4.6) has a derivative below 0.0099,
# under 4% of its peak 0.25; a tanh output with |value| > 0.99 (|pre-activation| > 2.65) has a
# derivative below 0.02 (peak 1).
SIGMOID_TAIL = 0.01
TANH_TAIL = 0.01


class GradientWarning(RuntimeWarning):
    """Gradients vanish before reaching the first layers, or explode (steepest diagnostics)."""


# -- what the model is made of ------------------------------------------------------------------
def _weights(model) -> list:
    """The weight matrix Parameter of each Dense layer, first to last."""
    return [p for p in model.parameters()
            if isinstance(model.layers[p.layer], Dense) and p.name.endswith(".weight")]


def weight_norms(model) -> list:
    """||W||_2 (Frobenius) of each Dense layer's weight matrix, biases excluded."""
    return [_norm(p.data) for p in _weights(model)]


def grad_norms(model) -> list:
    """||dL/dW, dL/db||_2 of each Dense layer from the gradients currently in ``p.grad``
    (weight and bias together, measured by the core as for fit's history "grad_norm")."""
    return model.grad_norms()


def update_ratios(before, after) -> list:
    """||W_after - W_before|| / ||W_before|| per layer, for lists of weight arrays (inf where
    ||W_before|| is 0 and W moved, 0 where neither)."""
    out = []
    for a, b in zip(before, after):
        d = _norm(np.asarray(b, np.float64) - np.asarray(a, np.float64))
        w = _norm(a)
        out.append(d / w if w > 0 else (math.inf if d > 0 else 0.0))
    return out


def _weights_copy(model) -> list:
    return [p.data.copy() for p in _weights(model)]


def activation_stats(model, X, max_rows: int = 256, seed: int = 0) -> list:
    """Per activation layer (ReLU, Sigmoid, Tanh and the others), on at most max_rows rows of
    X (drawn once with `seed`), dropout off::

        {"layer": index in model.layers, "type": "ReLU", "dead": fraction of units that are
         zero for every row (ReLU; None otherwise), "saturated": fraction of (row, unit)
         values in the flat tails (Sigmoid/Tanh; None otherwise), "mean", "std"}
    """
    return _activation_stats(model, model.layer_outputs(_sample(model, X, max_rows, seed)))


def _activation_stats(model, outs) -> list:
    """activation_stats from every layer's output (model.layer_outputs) on the sample."""
    stats = []
    for i, (layer, a) in enumerate(zip(model.layers, outs)):
        if not isinstance(layer, Activation):
            continue
        stats.append({"layer": i, "type": type(layer).__name__,
                      "dead": dead_fraction(a) if isinstance(layer, ReLU) else None,
                      "saturated": saturated_fraction(a, layer)
                      if isinstance(layer, (Sigmoid, Tanh)) else None,
                      "mean": _mean_std(a)[0], "std": _mean_std(a)[1]})
    return stats


def dead_fraction(relu_out) -> float:
    """Fraction of units (columns) of a ReLU output (rows, units) that are 0 on every row."""
    a = np.asarray(relu_out)
    return float(np.mean(np.all(a <= 0, axis=0)))


def saturated_fraction(out, activation) -> float:
    """Fraction of the values of a sigmoid or tanh output (rows, units) in its flat tails:
    sigmoid outside [0.01, 0.99], tanh with |value| > 0.99. activation: a layer or "sigmoid" /
    "tanh"."""
    name = activation if isinstance(activation, str) else type(activation).__name__
    a = np.asarray(out)
    if name.lower() == "sigmoid":
        return float(np.mean((a < SIGMOID_TAIL) | (a > 1 - SIGMOID_TAIL)))
    if name.lower() == "tanh":
        return float(np.mean(np.abs(a) > 1 - TANH_TAIL))
    raise ValueError(f"saturation is defined for sigmoid and tanh, got {name!r}")


def _sample(model, X, max_rows, seed):
    max_rows = _checks.integer(max_rows, "max_rows", low=1)
    if isinstance(X, Shards):  # data read in place: only the sampled rows are read
        rows = _rows(len(X), max_rows, seed)
        X = X.take(np.arange(len(X)) if rows is None else rows)
    X = _checks.features(X, "X", model.in_features, model.dtype)
    rows = _rows(X.shape[0], max_rows, seed)
    return X if rows is None else np.ascontiguousarray(X[rows])


def _rows(n, max_rows, seed):
    """The fixed sample: None (all n rows) or max_rows sorted row indices drawn with seed."""
    if n <= max_rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))


# -- vanishing / exploding ------------------------------------------------------------------------
def gradient_problems(norms, vanish_ratio=1e-3, vanish_abs=1e-8, explode_ratio=1e3,
                      explode_abs=None) -> list:
    """Problems seen in per-layer gradient norms (first Dense layer to last): a list of
    ("vanishing" | "exploding", message); empty when healthy.

    vanishing: first layer's norm < vanish_ratio x the last layer's, or every layer's norm
    < vanish_abs. exploding: a non-finite norm, the first layer's > explode_ratio x the last
    layer's, or (when given) any norm > explode_abs."""
    norms = [float(n) for n in norms]
    if not norms:
        return []
    first, last = norms[0], norms[-1]
    problems = []
    if not all(math.isfinite(n) for n in norms):
        return [("exploding", f"non-finite gradient norm in layers {norms}")]
    if len(norms) > 1 and last > 0 and first < vanish_ratio * last:
        problems.append(("vanishing", f"first-layer gradient norm {first:.3g} is "
                         f"{first / last:.2g} x the last layer's ({last:.3g}); threshold "
                         f"{vanish_ratio:g}"))
    elif max(norms) < vanish_abs:
        problems.append(("vanishing", f"every layer's gradient norm is below {vanish_abs:g} "
                         f"(largest {max(norms):.3g})"))
    if len(norms) > 1 and last > 0 and first > explode_ratio * last:
        problems.append(("exploding", f"first-layer gradient norm {first:.3g} is "
                         f"{first / last:.3g} x the last layer's ({last:.3g}); threshold "
                         f"{explode_ratio:g}"))
    elif explode_abs is not None and max(norms) > explode_abs:
        problems.append(("exploding", f"gradient norm {max(norms):.3g} exceeds {explode_abs:g}"))
    return problems


class Diagnostics(Callback):
    """Adds per-epoch diagnostics to fit's logs and history, and warns (GradientWarning) once
    per fit when gradients vanish or explode.

    X_sample: rows of training inputs; at most `max_rows` of them (drawn once with `seed`) go
    through one forward pass at the end of every epoch. History entries (lists per layer):

    - "weight_norm": ||W|| per Dense layer (end of the epoch)
    - "update_ratio": ||W_end - W_start|| / ||W_start|| per Dense layer over the epoch
    - "grad_ratio": first Dense layer's gradient norm / the last one's (a number)
    - "dead_fraction": per ReLU layer, units zero on every sample row
    - "saturated_fraction": per Sigmoid/Tanh layer, values in the flat tails

    The gradient norms themselves are fit's own "grad_norm". warn=False records without
    warning; the thresholds are those of ``gradient_problems``. ``problems`` lists
    (epoch, kind, message) for every epoch where one was seen.
    """

    def __init__(self, X_sample=None, max_rows: int = 256, seed: int = 0, warn: bool = True,
                 vanish_ratio: float = 1e-3, vanish_abs: float = 1e-8,
                 explode_ratio: float = 1e3, explode_abs=None, explode_growth: float = 1e3):
        self.X_sample = X_sample
        self.max_rows = _checks.integer(max_rows, "max_rows", low=1)
        self.seed = seed
        self.warn = bool(warn)
        self.thresholds = {"vanish_ratio": vanish_ratio, "vanish_abs": vanish_abs,
                           "explode_ratio": explode_ratio, "explode_abs": explode_abs}
        self.explode_growth = explode_growth
        self.problems = []

    def on_train_begin(self, model, optimizer):
        super().on_train_begin(model, optimizer)
        self._X = (None if self.X_sample is None
                   else _sample(model, self.X_sample, self.max_rows, self.seed))
        self._before = _weights_copy(model)
        self._first_norms = None
        self._warned = set()
        self.problems = []

    def on_epoch_end(self, epoch, logs):
        model = self.model
        after = _weights_copy(model)
        logs["weight_norm"] = [_norm(w) for w in after]
        logs["update_ratio"] = update_ratios(self._before, after)
        self._before = after
        norms = list(logs.get("grad_norm", ()))
        if norms:
            logs["grad_ratio"] = norms[0] / norms[-1] if norms[-1] > 0 else math.inf
        if self._X is not None:
            dead, saturated = [], []
            for s in activation_stats(model, self._X, self.max_rows):
                if s["dead"] is not None:
                    dead.append(s["dead"])
                if s["saturated"] is not None:
                    saturated.append(s["saturated"])
            logs["dead_fraction"] = dead
            logs["saturated_fraction"] = saturated
        problems = gradient_problems(norms, **self.thresholds)
        if norms and self._first_norms is None:
            self._first_norms = norms
        elif norms and not any(k == "exploding" for k, _ in problems):
            grown = [n / f for n, f in zip(norms, self._first_norms) if f > 0]
            if grown and max(grown) > self.explode_growth:
                problems.append(("exploding", f"gradient norms grew {max(grown):.3g} x since "
                                 f"the first epoch; threshold {self.explode_growth:g}"))
        for kind, message in problems:
            self.problems.append((epoch, kind, message))
            if self.warn and kind not in self._warned:
                self._warned.add(kind)
                hint = ("try ReLU-family activations, He/Glorot initialization or fewer "
                        "layers" if kind == "vanishing" else
                        "try a smaller learning rate or gradient clipping")
                warnings.warn(f"{kind} gradients at epoch {epoch + 1}: {message}; {hint}",
                              GradientWarning, stacklevel=2)


# -- a one-call report ----------------------------------------------------------------------------
class Report(dict):
    """report()'s result: a dict {"layers": [...], "problems": [...], "rows": n}; str() is a
    table."""

    def __str__(self):
        head = ("#", "layer", "||W||", "||grad||", "dead", "saturated", "mean", "std")
        rows = [head]
        for r in self["layers"]:
            rows.append((str(r["layer"]), r["type"], _fmt(r.get("weight_norm")),
                         _fmt(r.get("grad_norm")), _pct(r.get("dead")),
                         _pct(r.get("saturated")), _fmt(r.get("mean")), _fmt(r.get("std"))))
        widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(f"({self['rows']} sample rows, dropout off)")
        lines += [f"{kind}: {message}" for kind, message in self["problems"]] or \
            ["gradients: no vanishing or exploding seen" if self["has_grads"] else
             "gradients: pass y and loss to check them"]
        return "\n".join(lines)

    __repr__ = dict.__repr__


def _fmt(v):
    return "" if v is None else f"{v:.3g}"


def _pct(v):
    return "" if v is None else f"{100 * v:.1f}%"


def layer_grad_norms(model, X, y, loss, max_rows: int = 256, seed: int = 0,
                     training: bool = False) -> list:
    """Per Dense layer, the norm of d(loss)/d(W, b) on at most max_rows rows of (X, y), as
    fit's "grad_norm" measures it; computed by one forward/backward pass on a copy of the
    model, so the model's own gradients (and BatchNorm's running statistics) are untouched.
    Eval mode (dropout off, BatchNorm on its running statistics), or with training the pass of
    a training step (BatchNorm on the rows' own statistics, dropout on)."""
    Xs = _sample(model, X, max_rows, seed)
    rows = _rows(len(X), max_rows, seed)
    if rows is not None:
        y = np.asarray(y)[rows]
    probe = type(model)(*model.layers, dtype=model.dtype.name, seed=model.seed,
                        in_features=model.in_features)
    probe.load_state_dict(model.state_dict())
    backprop_gradient(probe, loss, *probe.check_data(Xs, y, loss), training=training)
    return grad_norms(probe)


def report(model, X, y=None, loss=None, max_rows: int = 256, seed: int = 0) -> Report:
    """Diagnostics of `model` on at most max_rows rows of X: per layer the weight norm, the
    gradient norm (when y and loss are given, see layer_grad_norms), dead ReLU and saturated
    sigmoid/tanh fractions, and the mean/std of every layer's output; plus the
    vanishing/exploding verdict. print() it for a table."""
    if (y is None) != (loss is None):
        raise ValueError("pass both y and loss (to measure gradients) or neither")
    rows_X = _sample(model, X, max_rows, seed)
    norms = None if y is None else layer_grad_norms(model, X, y, loss, max_rows, seed)
    wn = weight_norms(model)
    outs = model.layer_outputs(rows_X)  # one forward pass serves every row below
    act = {s["layer"]: s for s in _activation_stats(model, outs)}
    layers, k = [], 0
    for i, layer in enumerate(model.layers):
        row = {"layer": i, "type": type(layer).__name__}
        if isinstance(layer, Dense):
            row["weight_norm"] = wn[k]
            row["grad_norm"] = norms[k] if norms is not None else None
            row["mean"], row["std"] = _mean_std(outs[i])
            k += 1
        elif i in act:
            row.update({key: act[i][key] for key in ("dead", "saturated", "mean", "std")})
        layers.append(row)
    problems = gradient_problems(norms) if norms is not None else []
    return Report(layers=layers, problems=problems, rows=int(rows_X.shape[0]),
                  has_grads=norms is not None)


def _mean_std(a):
    a = np.asarray(a, dtype=np.float64)
    return float(a.mean()), float(a.std())


def _norm(a) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64)))
