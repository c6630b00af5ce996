"""Layers of a Sequential model. Each is a small description; the C++ core does the work."""
from __future__ import annotations

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

    def spec(self, width: int) -> "_core.LayerSpec":
        s = _core.LayerSpec()
        s.kind = self.kind
        s.in_features = s.out_features = width
        return s

    def __repr__(self):
        return f"{type(self).__name__}()"


class Dense(Layer):
    """Fully connected: y = x W^T + b, W of shape (out_features, in_features) like torch.

    init: "torch_default" (torch.nn.Linear's), "glorot_uniform", "glorot_normal", "he_uniform",
    "he_normal", "lecun_normal", "normal" (N(0, 0.01^2)) or "zeros"; xavier_*/kaiming_*
    are accepted as aliases. Only "torch_default" draws the bias; the others start it at zero.
    """

    kind = _core.LayerKind.Dense

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


class _Activation(Layer):
    kind = _core.LayerKind.Activation
    param = 0.0

    def spec(self, width):
        s = super().spec(width)
        s.activation = getattr(_core.Activation, type(self).__name__)
        s.param = self.param
        return s


class ReLU(_Activation):
    """max(x, 0)."""


class LeakyReLU(_Activation):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope: float = 0.01):
        self.param = _checks.real(negative_slope, "negative_slope")

    def __repr__(self):
        return f"LeakyReLU(negative_slope={self.param})"


class ELU(_Activation):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    def __init__(self, alpha: float = 1.0):
        self.param = _checks.real(alpha, "alpha", low=0.0)

    def __repr__(self):
        return f"ELU(alpha={self.param})"


class GELU(_Activation):
    """x * Phi(x), the exact form with erf."""


class SiLU(_Activation):
    """x * sigmoid(x)."""


class Sigmoid(_Activation):
    """1 / (1 + exp(-x)); saturates, so gradients vanish in deep stacks."""


class Tanh(_Activation):
    """tanh(x); saturates like the sigmoid, centred at zero."""


class Softplus(_Activation):
    """log(1 + exp(x)) (beta 1, linear above 20, as torch)."""


class Softmax(Layer):
    """Softmax over the features (last axis). For training with CrossEntropy, leave it out:
    the loss takes logits and fuses the softmax."""

    kind = _core.LayerKind.Softmax


class Dropout(Layer):
    """Zeroes each value with probability p while training and scales the rest by 1/(1-p)
    (inverted dropout); the identity at inference."""

    kind = _core.LayerKind.Dropout

    def __init__(self, p: float = 0.5):
        self.p = _checks.real(p, "p", low=0.0, high=1.0, high_open=True)

    def spec(self, width):
        s = super().spec(width)
        s.param = self.p
        return s

    def __repr__(self):
        return f"Dropout(p={self.p})"


# name -> class, for the file format and the command line
LAYER_TYPES = {cls.__name__: cls for cls in (Dense, ReLU, LeakyReLU, ELU, GELU, SiLU, Sigmoid,
                                             Tanh, Softplus, Softmax, Dropout)}


def layer_config(layer: Layer) -> dict:
    """A JSON-able description of a layer (the inverse of layer_from_config)."""
    if isinstance(layer, Dense):
        return {"type": "Dense", "in_features": layer.in_features,
                "out_features": layer.out_features, "bias": layer.bias, "init": layer.init}
    if isinstance(layer, LeakyReLU):
        return {"type": "LeakyReLU", "negative_slope": layer.param}
    if isinstance(layer, ELU):
        return {"type": "ELU", "alpha": layer.param}
    if isinstance(layer, Dropout):
        return {"type": "Dropout", "p": layer.p}
    return {"type": type(layer).__name__}


def layer_from_config(config: dict) -> Layer:
    if not isinstance(config, dict) or config.get("type") not in LAYER_TYPES:
        raise ValueError(f"unknown layer description {config!r}")
    kwargs = {k: v for k, v in config.items() if k != "type"}
    try:
        return LAYER_TYPES[config["type"]](**kwargs)
    except TypeError as e:
        raise ValueError(f"bad layer description {config!r}: {e}") from None
