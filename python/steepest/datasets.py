"""Data sets that need no download, the user's own files, and the small utilities around them.

Real ones come from scikit-learn (an optional extra): digits (8x8 images, 10 classes), iris,
wine, breast_cancer (classification) and diabetes (regression). "spirals" (two interleaved
spirals) and "sine" (a noisy 1-D regression) are generated and need nothing.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

SKLEARN = {"digits": "load_digits", "iris": "load_iris", "wine": "load_wine",
           "breast_cancer": "load_breast_cancer", "diabetes": "load_diabetes"}
SYNTHETIC = ("spirals", "sine")
NAMES = tuple(SKLEARN) + SYNTHETIC


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


def load(name: str, seed: int = 0) -> dict[str, Any]:
    """{"X", "y", "task": "classification" | "regression", "n_classes", "name"}.

    name: one of NAMES, or a path to a .npz (arrays "X" and "y") or a .csv (numbers only,
    optional header, the target in the last column)."""
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"data set must be a name or a path, got {name!r}")
    name = os.fspath(name)
    if name in SKLEARN:
        try:
            import sklearn.datasets
        except ImportError:
            raise ImportError(f"the {name!r} data set comes with scikit-learn: "
                              "pip install 'steepest[sklearn]', or use 'spirals'") from None
        bunch = getattr(sklearn.datasets, SKLEARN[name])()
        X, y = bunch.data.astype(np.float64), bunch.target
    elif name == "spirals":
        X, y = spirals(seed=seed)
    elif name == "sine":
        X, y = sine(seed=seed)
    elif name.endswith(".npz"):
        with np.load(name, allow_pickle=False) as f:
            if "X" not in f or "y" not in f:
                raise ValueError(f"{name} must hold arrays named 'X' and 'y'")
            X, y = f["X"], f["y"]
    elif name.endswith(".csv"):
        X, y = _read_csv(name)
    else:
        raise ValueError(f"unknown data set {name!r}: use one of {NAMES} or a .npz/.csv path")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    y = np.asarray(y)
    integral = y.dtype.kind in "iub" or (y.dtype.kind == "f" and np.all(y == np.round(y))
                                          and len(np.unique(y)) <= max(20, len(y) // 20))
    if name in ("diabetes", "sine") or not integral:
        y = y.astype(np.float64).reshape(len(y), -1)
        return {"X": X, "y": y, "task": "regression", "n_classes": 0, "name": name}
    classes, y = np.unique(y, return_inverse=True)  # labels -> 0..C-1
    return {"X": X, "y": y.astype(np.int64), "task": "classification",
            "n_classes": len(classes), "name": name}


def _read_csv(path):
    with open(path) as f:
        first = f.readline()
    try:
        [float(v) for v in first.strip().split(",")]
        skip = 0
    except ValueError:
        skip = 1  # a header row
    data = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
    if data.shape[1] < 2:
        raise ValueError(f"{path} needs at least two columns (features..., target)")
    return data[:, :-1], data[:, -1]


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
