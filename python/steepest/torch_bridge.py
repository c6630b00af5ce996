"""The PyTorch bridge: layers and weights as a torch.nn.Sequential, and back.

Each steepest layer is the torch.nn module of the same name (Dense is Linear) whose
constructor arguments and attributes are the layer's config keys (LeakyReLU's
negative_slope, ELU's alpha, Dropout's p, GELU's approximate, Softplus's beta and threshold,
BatchNorm1d's and LayerNorm's options); state_dict keys and shapes are the same on both
sides, buffers included (running statistics, num_batches_tracked), so weights move with
load_state_dict(strict=True). Standardize and MinMaxScale have no torch module. torch is
optional: it is imported when a function here is called.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

import numpy as np

from .layers import (ELU, GELU, BatchNorm1d, Dense, Dropout, Layer, LayerNorm, LeakyReLU, ReLU,
                     Sigmoid, SiLU, Softmax, Softplus, Tanh, layer_config)

# steepest layer class -> the torch.nn class it is (by name)
TORCH_MODULES = {Dense: "Linear", ReLU: "ReLU", LeakyReLU: "LeakyReLU", ELU: "ELU",
                 GELU: "GELU", SiLU: "SiLU", Sigmoid: "Sigmoid", Tanh: "Tanh",
                 Softplus: "Softplus", Softmax: "Softmax", Dropout: "Dropout",
                 BatchNorm1d: "BatchNorm1d", LayerNorm: "LayerNorm"}
# torch arguments a steepest layer does not take: the values it accepts, the first one is
# what to_torch passes (Softmax acts on the last axis of (N, C), which is also axis 1).
_TORCH_FIXED: dict[type[Layer], dict[str, tuple[Any, ...]]] = {Softmax: {"dim": (-1, 1)}}
_TORCH_DTYPES = ("float32", "float64")


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError("the PyTorch bridge needs torch: pip install torch") from None
    return torch


def to_torch(layers: list, state: dict, dtype: np.dtype) -> Any:
    """A torch.nn.Sequential of `layers` holding copies of `state` (state_dict arrays), with
    parameters of `dtype`, in training mode like every new torch module."""
    torch = _torch()
    modules = []
    for layer in layers:
        name = TORCH_MODULES.get(type(layer))
        if name is None:
            raise ValueError(f"no PyTorch module for {layer!r}")
        if isinstance(layer, Dense):
            kwargs = {"in_features": layer.in_features, "out_features": layer.out_features,
                      "bias": layer.bias}
        else:
            kwargs = {k: v for k, v in layer_config(layer).items() if k != "type"}
            fixed = _TORCH_FIXED.get(type(layer), {})
            kwargs.update({k: allowed[0] for k, allowed in fixed.items()})
        modules.append(getattr(torch.nn, name)(**kwargs))
    sequential = torch.nn.Sequential(*modules).to(getattr(torch, dtype.name))
    sequential.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in state.items()},
                               strict=True)
    return sequential


def from_torch(module: Any) -> tuple:
    """(layers, state, dtype name) of a torch.nn.Sequential (nested ones are flattened):
    the steepest layers, the module's state_dict as numpy arrays under steepest's keys, and
    the dtype of its parameters. A module it cannot map is a ValueError naming it."""
    torch = _torch()
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"module must be a torch.nn.Sequential, got {type(module).__name__}")
    layers: list[Layer] = []
    state: dict[str, np.ndarray] = {}
    for path, child in _leaves(torch, module, ""):
        i = len(layers)
        layers.append(_layer(torch, path, child))
        for key, value in child.state_dict().items():
            state[f"{i}.{key}"] = value.detach().cpu().numpy()
    dtypes = {str(a.dtype) for a in state.values() if a.dtype.kind != "i"}  # not the counts
    if not dtypes <= set(_TORCH_DTYPES) or len(dtypes) > 1:
        raise ValueError(f"module holds {sorted(dtypes)} tensors; steepest takes float32 or "
                         "float64, one of them (convert with module.float() or .double())")
    return layers, state, dtypes.pop() if dtypes else "float32"


def _leaves(torch: Any, module: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted path, module) of the modules of a Sequential, nested Sequentials flattened."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.Sequential):
            yield from _leaves(torch, child, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", child


def _layer(torch: Any, path: str, module: Any) -> Layer:
    cls: Optional[type[Layer]] = next((c for c, name in TORCH_MODULES.items()
                if type(module) is getattr(torch.nn, name)), None)
    if cls is None:
        known = ", ".join(TORCH_MODULES.values())
        raise ValueError(f"cannot map module {path} ({module!r}) to a steepest layer; "
                         f"steepest maps {known} (and nested Sequential)")
    for key, allowed in _TORCH_FIXED.get(cls, {}).items():
        if getattr(module, key) not in allowed:
            raise ValueError(f"cannot map module {path} ({module!r}): steepest's "
                             f"{cls.__name__} has {key}={allowed[0]!r}")
    if cls is Dense:
        return Dense(module.in_features, module.out_features, bias=module.bias is not None)
    kwargs = {k: getattr(module, k) for k in cls._config_keys}
    if cls is LayerNorm:  # torch keeps the bias argument only as its parameter (or None)
        kwargs["bias"] = module.bias is not None or not module.elementwise_affine
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"cannot map module {path} ({module!r}): {e}") from None
