"""Callbacks for fit(): hooks at the start and end of training and of every epoch, during
an epoch (its progress) and, for callbacks that ask for it, after every optimizer step.

``logs`` holds the epoch's values: loss, lr, time, grad_norm, and accuracy / val_loss /
val_accuracy when available. A callback stops training with ``model.stop_training = True``.
"""
from __future__ import annotations

import csv
import io
import math
import os
from typing import Any, Union

import numpy as np

from . import _checks
from .archive import atomic_write, check_writable


class Callback:
    model = None
    optimizer = None
    # Whether its state changes how training goes on (early stopping, learning-rate schedules):
    # a run resumed from a checkpoint must then have it too, or it is refused. Observers
    # (loggers, model checkpoints) may be added or dropped between runs. None: it steers when
    # it keeps state (overrides state_dict).
    steers_training = None
    # Data-parallel fit runs it on rank 0 only (progress, files); every rank runs the others.
    rank_zero_only = False

    def on_train_begin(self, model: Any, optimizer: Any) -> None:
        self.model, self.optimizer = model, optimizer

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None:
        """Before the epoch's first step; logs: "steps" and "samples" the epoch will take."""

    def on_epoch_progress(self, epoch: int, logs: dict[str, Any]) -> None:
        """During the epoch, at most every few tenths of a second: "steps" and "samples" done
        so far and "loss", their mean loss."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        pass

    def on_batch_end(self, batch: int, logs: dict[str, Any]) -> None:
        """After every optimizer step of fit (batch: the step's index in the epoch; logs:
        {"loss": its loss}), when wants_batches() is True. It runs inside the core's epoch
        loop: it may change the optimizer (a per-batch learning rate), not the model."""

    def wants_batches(self) -> bool:
        """Whether fit calls on_batch_end (asked once per fit). Without such a callback an
        epoch runs in C++ with no Python call between its steps."""
        return type(self).on_batch_end is not Callback.on_batch_end

    def on_train_end(self) -> None:
        pass

    def on_train_abort(self) -> None:
        """Training stopped by an exception (Ctrl-C, divergence): release resources only."""

    # What a checkpoint keeps so that a resumed run behaves as an uninterrupted one: a dict
    # of JSON-able values and numpy arrays.
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def steers_training(callback: Callback) -> bool:
    """callback.steers_training, or when None whether its class overrides state_dict."""
    if callback.steers_training is None:
        return type(callback).state_dict is not Callback.state_dict
    return bool(callback.steers_training)


# The logged values a console line shows, with their short names.
_SHOWN = (("loss", "loss"), ("accuracy", "acc"), ("val_loss", "val_loss"),
          ("val_accuracy", "val_acc"))


def format_logs(logs: dict, short: bool = False) -> list:
    """["loss=0.1234", "accuracy=0.9700", ..., "(12 ms)"] of an epoch's logs (short: "acc",
    "val_acc")."""
    parts = [f"{name if short else key}={logs[key]:.4f}" for key, name in _SHOWN if key in logs]
    return parts + ([f"({logs['time'] * 1e3:.0f} ms)"] if "time" in logs else [])


class ConsoleLogger(Callback):
    """One line per epoch on stdout (fit's verbose=2)."""

    rank_zero_only = True

    def on_epoch_end(self, epoch, logs):
        print(f"epoch {epoch + 1}: {' '.join(format_logs(logs))}", flush=True)


def _monitored(logs: dict, monitor: str, who: str) -> float:
    if monitor not in logs:
        raise ValueError(f"{who} monitors {monitor!r}, which fit does not log here "
                         f"(available: {sorted(logs)}); pass validation_data for val_*")
    return float(logs[monitor])


class _Best:
    """Tracks the best value of a monitored quantity."""

    def __init__(self, monitor: str, mode: str, min_delta: float):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.mode = monitor, mode
        self.min_delta = _checks.real(min_delta, "min_delta", low=0.0)
        self.best = math.inf if mode == "min" else -math.inf

    def improved(self, value: float) -> bool:
        better = (value < self.best - self.min_delta if self.mode == "min"
                  else value > self.best + self.min_delta)
        if better:
            self.best = value
        return better


class EarlyStopping(Callback):
    """Stops when `monitor` has not improved by min_delta for `patience` epochs; with
    restore_best_weights the model ends with the weights (and buffers: BatchNorm's running
    statistics) of its best epoch."""

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "min", restore_best_weights: bool = True) -> None:
        self.tracker = _Best(monitor, mode, min_delta)
        self.patience = _checks.integer(patience, "patience", low=0)
        self.restore_best_weights = restore_best_weights
        self.best_epoch = None
        self.stopped_epoch = None

    def on_train_begin(self, model, optimizer):
        super().on_train_begin(model, optimizer)
        self.tracker.best = math.inf if self.tracker.mode == "min" else -math.inf
        self._wait, self._best_params, self._best_buffers = 0, None, None

    def on_epoch_end(self, epoch, logs):
        if self.tracker.improved(_monitored(logs, self.tracker.monitor, "EarlyStopping")):
            self.best_epoch, self._wait = epoch, 0
            if self.restore_best_weights:
                self._best_params = self.model.flat_params().copy()
                self._best_buffers = (self.model.flat_buffers().copy(),
                                      self.model.flat_counts().copy())
        else:
            self._wait += 1
            if self._wait > self.patience:
                self.stopped_epoch = epoch
                self.model.stop_training = True

    def on_train_end(self):
        if self.restore_best_weights and self._best_params is not None:
            self.model.flat_params()[...] = self._best_params
            if self._best_buffers[0] is not None:  # none: a model without buffers
                self.model.flat_buffers()[...] = self._best_buffers[0]
                self.model.flat_counts()[...] = self._best_buffers[1]

    def state_dict(self):
        state = {"best": self.tracker.best, "wait": self._wait, "best_epoch": self.best_epoch,
                 "stopped_epoch": self.stopped_epoch}
        if self._best_params is not None:
            state["best_params"] = self._best_params
            if self._best_buffers[0] is not None and self._best_buffers[0].size:
                state["best_buffers"], state["best_counts"] = self._best_buffers
        return state

    def load_state_dict(self, state):
        self.tracker.best, self._wait = state["best"], state["wait"]
        self.best_epoch, self.stopped_epoch = state["best_epoch"], state["stopped_epoch"]
        self._best_params = state.get("best_params")
        self._best_buffers = (state.get("best_buffers"), state.get("best_counts"))


