"""Learning-rate schedules with torch.optim.lr_scheduler's semantics. Pass them to fit's
callbacks (they step after every epoch, or after every batch when ``per_batch`` is True) or
call ``step()`` yourself.

    sched = st.schedules.CosineAnnealingLR(opt, T_max=50)
    model.fit(X, y, loss=loss, optimizer=opt, epochs=50, callbacks=[sched])

Each scheduler updates the optimizer's *current* lr the way torch's "chainable" form does
(``get_lr()`` computes the next lr from the last one), so several schedulers on one optimizer
compose exactly as in torch, in any order: StepLR + ExponentialLR multiply their factors, and
ReduceLROnPlateau's cut stays in place under the others. The first scheduler built on an
optimizer records its lr as ``optimizer.initial_lr`` (torch's ``initial_lr``); the ones after
it take that as their ``base_lr``. Building a scheduler applies its epoch-0 value at once (as
torch: ConstantLR and LinearLR multiply the lr by their first factor).

``per_batch``: OneCycleLR steps after every optimizer step by default (as torch's is used);
any other scheduler does so in fit when its ``per_batch`` attribute is set to True (its
periods are then counted in steps). ReduceLROnPlateau always steps per epoch.
"""
from __future__ import annotations

import bisect
import math
from typing import Any, Optional, Sequence

from . import _checks
from .callbacks import Callback, _monitored
from .optim import SGD, Adam, Optimizer, RMSprop


def _check_optimizer(optimizer: Any) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a steepest optimizer, got {optimizer!r}")


class LRScheduler(Callback):
    """The base of the schedules: ``get_lr()`` gives the next lr from the optimizer's current
    one and ``last_epoch`` (the number of steps taken); ``step()`` applies it."""

    per_batch = False
    _initial = False  # True while the constructor applies the epoch-0 value (torch's _is_initial)

    def __init__(self, optimizer: Optimizer) -> None:
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if optimizer.initial_lr is None:
            optimizer.initial_lr = optimizer.lr
        self.base_lr = optimizer.initial_lr
        self.last_epoch = -1
        self._initial_step()

    def _initial_step(self) -> None:
        """Applies the epoch-0 value (at construction, or when a SequentialLR starts with it)."""
        self._initial = True
        try:
            self.step()
        finally:
            self._initial = False

    def get_lr(self) -> float:
        """The lr for step last_epoch, from the optimizer's current lr (torch's chainable
        form)."""
        raise NotImplementedError

    def closed_form_lr(self) -> Optional[float]:
        """The lr at last_epoch from base_lr alone, for the schedules that have one (None
        otherwise): what SequentialLR applies when it switches to this scheduler."""
        return None

    def step(self) -> None:
        self.last_epoch += 1
        self._apply(self.get_lr())

    def _apply(self, lr: float) -> None:
        self.optimizer.lr = lr
        self._last_lr = self.optimizer.lr

    def _restart(self) -> None:
        """Starts over at epoch 0 from base_lr (SequentialLR at a milestone; torch's
        step(0))."""
        self.last_epoch = 0
        closed = self.closed_form_lr()
        self._apply(self.get_lr() if closed is None else closed)

    def _undo_step(self) -> None:
        """One step back in the count (SequentialLR, before it restarts its first scheduler)."""
        self.last_epoch -= 1

    def get_last_lr(self) -> list[float]:
        """[the lr this scheduler set last] (a list, as torch's one entry per param group)."""
        return [self._last_lr]

    # -- fit ----------------------------------------------------------------------------------
    def on_train_begin(self, model: Any, optimizer: Any) -> None:
        self.model = model  # keeps its own optimizer

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if not self.per_batch:
            self.step()

    def on_batch_end(self, batch: int, logs: dict[str, Any]) -> None:
        self.step()

    def wants_batches(self) -> bool:
        return bool(self.per_batch)

    # -- checkpoints ---------------------------------------------------------------------------
    _state = ("last_epoch", "base_lr", "_last_lr")  # what changes as it steps

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self._state:
            setattr(self, name, state[name])


