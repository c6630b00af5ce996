"""What the studies share: data preparation, one training run, statistics, Markdown tables,
plot helpers, and the Study record each study module fills in once (its *_STUDY)."""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..callbacks import Callback
from ..datasets import Standardizer, load, train_test_split
from ..diagnostics import Diagnostics, activation_stats, layer_grad_norms, weight_norms
from ..errors import TrainingDiverged
from ..losses import MSE, CrossEntropy
from ..presets import build_mlp, make_optimizer


@dataclass(frozen=True)
class Job:
    """One entry of the report: a study run on a data set (a name for prepare()) with the
    keyword arguments of the full and of the quick report."""

    key: str            # the entry's key in run()'s results ("batch", "batch_regression")
    data: str
    full: dict
    quick: dict
    heading: str = ""   # added to the study's title


@dataclass(frozen=True)
class Study:
    """One study: run(data, seeds, **config, verbose=...) -> result (plain data, with
    result["study"] == key), markdown(result) -> its report section (setup and tables),
    plot(result, out) -> the PNG files it wrote into out (needs matplotlib), and the jobs the
    report runs. steepest.experiments.report registers every study once."""

    key: str
    title: str
    run: Callable
    markdown: Callable
    plot: Callable
    jobs: tuple


# -- data -----------------------------------------------------------------------------------------
def prepare(data="digits", test_size: float = 0.2, split_seed: int = 0, standardize_y=True,
            max_train=None) -> dict:
    """A data set ready for the studies: a name (see steepest.datasets), a path, or a pair
    (X, y) (integer y with few values is classification, otherwise regression). Features are
    standardized on the training split; regression targets too (standardize_y), so MSE is in
    units of the target's variance. max_train keeps only the first rows of the training split.

    Returns {"name", "task", "n_classes", "X_train", "X_test", "y_train", "y_test"}."""
    if isinstance(data, dict) and "X_train" in data:
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        with tempfile.TemporaryDirectory() as tmp:  # reuse load()'s task detection
            path = os.path.join(tmp, "data.npz")
            np.savez(path, X=np.asarray(data[0]), y=np.asarray(data[1]))
            d = load(path)
            d["name"] = "user data"
    else:
        d = load(data, seed=split_seed)
    X_tr, X_te, y_tr, y_te = train_test_split(d["X"], d["y"], test_size, seed=split_seed)
    if max_train is not None:
        X_tr, y_tr = X_tr[:max_train], y_tr[:max_train]
    scaler = Standardizer().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    if d["task"] == "regression" and standardize_y:
        ys = Standardizer().fit(y_tr)
        y_tr, y_te = ys.transform(y_tr), ys.transform(y_te)
    return {"name": d["name"], "task": d["task"], "n_classes": d["n_classes"],
            "X_train": np.ascontiguousarray(X_tr, np.float32),
            "X_test": np.ascontiguousarray(X_te, np.float32), "y_train": y_tr, "y_test": y_te}


def classify(data) -> bool:
    return data["task"] == "classification"


def n_outputs(data) -> int:
    return data["n_classes"] if classify(data) else np.asarray(data["y_train"]).reshape(
        len(data["y_train"]), -1).shape[1]


def loss_for(data):
    return CrossEntropy() if classify(data) else MSE()


def metric_name(data) -> str:
    return "accuracy" if classify(data) else "MSE"


def describe(data) -> str:
    kind = (f"classification, {data['n_classes']} classes" if classify(data)
            else "regression, standardized target, metric MSE")
    return (f"{data['name']} ({kind}; {len(data['X_train'])} training and "
            f"{len(data['X_test'])} test rows, {data['X_train'].shape[1]} standardized "
            "features)")


# -- one training run ------------------------------------------------------------------------------
def build(data, hidden=(64,), activation="relu", init="torch_default", dropout=0.0, seed=0,
          dtype="float32", norm=None):
    """The MLP of the studies: Dense (-> BatchNorm1d / LayerNorm when norm is "batch" /
    "layer") -> activation (-> Dropout) per hidden width -> Dense."""
    return build_mlp(data["X_train"].shape[1], list(hidden), n_outputs(data), activation,
                     dropout, dtype, seed, init, norm=norm)


def optimizer(name, model, lr, weight_decay=0.0):
    """sgd, momentum (0.9), nesterov (0.9), adam, adamw, rmsprop, adagrad (torch semantics)."""
    return make_optimizer(name, model.parameters(), lr, weight_decay)


def seed_list(seeds) -> list:
    return list(range(seeds)) if isinstance(seeds, int) else list(seeds)


