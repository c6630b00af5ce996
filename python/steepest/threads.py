"""The one thread setting of steepest: the BLAS products and the core's own loops (never
nested)."""
from __future__ import annotations

import os

from . import _checks, _core


def set_num_threads(n: int) -> None:
    """Threads for both the BLAS products and the core's own loops (never nested)."""
    _core.set_num_threads(_checks.integer(n, "n", low=1))


def get_num_threads() -> int:
    return _core.get_num_threads()


def default_threads() -> int:
    """The CPUs this process may run on (the setting at import)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
