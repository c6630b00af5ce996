"""Layers of a Sequential model, the LAYERS registry and the size table of their state.

Each layer is a small description; the C++ core does the work. A model's parameters, buffers
and counts are laid out by the core's one size table (``state_table``).
"""
from __future__ import annotations

import weakref
from typing import NamedTuple, Optional

import numpy as np

from . import _checks, _core

BLAS_MAX_DIM = 2**31 - 1  # OpenBLAS (scipy-openblas32) takes 32-bit dimensions
INITS = ("torch_default", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
         "lecun_normal", "normal", "zeros")
# Common aliases of the initializer names.
_INIT_ALIASES = {"default": "torch_default", "xavier_uniform": "glorot_uniform",
                 "xavier_normal": "glorot_normal", "kaiming_uniform": "he_uniform",
                 "kaiming_normal": "he_normal"}


class Layer:
    """Base class: a description the model turns into a core layer spec of a given width."""

    kind = None
    _config_keys: tuple[str, ...] = ()  # the constructor's arguments, as layer_config stores them

    @property
    def in_width(self):
        """The input width this layer states (Dense's in_features, BatchNorm1d's num_features,
        ...), or None for a layer that takes the width of what comes before it."""
        return None

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

    @property
    def in_width(self):
        return self.in_features

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

    def __init__(self, p: float = 0.5) -> None:
        self.p = _checks.real(p, "p", low=0.0, high=1.0, high_open=True)

    def spec(self, width):
        s = super().spec(width)
        s.param = self.p
        return s


def _flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


class BatchNorm1d(Layer):
    """Batch normalization of each feature of (N, C) input, as torch.nn.BatchNorm1d.

    Training (fit, train_step, forward(training=True)): each feature is normalized with the
    batch's mean and biased variance, (x - mean) / sqrt(var + eps), then scaled and shifted by
    the trainable ``weight`` and ``bias`` (affine=True). The running statistics (buffers
    ``running_mean``, ``running_var`` from the unbiased variance, and the count
    ``num_batches_tracked``) follow running = (1 - momentum) running + momentum batch, or
    their cumulative average with momentum=None. Eval mode (predict, forward(training=False))
    normalizes with the running statistics, or with the batch's own when
    track_running_stats=False. Batch statistics of one sample are refused (ValueError), as torch
    refuses them.
    """

    kind = _core.LayerKind.BatchNorm
    _config_keys = ("num_features", "eps", "momentum", "affine", "track_running_stats")

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = True,
                 track_running_stats: bool = True):
        self.num_features = _checks.integer(num_features, "num_features", low=1)
        self.eps = _checks.real(eps, "eps", low=0.0, low_open=True)
        self.momentum = None if momentum is None else _checks.real(momentum, "momentum",
                                                                   low=0.0, high=1.0)
        self.affine = _flag(affine, "affine")
        self.track_running_stats = _flag(track_running_stats, "track_running_stats")

    @property
    def in_width(self):
        return self.num_features

    def spec(self, width):
        s = super().spec(width)
        s.eps = self.eps
        s.momentum = -1.0 if self.momentum is None else self.momentum  # the core's "None"
        s.affine = s.bias = self.affine
        s.track_running_stats = self.track_running_stats
        return s

    def __repr__(self):
        return (f"BatchNorm1d({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats})")


class LayerNorm(Layer):
    """Layer normalization of each sample over its features, as torch.nn.LayerNorm on (N, C)
    input: (x - mean) / sqrt(var + eps) with the row's mean and biased variance, then the
    trainable ``weight`` and ``bias`` (elementwise_affine; bias=False keeps only the weight).
    The same in training and eval mode. normalized_shape: C, or (C,)."""

    kind = _core.LayerKind.LayerNorm
    _config_keys = ("normalized_shape", "eps", "elementwise_affine", "bias")

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True):
        shape = (normalized_shape,) if not isinstance(normalized_shape, (tuple, list)) \
            else tuple(normalized_shape)
        if len(shape) != 1:
            raise ValueError("normalized_shape must be the number of features (or a 1-element "
                             f"shape): steepest's inputs are (N, C), got {normalized_shape!r}")
        self.normalized_shape = (_checks.integer(shape[0], "normalized_shape", low=1),)
        self.eps = _checks.real(eps, "eps", low=0.0, low_open=True)
        self.elementwise_affine = _flag(elementwise_affine, "elementwise_affine")
        self.bias = _flag(bias, "bias")

    @property
    def in_width(self):
        return self.normalized_shape[0]

    def spec(self, width):
        s = super().spec(width)
        s.eps = self.eps
        s.affine = self.elementwise_affine
        s.bias = self.elementwise_affine and self.bias
        return s

    def __repr__(self):
        extra = "" if self.bias or not self.elementwise_affine else ", bias=False"
        return (f"LayerNorm({self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}{extra})")


