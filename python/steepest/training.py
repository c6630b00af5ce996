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
from .losses import CrossEntropy, check_loss
from .optim import check_optimizer, clip_threshold
from .progress import ProgressBar


def fit(model, X, y, *, loss, optimizer, epochs=1, batch_size=32, shuffle=True,
        validation_data=None, validation_split=None, callbacks=(), verbose=1,
        clip_grad_norm=None, checkpoint=None, diagnostics=False, distributed=None) -> dict:
    """Trains model on (X, y) as ``Sequential.fit`` documents; returns the history.
    distributed: see steepest.distributed (in a group of several ranks, every collective
    below is reached by every rank before anything that can fail on one rank only)."""
    group = group_of(distributed)
    with group.interrupts_deferred():
        with group.together():
            run = prepare(model, X, y, loss, optimizer, epochs, batch_size, shuffle,
                          validation_data, validation_split, callbacks, verbose,
                          clip_grad_norm, checkpoint, diagnostics, group)
        return train(model, optimizer, loss, run, group)


def prepare(model, X, y, loss, optimizer, epochs, batch_size, shuffle, validation_data,
            validation_split, callbacks, verbose, clip_grad_norm, checkpoint, diagnostics,
            group) -> dict:
    """Everything fit checks and builds before the first epoch, as a dict."""
    check_loss(loss)
    check_optimizer(optimizer, model)
    X, y = model.check_data(X, y, loss, training=True)
    epochs = _checks.integer(epochs, "epochs", low=0)
    val = None
    if validation_data is not None:
        if validation_split is not None:
            raise ValueError("pass validation_data or validation_split, not both")
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            raise TypeError("validation_data must be a pair (X_val, y_val)")
        val = model.check_data(*validation_data, loss, ("validation_data[0]",
                                                        "validation_data[1]"))
    elif validation_split is not None:
        X, y, val = split_validation(X, y, validation_split)
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
                                                  clip)
    return {"X": X, "y": y, "val": val, "epochs": epochs, "batch": batch, "shuffle": shuffle,
            "clip": clip, "user_callbacks": user_callbacks, "callbacks": callbacks,
            "checkpoint": checkpoint, "fingerprint": fingerprint}


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
                                 progress_reporter(callbacks, epoch), group, on_step)
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


def split_validation(X, y, fraction):
    """(X_train, y_train, (X_val, y_val)): the last `fraction` of the rows held out for
    validation, before any shuffling (as Keras's validation_split)."""
    fraction = _checks.real(fraction, "validation_split", low=0.0, high=1.0, low_open=True,
                            high_open=True)
    n_val = int(round(X.shape[0] * fraction))
    if not 0 < n_val < X.shape[0]:
        raise ValueError(f"validation_split={fraction} of {X.shape[0]} samples leaves "
                         f"{n_val} for validation and {X.shape[0] - n_val} for training; "
                         "both need at least one")
    cut = X.shape[0] - n_val
    return X[:cut], y[:cut], (X[cut:], y[cut:])


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
              progress=None, group=None, on_step=None) -> dict:
    """One epoch (X, y and val as model.check_data returns them); returns its logs or raises
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
                              group if parallel else None, on_step)
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
    correct, samples = stats["correct"], stats["samples"]
    if parallel:
        loss_sum, samples, correct = group.sum([stats["loss"] * samples, samples, correct])
        logs["loss"] = loss_sum / max(samples, 1)
    if counts_correct(loss):  # counted during the epoch, before each update
        logs["accuracy"] = correct / max(samples, 1)
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


def evaluate(model, X, y, loss, group=None) -> dict:
    """model.evaluate_checked over (X, y), split over the group's ranks when there are
    several (each evaluates its share, the shares are summed)."""
    if group is None or group.size == 1:
        return model.evaluate_checked(X, y, loss)
    part = model.evaluate_checked(X, y, loss, (*group.share(len(X)), len(X)))
    return dict(zip(part, (float(v) for v in group.sum(list(part.values())))))


def reporters(verbose: int, epochs: int) -> list:
    """The console callbacks for fit's verbose level: 0 none, 1 progress bar, 2 a line each."""
    if verbose == 1:
        return [ProgressBar(epochs)]
    return [ConsoleLogger()] if verbose >= 2 else []
