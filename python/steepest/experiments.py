"""Gradient descent and backpropagation, measured: six studies and a report writer.

Backpropagation computes the gradient (the chain rule, layer by layer, backwards); gradient
descent uses it. Each study below is a function that trains real models on a data set (the
runner's: scikit-learn's digits and diabetes; yours: any ``prepare()`` result) over several
seeds and returns plain data (dicts and lists of numbers); ``run()`` writes a Markdown report
with tables (mean ± std over the seeds) and PNG plots (when matplotlib is installed)::

    python -m steepest experiments [--quick] [--out DIR] [--seeds N] [--only STUDY ...]

    from steepest import experiments as ex
    data = ex.prepare((X, y))                      # or ex.prepare("digits")
    result = ex.learning_rate(data, seeds=3)       # result["runs"]: one record per run

Studies: batch (batch vs mini-batch vs stochastic), learning_rate, depth (x activation),
techniques, init, backprop (vs numerical differentiation).
"""
from __future__ import annotations

import math
import os
import re
import time
import warnings

import numpy as np

from .callbacks import Callback
from .gradcheck import backprop_gradient, numerical_gradient, relative_errors

STUDIES = ("batch", "learning_rate", "depth", "techniques", "init", "backprop")
ACTIVATIONS = ("sigmoid", "tanh", "relu", "gelu", "silu")


# -- data -----------------------------------------------------------------------------------------
def prepare(data="digits", test_size: float = 0.2, split_seed: int = 0, standardize_y=True,
            max_train=None) -> dict:
    """A data set ready for the studies: a name (see steepest.datasets), a path, or a pair
    (X, y) (integer y with few values is classification, otherwise regression). Features are
    standardized on the training split; regression targets too (standardize_y), so MSE is in
    units of the target's variance. max_train keeps only the first rows of the training split.

    Returns {"name", "task", "n_classes", "X_train", "X_test", "y_train", "y_test"}."""
    from .datasets import Standardizer, load, train_test_split

    if isinstance(data, dict) and "X_train" in data:
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        import tempfile

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


def _classify(data) -> bool:
    return data["task"] == "classification"


def _n_out(data) -> int:
    return data["n_classes"] if _classify(data) else np.asarray(data["y_train"]).reshape(
        len(data["y_train"]), -1).shape[1]


def _loss(data):
    from . import losses

    return losses.CrossEntropy() if _classify(data) else losses.MSE()


def _metric_name(data) -> str:
    return "accuracy" if _classify(data) else "MSE"


def _describe(data) -> str:
    kind = (f"classification, {data['n_classes']} classes" if _classify(data)
            else "regression, standardized target, metric MSE")
    return (f"{data['name']} ({kind}; {len(data['X_train'])} training and "
            f"{len(data['X_test'])} test rows, {data['X_train'].shape[1]} standardized "
            "features)")


# -- one training run ------------------------------------------------------------------------------
def build(data, hidden=(64,), activation="relu", init="torch_default", dropout=0.0, seed=0,
          dtype="float32"):
    """The MLP of the studies: Dense -> activation (-> Dropout) per hidden width -> Dense."""
    from .cli import build_model

    return build_model(data["X_train"].shape[1], list(hidden), _n_out(data), activation,
                       dropout, dtype, seed, init)


def optimizer(name, model, lr, weight_decay=0.0):
    """sgd, momentum (0.9), nesterov (0.9), adam, adamw, rmsprop, adagrad (torch semantics)."""
    from .cli import make_optimizer

    return make_optimizer(name, model.parameters(), lr, weight_decay)


def _seeds(seeds) -> list:
    return list(range(seeds)) if isinstance(seeds, int) else list(seeds)


def train_run(data, *, hidden=(64,), activation="relu", init="torch_default", dropout=0.0,
              opt="sgd", lr=0.1, weight_decay=0.0, epochs=20, batch_size=64, seed=0,
              diagnostics=False, train_loss=False, callbacks=()) -> dict:
    """Trains one model and measures it. Never raises on divergence: a TrainingDiverged
    becomes status "diverged" with the epoch where it happened.

    Returns {"status": "ok" | "diverged", "diverged_epoch", "epochs_run", "updates",
    "train_time" (seconds inside the epochs, without evaluation), "train_metric",
    "test_metric" (accuracy or MSE at the end, dropout off), "history" (fit's, plus
    "train_loss_full" per epoch with train_loss=True), "problems" (diagnostics'
    vanishing/exploding findings with diagnostics=True), "init_grad_norm" (per Dense layer
    on 256 training rows before training, with diagnostics=True)}."""
    from .diagnostics import Diagnostics, activation_stats, layer_grad_norms, weight_norms
    from .errors import TrainingDiverged

    model = build(data, hidden, activation, init, dropout, seed)
    optim = optimizer(opt, model, lr, weight_decay)
    loss = _loss(data)
    cbs = list(callbacks)
    diag = None
    result = {"status": "ok", "diverged_epoch": None}
    if diagnostics:
        result["init_grad_norm"] = layer_grad_norms(model, data["X_train"], data["y_train"],
                                                    loss)
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
    key = "accuracy" if _classify(data) else "loss"
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


def _sci(x) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    return "0" if x == 0 else f"{x:.2g}"


def table(columns, rows) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(columns) + " |",
             "| " + " | ".join("---" if i == 0 else "---:" for i in range(len(columns))) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _group(runs, *keys):
    """Runs grouped by the values of keys, in first-seen order: [(key values, [runs])]."""
    out = {}
    for r in runs:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return list(out.items())


def _say(verbose, text):
    if verbose:
        print(text, flush=True)


