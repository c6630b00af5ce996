"""Input validation: convert once, refuse bad input with a message that names the argument."""
from __future__ import annotations

import numbers
import os

import numpy as np

INT64_MAX = 2**63 - 1
DTYPES = {"float32": np.float32, "float64": np.float64}


def as_dtype(dtype) -> np.dtype:
    """'float32' | 'float64' (or the numpy types) -> np.dtype."""
    if dtype is None:  # np.dtype(None) would quietly mean float64
        raise TypeError("dtype must be 'float32' or 'float64', got None")
    try:
        d = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
    if d.name not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return d


def numeric(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype}")
    return a


def check_finite(a: np.ndarray, name: str) -> None:
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinity")


def features(X, name: str, n_features: int, dtype: np.dtype) -> np.ndarray:
    """X (N, n_features) of any real dtype and layout -> C-contiguous `dtype`, checked."""
    X = numeric(X, name)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has no samples")
    if X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features but the model expects {n_features}")
    return _convert(X, name, dtype)


def row_chunks(X, name: str, n_features=None, chunk_rows=None):
    """Yields X (N, n_features) of any real dtype (a memory-mapped array too) as float64
    chunks of chunk_rows rows (by default about 8 MB each), each checked finite: statistics
    over X without a converted copy of it. n_features None takes any width."""
    X = X if hasattr(X, "ndim") and hasattr(X, "dtype") else np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has no samples")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features but the model expects {n_features}")
    if chunk_rows is None:
        chunk_rows = max(1, (1 << 20) // max(X.shape[1], 1))
    chunk_rows = integer(chunk_rows, "chunk_rows", low=1)
    for start in range(0, X.shape[0], chunk_rows):
        rows = np.asarray(X[start:start + chunk_rows], dtype=np.float64)
        check_finite(rows, name)
        yield rows


def labels(y, name: str, n_samples: int, n_classes: int) -> np.ndarray:
    """Integer class labels (N,) in [0, n_classes) -> C-contiguous int64."""
    y = numeric(y, name)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D integer class labels, got shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise ValueError(f"{name} contains NaN or infinity")
        if not np.array_equal(y, np.round(y)):
            raise TypeError(f"{name} must hold integer class labels, got non-integral floats")
    elif y.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    _same_length(y, name, n_samples)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"{name} holds labels in [{y.min()}, {y.max()}] but the model has {n_classes} "
            f"outputs: labels must be in [0, {n_classes - 1}]"
        )
    return np.ascontiguousarray(y, dtype=np.int64)


def values(y, name: str, n_samples: int, n_outputs: int, dtype: np.dtype) -> np.ndarray:
    """Real targets (N, n_outputs), or (N,) when n_outputs == 1 -> C-contiguous `dtype`."""
    y = numeric(y, name)
    if y.ndim == 1 and n_outputs == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] != n_outputs:
        raise ValueError(
            f"{name} must have shape (samples, {n_outputs}) to match the model's outputs, "
            f"got {y.shape}"
        )
    _same_length(y, name, n_samples)
    return _convert(y, name, dtype)


def _convert(a: np.ndarray, name: str, dtype: np.dtype) -> np.ndarray:
    """C-contiguous `dtype`; values beyond its range are an error, not infinities."""
    check_finite(a, name)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(a, dtype=dtype)
    if out is not a and not np.isfinite(out).all():
        raise ValueError(f"{name} holds values too large for {np.dtype(dtype).name}")
    return out


def _same_length(y: np.ndarray, name: str, n_samples: int) -> None:
    if y.shape[0] != n_samples:
        raise ValueError(f"{name} has {y.shape[0]} samples but X has {n_samples}")


def real(value, name: str, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """A real hyper-parameter in [low, high] (or open ends), as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if v != v:
        raise ValueError(f"{name} must not be NaN")
    if v in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
    return v


def integer(value, name: str, *, low=None, allow_none=False):
    """An integer hyper-parameter >= low (or None when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    if value > INT64_MAX:  # the core counts in 64-bit integers
        raise ValueError(f"{name} must be <= 2**63 - 1, got {value!r}")
    return int(value)


def buffer_memory(nbytes: int, what: str) -> None:
    """Refuses (MemoryError) buffers larger than this machine's memory before allocating."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return
    if total > 0 and nbytes > total:
        raise MemoryError(f"{what} would need {nbytes / 2**30:,.1f} GiB, more than this "
                          f"machine's memory ({total / 2**30:,.1f} GiB)")
