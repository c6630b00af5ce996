"""Learning-rate schedules (torch.optim.lr_scheduler semantics). Each sets ``optimizer.lr``;
pass it to fit's callbacks (it steps after every epoch) or call ``step()`` yourself.

    sched = st.schedules.CosineAnnealingLR(opt, T_max=50)
    model.fit(X, y, loss=loss, optimizer=opt, epochs=50, callbacks=[sched])
"""
from __future__ import annotations

import math
from typing import Optional

from . import _checks
from .callbacks import Callback, _Best, _monitored
from .optim import Optimizer


class LRScheduler(Callback):
    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a steepest optimizer, got {optimizer!r}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0

    def on_train_begin(self, model, optimizer):
        self.model = model  # keeps its own optimizer

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def on_epoch_end(self, epoch, logs):
        self.step()

    def state_dict(self):
        return {"last_epoch": self.last_epoch, "base_lr": self.base_lr}

    def load_state_dict(self, state):
        self.last_epoch, self.base_lr = state["last_epoch"], state["base_lr"]


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        super().__init__(optimizer)
        self.step_size = _checks.integer(step_size, "step_size", low=1)
        self.gamma = _checks.real(gamma, "gamma", low=0.0)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRScheduler):
    """lr = base_lr * gamma ** epoch."""

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        super().__init__(optimizer)
        self.gamma = _checks.real(gamma, "gamma", low=0.0)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** epoch


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        super().__init__(optimizer)
        self.T_max = _checks.integer(T_max, "T_max", low=1)
        self.eta_min = _checks.real(eta_min, "eta_min", low=0.0)

    def lr_at(self, epoch):
        return self.eta_min + (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * epoch / self.T_max)) / 2


class LinearWarmup(LRScheduler):
    """Linear warm-up from start_factor * base_lr to base_lr over warmup_epochs (torch's
    LinearLR); the lr is set for epoch 0 at construction."""

    def __init__(self, optimizer: Optimizer, warmup_epochs: int,
                 start_factor: float = 0.1) -> None:
        super().__init__(optimizer)
        self.warmup_epochs = _checks.integer(warmup_epochs, "warmup_epochs", low=1)
        self.start_factor = _checks.real(start_factor, "start_factor", low=0.0, high=1.0,
                                         low_open=True)
        optimizer.lr = self.lr_at(0)

    def lr_at(self, epoch):
        t = min(epoch, self.warmup_epochs) / self.warmup_epochs
        return self.base_lr * (self.start_factor + (1 - self.start_factor) * t)


class ReduceLROnPlateau(LRScheduler):
    """Multiplies lr by factor when `monitor` has not improved for `patience` epochs (relative
    threshold, as torch's default threshold_mode="rel"), never below min_lr."""

    def __init__(self, optimizer: Optimizer, monitor: str = "val_loss", mode: str = "min",
                 factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 min_lr: float = 0.0) -> None:
        super().__init__(optimizer)
        self.monitor = monitor
        self.tracker = _Best(monitor, mode, 0.0)
        self.factor = _checks.real(factor, "factor", low=0.0, high=1.0, high_open=True)
        self.patience = _checks.integer(patience, "patience", low=0)
        self.threshold = _checks.real(threshold, "threshold", low=0.0)
        self.min_lr = _checks.real(min_lr, "min_lr", low=0.0)
        self._wait = 0

    def step(self, value: Optional[float] = None) -> None:
        if value is None:
            raise TypeError("ReduceLROnPlateau.step needs the monitored value")
        self.last_epoch += 1
        best = self.tracker.best
        scale = 1 - self.threshold if self.tracker.mode == "min" else 1 + self.threshold
        if (value < best * scale) if self.tracker.mode == "min" else (value > best * scale):
            self.tracker.best, self._wait = value, 0
        else:
            self._wait += 1
            if self._wait > self.patience:
                self.optimizer.lr = max(self.optimizer.lr * self.factor, self.min_lr)
                self._wait = 0

    def on_epoch_end(self, epoch, logs):
        self.step(_monitored(logs, self.monitor, "ReduceLROnPlateau"))

    def state_dict(self):
        return {**super().state_dict(), "best": self.tracker.best, "wait": self._wait}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.tracker.best, self._wait = state["best"], state["wait"]