class FeatureMoments:
    """Count, mean, sum of squared deviations from the mean (m2), min and max of each feature,
    in float64, updated chunk by chunk of rows (Chan, Golub and LeVeque's pairwise update: as
    accurate as one pass over all rows, so X may be read in pieces)."""

    def __init__(self, n_features: int):
        self.count = 0
        self.mean = np.zeros(n_features)
        self.m2 = np.zeros(n_features)
        self.min = np.full(n_features, np.inf)
        self.max = np.full(n_features, -np.inf)

    def update(self, rows: np.ndarray) -> None:
        """Adds rows (n, n_features) of float64."""
        n = rows.shape[0]
        mean = rows.mean(axis=0)
        m2 = np.square(rows - mean).sum(axis=0)
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * (n / total)
        self.m2 += m2 + np.square(delta) * (self.count * n / total)
        self.count = total
        np.minimum(self.min, rows.min(axis=0), out=self.min)
        np.maximum(self.max, rows.max(axis=0), out=self.max)


class Rescale(Layer):
    """Base of the preprocessing layers: y = (x - shift) / scale per feature, with statistics
    learned from data by ``adapt`` (in float64, stored in the model's dtype), never by
    gradients. In a model they are the buffers named by ``buffer_names`` plus the count
    ``count`` of samples they were learned on (0: not adapted; using the model then is an
    error). Gradients flow through the layer (dx = dy / scale) but never into it."""

    buffer_names = ("shift", "scale")

    def __init__(self):
        self.statistics = None  # (shift, scale, count) learned by this layer's own adapt()
        self._views = []  # weak references to the (shift, scale, count) views of its models

    @property
    def in_width(self):
        return None if self.statistics is None else len(self.statistics[0])

    def shift_scale(self, moments: FeatureMoments) -> tuple:
        """(shift, scale) in float64 from the moments of the data; a constant feature gets
        scale 1."""
        raise NotImplementedError

    def adapt(self, X, chunk_rows: int = None) -> "Rescale":
        """Learns the statistics of X (N, features), read in chunks of rows (a memory-mapped X
        is fine), as Keras's Normalization.adapt. Models built with this layer afterwards start
        with them; models already holding it get them at once. model.adapt(X) instead learns
        each such layer of a model from the data as it reaches that layer."""
        views = self._live_views()
        moments = None
        for rows in _checks.float64_chunks(X, "X", views[0][0].shape[0] if views else None,
                                           chunk_rows):
            if moments is None:
                moments = FeatureMoments(rows.shape[1])
            moments.update(rows)
        shift, scale = self.shift_scale(moments)
        self.statistics = (shift, scale, moments.count)
        for v in views:
            set_statistics(v, shift, scale, moments.count)
        return self

    def attach(self, shift: np.ndarray, scale: np.ndarray, count: np.ndarray) -> None:
        """Called by the model that holds this layer with zero-copy views of its buffers:
        they receive the layer's statistics now (if it has any) and after each adapt()."""
        self._views.append((weakref.ref(shift), weakref.ref(scale), weakref.ref(count)))
        if self.statistics is not None:
            set_statistics((shift, scale, count), *self.statistics)

    def _live_views(self) -> list:
        live = [tuple(ref() for ref in refs) for refs in self._views]
        live = [views for views in live if all(v is not None for v in views)]
        self._views = [tuple(weakref.ref(v) for v in views) for views in live]
        return live

    def __getstate__(self):  # copies (deepcopy, pickle) do not share the original's models
        return {**self.__dict__, "_views": []}


def set_statistics(views, shift, scale, count: int) -> None:
    """Writes learned statistics into a model's (shift, scale, count) views, in its dtype; a
    scale that rounds to 0 in that dtype becomes 1, like a constant feature's."""
    shift_view, scale_view, count_view = views
    if shift_view.shape != np.shape(shift):
        raise ValueError(f"the statistics have {np.shape(shift)[0]} features but the model's "
                         f"layer has {shift_view.shape[0]}")
    shift_view[...] = shift
    scale_view[...] = scale
    scale_view[scale_view == 0] = 1
    count_view[...] = count


