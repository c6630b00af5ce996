"""steepest: train neural networks on the CPU with a C++ core.

Backpropagation computes the gradient of the loss layer by layer, backwards; gradient descent
uses it to update the parameters in place. Both run in C++ over flat buffers.
"""
import os as _os

# OpenBLAS's idle workers spin after each call; with another thread pool (OpenMP, numpy's own
# OpenBLAS) on few cores that spinning costs 20-50x. A short timeout removes it.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import scipy_openblas32 as _openblas  # noqa: E402,F401  (loads the BLAS the core links)

from . import _core  # noqa: E402
from . import callbacks, datasets, losses, optim, schedules  # noqa: E402
from . import diagnostics, experiments  # noqa: E402  (numpy only; matplotlib on use)
from .errors import TrainingDiverged  # noqa: E402
from .gradcheck import gradcheck  # noqa: E402
from .io import load  # noqa: E402
from .layers import (ELU, GELU, Dense, Dropout, LeakyReLU, ReLU, Sigmoid, SiLU,  # noqa: E402
                     Softmax, Softplus, Tanh)
from .model import Parameter, Sequential  # noqa: E402
from .optim import clip_grad_norm_  # noqa: E402

__version__ = "0.1.0"


def set_num_threads(n: int) -> None:
    """Threads for both the BLAS products and the core's own loops (never nested)."""
    from ._checks import integer

    _core.set_num_threads(integer(n, "n", low=1))


def get_num_threads() -> int:
    return _core.get_num_threads()


def _default_threads() -> int:
    try:
        return max(1, len(_os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, _os.cpu_count() or 1)


set_num_threads(_default_threads())

__all__ = ["Sequential", "Parameter", "Dense", "ReLU", "LeakyReLU", "ELU", "GELU", "SiLU",
           "Sigmoid", "Tanh", "Softplus", "Softmax", "Dropout", "losses", "optim", "schedules",
           "callbacks", "datasets", "diagnostics", "experiments", "gradcheck", "load",
           "clip_grad_norm_", "TrainingDiverged", "set_num_threads", "get_num_threads"]
