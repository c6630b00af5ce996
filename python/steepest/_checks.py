"""Input validation: convert once, refuse bad input with a message that names the argument."""
from __future__ import annotations

import numbers
import os
import warnings

import numpy as np

from . import _core

INT64_MAX = 2**63 - 1
DTYPES = {"float32": np.float32, "float64": np.float64}
CHUNK_BYTES = 1 << 24  # whole-array checks and conversions hold at most this much at a time


def as_dtype(dtype) -> np.dtype:
    """'float32' | 'float64' (or the numpy types) -> np.dtype."""
    if dtype is None:  # np.dtype(None) would quietly mean float64
        raise TypeError("dtype must be 'float32' or 'float64', got None")
    if (isinstance(dtype, (str, np.dtype)) and str(dtype) in DTYPES) or any(
            dtype is t for t in DTYPES.values()):
        return np.dtype(dtype)
    try:
        with warnings.catch_warnings():  # numpy's deprecation notes on odd text ("a4")
            warnings.simplefilter("ignore")
            d = np.dtype(dtype)
    except (TypeError, ValueError, SyntaxError, RecursionError, MemoryError):
        # numpy's parser raises SyntaxError for text such as "f4,("
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
    if d.name not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return d


def numeric(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype}")
    return a


def row_chunks(a: np.ndarray):
    """Views of consecutive rows of a, at most CHUNK_BYTES each (a itself when 0-D)."""
    if a.ndim == 0 or a.shape[0] == 0:
        yield a
        return
    step = max(1, CHUNK_BYTES // max(1, a[:1].nbytes))
    for start in range(0, a.shape[0], step):
        yield a[start:start + step]


def all_finite(a: np.ndarray) -> bool:
    """No NaN or infinity in a, checked a chunk at a time (no temporary the size of a)."""
    return a.dtype.kind != "f" or all(np.isfinite(c).all() for c in row_chunks(a))


def check_finite(a: np.ndarray, name: str) -> None:
    if not all_finite(a):
        raise ValueError(f"{name} contains NaN or infinity")


# The rules a batch must follow are the core's (check_batch.hpp): Python converts what can be
# converted (dtype, layout), asks the core which rule a batch breaks, and words the answer with
# the caller's argument names. A rule of type or layout means "convert, then ask again".
_RULE = _core.BatchRule
_CONVERT = frozenset({_RULE.XType, _RULE.XLayout, _RULE.YType, _RULE.YLayout})


def features(X, name: str, n_features: int, dtype: np.dtype) -> np.ndarray:
    """X (N, n_features) of any real dtype and layout -> C-contiguous `dtype`, checked."""
    X = numeric(X, name)
    check = _core.check_features(X, n_features, dtype)
    if check.rule in _CONVERT:
        X, original = _convert(X, dtype), X
        check = _core.check_features(X, n_features, dtype)
        _raise_overflow(check, original, name, dtype)
    _raise(check, name, X.shape)
    return X


def float64_chunks(X, name: str, n_features=None, chunk_rows=None):
    """Yields X (N, n_features) of any real dtype and layout (a memory-mapped array too) as
    C-contiguous float64 chunks of chunk_rows rows (by default about 8 MB each), each checked by
    the core's rules as features() checks a whole X: statistics over X without a converted copy
    of all of it. n_features None takes X's width."""
    X = numeric(X, name)
    width = n_features if n_features is not None else X.shape[1] if X.ndim == 2 else 1
    _raise_shape(_core.check_features(X, width, np.float64), name, X.shape)
    if chunk_rows is None:
        chunk_rows = max(1, (1 << 20) // max(width, 1))
    chunk_rows = integer(chunk_rows, "chunk_rows", low=1)
    for start in range(0, X.shape[0], chunk_rows):
        rows = _convert(X[start:start + chunk_rows], np.float64)
        _raise(_core.check_features(rows, width, np.float64), name, rows.shape)
        yield rows


def labels(y, name: str, n_samples: int, n_classes: int, dtype: np.dtype,
           loss_spec) -> np.ndarray:
    """Integer class labels (N,) in [0, n_classes) -> C-contiguous int64."""
    y = numeric(y, name)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:  # (the core reads 2-D targets as class probabilities, of a float dtype)
        raise ValueError(f"{name} must be 1-D integer class labels or float class "
                         f"probabilities of shape (samples, {n_classes}), got shape {y.shape}"
                         f" of dtype {y.dtype}")
    if y.dtype.kind == "f":  # integral floats convert; others cannot
        integral_floats(y, name)
    elif y.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    return _targets(y, name, n_samples, n_classes, dtype, loss_spec, np.int64)


def integral_floats(y: np.ndarray, name: str) -> None:
    """Class labels of a float dtype must be finite integers (ValueError for NaN or infinity,
    TypeError for fractions)."""
    if not np.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or infinity")
    if not np.array_equal(y, np.round(y)):
        raise TypeError(f"{name} must hold integer class labels, got non-integral floats")


def values(y, name: str, n_samples: int, n_outputs: int, dtype: np.dtype,
           loss_spec) -> np.ndarray:
    """Real targets (N, n_outputs), or (N,) when n_outputs == 1 -> C-contiguous `dtype`
    (N, n_outputs)."""
    y = numeric(y, name)
    if y.ndim == 1 and n_outputs == 1:
        y = y[:, None]
    return _targets(y, name, n_samples, n_outputs, dtype, loss_spec, dtype)


def _targets(y, name, n_samples, n_outputs, dtype, loss_spec, element_type):
    """y checked by the core's target rules for loss_spec (a model of `dtype`), converted to
    element_type (the model's dtype, or int64 labels) when its type or layout asks for it."""
    check = _core.check_targets(y, n_samples, n_outputs, loss_spec, dtype)
    if check.rule in _CONVERT:
        y, original = _convert(y, element_type), y
        check = _core.check_targets(y, n_samples, n_outputs, loss_spec, dtype)
        _raise_overflow(check, original, name, dtype)
    if check.rule == _RULE.TargetRange and loss_spec.kind == _core.LossKind.PoissonNLL:
        raise ValueError(f"{name} must hold counts or rates >= 0 for PoissonNLL")
    if check.rule == _RULE.YShape:
        raise ValueError(f"{name} must be 1-D integer class labels or float class "
                         f"probabilities of shape (samples, {n_outputs}), got shape {y.shape}"
                         if loss_spec.kind == _core.LossKind.CrossEntropy else
                         f"{name} must have shape (samples, {n_outputs}) to match the model's "
                         f"outputs, got {y.shape}")
    _raise(check, name, y.shape)
    return y


def sample_weight(w, name: str, n_samples: int):
    """Sample weights (N,): finite, non-negative, not all zero -> C-contiguous float64; None
    stays None (every sample weighs 1)."""
    if w is None:
        return None
    w = numeric(w, name)
    if w.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one weight per sample), got shape {w.shape}")
    same_length(w, name, n_samples)
    w = np.ascontiguousarray(w, dtype=np.float64)
    check_finite(w, name)
    if w.size and w.min() < 0:
        raise ValueError(f"{name} must not be negative")
    if not w.any():
        raise ValueError(f"{name} is all zero: no sample would count")
    return w


def _convert(a: np.ndarray, dtype) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(a, dtype=dtype)


def _raise_overflow(check, original, name, dtype) -> None:
    """Finite values that the conversion to dtype turned into infinities are an error of their
    own, not NaN in the data."""
    if check.rule in (_RULE.XNonFinite, _RULE.YNonFinite) and (
            original.dtype.kind != "f" or all_finite(original)):
        raise ValueError(f"{name} holds values too large for {np.dtype(dtype).name}")


def _raise_shape(check, name: str, shape: tuple) -> None:
    """The ValueError when check says the shape of X is wrong (not 2-D, empty, another width)."""
    if check.rule in (_RULE.XShape, _RULE.XEmpty, _RULE.XFeatures):
        _raise(check, name, shape)


def same_length(y: np.ndarray, name: str, n_samples: int) -> None:
    if y.shape[0] != n_samples:
        raise ValueError(f"{name} has {y.shape[0]} samples but X has {n_samples}")


def _raise(check, name: str, shape: tuple) -> None:
    """The ValueError for the rule check says is broken (nothing when none is)."""
    rule = check.rule
    if rule == _RULE.Ok:
        return
    messages = {
        _RULE.XShape: f"{name} must be 2-D (samples, features), got shape {shape}",
        _RULE.XEmpty: f"{name} is empty: it has no samples",
        _RULE.XFeatures: f"{name} has {check.got} features but the model expects {check.want}",
        _RULE.XNonFinite: f"{name} contains NaN or infinity",
        _RULE.YLength: f"{name} has {check.got} samples but X has {check.want}",
        _RULE.YNonFinite: f"{name} contains NaN or infinity",
        _RULE.LabelRange: f"{name} holds labels in [{check.label_min}, {check.label_max}] but "
                          f"the model has {check.want} outputs: labels must be in "
                          f"[0, {check.want - 1}] (or the loss's ignore_index)",
        _RULE.TargetRange: f"{name} must hold probabilities in [0, 1] for BinaryCrossEntropy",
        _RULE.LossWeights: f"the loss's weight or pos_weight has {check.got} values but the "
                           f"model has {check.want} outputs: give one per output",
    }
    raise ValueError(messages.get(rule, f"{name} breaks the rule {rule.name}"))


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