class Standardize(Rescale):
    """(x - mean) / std per feature, with the mean and (population) standard deviation learned
    from data, like Keras's Normalization layer and scikit-learn's StandardScaler: a model
    that standardizes its own input. ``fit`` adapts an un-adapted Standardize layer on its
    training data at its start; ``model.adapt(X)`` or ``layer.adapt(X)`` do it explicitly.
    Buffers ``mean`` and ``std`` (a constant feature gets std 1) and the count ``count``."""

    kind = _core.LayerKind.Standardize
    buffer_names = ("mean", "std")

    def shift_scale(self, moments):
        std = np.sqrt(moments.m2 / max(moments.count, 1))
        return moments.mean.copy(), np.where(moments.max > moments.min, std, 1.0)


class MinMaxScale(Rescale):
    """(x - min) / (max - min) per feature, into [0, 1] on the data it learned from, like
    scikit-learn's MinMaxScaler; adapted as Standardize is. Buffers ``min`` and ``range``
    (a constant feature gets range 1) and the count ``count``."""

    kind = _core.LayerKind.MinMaxScale
    buffer_names = ("min", "range")

    def shift_scale(self, moments):
        return moments.min.copy(), np.where(moments.max > moments.min,
                                            moments.max - moments.min, 1.0)


# name -> class: the one registry of layer types (the file format)
LAYERS = {cls.__name__: cls for cls in (Dense, ReLU, LeakyReLU, ELU, GELU, SiLU, Sigmoid, Tanh,
                                        Softplus, Softmax, Dropout, BatchNorm1d, LayerNorm,
                                        Standardize, MinMaxScale)}
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
    """A JSON-able description of a layer (the inverse of layer_from_config); shapes as
    lists, as JSON gives them back."""
    config = {"type": type(layer).__name__}
    for key in layer._config_keys:
        value = getattr(layer, key)
        config[key] = list(value) if isinstance(value, tuple) else value
    return config


def layer_from_config(config: dict) -> Layer:
    if not isinstance(config, dict) or config.get("type") not in LAYERS:
        raise ValueError(f"unknown layer description {config!r}")
    kwargs = {k: v for k, v in config.items() if k != "type"}
    try:
        return LAYERS[config["type"]](**kwargs)
    except TypeError as e:
        raise ValueError(f"bad layer description {config!r}: {e}") from None


# -- the size table -----------------------------------------------------------------------------
STORES = {_core.Store.Params: "params", _core.Store.Buffers: "buffers",
          _core.Store.Counts: "counts"}


class Slot(NamedTuple):
    """Where one named array of a model lives in its flat stores (from the core's size table)."""

    layer: int     # index in the model's layers
    name: str      # "3.weight", "1.running_mean", ...: the state_dict key
    store: str     # "params" (trained), "buffers" (not trained, model dtype), "counts" (int64)
    offset: int    # first entry in its store
    shape: tuple   # torch's shape: weight (out, in), bias (out,), a count ()

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def layer_specs(layers, in_features=None) -> list:
    """The core's specs of a stack of layers, each of its width. The input width is
    in_features, else the width the first layer that states one (Dense, BatchNorm1d,
    LayerNorm, an adapted Standardize) expects: the layers before it keep their width.
    Raises ValueError when widths disagree or nothing gives the input width."""
    width = in_features
    if width is None:
        width = next((layer.in_width for layer in layers if layer.in_width is not None), None)
        if width is None:
            raise ValueError("no layer states the input width (Dense, BatchNorm1d and LayerNorm "
                             "do): pass it as in_features, e.g. "
                             "st.Sequential(st.Dropout(0.25), in_features=10)")
    else:
        width = _checks.integer(width, "in_features", low=1)
    specs = []
    for i, layer in enumerate(layers):
        if layer.in_width is not None and layer.in_width != width:
            raise ValueError(f"layer {i} ({layer!r}) expects {layer.in_width} features but "
                             f"{'the layer before it gives' if i else 'the input has'} {width}")
        spec = layer.spec(width)
        specs.append(spec)
        width = spec.out_features
    return specs


def state_table(layers, in_features=None) -> list:
    """Every parameter, buffer and count of a model of these layers, as Slots in layer order
    (within a layer: parameters, then buffers, then counts, as torch's state_dict): the core's
    one size table, computed without allocating the model."""
    return [Slot(s.layer, f"{s.layer}.{s.name}", STORES[s.store], s.offset, tuple(s.shape))
            for s in _core.size_table(layer_specs(layers, in_features)).slots]
