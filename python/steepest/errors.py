"""Exceptions of steepest."""
from __future__ import annotations

from typing import Optional

from . import _core


class TrainingDiverged(ArithmeticError):
    """The loss or the gradients became NaN or infinite; the step was not applied.

    ``epoch`` (0-based, or None outside ``fit``), ``step`` (the batch within the epoch) and
    ``cause`` ("non-finite loss" or "non-finite gradient") say where and why.
    """

    def __init__(self, cause: str, epoch: Optional[int] = None, step: Optional[int] = None,
                 loss: Optional[float] = None) -> None:
        self.cause, self.epoch, self.step, self.loss = cause, epoch, step, loss
        where = "" if epoch is None else f" at epoch {epoch}, step {step}"
        super().__init__(
            f"training diverged{where}: {cause} (loss={loss}); the step was not applied and "
            "the parameters are those of the last finite step. Try a smaller learning rate "
            "or gradient clipping."
        )


# What TrainingDiverged says for each core step status that refused a step.
_CAUSES = {_core.StepStatus.NonFiniteLoss: "non-finite loss",
           _core.StepStatus.NonFiniteGradient: "non-finite gradient"}


def check_step(status, epoch=None, step=None, loss=None) -> None:
    """Raises TrainingDiverged when the core's StepStatus refused a step for non-finite
    values (Ok and Interrupted pass: an interruption raises the signal's own exception)."""
    if status in _CAUSES:
        raise TrainingDiverged(_CAUSES[status], epoch=epoch, step=step, loss=loss)