class StepLR(LRScheduler):
    """Multiplies the lr by gamma every step_size epochs: base_lr * gamma ** (epoch //
    step_size) alone."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = _checks.integer(step_size, "step_size", low=1)
        self.gamma = _checks.real(gamma, "gamma", low=0.0)
        super().__init__(optimizer)

    def get_lr(self) -> float:
        lr = self.optimizer.lr
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lr
        return lr * self.gamma

    def closed_form_lr(self) -> Optional[float]:
        return self.base_lr * self.gamma ** (self.last_epoch // self.step_size)


class ExponentialLR(LRScheduler):
    """Multiplies the lr by gamma every epoch: base_lr * gamma ** epoch alone."""

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        self.gamma = _checks.real(gamma, "gamma", low=0.0)
        super().__init__(optimizer)

    def get_lr(self) -> float:
        lr = self.optimizer.lr
        return lr if self._initial else lr * self.gamma

    def closed_form_lr(self) -> Optional[float]:
        return self.base_lr * self.gamma ** self.last_epoch


class ConstantLR(LRScheduler):
    """Multiplies the lr by factor until epoch total_iters, then restores it."""

    def __init__(self, optimizer: Optimizer, factor: float = 1.0 / 3,
                 total_iters: int = 5) -> None:
        self.factor = _checks.real(factor, "factor", low=0.0, high=1.0, low_open=True)
        self.total_iters = _checks.integer(total_iters, "total_iters", low=0)
        super().__init__(optimizer)

    def get_lr(self) -> float:
        lr = self.optimizer.lr
        if self.last_epoch == 0:
            return lr * self.factor
        if self.last_epoch != self.total_iters:
            return lr
        return lr * (1.0 / self.factor)

    def closed_form_lr(self) -> Optional[float]:
        return self.base_lr * (self.factor + (self.last_epoch >= self.total_iters)
                               * (1 - self.factor))


class LinearLR(LRScheduler):
    """Scales the lr linearly from start_factor to end_factor over total_iters epochs, then
    keeps it."""

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3,
                 end_factor: float = 1.0, total_iters: int = 5) -> None:
        self.start_factor = _checks.real(start_factor, "start_factor", low=0.0, high=1.0,
                                         low_open=True)
        self.end_factor = _checks.real(end_factor, "end_factor", low=0.0, high=1.0)
        self.total_iters = _checks.integer(total_iters, "total_iters", low=1)
        super().__init__(optimizer)

    def get_lr(self) -> float:
        lr = self.optimizer.lr
        if self.last_epoch == 0:
            return lr * self.start_factor
        if self._initial or self.last_epoch > self.total_iters:
            return lr
        change = self.end_factor - self.start_factor
        return lr * (1.0 + change / (self.total_iters * self.start_factor
                                     + (self.last_epoch - 1) * change))

    def closed_form_lr(self) -> Optional[float]:
        return self.base_lr * (self.start_factor + (self.end_factor - self.start_factor)
                               * min(self.total_iters, self.last_epoch) / self.total_iters)


class LinearWarmup(LinearLR):
    """Linear warm-up from start_factor * lr to lr over warmup_epochs: LinearLR with
    end_factor 1."""

    def __init__(self, optimizer: Optimizer, warmup_epochs: int,
                 start_factor: float = 0.1) -> None:
        self.warmup_epochs = _checks.integer(warmup_epochs, "warmup_epochs", low=1)
        super().__init__(optimizer, start_factor=start_factor, end_factor=1.0,
                         total_iters=self.warmup_epochs)


class PolynomialLR(LRScheduler):
    """Decays the lr to 0 over total_iters epochs: base_lr * (1 - epoch / total_iters) **
    power alone."""

    def __init__(self, optimizer: Optimizer, total_iters: int = 5, power: float = 1.0) -> None:
        self.total_iters = _checks.integer(total_iters, "total_iters", low=1)
        self.power = _checks.real(power, "power")
        super().__init__(optimizer)

    def get_lr(self) -> float:
        lr = self.optimizer.lr
        if self._initial or self.last_epoch > self.total_iters:
            return lr
        t, n = self.last_epoch, self.total_iters
        return lr * ((1.0 - t / n) / (1.0 - (t - 1) / n)) ** self.power

    def closed_form_lr(self) -> Optional[float]:
        return self.base_lr * (1.0 - min(self.total_iters, self.last_epoch)
                               / self.total_iters) ** self.power


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the lr to eta_min over T_max epochs (and back up over the next
    T_max): eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2 alone."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        self.T_max = _checks.integer(T_max, "T_max", low=1)
        self.eta_min = _checks.real(eta_min, "eta_min", low=0.0)
        super().__init__(optimizer)

    def get_lr(self) -> float:
        lr, t, T = self.optimizer.lr, self.last_epoch, self.T_max
        if self._initial:
            return lr
        if (t - 1 - T) % (2 * T) == 0:
            return lr + (self.base_lr - self.eta_min) * (1 - math.cos(math.pi / T)) / 2
        return ((1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
                * (lr - self.eta_min) + self.eta_min)

    def closed_form_lr(self) -> Optional[float]:
        return self.eta_min + (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2


class CosineAnnealingWarmRestarts(LRScheduler):
    """Cosine annealing from base_lr to eta_min over T_0 epochs, then restarts, each period
    T_mult times the last (SGDR). As in torch it sets the lr from base_lr (it does not
    chain); step(epoch) also takes a fractional epoch (epoch + batch / batches)."""

    def __init__(self, optimizer: Optimizer, T_0: int, T_mult: int = 1,
                 eta_min: float = 0.0) -> None:
        self.T_0 = self.T_i = _checks.integer(T_0, "T_0", low=1)
        self.T_mult = _checks.integer(T_mult, "T_mult", low=1)
        self.eta_min = _checks.real(eta_min, "eta_min", low=0.0)
        self.T_cur = -1
        super().__init__(optimizer)

    def get_lr(self) -> float:
        return self.eta_min + (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2

    def step(self, epoch: Optional[float] = None) -> None:
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur += 1
            if self.T_cur >= self.T_i:
                self.T_cur %= self.T_i
                self.T_i *= self.T_mult
        else:
            epoch = _checks.real(epoch, "epoch", low=0.0)
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult ** n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult ** n
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)
        self._apply(self.get_lr())

    _state = LRScheduler._state + ("T_i", "T_cur")


class OneCycleLR(LRScheduler):
    """The 1cycle policy (torch.optim.lr_scheduler.OneCycleLR), stepped after every batch:
    the lr rises from max_lr / div_factor to max_lr over pct_start of total_steps, then falls
    to max_lr / (div_factor * final_div_factor) (three_phase: back to the start first, then
    down), by cosine or linear annealing; with cycle_momentum the momentum (SGD, RMSprop) or
    beta1 (Adam, AdamW) moves the opposite way between max_momentum and base_momentum.
    total_steps, or epochs and steps_per_epoch. Stepping past total_steps is an error, as in
    torch. Unlike torch, cycle_momentum needs an optimizer built with momentum > 0 (SGD,
    RMSprop): the momentum buffer exists only then."""

    per_batch = True

    def __init__(self, optimizer: Optimizer, max_lr: float, total_steps: Optional[int] = None,
                 epochs: Optional[int] = None, steps_per_epoch: Optional[int] = None,
                 pct_start: float = 0.3, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum: float = 0.85,
                 max_momentum: float = 0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False) -> None:
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if total_steps is not None:
            self.total_steps = _checks.integer(total_steps, "total_steps", low=1)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = (_checks.integer(epochs, "epochs", low=1)
                                * _checks.integer(steps_per_epoch, "steps_per_epoch", low=1))
        else:
            raise ValueError("OneCycleLR needs total_steps, or epochs and steps_per_epoch")
        pct_start = _checks.real(pct_start, "pct_start", low=0.0, high=1.0)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got "
                             f"{anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        self.max_lr = _checks.real(max_lr, "max_lr", low=0.0)
        div_factor = _checks.real(div_factor, "div_factor", low=0.0, low_open=True)
        final_div_factor = _checks.real(final_div_factor, "final_div_factor", low=0.0,
                                        low_open=True)
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum:
            if isinstance(optimizer, (SGD, RMSprop)) and optimizer.momentum == 0:
                raise ValueError("cycle_momentum needs an optimizer built with momentum > 0 "
                                 "(or pass cycle_momentum=False)")
            if not isinstance(optimizer, (SGD, RMSprop, Adam)):
                raise ValueError(f"cycle_momentum needs an optimizer with a momentum or "
                                 f"beta1, not {type(optimizer).__name__} (pass "
                                 "cycle_momentum=False)")
            self.base_momentum = _checks.real(base_momentum, "base_momentum", low=0.0,
                                              high=1.0, high_open=True)
            self.max_momentum = _checks.real(max_momentum, "max_momentum", low=0.0,
                                             high=1.0, high_open=True)
        # The phases as torch lays them out: (last step, start lr, end lr, start momentum,
        # end momentum), each lr and momentum named by the attribute that holds it.
        n = self.total_steps
        if three_phase:
            self._phases = [
                (float(pct_start * n) - 1, "initial_lr", "max_lr", "max_momentum",
                 "base_momentum"),
                (float(2 * pct_start * n) - 2, "max_lr", "initial_lr", "base_momentum",
                 "max_momentum"),
                (n - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum")]
        else:
            self._phases = [
                (float(pct_start * n) - 1, "initial_lr", "max_lr", "max_momentum",
                 "base_momentum"),
                (n - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]
        optimizer.initial_lr = self.initial_lr = self.max_lr / div_factor
        self.min_lr = self.initial_lr / final_div_factor
        if self.cycle_momentum:
            self._set_momentum(self.max_momentum)
        super().__init__(optimizer)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _set_momentum(self, value: float) -> None:
        if isinstance(self.optimizer, Adam):
            self.optimizer.betas = (value, self.optimizer.betas[1])
        else:
            self.optimizer.momentum = value

    def get_lr(self) -> float:
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR stepped {step} times, more than its total_steps "
                             f"({self.total_steps})")
        start_step = 0.0
        for i, (end_step, lr0, lr1, m0, m1) in enumerate(self._phases):
            if step <= end_step or i == len(self._phases) - 1:
                pct = (step - start_step) / (end_step - start_step)
                if self.cycle_momentum:
                    self._set_momentum(self._anneal(getattr(self, m0), getattr(self, m1), pct))
                # At step total_steps (after the last step, so never used) linear annealing
                # extrapolates below 0 in torch; the lr stays >= 0 here.
                return max(0.0, self._anneal(getattr(self, lr0), getattr(self, lr1), pct))
            start_step = end_step

    _state = LRScheduler._state + ("initial_lr",)


class ReduceLROnPlateau(LRScheduler):
    """Multiplies the lr by factor when `monitor` (an entry of fit's logs) has not improved
    for `patience` epochs, never below min_lr and not when the cut would be below eps; after
    a cut it waits `cooldown` epochs. threshold_mode "rel" (improvement beyond best * (1 -/+
    threshold)) or "abs" (beyond best -/+ threshold), as torch. It changes the lr where it
    is, so it composes with the other schedules; step(value) outside fit."""

    def __init__(self, optimizer: Optimizer, monitor: str = "val_loss", mode: str = "min",
                 factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 min_lr: float = 0.0, *, threshold_mode: str = "rel", cooldown: int = 0,
                 eps: float = 1e-8) -> None:
        _check_optimizer(optimizer)  # like torch's, it neither sets nor reads initial_lr
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.optimizer = optimizer
        self.monitor, self.mode, self.threshold_mode = monitor, mode, threshold_mode
        self.factor = _checks.real(factor, "factor", low=0.0, high=1.0, high_open=True)
        self.patience = _checks.integer(patience, "patience", low=0)
        self.threshold = _checks.real(threshold, "threshold", low=0.0)
        self.min_lr = _checks.real(min_lr, "min_lr", low=0.0)
        self.cooldown = _checks.integer(cooldown, "cooldown", low=0)
        self.eps = _checks.real(eps, "eps", low=0.0)
        self.last_epoch = 0
        self.base_lr = self._last_lr = optimizer.lr
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = self.cooldown_counter = 0

    def _better(self, value: float) -> bool:
        rel = self.threshold_mode == "rel"
        if self.mode == "min":
            return value < (self.best * (1 - self.threshold) if rel
                            else self.best - self.threshold)
        return value > (self.best * (1 + self.threshold) if rel else self.best + self.threshold)

    def step(self, value: Optional[float] = None) -> None:
        if value is None:
            raise TypeError("ReduceLROnPlateau.step needs the monitored value")
        value = float(value)
        self.last_epoch += 1
        if self._better(value):
            self.best, self.num_bad_epochs = value, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            old = self.optimizer.lr
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                self.optimizer.lr = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = self.optimizer.lr

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self.step(_monitored(logs, self.monitor, "ReduceLROnPlateau"))

    def wants_batches(self) -> bool:
        return False

    _state = LRScheduler._state + ("best", "num_bad_epochs", "cooldown_counter")


def _check_children(optimizer: Optimizer, schedulers: Sequence[LRScheduler],
                    who: str) -> list[LRScheduler]:
    schedulers = list(schedulers)
    if not schedulers:
        raise ValueError(f"{who} needs at least one scheduler")
    for i, s in enumerate(schedulers):
        if not isinstance(s, LRScheduler):
            raise TypeError(f"schedulers[{i}] must be a steepest scheduler, got {s!r}")
        if isinstance(s, ReduceLROnPlateau):
            raise ValueError(f"{who} cannot hold ReduceLROnPlateau (schedulers[{i}]): it steps "
                             "with a monitored value; pass it to fit on its own")
        if s.optimizer is not optimizer:
            raise ValueError(f"schedulers[{i}] belongs to another optimizer")
    return schedulers


class _Composite(LRScheduler):
    """A scheduler made of others (SequentialLR, ChainedScheduler): their states are its."""

    def _undo_step(self) -> None:
        for s in self.schedulers:
            s._undo_step()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        for s, child in zip(self.schedulers, state["schedulers"]):
            s.load_state_dict(child)


class SequentialLR(_Composite):
    """schedulers one after the other: from epoch milestones[i] on, schedulers[i + 1] runs,
    restarted from base_lr (torch.optim.lr_scheduler.SequentialLR, e.g. a LinearLR warm-up
    then a CosineAnnealingLR). Pass only the SequentialLR to fit, not its schedulers."""

    def __init__(self, optimizer: Optimizer, schedulers: Sequence[LRScheduler],
                 milestones: Sequence[int]) -> None:
        _check_optimizer(optimizer)
        self.schedulers = _check_children(optimizer, schedulers, "SequentialLR")
        self.milestones = [_checks.integer(m, f"milestones[{i}]", low=0)
                           for i, m in enumerate(milestones)]
        if len(self.milestones) != len(self.schedulers) - 1:
            raise ValueError(f"milestones must hold one epoch fewer than schedulers "
                             f"({len(self.schedulers) - 1}), got {len(self.milestones)}")
        self.per_batch = all(s.per_batch for s in self.schedulers)
        self.optimizer = optimizer
        self.base_lr = optimizer.initial_lr
        self.last_epoch = 0
        optimizer.lr = optimizer.initial_lr  # undoes what building the schedulers did
        self._undo_step()
        first = self.schedulers[bisect.bisect_right(self.milestones, 0)]
        first._initial_step()
        self._last_lr = first.get_last_lr()[0]

    def step(self) -> None:
        self.last_epoch += 1
        i = bisect.bisect_right(self.milestones, self.last_epoch)
        current = self.schedulers[i]
        if i > 0 and self.milestones[i - 1] == self.last_epoch:
            current._restart()
        else:
            current.step()
        self._last_lr = current.get_last_lr()[0]


class ChainedScheduler(_Composite):
    """Steps all of schedulers at once, in order (torch.optim.lr_scheduler.ChainedScheduler):
    their factors compose. Pass only the ChainedScheduler to fit, not its schedulers."""

    def __init__(self, schedulers: Sequence[LRScheduler],
                 optimizer: Optional[Optimizer] = None) -> None:
        schedulers = list(schedulers)
        if optimizer is None and schedulers and isinstance(schedulers[0], LRScheduler):
            optimizer = schedulers[0].optimizer
        _check_optimizer(optimizer)
        self.schedulers = _check_children(optimizer, schedulers, "ChainedScheduler")
        self.per_batch = all(s.per_batch for s in self.schedulers)
        self.optimizer = optimizer
        self.base_lr = optimizer.initial_lr
        self.last_epoch = 0
        self._last_lr = optimizer.lr

    def step(self) -> None:
        self.last_epoch += 1
        for s in self.schedulers:
            s.step()
        self._last_lr = self.optimizer.lr