class ModelCheckpoint(Callback):
    """Saves the model (atomically) after each epoch, or only when `monitor` improves.
    path may contain {epoch} (1-based) and any logged value, e.g. "model-{epoch:03d}.npz"."""

    steers_training = False
    rank_zero_only = True

    def __init__(self, path: Union[str, "os.PathLike[str]"], monitor: str = "val_loss",
                 save_best_only: bool = False, mode: str = "min") -> None:
        self.path = os.fspath(path)
        self.save_best_only = save_best_only
        self.tracker = _Best(monitor, mode, 0.0)

    def on_train_begin(self, model, optimizer):
        super().on_train_begin(model, optimizer)
        if "{" not in os.path.dirname(self.path):  # a folder named per epoch is made later
            check_writable(self.path, "ModelCheckpoint")

    def on_epoch_end(self, epoch, logs):
        if self.save_best_only and not self.tracker.improved(
                _monitored(logs, self.tracker.monitor, "ModelCheckpoint")):
            return
        scalars = {k: v for k, v in logs.items() if np.isscalar(v)}
        self.model.save(self.path.format(epoch=epoch + 1, **scalars))

    def state_dict(self):
        return {"best": self.tracker.best}

    def load_state_dict(self, state):
        self.tracker.best = state["best"]


class CSVLogger(Callback):
    """Writes one row per epoch (epoch and the scalar logs) to a CSV file. A run resumed from
    a checkpoint continues the file, first dropping the rows the interrupted run wrote after
    its last checkpoint (they are written again)."""

    steers_training = False
    rank_zero_only = True

    def __init__(self, path: Union[str, "os.PathLike[str]"], append: bool = False) -> None:
        self.path, self.append = os.fspath(path), append
        self._file = self._writer = None
        self._epoch = 0            # the last epoch written
        self._resumed_at = None    # the checkpoint's epoch, until the file is reopened

    def on_train_begin(self, model, optimizer):
        super().on_train_begin(model, optimizer)
        check_writable(self.path, "CSVLogger")

    def on_epoch_end(self, epoch, logs):
        row = {"epoch": epoch + 1}
        row.update({k: v for k, v in logs.items() if np.isscalar(v)})
        row.update({f"grad_norm_{i}": g for i, g in enumerate(logs.get("grad_norm", ()))})
        if self._writer is None:
            if self._resumed_at is not None:
                self._drop_rows_after(self._resumed_at)
                self._resumed_at = None
            exists = self.append and os.path.exists(self.path) and os.path.getsize(self.path)
            self._file = open(self.path, "a" if self.append else "w", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=list(row))
            if not exists:
                self._writer.writeheader()
        self._writer.writerow(row)
        self._file.flush()
        self._epoch = epoch + 1

    def _drop_rows_after(self, epoch):
        """Removes (atomically) the trailing rows whose epoch is past `epoch`."""
        try:
            with open(self.path, newline="") as f:
                rows = list(csv.reader(f))
        except FileNotFoundError:
            return
        if not rows or "epoch" not in rows[0]:
            return
        column = rows[0].index("epoch")
        keep = len(rows)
        while keep > 1 and len(rows[keep - 1]) > column and \
                rows[keep - 1][column].isdigit() and int(rows[keep - 1][column]) > epoch:
            keep -= 1
        if keep < len(rows):
            text = io.StringIO()
            csv.writer(text).writerows(rows[:keep])
            atomic_write(self.path, lambda f: f.write(text.getvalue().encode()))

    def on_train_end(self):
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None

    on_train_abort = on_train_end

    def state_dict(self):
        return {"started": self._writer is not None or self.append, "epoch": self._epoch}

    def load_state_dict(self, state):
        # A resumed run continues the file the interrupted one wrote.
        self.append = self.append or bool(state["started"])
        self._epoch = self._resumed_at = int(state.get("epoch", 0))
