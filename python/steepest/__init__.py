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
from . import callbacks, data, datasets, losses, optim, progress, schedules  # noqa: E402
from . import diagnostics, experiments  # noqa: E402  (numpy only; matplotlib on use)
from ._version import __version__  # noqa: E402
from .errors import TrainingDiverged  # noqa: E402
from .gradcheck import gradcheck  # noqa: E402
from .layers import (ELU, GELU, BatchNorm1d, Dense, Dropout, LayerNorm,  # noqa: E402
                     LeakyReLU, MinMaxScale, ReLU, Sigmoid, SiLU, Softmax, Softplus,
                     Standardize, Tanh)
from .model import Sequential, from_torch, load, load_safetensors  # noqa: E402
from .optim import clip_grad_norm_  # noqa: E402
from .parameter import Parameter  # noqa: E402
from .threads import default_threads as _default_threads  # noqa: E402
from .threads import get_num_threads, set_num_threads  # noqa: E402

set_num_threads(_default_threads())

_ESTIMATORS = ("MLPClassifier", "MLPRegressor")


def __getattr__(name):
    """st.MLPClassifier and st.MLPRegressor, imported on first use: `import steepest` does
    not import scikit-learn (an optional extra), which steepest.sklearn needs."""
    if name in _ESTIMATORS:
        from . import sklearn as estimators  # the one lazy import (see test_architecture)
        return getattr(estimators, name)
    raise AttributeError(f"module 'steepest' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_ESTIMATORS))

__all__ = ["Sequential", "Parameter", "Dense", "ReLU", "LeakyReLU", "ELU", "GELU", "SiLU",
           "Sigmoid", "Tanh", "Softplus", "Softmax", "Dropout", "BatchNorm1d", "LayerNorm",
           "Standardize", "MinMaxScale", "losses", "optim", "schedules", "callbacks",
           "progress", "data", "datasets", "diagnostics", "experiments", "gradcheck", "load",
           "load_safetensors", "from_torch",
           "clip_grad_norm_", "TrainingDiverged", "set_num_threads", "get_num_threads"]
