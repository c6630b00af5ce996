"""Layers of a Sequential model, the LAYERS registry and the size table of their parameters.

Each layer is a small description; the C++ core does the work.
"""
from __future__ import annotations

import math
from typing import NamedTuple

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
    _config_keys = ()  # the constructor's arguments, as layer_config stores them

    def spec(self, width: int) -> "_core.LayerSpec":
        s = _core.LayerSpec()
        s.kind = self.kind
        s.in_features = s.out_features = width
        return s

    def __repr__(self):
        args = ", ".join(f"{key}={getattr(self, key)}" for key in self._config_keys)
        return f"{type(self).__name__}({args})"


class Dense(Layer):
    """Fully connected: y = x W^T + b, W of shape (out_features, in_features) like torch.

    init: "torch_default" (torch.nn.Linear's), "glorot_uniform", "glorot_normal", "he_uniform",
    "he_normal", "lecun_normal", "normal" (N(0, 0.01^2)) or "zeros"; xavier_*/kaiming_*
    are accepted as aliases. Only "torch_default" draws the bias; the others start it at zero.
    """

    kind = _core.LayerKind.Dense
    _config_keys = ("in_features", "out_features", "bias", "init")

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 init: str = "torch_default"):
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

    def __repr__(self):
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
        s.activation = self._core_activation()
        s.param = self._core_param()
        return s

    def _core_activation(self) -> "_core.Activation":
        return getattr(_core.Activation, type(self).__name__)

    def _core_param(self) -> float:
        """The hyper-parameter the core takes for this activation (0 when it has none)."""
        return 0.0


class ReLU(Activation):
    """max(x, 0)."""

    short_name = "relu"


class LeakyReLU(Activation):
    """x if x > 0 else negative_slope * x."""

    short_name = "leaky_relu"
    _config_keys = ("negative_slope",)

    def __init__(self, negative_slope: float = 0.01):
        self.negative_slope = _checks.real(negative_slope, "negative_slope")

    def _core_param(self):
        return self.negative_slope


class ELU(Activation):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    short_name = "elu"
    _config_keys = ("alpha",)

    def __init__(self, alpha: float = 1.0):
        self.alpha = _checks.real(alpha, "alpha", low=0.0)

    def _core_param(self):
        return self.alpha


class GELU(Activation):
    """x * Phi(x): the exact form with erf (approximate="none"), or torch's tanh approximation
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) with approximate="tanh"."""

    short_name = "gelu"
    _config_keys = ("approximate",)

    def __init__(self, approximate: str = "none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _core_activation(self):
        return _core.Activation.GELUTanh if self.approximate == "tanh" else _core.Activation.GELU

    def __repr__(self):
        return "GELU()" if self.approximate == "none" else "GELU(approximate='tanh')"


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
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold, as torch.nn.Softplus
    (beta > 0)."""

    short_name = "softplus"
    _config_keys = ("beta", "threshold")

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        self.beta = _checks.real(beta, "beta", low=0.0, low_open=True)
        self.threshold = _checks.real(threshold, "threshold")

    def _core_param(self):
        return self.beta

    def spec(self, width):
        s = super().spec(width)
        s.threshold = self.threshold
        return s


class Softmax(Layer):
    """Softmax over the features (last axis). For training with CrossEntropy, leave it out:
    the loss takes logits and fuses the softmax."""

    kind = _core.LayerKind.Softmax


class Dropout(Layer):
    """Zeroes each value with probability p while training and scales the rest by 1/(1-p)
    (inverted dropout); the identity at inference."""

    kind = _core.LayerKind.Dropout
    _config_keys = ("p",)

    def __init__(self, p: float = 0.5):
        self.p = _checks.real(p, "p", low=0.0, high=1.0, high_open=True)

    def spec(self, width):
        s = super().spec(width)
        s.param = self.p
        return s


# name -> class: the one registry of layer types (the file format, the command line's
# activation names)
LAYERS = {cls.__name__: cls for cls in (Dense, ReLU, LeakyReLU, ELU, GELU, SiLU, Sigmoid, Tanh,
                                        Softplus, Softmax, Dropout)}


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


def parameter_table(layers) -> list:
    """The size table of a stack of layers: a ParameterSlot per weight and bias in the order
    of the flat buffers, each Dense layer's weight then its bias (the core's layout). The one
    place Python computes parameter sizes."""
    table, offset = [], 0
    for i, layer in enumerate(layers):
        if isinstance(layer, Dense):
            shapes = [("weight", (layer.out_features, layer.in_features))]
            if layer.bias:
                shapes.append(("bias", (layer.out_features,)))
            for kind, shape in shapes:
                table.append(ParameterSlot(i, f"{i}.{kind}", offset, shape))
                offset += math.prod(shape)
    return table
