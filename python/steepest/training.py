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

from . import _checks
from . import checkpoint as _checkpoint
from .callbacks import Callback, ConsoleLogger
from .diagnostics import Diagnostics
from .errors import TrainingDiverged, check_step
from .losses import check_loss
from .optim import check_optimizer, clip_threshold
from .progress import ProgressBar


def fit(model, X, y, *, loss, optimizer, epochs=1, batch_size=32, shuffle=True,
        validation_data=None, validation_split=None, callbacks=(), verbose=1,
        clip_grad_norm=None, checkpoint=None, diagnostics=False) -> dict:
    """Trains model on (X, y) as ``Sequential.fit`` documents; returns the history."""
    check_loss(loss)
    check_optimizer(optimizer, model)
    X, y = model.check_data(X, y, loss)
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
    callbacks = user_callbacks + reporters(_checks.integer(verbose, "verbose", low=0), epochs)
    run = None
    if checkpoint is not None:
        checkpoint = os.fspath(checkpoint)
        run = _checkpoint.fingerprint(model, optimizer, loss, X, y, batch, shuffle, clip)

    history = {"loss": [], "lr": [], "time": [], "grad_norm": []}
    if loss.classification:
        history["accuracy"] = []
    if val is not None:
        history["val_loss"] = []
        if loss.classification:
            history["val_accuracy"] = []
    model.history = history
    model.stop_training = False
    for cb in callbacks:
        cb.on_train_begin(model, optimizer)
    first = 0
    if checkpoint is not None and os.path.exists(checkpoint):
        state = _checkpoint.load(checkpoint, model, optimizer, user_callbacks, run)
        first, model.stop_training = state["epoch"], state["finished"]
        history.clear()
        history.update(state["history"])
    try:
        for epoch in range(first, epochs):
            if model.stop_training:
                break
            steps = -(-X.shape[0] // batch)
            for cb in callbacks:
                cb.on_epoch_begin(epoch, {"steps": steps, "samples": X.shape[0]})
            logs = run_epoch(model, epoch, X, y, batch, shuffle, loss, optimizer, clip, val,
                             progress_reporter(callbacks, epoch))
            for cb in callbacks:  # callbacks may add entries (diagnostics) to logs
                cb.on_epoch_end(epoch, logs)
            for key, value in logs.items():
                history.setdefault(key, [None] * epoch).append(value)
            if checkpoint is not None:
                _checkpoint.save(checkpoint, model, optimizer, user_callbacks, epoch + 1,
                                 history, run, finished=model.stop_training)
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
              progress=None) -> dict:
    """One epoch (X, y and val as model.check_data returns them); returns its logs or raises
    (divergence, Ctrl-C). progress: see progress_reporter."""
    start = time.perf_counter()
    lr = optimizer.lr
    saved = (optimizer.snapshot(), model.rng_state, model.flat_buffers().copy(),
             model.flat_counts().copy())
    stats = model.train_epoch(X, y, loss, optimizer, batch, shuffle, clip, progress)
    if stats["error"] is not None:  # Ctrl-C: the model is as after the last step
        raise stats["error"]
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
    if loss.classification:  # counted during the epoch, before each update
        logs["accuracy"] = stats["correct"] / max(stats["samples"], 1)
    if val is not None:
        logs.update({"val_" + k: v for k, v in model.evaluate_checked(*val, loss).items()})
    return logs


def reporters(verbose: int, epochs: int) -> list:
    """The console callbacks for fit's verbose level: 0 none, 1 progress bar, 2 a line each."""
    if verbose == 1:
        return [ProgressBar(epochs)]
    return [ConsoleLogger()] if verbose >= 2 else []
