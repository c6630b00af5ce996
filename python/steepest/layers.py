"""Layers of a Sequential model, the LAYERS registry and the size table of their parameters.

Each layer is a small description; the C++ core does the work.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

from . import _checks, _core

BLAS_MAX_DIM = 2**31 - 1  # OpenBLAS (scipy-openblas32) takes 32-bit dimensions
INITS = ("torch_default", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
         "lecun_normal", "normal", "zeros")
# Common aliases of the initializer names.
_INIT_ALIASES = {"default": "torch_default", "xavier_uniform": "glorot_uniform",
                 "xavier_normal": "glorot_normal", "kaiming_uniform": "he_uniform",
                 "kaiming_normal": "he_normal"}


class Layer:
    """Base class. ``width`` is filled in when the model is built (elementwise layers)."""

    kind = None
    width = None
    _config_keys: tuple[str, ...] = ()  # the constructor's arguments, as layer_config stores them

    def spec(self, width: int) -> "_core.LayerSpec":
        s = _core.LayerSpec()
        s.kind = self.kind
        s.in_features = s.out_features = width
        return s

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={getattr(self, key)}" for key in self._config_keys)
        return f"{type(self).__name__}({args})"


class Dense(Layer):
    """Fully connected: y = x W^T + b, W of shape (out_features, in_features) like torch.

    init: "torch_default" (torch.nn.Linear's), "glorot_uniform", "glorot_normal", "he_uniform",
    "he_normal", "lecun_normal", "normal" (N(0, 0.01^2)) or "zeros"; xavier_*/kaiming_*
    are accepted as aliases. Only "torch_default" draws the bias; the others start it at zero.
    activation: as Keras's, an activation name ("relu", "tanh", "softmax", ...; see
    ACTIVATIONS) or layer that Sequential puts right after this layer, as its own layer.
    """

    kind = _core.LayerKind.Dense
    _config_keys = ("in_features", "out_features", "bias", "init")

    def __init__(self, in_features: int, out_features: Optional[int] = None,
                 bias: bool = True, init: str = "torch_default",
                 activation: Optional[str] = None) -> None:
        if out_features is None:
            raise TypeError(f"Dense takes in_features and out_features, e.g. "
                            f"st.Dense(64, {in_features!r}): steepest layers state their input "
                            "width (Keras's Dense(units) is st.Dense(in_features, units))")
        self.activation = activation_layer(activation)
        self.in_features = _checks.integer(in_features, "in_features", low=1)
        self.out_features = _checks.integer(out_features, "out_features", low=1)
        for name, width in (("in_features", in_features), ("out_features", out_features)):
            if width > BLAS_MAX_DIM:
                raise ValueError(f"{name}={width} exceeds {BLAS_MAX_DIM}, the largest matrix "
                                 "dimension of the BLAS library (32-bit integers)")
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be True or False, got {bias!r}")
        self.bias = bias
        if not isinstance(init, str):
            raise TypeError(f"init must be a string, one of {INITS}, got {init!r}")
        name = _INIT_ALIASES.get(init, init)
        if name not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.init = name

    def spec(self, width=None):
        s = _core.LayerSpec()
        s.kind = self.kind
        s.in_features, s.out_features = self.in_features, self.out_features
        s.bias = self.bias
        s.init = getattr(_core.Init, self.init)
        return s

    def __repr__(self) -> str:
        extra = "" if self.bias else ", bias=False"
        extra += "" if self.init == "torch_default" else f", init={self.init!r}"
        return f"Dense({self.in_features}, {self.out_features}{extra})"


class Activation(Layer):
    """An elementwise activation. ``short_name`` is its torch.nn.functional name, the one the
    command line and the experiments use."""

    kind = _core.LayerKind.Activation
    short_name = None

    def spec(self, width):
        s = super().spec(width)
        s.activation = getattr(_core.Activation, type(self).__name__)
        s.param = self._core_param()
        return s

    def _core_param(self) -> float:
        """The one hyper-parameter the core takes for this activation (0 when it has none)."""
        return 0.0


class ReLU(Activation):
    """max(x, 0)."""

    short_name = "relu"


class LeakyReLU(Activation):
    """x if x > 0 else negative_slope * x."""

    short_name = "leaky_relu"
    _config_keys = ("negative_slope",)

    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = _checks.real(negative_slope, "negative_slope")

    def _core_param(self):
        return self.negative_slope


class ELU(Activation):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    short_name = "elu"
    _config_keys = ("alpha",)

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = _checks.real(alpha, "alpha", low=0.0)

    def _core_param(self):
        return self.alpha


class GELU(Activation):
    """x * Phi(x), the exact form with erf."""

    short_name = "gelu"


class SiLU(Activation):
    """x * sigmoid(x)."""

    short_name = "silu"


class Sigmoid(Activation):
    """1 / (1 + exp(-x)); saturates, so gradients vanish in deep stacks."""

    short_name = "sigmoid"


class Tanh(Activation):
    """tanh(x); saturates like the sigmoid, centred at zero."""

    short_name = "tanh"


class Softplus(Activation):
    """log(1 + exp(x)) (beta 1, linear above 20, as torch)."""

    short_name = "softplus"


class Softmax(Layer):
    """Softmax over the features (last axis). For training with CrossEntropy, leave it out:
    the loss takes logits and fuses the softmax."""

    kind = _core.LayerKind.Softmax


class Dropout(Layer):
    """Zeroes each value with probability p while training and scales the rest by 1/(1-p)
    (inverted dropout); the identity at inference."""

    kind = _core.LayerKind.Dropout
    _config_keys = ("p",)

    def __init__(self, p: float = 0.5) -> None:
        self.p = _checks.real(p, "p", low=0.0, high=1.0, high_open=True)

    def spec(self, width):
        s = super().spec(width)
        s.param = self.p
        return s


# name -> class: the one registry of layer types (the file format)
LAYERS = {cls.__name__: cls for cls in (Dense, ReLU, LeakyReLU, ELU, GELU, SiLU, Sigmoid, Tanh,
                                        Softplus, Softmax, Dropout)}
# activation name (torch.nn.functional's: "relu", "leaky_relu", ...) -> layer class: the names
# of Dense's activation argument, the command line and the experiments
ACTIVATIONS = {cls.short_name: cls for cls in LAYERS.values() if issubclass(cls, Activation)}


def activation_layer(activation):
    """The layer for Dense's activation argument: None (or "linear"), a name in ACTIVATIONS
    or "softmax", or an activation layer."""
    if activation is None or activation == "linear":
        return None
    if isinstance(activation, (Activation, Softmax)):
        return activation
    if activation == "softmax":
        return Softmax()
    if isinstance(activation, str) and activation in ACTIVATIONS:
        return ACTIVATIONS[activation]()
    raise ValueError(f"activation must be one of {sorted(ACTIVATIONS) + ['softmax']}, None or "
                     f"an activation layer (st.ReLU(), ...), got {activation!r}")


def layer_config(layer: Layer) -> dict:
    """A JSON-able description of a layer (the inverse of layer_from_config)."""
    return {"type": type(layer).__name__, **{k: getattr(layer, k) for k in layer._config_keys}}


def layer_from_config(config: dict) -> Layer:
    if not isinstance(config, dict) or config.get("type") not in LAYERS:
        raise ValueError(f"unknown layer description {config!r}")
    kwargs = {k: v for k, v in config.items() if k != "type"}
    try:
        return LAYERS[config["type"]](**kwargs)
    except TypeError as e:
        raise ValueError(f"bad layer description {config!r}: {e}") from None


# -- the size table -----------------------------------------------------------------------------
class ParameterSlot(NamedTuple):
    """Where one parameter lives in a model's flat buffers."""

    layer: int     # index in the model's layers
    name: str      # "3.weight" / "3.bias", the state_dict key
    offset: int    # first entry in the flat buffer
    shape: tuple   # torch's shape: weight (out, in), bias (out,)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def layer_specs(layers) -> list:
    """The core's LayerSpec of each layer; elementwise layers take the width of what they
    follow (the first Dense layer's input before it)."""
    dense = [layer for layer in layers if isinstance(layer, Dense)]
    if not dense:
        raise ValueError("a model needs at least one Dense layer")
    width, specs = dense[0].in_features, []
    for i, layer in enumerate(layers):
        if isinstance(layer, Dense):
            if layer.in_features != width:
                raise ValueError(f"layer {i} ({layer!r}) expects {layer.in_features} "
                                 f"features but the layer before it gives {width}")
            width = layer.out_features
        specs.append(layer.spec(width))
    return specs


def parameter_table(layers) -> list:
    """A ParameterSlot per weight and bias in the order of the flat buffers, read from the
    core's size table (the one place sizes and offsets are computed); nothing allocated."""
    table = []
    for d in _core.size_table(layer_specs(layers)).dense:
        table.append(ParameterSlot(d.layer, f"{d.layer}.weight", d.weight_offset,
                                   tuple(d.weight_shape)))
        if d.bias_shape is not None:
            table.append(ParameterSlot(d.layer, f"{d.layer}.bias", d.bias_offset,
                                       tuple(d.bias_shape)))
    return table
