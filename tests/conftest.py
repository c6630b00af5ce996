"""Shared fixtures: small random data, digits, and steepest <-> torch model conversion."""
from __future__ import annotations

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


def torch_layer(layer):
    """The torch.nn module equivalent to one steepest layer (float64 parameters)."""
    import torch

    nn = torch.nn
    if isinstance(layer, st.Dense):
        return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias,
                         dtype=torch.float64)
    simple = {st.ReLU: nn.ReLU, st.SiLU: nn.SiLU, st.Sigmoid: nn.Sigmoid, st.Tanh: nn.Tanh}
    if type(layer) in simple:
        return simple[type(layer)]()
    if isinstance(layer, st.GELU):
        return nn.GELU(approximate=layer.approximate)
    if isinstance(layer, st.Softplus):
        return nn.Softplus(layer.beta, layer.threshold)
    if isinstance(layer, st.LeakyReLU):
        return nn.LeakyReLU(layer.negative_slope)
    if isinstance(layer, st.ELU):
        return nn.ELU(layer.alpha)
    if isinstance(layer, st.Softmax):
        return nn.Softmax(dim=-1)
    if isinstance(layer, st.Dropout):
        return nn.Dropout(layer.p)
    if isinstance(layer, st.BatchNorm1d):
        return nn.BatchNorm1d(layer.num_features, eps=layer.eps, momentum=layer.momentum,
                              affine=layer.affine,
                              track_running_stats=layer.track_running_stats,
                              dtype=torch.float64)
    if isinstance(layer, st.LayerNorm):
        return nn.LayerNorm(layer.normalized_shape, eps=layer.eps,
                            elementwise_affine=layer.elementwise_affine, bias=layer.bias,
                            dtype=torch.float64)
    raise AssertionError(f"no torch equivalent for {layer!r}")


def to_torch(model, dtype=None):
    """A torch.nn.Sequential with the same architecture and (copied) weights as `model`."""
    import torch

    tmodel = torch.nn.Sequential(*[torch_layer(layer) for layer in model.layers])
    tdtype = {"float32": torch.float32, "float64": torch.float64}[dtype or model.dtype.name]
    tmodel = tmodel.to(tdtype)
    tmodel.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    return tmodel


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