def train_run(data, *, hidden=(64,), activation="relu", init="torch_default", dropout=0.0,
              opt="sgd", lr=0.1, weight_decay=0.0, epochs=20, batch_size=64, seed=0,
              diagnostics=False, train_loss=False, callbacks=(), norm=None) -> dict:
    """Trains one model and measures it. Never raises on divergence: a TrainingDiverged
    becomes status "diverged" with the epoch where it happened.

    Returns {"status": "ok" | "diverged", "diverged_epoch", "epochs_run", "updates",
    "train_time" (seconds inside the epochs, without evaluation), "train_metric",
    "test_metric" (accuracy or MSE at the end, dropout off), "history" (fit's, plus
    "train_loss_full" per epoch with train_loss=True), "problems" (diagnostics'
    vanishing/exploding findings with diagnostics=True), "init_grad_norm" (per Dense layer
    on 256 training rows before training, with diagnostics=True; with BatchNorm on those
    rows' statistics, as a training step normalizes)}. norm: see build()."""
    model = build(data, hidden, activation, init, dropout, seed, norm=norm)
    optim = optimizer(opt, model, lr, weight_decay)
    loss = loss_for(data)
    cbs = list(callbacks)
    diag = None
    result = {"status": "ok", "diverged_epoch": None}
    if diagnostics:
        result["init_grad_norm"] = layer_grad_norms(model, data["X_train"], data["y_train"],
                                                    loss, training=norm == "batch")
        result["init_activations"] = [  # the forward signal: std of each activation's output
            st["std"] for st in activation_stats(model, data["X_train"][:256])]
        diag = Diagnostics(data["X_train"], warn=False)
        cbs.append(diag)
    full = None
    if train_loss:
        full = _FullTrainLoss(data["X_train"], data["y_train"], loss)
        cbs.append(full)
    try:
        model.fit(data["X_train"], data["y_train"], loss=loss, optimizer=optim, epochs=epochs,
                  batch_size=batch_size, validation_data=(data["X_test"], data["y_test"]),
                  callbacks=cbs, verbose=0)
    except TrainingDiverged as e:
        result["status"], result["diverged_epoch"] = "diverged", e.epoch
    history = model.history
    result["history"] = {k: list(v) for k, v in history.items()}
    result["epochs_run"] = len(history["loss"])
    result["updates"] = optim.steps
    result["train_time"] = float(sum(history["time"]))
    train = model.evaluate(data["X_train"], data["y_train"], loss)
    test = model.evaluate(data["X_test"], data["y_test"], loss)
    key = "accuracy" if classify(data) else "loss"
    result["train_metric"], result["test_metric"] = train[key], test[key]
    result["train_loss"], result["test_loss"] = train["loss"], test["loss"]
    result["weight_norm"] = float(np.sqrt(sum(w * w for w in weight_norms(model))))
    if full is not None:
        result["initial_train_loss"] = full.initial
    if diag is not None:
        result["problems"] = [(e, k) for e, k, _ in diag.problems]
    return result


class _FullTrainLoss(Callback):
    """Adds "train_loss_full": the loss on the whole training set after each epoch (outside
    the epoch's timed part)."""

    def __init__(self, X, y, loss):
        self.X, self.y, self.loss = X, y, loss

    def on_train_begin(self, model, optimizer):
        super().on_train_begin(model, optimizer)
        self.initial = model.evaluate(self.X, self.y, self.loss)["loss"]

    def on_epoch_end(self, epoch, logs):
        logs["train_loss_full"] = self.model.evaluate(self.X, self.y, self.loss)["loss"]


# -- statistics and formatting ---------------------------------------------------------------------
def mean_std(values):
    """(mean, sample std) of the finite values; (nan, nan) when there are none."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def pm(values, digits=3, scale=1.0, suffix="") -> str:
    """"mean ± std" of the finite values (and "(k/n)" when only k of n are finite)."""
    values = list(values)
    finite = [x * scale for x in values if x is not None and np.isfinite(x)]
    if not finite:
        return "–"
    m, s = mean_std(finite)
    text = f"{m:.{digits}f}{suffix}" if len(finite) == 1 else \
        f"{m:.{digits}f} ± {s:.{digits}f}{suffix}"
    if len(finite) < len(values):
        text += f" ({len(finite)}/{len(values)})"
    return text


def sci(x) -> str:
    """A number in two significant digits for a table ("–" when not finite)."""
    if x is None or not np.isfinite(x):
        return "–"
    return "0" if x == 0 else f"{x:.2g}"


def table(columns, rows) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(columns) + " |",
             "| " + " | ".join("---" if i == 0 else "---:" for i in range(len(columns))) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def group(runs, *keys):
    """Runs grouped by the values of keys, in first-seen order: [(key values, [runs])]."""
    out = {}
    for r in runs:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return list(out.items())


def say(verbose, text):
    """Progress output of the studies."""
    if verbose:
        print(text, flush=True)


def metric_cells(runs, key, data_metric):
    """A table cell: mean ± std of r[key] over runs, in % for accuracy."""
    if data_metric == "accuracy":
        return pm([r[key] for r in runs], 1, 100, " %")
    return pm([r[key] for r in runs], 3)


def status_cell(rs, m):
    """A table cell: the test metric of the runs that did not diverge, and how many did."""
    div = [r for r in rs if r["status"] == "diverged"]
    if len(div) == len(rs):
        return "diverged"
    text = metric_cells([r for r in rs if r["status"] != "diverged"], "test_metric", m)
    return text + (f" ({len(div)}/{len(rs)} diverged)" if div else "")


def hidden_text(hidden, activation) -> str:
    n = len(hidden)
    widths = str(hidden[0]) if len(set(hidden)) == 1 else " / ".join(map(str, hidden))
    return f"{n} hidden layer{'s' if n > 1 else ''} of {widths} {activation} units"


def geo_mean(values):
    """Geometric mean of the finite values (0 if one of them is 0)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan
    if np.any(v <= 0):
        return 0.0
    return float(np.exp(np.log(v).mean()))


def last_mean(entries):
    """Mean of the last epoch's per-layer history entry (None when there is none)."""
    if not entries or not entries[-1]:
        return None
    return float(np.mean(entries[-1]))


# -- plots ---------------------------------------------------------------------------------------
def figure(ncols=1, width=6.0, height=4.2):
    from matplotlib.figure import Figure  # the object API: no pyplot state, no GUI backend

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


DPI = 110  # resolution of the PNG plots


def save_figure(fig, out, name) -> str:
    path = os.path.join(out, name)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return name