# -- study 1: batch vs mini-batch vs stochastic gradient descent ----------------------------------
def _memory_probe():
    """(start, stop): stop() returns (peak bytes above start, what was measured)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak resident set size (Linux)

        def rss(key):
            with open("/proc/self/status") as f:
                return int(re.search(key + r":\s+(\d+)", f.read()).group(1)) * 1024

        base = rss("VmRSS")
        return lambda: (rss("VmHWM") - base, "peak resident memory above the start")
    except OSError:
        import tracemalloc

        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]

        def stop():
            peak = tracemalloc.get_traced_memory()[1] - base
            tracemalloc.stop()
            return peak, "peak Python/numpy allocations (tracemalloc)"
        return stop


def batch_modes(data, seeds=3, epochs=30, hidden=(128,), activation="relu",
                lrs=(0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0), minibatch=32, target=None,
                verbose=False) -> dict:
    """Batch (all rows per update) vs mini-batch vs stochastic (one row per update) gradient
    descent with plain SGD, the same number of epochs for each. Each mode's learning rate is
    the one of `lrs` with the lowest mean training loss over the epochs on seed 0 (fast and
    stable; the other seeds then train at that rate). target: the training loss to reach
    (default: 0.1 for classification, 0.5 for regression); "time to target" is the training
    time until the first epoch whose full training-set loss is at or below it."""
    modes = [("batch", None), (f"mini-batch ({minibatch})", minibatch), ("stochastic (1)", 1)]
    if target is None:
        target = 0.1 if _classify(data) else 0.5
    n = len(data["X_train"])
    chosen, tuning, runs = {}, [], []
    for mode, bs in modes:
        best = None
        for lr in lrs:
            r = train_run(data, hidden=hidden, activation=activation, opt="sgd", lr=lr,
                          epochs=epochs, batch_size=bs, seed=0)
            score = float(np.mean(r["history"]["loss"])) if r["history"]["loss"] else math.inf
            ok = r["status"] == "ok" and np.isfinite(score)
            tuning.append({"mode": mode, "lr": lr, "status": r["status"],
                           "mean_loss": score if ok else None})
            if ok and (best is None or score < best[1]):
                best = (lr, score)
        chosen[mode] = best[0] if best else min(lrs)
        _say(verbose, f"  {mode}: learning rate {chosen[mode]}")
        for seed in _seeds(seeds):
            stop = _memory_probe()
            r = train_run(data, hidden=hidden, activation=activation, opt="sgd",
                          lr=chosen[mode], epochs=epochs, batch_size=bs, seed=seed,
                          train_loss=True)
            peak, measured = stop()
            h = r["history"]
            elapsed = np.cumsum(h["time"])
            hit = [i for i, v in enumerate(h.get("train_loss_full", [])) if v <= target]
            runs.append({"mode": mode, "batch_size": bs or n, "lr": chosen[mode], "seed": seed,
                         "status": r["status"], "updates_per_epoch": math.ceil(n / (bs or n)),
                         "time_per_epoch": float(np.mean(h["time"])),
                         "epochs_to_target": hit[0] + 1 if hit else None,
                         "time_to_target": float(elapsed[hit[0]]) if hit else None,
                         "train_metric": r["train_metric"], "test_metric": r["test_metric"],
                         "train_loss": r["train_loss"], "peak_memory": peak,
                         "memory_measured": measured,
                         "curve": [r["initial_train_loss"]] + h.get("train_loss_full", []),
                         "curve_time": [0.0] + [float(t) for t in elapsed]})
    return {"study": "batch", "data": _describe(data), "metric": _metric_name(data),
            "epochs": epochs, "hidden": list(hidden), "activation": activation,
            "target": target, "lrs": list(lrs), "chosen_lr": chosen, "tuning": tuning,
            "runs": runs, "seeds": len(_seeds(seeds))}


# -- study 2: learning rate -----------------------------------------------------------------------
def learning_rate(data, seeds=3, optimizers=("sgd", "momentum", "adam", "rmsprop"),
                  lrs=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0),
                  epochs=15, batch_size=64, hidden=(128,), activation="relu", target=None,
                  verbose=False) -> dict:
    """A learning-rate sweep per optimizer. Per (optimizer, rate, seed): final test metric,
    epochs until the test metric first reaches `target` (default accuracy 0.95, or MSE 0.6),
    and whether training diverged (a non-finite loss or gradient; recorded, not raised)."""
    if target is None:
        target = 0.95 if _classify(data) else 0.6
    runs = []
    for name in optimizers:
        for lr in lrs:
            for seed in _seeds(seeds):
                r = train_run(data, hidden=hidden, activation=activation, opt=name, lr=lr,
                              epochs=epochs, batch_size=batch_size, seed=seed)
                curve = r["history"].get("val_accuracy" if _classify(data) else "val_loss", [])
                hit = [i for i, v in enumerate(curve)
                       if (v >= target if _classify(data) else v <= target)]
                runs.append({"optimizer": name, "lr": lr, "seed": seed, "status": r["status"],
                             "diverged_epoch": r["diverged_epoch"],
                             "test_metric": r["test_metric"],
                             "train_metric": r["train_metric"],
                             "epochs_to_target": hit[0] + 1 if hit else None,
                             "final_loss": r["train_loss"]})
        _say(verbose, f"  {name}: done")
    return {"study": "learning_rate", "data": _describe(data), "metric": _metric_name(data),
            "optimizers": list(optimizers), "lrs": list(lrs), "epochs": epochs,
            "batch_size": batch_size, "hidden": list(hidden), "activation": activation,
            "target": target, "runs": runs, "seeds": len(_seeds(seeds))}


# -- study 3: depth x activation ------------------------------------------------------------------
# The initialization usually paired with each activation: He for the ReLU family, Glorot
# for the saturating ones.
RECOMMENDED_INIT = {"relu": "he_normal", "gelu": "he_normal", "silu": "he_normal",
                    "leaky_relu": "he_normal", "elu": "he_normal", "sigmoid": "glorot_uniform",
                    "tanh": "glorot_uniform", "softplus": "glorot_uniform"}


def depth_activation(data, seeds=3, depths=(1, 2, 3, 4, 5, 6, 7, 8), activations=ACTIVATIONS,
                     inits=("torch_default", "recommended"), width=64, epochs=15,
                     batch_size=64, opt="sgd", lr=0.1, verbose=False) -> dict:
    """Networks of 1..8 hidden layers of `width` units with each activation, trained with
    plain SGD (whose steps are proportional to the gradient, so a vanishing gradient shows).
    inits: initializer names, or "recommended" (He for ReLU/GELU/SiLU, Glorot for
    sigmoid/tanh: RECOMMENDED_INIT). Per run: test metric, per-Dense-layer gradient norms at
    initialization (256 training rows) and per epoch (fit's "grad_norm"), update-to-weight
    ratios, dead/saturated units."""
    runs, nets = [], []
    for init_spec in inits:
        for act in activations:
            init = RECOMMENDED_INIT[act] if init_spec == "recommended" else init_spec
            net = f"{act} ({init})"
            nets.append(net)
            for depth in depths:
                for seed in _seeds(seeds):
                    runs.append(_depth_run(data, act, init, net, depth, width, opt, lr, epochs,
                                           batch_size, seed))
            _say(verbose, f"  {net}: done")
    return {"study": "depth", "data": _describe(data), "metric": _metric_name(data),
            "depths": list(depths), "activations": list(activations), "nets": nets,
            "inits": list(inits), "width": width, "epochs": epochs, "batch_size": batch_size,
            "optimizer": opt, "lr": lr, "runs": runs, "seeds": len(_seeds(seeds))}


def _depth_run(data, act, init, net, depth, width, opt, lr, epochs, batch_size, seed):
    r = train_run(data, hidden=(width,) * depth, activation=act, init=init, opt=opt, lr=lr,
                  epochs=epochs, batch_size=batch_size, seed=seed, diagnostics=True)
    h = r["history"]
    return {"net": net, "activation": act, "init": init, "depth": depth, "seed": seed,
            "status": r["status"], "test_metric": r["test_metric"],
            "train_metric": r["train_metric"], "init_grad_norm": r["init_grad_norm"],
            "epoch_grad_norm": h["grad_norm"],
            "update_ratio": (h.get("update_ratio") or [None])[-1],
            "dead": _last_mean(h.get("dead_fraction")),
            "saturated": _last_mean(h.get("saturated_fraction")),
            "vanishing": any(k == "vanishing" for _, k in r["problems"])}


def _last_mean(entries):
    if not entries or not entries[-1]:
        return None
    return float(np.mean(entries[-1]))


# -- study 4: techniques --------------------------------------------------------------------------
TECHNIQUES = (
    # name, optimizer, lr, weight decay, dropout
    ("SGD", "sgd", 0.05, 0.0, 0.0),
    ("SGD + momentum 0.9", "momentum", 0.01, 0.0, 0.0),
    ("SGD + Nesterov 0.9", "nesterov", 0.01, 0.0, 0.0),
    ("momentum + weight decay 1e-2", "momentum", 0.01, 1e-2, 0.0),
    ("momentum + dropout 0.2", "momentum", 0.01, 0.0, 0.2),
    ("momentum + dropout 0.5", "momentum", 0.01, 0.0, 0.5),
    ("Adam", "adam", 1e-3, 0.0, 0.0),
    ("AdamW (decay 1e-2)", "adamw", 1e-3, 1e-2, 0.0),
    ("RMSprop", "rmsprop", 1e-3, 0.0, 0.0),
    ("Adagrad", "adagrad", 1e-2, 0.0, 0.0),
)


def techniques(data, seeds=3, configs=TECHNIQUES, hidden=(256, 256), activation="relu",
               epochs=30, batch_size=32, verbose=False) -> dict:
    """Optimizers and regularizers on the same network and data: train and test metric, the
    train-test gap, and training time. configs: (name, optimizer, lr, weight_decay,
    dropout) tuples."""
    runs = []
    for name, opt, lr, wd, dropout in configs:
        for seed in _seeds(seeds):
            r = train_run(data, hidden=hidden, activation=activation, opt=opt, lr=lr,
                          weight_decay=wd, dropout=dropout, epochs=epochs,
                          batch_size=batch_size, seed=seed)
            runs.append({"technique": name, "optimizer": opt, "lr": lr, "weight_decay": wd,
                         "dropout": dropout, "seed": seed, "status": r["status"],
                         "train_metric": r["train_metric"], "test_metric": r["test_metric"],
                         "time": r["train_time"], "weight_norm": r["weight_norm"],
                         "curve": r["history"].get("val_accuracy" if _classify(data)
                                                   else "val_loss", []),
                         "loss_curve": r["history"]["loss"]})
        _say(verbose, f"  {name}: done")
    return {"study": "techniques", "data": _describe(data), "metric": _metric_name(data),
            "hidden": list(hidden), "activation": activation, "epochs": epochs,
            "batch_size": batch_size, "runs": runs, "seeds": len(_seeds(seeds))}


# -- study 5: initialization ----------------------------------------------------------------------
INITS = ("zeros", "normal", "torch_default", "glorot_uniform", "he_normal")


def initialization(data, seeds=3, inits=INITS, activations=("tanh", "relu"), depth=6,
                   width=64, epochs=20, batch_size=64, opt="momentum", lr=0.01,
                   verbose=False) -> dict:
    """Zeros vs small random ("normal": N(0, 0.01^2)) vs Glorot vs He (and torch's default)
    on a deep network. Per run: test metric, the standard deviation of every hidden layer's
    output at initialization (does the signal survive the forward pass?), gradient norms
    at initialization (does it survive the backward pass?), dead ReLU units after training."""
    runs = []
    for act in activations:
        for init in inits:
            for seed in _seeds(seeds):
                r = train_run(data, hidden=(width,) * depth, activation=act, init=init,
                              opt=opt, lr=lr, epochs=epochs, batch_size=batch_size,
                              seed=seed, diagnostics=True)
                h = r["history"]
                runs.append({"activation": act, "init": init, "seed": seed,
                             "status": r["status"], "test_metric": r["test_metric"],
                             "train_metric": r["train_metric"],
                             "init_activation_std": r["init_activations"],
                             "init_grad_norm": r["init_grad_norm"],
                             "dead": _last_mean(h.get("dead_fraction")),
                             "curve": h.get("val_accuracy" if _classify(data) else "val_loss",
                                            [])})
        _say(verbose, f"  {act}: done")
    return {"study": "init", "data": _describe(data), "metric": _metric_name(data),
            "inits": list(inits), "activations": list(activations), "depth": depth,
            "width": width, "epochs": epochs, "batch_size": batch_size, "optimizer": opt,
            "lr": lr, "runs": runs, "seeds": len(_seeds(seeds))}


# -- study 6: backpropagation vs numerical differentiation ----------------------------------------
def backprop_vs_numerical(data, seeds=3, widths=(2, 4, 8, 16, 32, 64, 128, 256), rows=64,
                          eps=1e-6, activation="tanh", verbose=False) -> dict:
    """The gradient of the loss on `rows` training rows, computed by backpropagation (one
    forward and one backward pass) and by central finite differences (two forward passes per
    parameter), in float64, for one hidden layer of growing width. Per (width, seed): the
    parameter count, the max relative error between the two (as st.gradcheck), and the time
    of a forward pass, of backpropagation, and of the finite differences."""
    from .model import Sequential

    X = np.ascontiguousarray(data["X_train"][:rows], np.float64)
    y = data["y_train"][:rows]
    loss = _loss(data)
    runs = []
    for width in widths:
        for seed in _seeds(seeds):
            base = build(data, (width,), activation, seed=seed, dtype="float64")
            model = Sequential(*base.layers, dtype="float64", seed=seed)
            Xc, yc = model._data(X, y, loss)

            t_forward = _best_time(lambda: loss.forward(model.predict(Xc), yc))
            t_backprop = _best_time(lambda: backprop_gradient(model, loss, Xc, yc))
            analytic = backprop_gradient(model, loss, Xc, yc)
            flat = model._net.params
            start = time.perf_counter()
            numeric = numerical_gradient(model, loss, Xc, yc, eps)
            t_numeric = time.perf_counter() - start
            err = relative_errors(analytic, numeric)
            rel = float(np.linalg.norm(analytic - numeric) / max(np.linalg.norm(analytic),
                                                                 1e-300))
            runs.append({"width": width, "seed": seed, "params": int(flat.size),
                         "max_rel_error": float(err.max()),
                         "median_rel_error": float(np.median(err)), "norm_rel_error": rel,
                         "t_forward": t_forward, "t_backprop": t_backprop,
                         "t_numeric": t_numeric})
        _say(verbose, f"  width {width}: {flat.size} parameters, finite differences "
                      f"{t_numeric:.2f} s")
    return {"study": "backprop", "data": _describe(data), "rows": rows, "eps": eps,
            "activation": activation, "widths": list(widths), "runs": runs,
            "seeds": len(_seeds(seeds))}


def _best_time(fn, min_time=0.1, repeats=7) -> float:
    """Best of `repeats` averages over enough calls to last min_time seconds."""
    fn()
    n, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time / repeats or n >= 1 << 16:
            break
        n *= 2
    best = elapsed / n
    for _ in range(repeats - 1):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best


# -- the Markdown report ------------------------------------------------------------------------
def _metric_cells(runs, key, data_metric):
    if data_metric == "accuracy":
        return pm([r[key] for r in runs], 1, 100, " %")
    return pm([r[key] for r in runs], 3)


def _md_batch(res) -> str:
    m = res["metric"]
    rows = []
    for (mode,), rs in _group(res["runs"], "mode"):
        reached = [r for r in rs if r["time_to_target"] is not None]
        rows.append([mode, rs[0]["batch_size"], rs[0]["lr"], rs[0]["updates_per_epoch"],
                     pm([r["time_per_epoch"] * 1e3 for r in rs], 1),
                     pm([r["epochs_to_target"] for r in rs], 1) if reached else "not reached",
                     pm([r["time_to_target"] for r in rs], 3) if reached else "not reached",
                     _metric_cells(rs, "train_metric", m), _metric_cells(rs, "test_metric", m),
                     pm([r["peak_memory"] / 2**20 for r in rs], 2)])
    cols = ["mode", "batch size", "lr", "updates / epoch", "ms / epoch", "epochs to target",
            "s to target", f"train {m}", f"test {m}", "peak memory (MiB)"]
    measured = res["runs"][0]["memory_measured"] if res["runs"] else ""
    fastest = [(mean_std([r["time_to_target"] for r in rs])[0], mode)
               for (mode,), rs in _group(res["runs"], "mode")
               if all(r["time_to_target"] is not None for r in rs)]
    reading = (f"\n\nFirst to the target in training time (every seed): {min(fastest)[1]}."
               if fastest else "\n\nNo mode reached the target with every seed.")
    return (f"Setup: {res['data']}. {_hidden_text(res['hidden'], res['activation'])}, "
            f"plain SGD, {res['epochs']} epochs for every mode. Each mode's learning "
            "rate is the best (lowest mean training loss over the epochs, seed 0) of "
            f"{res['lrs']}. Target: "
            f"training loss ≤ {res['target']} on the whole training set, checked after each "
            f"epoch; times are training time only (evaluation excluded). Memory: {measured} "
            f"of one training run. {res['seeds']} seeds (initial weights and shuffling).\n\n"
            + table(cols, rows) + reading)


def _status_cell(rs, m):
    div = [r for r in rs if r["status"] == "diverged"]
    if len(div) == len(rs):
        return "diverged"
    text = _metric_cells([r for r in rs if r["status"] != "diverged"], "test_metric", m)
    return text + (f" ({len(div)}/{len(rs)} diverged)" if div else "")


def _md_learning_rate(res) -> str:
    m = res["metric"]
    by = {k: rs for k, rs in _group(res["runs"], "optimizer", "lr")}
    cols = ["lr"] + res["optimizers"]
    acc_rows, ep_rows = [], []
    for lr in res["lrs"]:
        acc_rows.append([f"{lr:g}"] + [_status_cell(by[(o, lr)], m) for o in res["optimizers"]])
        cells = []
        for o in res["optimizers"]:
            rs = by[(o, lr)]
            if all(r["status"] == "diverged" for r in rs):
                cells.append("diverged")
            elif any(r["epochs_to_target"] is not None for r in rs):
                cells.append(pm([r["epochs_to_target"] for r in rs], 1))
            else:
                cells.append("not reached")
        ep_rows.append([f"{lr:g}"] + cells)
    loss_rows = []
    for lr in res["lrs"]:
        cells = []
        for o in res["optimizers"]:
            rs = [r for r in by[(o, lr)] if r["status"] != "diverged"]
            mu, sd = mean_std([r["final_loss"] for r in rs])
            cells.append("diverged" if not rs else "–" if not np.isfinite(mu) else
                         f"{mu:.2g}" if len(rs) == 1 else f"{mu:.2g} ± {sd:.2g}")
        loss_rows.append([f"{lr:g}"] + cells)
    target = (f"test accuracy ≥ {100 * res['target']:g} %" if m == "accuracy"
              else f"test MSE ≤ {res['target']}")
    diverging = {o: [f"{lr:g}" for lr in res["lrs"]
                     if any(r["status"] == "diverged" for r in by[(o, lr)])]
                 for o in res["optimizers"]}
    div_text = "; ".join(f"{o}: {', '.join(v) if v else 'none'}" for o, v in diverging.items())
    best = []
    for o in res["optimizers"]:
        scored = [(mean_std([r["test_metric"] for r in by[(o, lr)] if r["status"] == "ok"])[0],
                   lr) for lr in res["lrs"]]
        scored = [(v if m == "accuracy" else -v, lr) for v, lr in scored if np.isfinite(v)]
        if scored:
            v, lr = max(scored)
            best.append(f"{o} {lr:g} ({100 * v:.1f} %)" if m == "accuracy"
                        else f"{o} {lr:g} (MSE {-v:.3f})")
    return (f"Setup: {res['data']}. {_hidden_text(res['hidden'], res['activation'])}, "
            f"{res['epochs']} epochs, mini-batches of {res['batch_size']}; SGD, SGD with "
            f"momentum 0.9, Adam and RMSprop with their other settings at torch's defaults. "
            f"A run *diverges* when its loss or gradient becomes NaN or infinite (fit raises "
            f"TrainingDiverged; recorded here). {res['seeds']} seeds.\n\n"
            f"Final test {m} (mean ± std over the seeds that did not diverge):\n\n"
            + table(cols, acc_rows) +
            "\n\nFinal training loss on the whole training set (a rate can stay finite and "
            "keep a good accuracy while the loss blows up: the weights grow, the arg-max "
            "survives):\n\n" + table(cols, loss_rows) +
            f"\n\nEpochs until {target} (over the seeds that reached it; (k/n) = k of n "
            "seeds):\n\n" + table(cols, ep_rows) +
            f"\n\nRates with at least one diverged run: {div_text}. Best rate of the grid per "
            f"optimizer (mean test {m}): {', '.join(best)}.")


def _md_depth(res) -> str:
    m = res["metric"]
    by = {k: rs for k, rs in _group(res["runs"], "net", "depth")}
    cols = ["activation (init)"] + [f"{d} hidden" for d in res["depths"]]
    acc = [[n] + [_metric_cells(by[(n, d)], "test_metric", m) for d in res["depths"]]
           for n in res["nets"]]
    ratio = [[n] + [_sci(_geo_mean([r["init_grad_norm"][0] / r["init_grad_norm"][-1]
                                    for r in by[(n, d)]])) for d in res["depths"]]
             for n in res["nets"]]
    trained = [[n] + [_sci(_geo_mean([r["epoch_grad_norm"][-1][0] /
                                      r["epoch_grad_norm"][-1][-1] for r in by[(n, d)]
                                      if r["epoch_grad_norm"]])) for d in res["depths"]]
               for n in res["nets"]]
    deepest = res["depths"][-1]
    units = []
    for n in res["nets"]:
        rs = by[(n, deepest)]
        warned = sum(r["vanishing"] for r in rs)
        dead = pm([r["dead"] for r in rs], 1, 100, " %") if rs[0]["dead"] is not None else "–"
        sat = pm([r["saturated"] for r in rs], 1, 100, " %") \
            if rs[0]["saturated"] is not None else "–"
        first = _geo_mean([r["update_ratio"][0] for r in rs if r["update_ratio"]])
        units.append([n, _sci(first), dead, sat, f"{warned}/{len(rs)}"])
    inits = ", ".join("the activation's usual initialization (He for the ReLU family, Glorot "
                      "for sigmoid/tanh)" if i == "recommended" else i for i in res["inits"])
    return (f"Setup: {res['data']}. 1 to {deepest} hidden layers of {res['width']} units; "
            f"initialization: {inits}; plain SGD (lr {res['lr']}), {res['epochs']} epochs, "
            f"mini-batches of {res['batch_size']}. {res['seeds']} seeds.\n\n"
            f"Test {m}:\n\n" + table(cols, acc) +
            "\n\nGradient norm of the first Dense layer divided by the last one's, at "
            "initialization (256 training rows; geometric mean over seeds). Below 1e-3 (the "
            "diagnostics' warning threshold) the first layers barely move under SGD:\n\n"
            + table(cols, ratio) +
            "\n\nThe same ratio during the last epoch of training (fit's per-epoch mean "
            "gradient norms):\n\n" + table(cols, trained) +
            f"\n\nThe {deepest}-hidden-layer networks in their last epoch: the first layer's "
            "update-to-weight ratio ‖ΔW‖ / ‖W‖ over the epoch, dead ReLU units and "
            "saturated sigmoid/tanh values after training (256 training rows), and runs where "
            "the diagnostics flagged vanishing gradients:\n\n"
            + table(["activation (init)", "first-layer update ratio", "dead ReLU units",
                     "saturated values", "vanishing flagged"], units))


def _hidden_text(hidden, activation) -> str:
    n = len(hidden)
    widths = str(hidden[0]) if len(set(hidden)) == 1 else " / ".join(map(str, hidden))
    return f"{n} hidden layer{'s' if n > 1 else ''} of {widths} {activation} units"


def _geo_mean(values):
    """Geometric mean of the finite values (0 if one of them is 0)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan
    if np.any(v <= 0):
        return 0.0
    return float(np.exp(np.log(v).mean()))


def _md_techniques(res) -> str:
    m = res["metric"]
    rows = []
    for (name,), rs in _group(res["runs"], "technique"):
        gap = [r["train_metric"] - r["test_metric"] if r["status"] == "ok" else None
               for r in rs]
        rows.append([name, rs[0]["lr"], _metric_cells(rs, "train_metric", m),
                     _status_cell(rs, m),
                     pm(gap, 1, 100, " pp") if m == "accuracy" else pm(gap, 3),
                     pm([r["weight_norm"] for r in rs], 1), pm([r["time"] for r in rs], 2)])
    return (f"Setup: {res['data']}. {_hidden_text(res['hidden'], res['activation'])}, "
            f"{res['epochs']} epochs, mini-batches of {res['batch_size']}. Learning "
            "rates: 0.05 for plain SGD, 0.01 with momentum (its steps are about 10x larger), "
            "torch's defaults for Adam/AdamW/RMSprop (1e-3) and Adagrad (1e-2). The gap is "
            f"train minus test {m} at the end (pp: percentage points); ‖W‖ is the norm of all "
            "the weight matrices together at the end (what weight decay shrinks); time is training "
            "time. "
            f"{res['seeds']} seeds.\n\n"
            + table(["technique", "lr", f"train {m}", f"test {m}", "train - test", "‖W‖",
                     "time (s)"], rows))


def _md_init(res) -> str:
    m = res["metric"]
    rows = []
    for (act, init), rs in _group(res["runs"], "activation", "init"):
        rows.append([act, init, _status_cell(rs, m),
                     _sci(_geo_mean([r["init_activation_std"][-1] for r in rs])),
                     _sci(_geo_mean([r["init_grad_norm"][0] for r in rs])),
                     pm([r["dead"] for r in rs], 1, 100, " %") if act == "relu" else "–"])
    return (f"Setup: {res['data']}. {res['depth']} hidden layers of {res['width']} units, "
            f"SGD with momentum 0.9 (lr {res['lr']}), {res['epochs']} epochs, mini-batches of "
            f"{res['batch_size']}. \"normal\" is N(0, 0.01²) (small random); Glorot and He are "
            "scaled to the fan-in/fan-out; torch_default is torch.nn.Linear's. Signal: the "
            "standard deviation of the last hidden layer's output at initialization; gradient: "
            "the first layer's gradient norm at initialization (both on 256 training rows, "
            f"geometric mean over seeds). {res['seeds']} seeds.\n\n"
            + table(["activation", "init", f"test {m}", "signal at init (std)",
                     "first-layer gradient at init", "dead ReLU after training"], rows))


def _md_backprop(res) -> str:
    rows = []
    last = _group(res["runs"], "width")[-1][1]
    worst = max(r["t_backprop"] / r["t_forward"] for r in res["runs"])
    reading = (f"\n\nAt {last[0]['params']:,} parameters one numerical gradient took "
               f"{np.mean([r['t_numeric'] / r['t_backprop'] for r in last]):,.0f} times as long "
               f"as backpropagation, which stayed within {worst:.1f} forward passes at every "
               "size.")
    for (width,), rs in _group(res["runs"], "width"):
        fwd = [r["t_forward"] for r in rs]
        rows.append([width, rs[0]["params"], _sci(max(r["norm_rel_error"] for r in rs)),
                     _sci(max(r["max_rel_error"] for r in rs)),
                     pm([r["t_forward"] * 1e6 for r in rs], 0),
                     pm([r["t_backprop"] * 1e6 for r in rs], 0),
                     pm([r["t_backprop"] / f for r, f in zip(rs, fwd)], 1),
                     pm([r["t_numeric"] * 1e3 for r in rs], 1),
                     pm([r["t_numeric"] / f for r, f in zip(rs, fwd)], 0)])
    return (f"Setup: {res['data']}; the gradient of the mean loss on {res['rows']} training "
            f"rows for one hidden layer of growing width ({res['activation']}), float64. "
            "Backpropagation: one forward and one backward pass. Numerical: central "
            f"differences (L(p + ε) - L(p - ε)) / 2ε with ε = {res['eps']:g} for every "
            "parameter, i.e. two forward passes each. Gradient error: ‖backprop - numerical‖ "
            "/ ‖backprop‖ for the whole gradient; entry error: the largest "
            "|backprop - numerical| / max(|backprop| + |numerical|, 1e-7) over all parameters "
            "(st.gradcheck's measure, large where an entry is itself tiny); both the worst over "
            "the seeds. Times through the Python API (each call has a fixed "
            f"overhead of some microseconds); best of several repeats. {res['seeds']} seeds.\n\n"
            + table(["hidden width", "parameters", "gradient error", "max entry error",
                     "forward (µs)",
                     "backprop (µs)", "backprop / forward", "numerical (ms)",
                     "numerical / forward"], rows) + reading)


_MD = {"batch": _md_batch, "learning_rate": _md_learning_rate, "depth": _md_depth,
       "techniques": _md_techniques, "init": _md_init, "backprop": _md_backprop}
TITLES = {"batch": "1. Batch vs mini-batch vs stochastic gradient descent",
          "learning_rate": "2. Learning rate, per optimizer",
          "depth": "3. Depth x activation: vanishing gradients",
          "techniques": "4. Techniques: momentum, weight decay, dropout, adaptive optimizers",
          "init": "5. Initialization on a deep network",
          "backprop": "6. Backpropagation vs numerical differentiation"}


# -- plots ---------------------------------------------------------------------------------------
def _figure(ncols=1, width=6.0, height=4.2):
    from matplotlib.figure import Figure  # the object API: no pyplot state, no GUI backend

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


DPI = 110  # resolution of the PNG plots


def _save(fig, out, name) -> str:
    path = os.path.join(out, name)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return name


def _plot_batch(res, out) -> list:
    files = []
    fig, (ax1, ax2) = _figure(2)
    for (mode,), rs in _group(res["runs"], "mode"):
        r = rs[0]
        if r["curve"]:
            ep = np.arange(len(r["curve"]))
            ax1.plot(ep, r["curve"], label=f"{mode}, lr {r['lr']}")
            ax2.plot(r["curve_time"], r["curve"], label=mode)
    for ax, xl in ((ax1, "epoch"), (ax2, "training time (s)")):
        ax.axhline(res["target"], color="grey", ls="--", lw=1, label="target")
        ax.set_yscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel("training loss (whole training set)")
        ax.grid(alpha=0.3)
    ax1.set_title("loss per epoch (seed 0)")
    ax2.set_title("loss against wall time (seed 0)")
    ax1.legend(fontsize=8)
    fig.suptitle(f"Batch vs mini-batch vs stochastic GD: {res['data'].split(' (')[0]}")
    files.append(_save(fig, out, f"batch_{_slug(res)}.png"))
    return files


def _slug(res):
    return re.sub(r"\W+", "_", res["data"].split(" (")[0]).strip("_")


def _plot_learning_rate(res, out) -> list:
    fig, axes = _figure(1, 7, 4.5)
    ax = axes[0]
    by = {k: rs for k, rs in _group(res["runs"], "optimizer", "lr")}
    for o in res["optimizers"]:
        xs, ys, es, dx = [], [], [], []
        for lr in res["lrs"]:
            rs = [r for r in by[(o, lr)] if r["status"] == "ok"]
            if len(rs) < len(by[(o, lr)]):
                dx.append(lr)
            if rs:
                mu, sd = mean_std([r["test_metric"] for r in rs])
                xs.append(lr), ys.append(mu), es.append(sd)
        line = ax.errorbar(xs, ys, yerr=es, marker="o", ms=4, capsize=2, label=o)
        if dx:
            k = res["optimizers"].index(o)
            y0 = -0.04 * k if res["metric"] == "accuracy" else max(ys or [1]) * (1 + 0.05 * k)
            ax.scatter(dx, [y0] * len(dx), marker="x", s=50, color=line[0].get_color())
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"test {res['metric']}")
    ax.set_title(f"Learning-rate sweep ({res['epochs']} epochs); x: diverged")
    ax.grid(alpha=0.3)
    ax.legend()
    return [_save(fig, out, "learning_rate.png")]


def _plot_depth(res, out) -> list:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    files = []
    by = {k: rs for k, rs in _group(res["runs"], "net", "depth")}
    deepest = res["depths"][-1]
    inits = res["inits"]
    fig = Figure(figsize=(15, 4.3 * len(inits)), layout="constrained")
    grid = fig.subplots(len(inits), 3, squeeze=False)
    for row, spec in enumerate(inits):
        ax1, ax2, ax3 = grid[row]
        for k, a in enumerate(res["activations"]):
            init = RECOMMENDED_INIT[a] if spec == "recommended" else spec
            n = f"{a} ({init})"
            rs = by[(n, deepest)]
            label = a if spec != "recommended" else n
            g0 = np.exp(np.mean(np.log(np.maximum([r["init_grad_norm"] for r in rs], 1e-30)),
                                axis=0))
            layers = np.arange(1, len(g0) + 1)
            ax1.plot(layers, g0, marker="o", ms=3, label=label, color=f"C{k}")
            last = [r["epoch_grad_norm"][-1] for r in rs if r["epoch_grad_norm"]]
            if last:
                ax2.plot(layers, np.exp(np.mean(np.log(np.maximum(last, 1e-30)), axis=0)),
                         marker="o", ms=3, label=label, color=f"C{k}")
            ratio = [_geo_mean([r["init_grad_norm"][0] / r["init_grad_norm"][-1]
                                for r in by[(n, d)]]) for d in res["depths"]]
            ax3.plot(res["depths"], ratio, marker="o", ms=3, label=label, color=f"C{k}")
        which = "usual init per activation" if spec == "recommended" else f"init {spec}"
        ax1.set_title(f"{which}: at initialization, {deepest} hidden layers", fontsize=10)
        ax2.set_title(f"{which}: last training epoch, {deepest} hidden layers", fontsize=10)
        ax3.set_title(f"{which}: first / last layer, at initialization", fontsize=10)
        for ax in (ax1, ax2):
            ax.set_xlabel("Dense layer (1 = input side)")
            ax.set_ylabel("gradient norm")
        ax3.axhline(1e-3, color="grey", ls="--", lw=1, label="warning threshold")
        ax3.set_xlabel("hidden layers")
        ax3.set_ylabel("first / last gradient norm")
        for ax in (ax1, ax2, ax3):
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        ax1.legend(fontsize=8)
        ax3.legend(fontsize=8)
    fig.suptitle("Vanishing gradients: per-layer gradient norms by activation "
                 f"(plain SGD, lr {res['lr']}; geometric mean over seeds)")
    files.append(_save(fig, out, "depth_gradients.png"))

    fig, axes = _figure(len(inits), 5.5, 4.2)
    for ax, spec in zip(axes, inits):
        for k, a in enumerate(res["activations"]):
            init = RECOMMENDED_INIT[a] if spec == "recommended" else spec
            n = f"{a} ({init})"
            stats = [mean_std([r["test_metric"] for r in by[(n, d)]]) for d in res["depths"]]
            ax.errorbar(res["depths"], [s[0] for s in stats], yerr=[s[1] for s in stats],
                        marker="o", ms=4, capsize=2, label=n if spec == "recommended" else a,
                        color=f"C{k}")
        ax.set_xlabel("hidden layers")
        ax.set_ylabel(f"test {res['metric']}")
        ax.set_title("usual init per activation" if spec == "recommended" else f"init {spec}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Depth x activation: test {res['metric']} after {res['epochs']} epochs of "
                 "plain SGD")
    files.append(_save(fig, out, "depth_accuracy.png"))
    return files


def _plot_techniques(res, out) -> list:
    fig, (ax1, ax2) = _figure(2, 6.0, 4.6)
    groups = _group(res["runs"], "technique")
    names = [name for (name,), _ in groups]
    stats = [mean_std([r["test_metric"] for r in rs if r["status"] == "ok"]) for _, rs in groups]
    ypos = np.arange(len(names))[::-1]
    ax1.barh(ypos, [s[0] for s in stats], xerr=[s[1] for s in stats], capsize=3,
             color=[f"C{k}" for k in range(len(names))])
    ax1.set_yticks(ypos, names, fontsize=8)
    finite = [s[0] for s in stats if np.isfinite(s[0])]
    if finite and res["metric"] == "accuracy":
        ax1.set_xlim(max(0.0, min(finite) - 0.03), min(1.0, max(finite) + 0.015))
    ax1.set_xlabel(f"test {res['metric']} after {res['epochs']} epochs (mean ± std)")
    ax1.grid(alpha=0.3, axis="x")
    ax1.set_title("Final test " + res["metric"])
    for k, (_, rs) in enumerate(groups):
        curves = [r["loss_curve"] for r in rs if len(r["loss_curve"]) == res["epochs"]]
        if curves:
            ax2.plot(np.arange(1, res["epochs"] + 1), np.mean(curves, axis=0),
                     color=f"C{k}", ls=("-", "--", ":")[k // 4 % 3], label=names[k])
    ax2.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("training loss (mean over the epoch's batches)")
    ax2.set_title("Training loss (mean over seeds)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7, ncol=2)
    fig.suptitle("Techniques on the same network and data")
    return [_save(fig, out, "techniques.png")]


def _plot_init(res, out) -> list:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    acts = res["activations"]
    fig = Figure(figsize=(5.2 * len(acts), 7.6), layout="constrained")
    axes = fig.subplots(2, len(acts), squeeze=False)
    by = {k: rs for k, rs in _group(res["runs"], "activation", "init")}
    for col, a in enumerate(acts):
        for row, key, ylabel in ((0, "init_activation_std", "std of the hidden layer's output"),
                                 (1, "init_grad_norm", "gradient norm")):
            ax = axes[row][col]
            for k, init in enumerate(res["inits"]):
                values = np.asarray([r[key] for r in by[(a, init)]], dtype=np.float64)
                y = np.exp(np.mean(np.log(np.where(values > 0, values, np.nan)), axis=0))
                label = init
                if np.all(values == 0):
                    label += " (all exactly 0: off the log scale)"
                elif np.any(values == 0):
                    label += " (only the nonzero values drawn)"
                ax.plot(np.arange(1, len(y) + 1), y, marker="o", ms=3, label=label,
                        color=f"C{k}")
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("hidden layer" if row == 0 else "Dense layer (1 = input side)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{a}: {'forward signal' if row == 0 else 'gradient'} at "
                         "initialization")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(f"Initialization: {res['depth']} hidden layers of {res['width']} units, "
                 "256 training rows (geometric mean over seeds)")
    return [_save(fig, out, "init_signal.png")]


def _plot_backprop(res, out) -> list:
    fig, (ax1, ax2) = _figure(2, 5.5, 4.2)
    groups = _group(res["runs"], "width")
    p = [rs[0]["params"] for _, rs in groups]
    for key, label in (("t_forward", "forward pass"), ("t_backprop", "backpropagation"),
                       ("t_numeric", "finite differences")):
        ax1.plot(p, [np.mean([r[key] for r in rs]) for _, rs in groups], marker="o", ms=4,
                 label=label)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("parameters")
    ax1.set_ylabel("seconds")
    ax1.set_title("Cost of one gradient")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(p, [max(r["norm_rel_error"] for r in rs) for _, rs in groups], marker="o", ms=4,
             label="whole gradient: ||a - n|| / ||a||")
    ax2.plot(p, [max(r["max_rel_error"] for r in rs) for _, rs in groups], marker="o", ms=4,
             label="worst entry")
    ax2.plot(p, [np.median([r["median_rel_error"] for r in rs]) for _, rs in groups],
             marker="o", ms=4, label="median entry")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("parameters")
    ax2.set_ylabel("relative error")
    ax2.set_title("Backprop vs finite differences: agreement")
    ax2.legend()
    ax2.grid(alpha=0.3)
    return [_save(fig, out, "backprop_vs_numerical.png")]


_PLOTS = {"batch": _plot_batch, "learning_rate": _plot_learning_rate, "depth": _plot_depth,
          "techniques": _plot_techniques, "init": _plot_init, "backprop": _plot_backprop}


def plot(result, out) -> list:
    """PNG files (names inside `out`) for a study's result; [] without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return []
    return _PLOTS[result["study"]](result, out)


def markdown(result) -> str:
    """The Markdown section (setup and tables, no title) of a study's result."""
    return _MD[result["study"]](result)


# -- the runner ----------------------------------------------------------------------------------
def _configs(quick: bool) -> dict:
    if not quick:
        return {"batch": {"epochs": 30}, "batch_regression": {"epochs": 30},
                "learning_rate": {}, "depth": {}, "techniques": {}, "init": {},
                "backprop": {}}
    return {"batch": {"epochs": 8, "lrs": (0.01, 0.1, 1.0)},
            "batch_regression": {"epochs": 8, "lrs": (0.01, 0.1, 1.0)},
            "learning_rate": {"lrs": (1e-3, 0.1, 10.0), "epochs": 4, "optimizers":
                              ("sgd", "momentum", "adam", "rmsprop")},
            "depth": {"depths": (1, 4, 8), "activations": ("sigmoid", "tanh", "relu"),
                      "epochs": 4, "width": 32},
            "techniques": {"configs": TECHNIQUES[:2] + TECHNIQUES[5:7], "epochs": 4,
                           "hidden": (64,)},
            "init": {"inits": ("zeros", "normal", "he_normal"), "activations": ("relu",),
                     "epochs": 4, "depth": 4, "width": 32},
            "backprop": {"widths": (2, 8, 32), "rows": 32}}


def run(out="steepest-experiments", quick=False, seeds=None, only=None, verbose=True,
        threads=1) -> dict:
    """Runs the studies (all, or `only`) and writes `out`/report.md, `out`/results.json and
    PNG plots. quick: small configurations (well under a minute). seeds: per configuration
    (default 3, quick 2). threads: CPU threads while running (default 1: the models are
    small, one thread makes the timings steadier; the previous setting is restored).
    Returns {study: result}."""
    from . import get_num_threads, set_num_threads

    previous = get_num_threads()
    set_num_threads(threads)
    try:
        return _run(out, quick, seeds, only, verbose)
    finally:
        set_num_threads(previous)


def _run(out, quick, seeds, only, verbose):
    import json
    import platform

    from . import __version__, get_num_threads

    only = list(only or STUDIES)
    unknown = [s for s in only if s not in STUDIES]
    if unknown:
        raise ValueError(f"unknown studies {unknown}: choose from {STUDIES}")
    seeds = seeds if seeds is not None else (2 if quick else 3)
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    os.makedirs(out, exist_ok=True)
    cfg = _configs(quick)
    start_all = time.perf_counter()
    load_start = _loadavg()
    digits = prepare("digits")
    results, seconds, plots = {}, {}, {}
    jobs = {"batch": [("batch", lambda: batch_modes(digits, seeds, **cfg["batch"],
                                                    verbose=verbose)),
                      ("batch_regression", lambda: batch_modes(prepare("diabetes"), seeds,
                                                               **cfg["batch_regression"],
                                                               verbose=verbose))],
            "learning_rate": [("learning_rate", lambda: learning_rate(
                digits, seeds, **cfg["learning_rate"], verbose=verbose))],
            "depth": [("depth", lambda: depth_activation(digits, seeds, **cfg["depth"],
                                                         verbose=verbose))],
            "techniques": [("techniques", lambda: techniques(digits, seeds,
                                                             **cfg["techniques"],
                                                             verbose=verbose))],
            "init": [("init", lambda: initialization(digits, seeds, **cfg["init"],
                                                     verbose=verbose))],
            "backprop": [("backprop", lambda: backprop_vs_numerical(digits, seeds,
                                                                    **cfg["backprop"],
                                                                    verbose=verbose))]}
    for study in only:
        for key, job in jobs[study]:
            _say(verbose, f"[{key}] running...")
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # numpy on diverging runs
                results[key] = job()
            seconds[key] = time.perf_counter() - t
            plots[key] = plot(results[key], out)
            _say(verbose, f"[{key}] {seconds[key]:.1f} s")
    total = time.perf_counter() - start_all
    env = {"steepest": __version__, "numpy": np.__version__, "python": platform.python_version(),
           "machine": platform.machine(), "cpus": os.cpu_count(), "threads": get_num_threads(),
           "load_average": [load_start, _loadavg()], "quick": quick, "seeds": seeds,
           "seconds": seconds, "total_seconds": total,
           "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as f:
        f.write(_report_text(results, plots, env, only))
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"environment": env, "results": results}, f, indent=1, default=_json)
    _say(verbose, f"report: {os.path.join(out, 'report.md')} ({total:.0f} s)")
    return results


def _loadavg():
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _json(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _report_text(results, plots, env, only) -> str:
    cmd = "python -m steepest experiments" + (" --quick" if env["quick"] else "") + \
        f" --seeds {env['seeds']}" + \
        ("" if env["threads"] == 1 else f" --threads {env['threads']}") + \
        ("" if list(only) == list(STUDIES) else " --only " + " ".join(only))
    parts = [
        "# Gradient descent and backpropagation, measured",
        "",
        "Backpropagation computes the gradient of the loss, layer by layer, backwards; "
        "gradient descent (and its variants) uses that gradient to update the parameters. "
        "They are two halves of one training step, not rivals. Every number below comes from "
        "training real models in this run; tables give mean ± std over seeds.",
        "",
        f"Regenerate: `{cmd}`.  ",
        f"steepest {env['steepest']}, numpy {env['numpy']}, Python {env['python']}, "
        f"{env['machine']}, {env['cpus']} CPUs, "
        f"{env['threads']} thread{'s' if env['threads'] > 1 else ''}; "
        f"{env['date']}; {env['total_seconds']:.0f} s in total. Load average at start/end: "
        f"{env['load_average'][0]} / {env['load_average'][1]} (times are wall-clock and "
        "depend on what else the machine is doing).",
        ""]
    if env["quick"]:
        parts += ["**Quick mode**: tiny configurations and few epochs, to check that "
                  "everything runs; the numbers are not meant to be read as results.", ""]
    for key, result in results.items():
        title = TITLES[result["study"]]
        if key == "batch_regression":
            title += " (regression)"
        parts += [f"## {title}", "", markdown(result), ""]
        for name in plots.get(key, []):
            parts += [f"![{name}]({name})", ""]
        parts += [f"_{env['seconds'][key]:.1f} s._", ""]
    if not any(plots.values()):
        parts += ["(Plots need matplotlib: `pip install 'steepest[plot]'`.)", ""]
    return "\n".join(parts)


# -- command line -------------------------------------------------------------------------------
def experiments_parser(sub):
    """Registers `steepest experiments` on an argparse subparsers object."""
    p = sub.add_parser(
        "experiments", help="run the gradient descent / backpropagation studies and write a "
                            "report (Markdown + PNG plots)",
        description="Train real models on scikit-learn's digits and diabetes data sets and "
                    "write a report folder: report.md (tables, mean ± std over seeds), "
                    "results.json (every run) and PNG plots (with matplotlib). Studies: "
                    + ", ".join(STUDIES) + ".")
    p.add_argument("--quick", action="store_true",
                   help="small configurations, under a minute (a smoke test)")
    p.add_argument("--out", default="steepest-experiments", metavar="DIR",
                   help="report folder (default ./steepest-experiments)")
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds per configuration (default 3; 2 with --quick)")
    p.add_argument("--only", nargs="+", choices=STUDIES, metavar="STUDY",
                   help=f"run only these studies: {', '.join(STUDIES)}")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: the models are small and timings steadier)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(run=run_cli)


def run_cli(args) -> int:
    run(args.out, quick=args.quick, seeds=args.seeds, only=args.only, verbose=not args.quiet,
        threads=args.threads)
    return 0

