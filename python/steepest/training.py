"""The fit loop: epochs, history, callbacks, validation, checkpoints, divergence, Ctrl-C.

``Sequential.fit`` is a thin call into ``fit`` here, the way Keras splits its Trainer and
EpochIterator from the model. The model is an argument, never imported; the loop uses its
``check_data``, ``adapt``, ``train_epoch`` (one C++ call per epoch), ``evaluate_checked``,
``flat_params``, ``flat_buffers``, ``flat_counts``, ``rng_state``, ``history`` and
``stop_training``.
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import _checks, _core
from . import checkpoint as _checkpoint
from .callbacks import Callback, ConsoleLogger
from .diagnostics import Diagnostics
from .distributed import group_of, params_digest
from .errors import TrainingDiverged, check_step
from .labels import class_weighted
from .data import Shards
from .losses import BinaryCrossEntropy, CrossEntropy, check_loss
from .optim import check_optimizer, clip_threshold
from .progress import ProgressBar


def fit(model, X, y, *, loss, optimizer, epochs=1, batch_size=32, shuffle=True,
        validation_data=None, validation_split=None, callbacks=(), verbose=1,
        clip_grad_norm=None, checkpoint=None, diagnostics=False, distributed=None,
        sample_weight=None, class_weight=None) -> dict:
    """Trains model on (X, y) as ``Sequential.fit`` documents; returns the history.
    distributed: see steepest.distributed (in a group of several ranks, every collective
    below is reached by every rank before anything that can fail on one rank only)."""
    group = group_of(distributed)
    with group.interrupts_deferred():
        with group.together():
            run = prepare(model, X, y, loss, optimizer, epochs, batch_size, shuffle,
                          validation_data, validation_split, callbacks, verbose,
                          clip_grad_norm, checkpoint, diagnostics, group, sample_weight,
                          class_weight)
        return train(model, optimizer, loss, run, group)


def prepare(model, X, y, loss, optimizer, epochs, batch_size, shuffle, validation_data,
            validation_split, callbacks, verbose, clip_grad_norm, checkpoint, diagnostics,
            group, sample_weight=None, class_weight=None) -> dict:
    """Everything fit checks and builds before the first epoch, as a dict."""
    check_loss(loss)
    check_optimizer(optimizer, model)
    X, y = model.check_data(X, y, loss, training=True)
    w = row_weights(loss, y, model.out_features, sample_weight, class_weight)
    epochs = _checks.integer(epochs, "epochs", low=0)
    val = None
    if validation_data is not None:
        if validation_split is not None:
            raise ValueError("pass validation_data or validation_split, not both")
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3)):
            raise TypeError("validation_data must be a pair (X_val, y_val) or a triple "
                            "(X_val, y_val, sample_weight_val)")
        names = ("validation_data[0]", "validation_data[1]", "validation_data[2]")
        X_val, y_val = model.check_data(*validation_data[:2], loss, names[:2])
        w_val = None if len(validation_data) == 2 else _checks.sample_weight(
            validation_data[2], names[2], len(X_val))
        val = (X_val, y_val, w_val)
    elif validation_split is not None:
        X, y, w, val = split_validation(X, y, w, validation_split)
    model.adapt(X, only_unadapted=True)  # Standardize / MinMaxScale layers learn the training X
    batch = X.shape[0] if batch_size is None else _checks.integer(batch_size, "batch_size",
                                                                  low=1)
    clip = clip_threshold(clip_grad_norm)
    user_callbacks = list(callbacks or ())
    for cb in user_callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be steepest callbacks, got {cb!r}")
    if diagnostics:  # first, so that user callbacks (CSVLogger, ...) see its entries
        user_callbacks.insert(0, Diagnostics(X))
    verbose = _checks.integer(verbose, "verbose", low=0)
    # Progress and files come from rank 0 only; every rank runs the other callbacks alike.
    callbacks = user_callbacks + reporters(verbose if group.rank == 0 else 0, epochs)
    callbacks = [cb for cb in callbacks if group.rank == 0 or not cb.rank_zero_only]
    fingerprint = None
    if checkpoint is not None:
        checkpoint = os.fspath(checkpoint)
        if group.rank == 0:  # rank 0 writes it, and reads every byte of the data once for all
            _checkpoint.prepare(checkpoint)
            fingerprint = _checkpoint.fingerprint(model, optimizer, loss, X, y, batch, shuffle,
                                                  clip, w)
    return {"X": X, "y": y, "w": w, "val": val, "epochs": epochs, "batch": batch,
            "shuffle": shuffle, "clip": clip, "user_callbacks": user_callbacks,
            "callbacks": callbacks, "checkpoint": checkpoint, "fingerprint": fingerprint}


def train(model, optimizer, loss, run, group) -> dict:
    """The epochs of a prepared run (see prepare); returns the history."""
    X, callbacks, checkpoint = run["X"], run["callbacks"], run["checkpoint"]
    history = {"loss": [], "lr": [], "time": [], "grad_norm": []}
    if counts_correct(loss):
        history["accuracy"] = []
    if run["val"] is not None:
        history["val_loss"] = []
        if loss.classification:
            history["val_accuracy"] = []
    model.history = history
    model.stop_training = False
    first = 0
    with group.together():
        for cb in callbacks:
            cb.on_train_begin(model, optimizer)
        fingerprint = group.broadcast(run["fingerprint"])
        if checkpoint is not None and group.broadcast(os.path.exists(checkpoint)):
            state = _checkpoint.load(checkpoint, model, optimizer, run["user_callbacks"],
                                     fingerprint)
            first, model.stop_training = state["epoch"], state["finished"]
            history.clear()
            history.update(state["history"])
        group.start(model, optimizer)
    on_step = batch_hook([cb for cb in callbacks if cb.wants_batches()])
    try:
        for epoch in range(first, run["epochs"]):
            if model.stop_training:
                break
            with group.together(params_digest(model) if group.size > 1 else None):
                steps = -(-X.shape[0] // run["batch"])
                for cb in callbacks:
                    cb.on_epoch_begin(epoch, {"steps": steps, "samples": X.shape[0]})
                logs = run_epoch(model, epoch, X, run["y"], run["batch"], run["shuffle"], loss,
                                 optimizer, run["clip"], run["val"],
                                 progress_reporter(callbacks, epoch), group, on_step,
                                 run["w"])
                for cb in callbacks:  # callbacks may add entries (diagnostics) to logs
                    cb.on_epoch_end(epoch, logs)
                for key, value in logs.items():
                    history.setdefault(key, [None] * epoch).append(value)
                if checkpoint is not None and group.rank == 0:
                    _checkpoint.save(checkpoint, model, optimizer, run["user_callbacks"],
                                     epoch + 1, history, fingerprint,
                                     finished=model.stop_training)
    except BaseException:
        for cb in callbacks:
            cb.on_train_abort()
        raise
    for cb in callbacks:
        cb.on_train_end()
    return history


def split_validation(X, y, w, fraction):
    """(X_train, y_train, w_train, (X_val, y_val, w_val)): the last `fraction` of the rows
    (and of their sample weights w, unless None) held out for validation, before any
    shuffling (as Keras's validation_split)."""
    fraction = _checks.real(fraction, "validation_split", low=0.0, high=1.0, low_open=True,
                            high_open=True)
    n_val = int(round(X.shape[0] * fraction))
    if not 0 < n_val < X.shape[0]:
        raise ValueError(f"validation_split={fraction} of {X.shape[0]} samples leaves "
                         f"{n_val} for validation and {X.shape[0] - n_val} for training; "
                         "both need at least one")
    cut = X.shape[0] - n_val
    return X[:cut], y[:cut], None if w is None else w[:cut], (
        X[cut:], y[cut:], None if w is None else w[cut:])


def row_weights(loss, y, n_outputs, sample_weight, class_weight):
    """fit's weight of each row (N,) in float64, or None for all 1: sample_weight times the
    weight of the row's class under class_weight ("balanced", counting sample weights, or
    {class: weight}: see steepest.labels.class_weighted; classes are output indices, or the
    model's labels through check_data's encoding)."""
    w = _checks.sample_weight(sample_weight, "sample_weight", len(y))
    if class_weight is None:
        return w
    classes, n_classes = row_classes(loss, y, n_outputs)
    return class_weighted(class_weight, classes, n_classes, w)


def row_classes(loss, y, n_outputs):
    """(the class of each row of y as check_data returns it, -1 for ignore_index; the number
    of classes) for class_weight."""
    if isinstance(y, Shards):
        y = y.read(0, len(y))
    if isinstance(loss, CrossEntropy) and y.ndim == 1:
        return np.where(y == loss.ignore_index, -1, y).astype(np.int64), n_outputs
    if isinstance(loss, BinaryCrossEntropy) and n_outputs == 1 and np.isin(y, (0, 1)).all():
        return y[:, 0].astype(np.int64), 2
    raise ValueError("class_weight needs CrossEntropy with class labels, or a one-output "
                     "BinaryCrossEntropy with two classes; use sample_weight otherwise")


def progress_reporter(callbacks, epoch):
    """The train_epoch progress function that hands the epoch's progress to the callbacks that
    listen (on_epoch_progress), or None when none does (the core then never takes the GIL
    for it)."""
    listeners = [cb for cb in callbacks
                 if type(cb).on_epoch_progress is not Callback.on_epoch_progress]
    if not listeners:
        return None

    def report(steps, samples, mean_loss):
        logs = {"steps": steps, "samples": samples, "loss": mean_loss}
        for cb in listeners:
            cb.on_epoch_progress(epoch, logs)
    return report


def run_epoch(model, epoch, X, y, batch, shuffle, loss, optimizer, clip, val,
              progress=None, group=None, on_step=None, sample_weight=None) -> dict:
    """One epoch (X, y and val as model.check_data returns them, val with its sample weights
    or None, sample_weight as row_weights returns them); returns its logs or raises
    (divergence, Ctrl-C, what a per-batch callback raised). progress: see progress_reporter;
    on_step: see batch_hook. With a group of several ranks the epoch is data-parallel and the
    logs are the group's (loss, accuracy and validation summed over the ranks,
    "allreduce_time" the mean seconds per rank in the gradient sums)."""
    start = time.perf_counter()
    lr = optimizer.lr
    saved = (optimizer.snapshot(), model.rng_state, model.flat_buffers().copy(),
             model.flat_counts().copy())
    parallel = group is not None and group.size > 1
    stats = model.train_epoch(X, y, loss, optimizer, batch, shuffle, clip, progress,
                              group if parallel else None, on_step, sample_weight)
    if parallel and stats["sum_error"] is not None:
        group.abort(stats["sum_error"])  # a sum failed: other ranks may wait in theirs forever
    if stats["error"] is not None:  # Ctrl-C: the model is as after the last step
        raise stats["error"]
    if parallel and stats["status"] == _core.StepStatus.Interrupted:  # a rank was
        raise KeyboardInterrupt  # interrupted: every rank abandoned the same step
    if not np.isfinite(model.flat_params()).all():
        # Finite gradients, but an update overflowed: back to the epoch's start.
        optimizer.restore(saved[0])
        model.rng_state = saved[1]
        model.flat_buffers()[...] = saved[2]
        model.flat_counts()[...] = saved[3]
        raise TrainingDiverged("non-finite parameter after an update (overflow); the "
                               "state of the epoch's start was restored", epoch=epoch,
                               step=stats["steps"], loss=stats["loss"])
    check_step(stats["status"], epoch=epoch, step=stats["steps"], loss=stats["bad_loss"])
    logs = {"loss": stats["loss"], "lr": lr, "time": time.perf_counter() - start,
            "grad_norm": stats["grad_norms"]}
    correct, scored = stats["correct"], stats["scored"]
    if parallel:  # the loss is the mean over loss_weight (the rows, or their weights)
        loss_sum, weight, correct, scored = group.sum(
            [stats["loss"] * stats["loss_weight"], stats["loss_weight"], correct, scored])
        logs["loss"] = loss_sum / weight if weight > 0 else 0.0
    if counts_correct(loss):  # counted during the epoch, before each update
        logs["accuracy"] = correct / max(scored, 1)
    if val is not None:
        logs.update({"val_" + k: v for k, v in evaluate(model, *val, loss, group).items()})
    if parallel:
        logs["allreduce_time"] = float(group.sum([stats["sum_seconds"]])[0]) / group.size
    return logs


def counts_correct(loss) -> bool:
    """Whether the core counts the epoch's correct predictions (arg-max hits of the integer
    labels of CrossEntropy; BinaryCrossEntropy's accuracy comes from evaluate)."""
    return isinstance(loss, CrossEntropy)


def batch_hook(callbacks: list):
    """The function the core's epoch loop calls after every step, (step, loss) ->
    on_batch_end of each callback; None without callbacks (the epoch then has no Python
    call in it)."""
    if not callbacks:
        return None

    def on_step(step: int, value: float) -> None:
        logs = {"loss": value}
        for cb in callbacks:
            cb.on_batch_end(step, logs)

    return on_step


def evaluate(model, X, y, w, loss, group=None) -> dict:
    """model.evaluate_checked over (X, y) with sample weights w (or None), split over the
    group's ranks when there are several (each evaluates its share, the sums are summed)."""
    if group is None or group.size == 1:
        return model.evaluate_checked(X, y, loss, w)
    part = model.evaluate_sums(X, y, loss, w, group.share(len(X)))
    total = dict(zip(part, (float(v) for v in group.sum(list(part.values())))))
    return model.evaluation(total, loss)


def reporters(verbose: int, epochs: int) -> list:
    """The console callbacks for fit's verbose level: 0 none, 1 progress bar, 2 a line each."""
    if verbose == 1:
        return [ProgressBar(epochs)]
    return [ConsoleLogger()] if verbose >= 2 else []
