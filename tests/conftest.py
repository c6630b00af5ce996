"""Shared fixtures: small random data, digits, central differences, a model as torch in any
dtype and a torch state as numpy, zip members of steepest files, a callback that crashes a
run."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

import steepest as st


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits, standardized with the training statistics, split 80/20."""
    pytest.importorskip("sklearn")
    from steepest.datasets import Standardizer, load, train_test_split

    data = load("digits")
    X_train, X_test, y_train, y_test = train_test_split(data["X"], data["y"], 0.2, seed=0)
    scaler = Standardizer().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar function f at x (float64 array), entry by entry."""
    x = np.array(x, dtype=np.float64)
    g = np.empty_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        plus = f(x)
        x[i] = old - eps
        minus = f(x)
        x[i] = old
        g[i] = (plus - minus) / (2 * eps)
    return g


def to_torch(model, dtype=None):
    """A torch.nn.Sequential with the same architecture and (copied) weights as `model`, in
    `dtype` (default: the model's); the bridge itself is checked in test_torch_bridge.py."""
    import torch

    return model.to_torch().to(getattr(torch, dtype or model.dtype.name))


def torch_state(tmodel):
    """A torch module's state_dict as numpy arrays."""
    return {k: v.detach().numpy() for k, v in tmodel.state_dict().items()}


@pytest.fixture
def torch():
    """torch when installed (the optional oracle), else the test is skipped."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def mlp(*widths, activation=st.Tanh, dtype="float64", seed=0, bias=True):
    """Dense -> activation -> ... -> Dense over the given widths."""
    layers = []
    for i in range(len(widths) - 1):
        layers.append(st.Dense(widths[i], widths[i + 1], bias=bias))
        if i < len(widths) - 2:
            layers.append(activation())
    return st.Sequential(*layers, dtype=dtype, seed=seed)


def pickle_globals(data: bytes) -> set:
    """(module, name) of every global a pickle stream refers to: what unpickling imports."""
    import pickletools

    found, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            found.add((strings[-2], strings[-1]))
        elif op.name in ("GLOBAL", "INST"):
            found.add(tuple(arg.split(" ", 1)))
    return found


def members(path) -> dict:
    """{member name: bytes} of a zip file (a steepest file)."""
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def write_zip(path, entries: dict, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


def npy(array, **kw) -> bytes:
    b = io.BytesIO()
    np.save(b, array, **kw)
    return b.getvalue()


class CrashAtEpochEnd(st.callbacks.Callback):
    """Raises after the callbacks before it have seen epoch `at`, before its checkpoint."""

    def __init__(self, at):
        self.at = at

    def on_epoch_end(self, epoch, logs):
        if epoch == self.at:
            raise RuntimeError("crash")
