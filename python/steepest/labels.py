"""Class labels: the labels scikit-learn accepts (integers, integral floats, booleans, strings)
as plain numpy arrays, and their mapping to output indices and back.

A classifier's outputs are numbered 0..C-1; ``classes`` is the array whose entry i is the label
of output i (for one output trained with BinaryCrossEntropy: [negative, positive]). Labels are
kept in plain numpy dtypes (bool, integer, float, fixed-width unicode), never as Python objects,
so that a model file stores them as an ordinary array.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _checks

_PREVIEW = 5  # labels shown in an error message


def label_array(y, name: str) -> np.ndarray:
    """y (N,) or (N, 1) of class labels -> a 1-D array of a plain dtype: booleans, integers,
    integral floats or strings (an object array of str becomes unicode). Raises TypeError for
    anything else (non-integral floats, mixed or other objects) and ValueError for NaN."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D class labels, got shape {y.shape}")
    if y.dtype.kind == "O":  # Python objects: all strings, or all numbers
        if all(isinstance(v, str) for v in y):
            y = y.astype(str)
        elif all(isinstance(v, (numbers.Number, np.bool_)) and not isinstance(v, complex)
                 for v in y):
            y = np.array(y.tolist())
        else:
            kinds = sorted({type(v).__name__ for v in y})
            raise TypeError(f"{name} must hold labels of one type (numbers, booleans or "
                            f"strings), got {', '.join(kinds)}")
    if y.dtype.kind == "f":
        _checks.integral_floats(y, name)
    elif y.dtype.kind not in "biuU":
        raise TypeError(f"{name} must hold class labels (numbers, booleans or strings), got "
                        f"dtype {y.dtype}")
    return y


def require_numbers(y, name: str) -> None:
    """Labels that are no numbers (strings, booleans) are mapped to outputs through a
    model's classes_: without them, a TypeError."""
    dtype = np.asarray(y).dtype
    if dtype.kind in "bOSU":
        raise TypeError(f"{name} holds labels of dtype {dtype}, which the model maps to "
                        "outputs through classes_, but it has none: train it on these labels "
                        "first (fit or train_step) or set model.classes_")


def as_classes(classes, name: str = "classes") -> np.ndarray:
    """A 1-D read-only array of distinct labels (any order), checked like label_array."""
    classes = label_array(classes, name).copy()
    if classes.size == 0:
        raise ValueError(f"{name} is empty")
    if np.unique(classes).size != classes.size:
        raise ValueError(f"{name} must hold distinct labels, got {preview(classes)}")
    classes.flags.writeable = False
    return classes


def encode(y, classes: np.ndarray, name: str) -> np.ndarray:
    """Labels y -> int64 indices into classes; labels that are not in classes are an error."""
    y = label_array(y, name)
    if (y.dtype.kind == "U") != (classes.dtype.kind == "U"):  # strings never equal numbers
        raise ValueError(f"{name} holds labels that are not in the model's classes_ "
                         f"{preview(classes)}: {preview(np.unique(y))}")
    order = np.argsort(classes, kind="stable")
    pos = np.minimum(np.searchsorted(classes, y, sorter=order), classes.size - 1)
    index = order[pos]
    unknown = classes[index] != y
    if np.any(unknown):
        raise ValueError(f"{name} holds labels that are not in the model's classes_ "
                         f"{preview(classes)}: {preview(np.unique(y[unknown]))}")
    return index.astype(np.int64)


def preview(values: np.ndarray) -> str:
    """The first few labels, for error messages."""
    shown = ", ".join(repr(v.item()) for v in values[:_PREVIEW])
    return f"[{shown}{', ...' if values.size > _PREVIEW else ''}]"


def class_weighted(class_weight, classes: np.ndarray, n_classes: int, sample_weight=None, *,
                   count_weights: bool = True) -> np.ndarray:
    """Each row's weight (N,), float64: its sample weight (1 when sample_weight is None) times
    its class's weight under class_weight, as scikit-learn means it: "balanced" weighs class c
    by n / (k count(c)), over the n rows counted and the k classes present (with
    count_weights, n and count(c) add up sample weights instead of rows); {class index:
    weight} gives those classes theirs, the others weigh 1. classes (N,): each row's class
    index in [0, n_classes), or -1 for a row no class weight applies to (it weighs 1: the
    rows of CrossEntropy's ignore_index)."""
    counted = classes >= 0
    if isinstance(class_weight, str) and class_weight == "balanced":
        by = None if sample_weight is None or not count_weights else sample_weight[counted]
        counts = np.bincount(classes[counted], minlength=n_classes, weights=by)
        present = counts > 0
        table = np.ones(n_classes)
        table[present] = counts.sum() / (present.sum() * counts[present])
    elif isinstance(class_weight, dict):
        table = np.ones(n_classes)
        for key, value in class_weight.items():
            if isinstance(key, bool) or not isinstance(key, numbers.Integral) or \
                    not 0 <= key < n_classes:
                raise ValueError(f"class_weight has the key {key!r}: keys must be class "
                                 f"indices in [0, {n_classes - 1}]")
            table[int(key)] = _checks.real(value, f"class_weight[{key!r}]", low=0.0)
    else:
        raise ValueError(f"class_weight must be None, 'balanced' or a dict "
                         f"{{class: weight}}, got {class_weight!r}")
    per_row = np.where(counted, table[np.where(counted, classes, 0)], 1.0)
    return np.ascontiguousarray(per_row if sample_weight is None else sample_weight * per_row,
                                dtype=np.float64)
