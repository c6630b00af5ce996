"""ONNX export: a model as an ONNX graph that runs where steepest is not installed.

The graph takes "input" (batch, in_features) and gives "output" (batch, out_features) in the
model's dtype (float32 or float64), the batch dimension symbolic. Opset 17 by default (13 and
newer accepted); operators, one or a few per layer:

- Dense: Gemm(x, weight, bias, transB=1), the weight stored (out, in) as in state_dict and
  named like its state_dict key ("0.weight"), so the graph reads like the model;
- ReLU, Sigmoid, Tanh, Softmax(axis=-1): the ONNX operator;
- LeakyReLU: PRelu(x, negative_slope); ELU: Where(x > 0, x, alpha (Exp(x) - 1)): their
  constants are tensors of the model's dtype (ONNX's LeakyRelu and Elu take float32
  attributes, which would round a float64 model's), and onnxruntime runs both dtypes;
- GELU: 0.5 x (1 + Erf(x / sqrt(2))), the exact form, or with approximate="tanh"
  0.5 x (1 + Tanh(sqrt(2 / pi) (x + 0.044715 x^3))); SiLU: x * Sigmoid(x);
- Softplus(beta, threshold): Where(beta x > threshold, x, Softplus(beta x) / beta), torch's;
- BatchNorm1d in eval semantics: (x - running_mean) * 1 / Sqrt(running_var + eps), then
  weight and bias (affine); without running statistics (track_running_stats=False) the
  batch's mean and biased variance (ReduceMean over the batch axis), as torch's eval does;
- LayerNorm: the row's mean and biased variance (ReduceMean over the features), then weight
  and bias as its options say;
- Standardize, MinMaxScale: (x - mean) / std, (x - min) / range (Sub, Div);
- Dropout: nothing (inference).

Buffers are initializers named by their state_dict keys like the weights ("1.running_mean",
"0.mean"); counts (num_batches_tracked) are not needed at inference and stay out.
onnxruntime (1.32) has no float64 kernel for Erf and Softplus: float64 graphs with GELU or
Softplus are valid ONNX that it does not run.

output="softmax" or "sigmoid" appends that operator, for a model trained on logits (with
CrossEntropy or BinaryCrossEntropy) whose users want probabilities. The onnx package is an
optional extra, imported when exporting; the file is written atomically.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Optional, Union

import numpy as np

from . import _checks
from ._version import __version__
from .archive import atomic_write
from .layers import (ELU, GELU, BatchNorm1d, Dense, Dropout, Layer, LayerNorm, LeakyReLU,
                     MinMaxScale, Rescale, ReLU, Sigmoid, SiLU, Softmax, Softplus, Standardize,
                     Tanh)

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Softmax over one axis, Gemm with an optional bias
OUTPUTS = ("logits", "softmax", "sigmoid")
_MAX_PROTO_BYTES = 2**31 - 2**20  # protobuf's 2 GiB limit, with room for the graph itself


class _Graph:
    """Nodes and initializers of an ONNX graph under construction, in one dtype."""

    def __init__(self, onnx: Any, dtype: np.dtype, opset: int) -> None:
        self.onnx, self.dtype, self.opset = onnx, dtype, opset
        self.nodes: list = []
        self.initializers: list = []

    def node(self, op: str, inputs: list[str], name: str, **attributes: Any) -> str:
        """Adds an operator; returns the name of its (single) output."""
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [name], name=name,
                                                     **attributes))
        return name

    def constant(self, name: str, value: Any) -> str:
        """An initializer holding `value` (an array, or a scalar) in the graph's dtype."""
        array = np.asarray(value, dtype=self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def mean(self, x: str, axis: int, name: str) -> str:
        """ReduceMean of x over one axis, kept (opset 18 takes the axes as an input)."""
        if self.opset < 18:
            return self.node("ReduceMean", [x], name, axes=[axis], keepdims=1)
        axes = f"{name}.axes"
        self.initializers.append(self.onnx.numpy_helper.from_array(
            np.array([axis], dtype=np.int64), axes))
        return self.node("ReduceMean", [x, axes], name, keepdims=1)


# -- one function per layer kind: (graph, layer, its index, its input, its state) -> output ------
def _dense(g: _Graph, layer: Dense, i: int, x: str, state: dict) -> str:
    inputs = [x, g.constant(f"{i}.weight", state[f"{i}.weight"])]
    if layer.bias:
        inputs.append(g.constant(f"{i}.bias", state[f"{i}.bias"]))
    return g.node("Gemm", inputs, f"{i}.gemm", transB=1)


def _leaky_relu(g: _Graph, layer: LeakyReLU, i: int, x: str, state: dict) -> str:
    return g.node("PRelu", [x, g.constant(f"{i}.negative_slope", layer.negative_slope)],
                  f"{i}.leaky_relu")


def _elu(g: _Graph, layer: ELU, i: int, x: str, state: dict) -> str:
    positive = g.node("Greater", [x, g.constant(f"{i}.zero", 0.0)], f"{i}.positive")
    expm1 = g.node("Sub", [g.node("Exp", [x], f"{i}.exp"), g.constant(f"{i}.one", 1.0)],
                   f"{i}.expm1")
    negative = g.node("Mul", [expm1, g.constant(f"{i}.alpha", layer.alpha)], f"{i}.negative")
    return g.node("Where", [positive, x, negative], f"{i}.elu")


def _gelu(g: _Graph, layer: GELU, i: int, x: str, state: dict) -> str:
    if layer.approximate == "tanh":  # tanh(sqrt(2/pi) (x + 0.044715 x^3))
        cube = g.node("Mul", [g.node("Mul", [x, x], f"{i}.square"), x], f"{i}.cube")
        inner = g.node("Add", [x, g.node("Mul", [cube, g.constant(f"{i}.kappa", 0.044715)],
                                         f"{i}.kappa_cube")], f"{i}.inner")
        curve = g.node("Tanh", [g.node("Mul", [inner, g.constant(
            f"{i}.sqrt2_pi", math.sqrt(2 / math.pi))], f"{i}.scaled")], f"{i}.tanh")
    else:
        curve = g.node("Erf", [g.node("Mul", [x, g.constant(f"{i}.sqrt1_2", math.sqrt(0.5))],
                                      f"{i}.scaled")], f"{i}.erf")
    half_x = g.node("Mul", [x, g.constant(f"{i}.half", 0.5)], f"{i}.half_x")
    return g.node("Mul", [half_x, g.node("Add", [curve, g.constant(f"{i}.one", 1.0)],
                                         f"{i}.one_plus_curve")], f"{i}.gelu")


def _silu(g: _Graph, layer: SiLU, i: int, x: str, state: dict) -> str:
    return g.node("Mul", [x, g.node("Sigmoid", [x], f"{i}.sigmoid")], f"{i}.silu")


def _softplus(g: _Graph, layer: Softplus, i: int, x: str, state: dict) -> str:
    beta = g.constant(f"{i}.beta", layer.beta)
    bx = g.node("Mul", [x, beta], f"{i}.beta_x")
    linear = g.node("Greater", [bx, g.constant(f"{i}.threshold", layer.threshold)],
                    f"{i}.linear")
    smooth = g.node("Div", [g.node("Softplus", [bx], f"{i}.log1p_exp"), beta], f"{i}.smooth")
    return g.node("Where", [linear, x, smooth], f"{i}.softplus")


def _normalize(g: _Graph, i: int, x: str, state: dict, axis: int, eps: float,
               running: bool, weight: bool, bias: bool) -> str:
    """(x - mean) * 1 / sqrt(var + eps), then * weight, + bias (the core's order): the mean
    and biased variance over `axis`, or the running statistics of layer i."""
    if running:
        mean, var = (g.constant(f"{i}.{k}", state[f"{i}.{k}"])
                     for k in ("running_mean", "running_var"))
        centered = g.node("Sub", [x, mean], f"{i}.centered")
    else:
        centered = g.node("Sub", [x, g.mean(x, axis, f"{i}.mean")], f"{i}.centered")
        var = g.mean(g.node("Mul", [centered, centered], f"{i}.squares"), axis, f"{i}.var")
    std = g.node("Sqrt", [g.node("Add", [var, g.constant(f"{i}.eps", eps)], f"{i}.var_eps")],
                 f"{i}.std")
    y = g.node("Mul", [centered, g.node("Reciprocal", [std], f"{i}.rstd")], f"{i}.normalized")
    if weight:
        y = g.node("Mul", [y, g.constant(f"{i}.weight", state[f"{i}.weight"])], f"{i}.scaled")
    if bias:
        y = g.node("Add", [y, g.constant(f"{i}.bias", state[f"{i}.bias"])], f"{i}.shifted")
    return y


def _batch_norm(g: _Graph, layer: BatchNorm1d, i: int, x: str, state: dict) -> str:
    return _normalize(g, i, x, state, 0, layer.eps, layer.track_running_stats, layer.affine,
                      layer.affine)


def _layer_norm(g: _Graph, layer: LayerNorm, i: int, x: str, state: dict) -> str:
    affine = layer.elementwise_affine
    return _normalize(g, i, x, state, -1, layer.eps, False, affine, affine and layer.bias)


def _rescale(g: _Graph, layer: Rescale, i: int, x: str, state: dict) -> str:
    shift, scale = (g.constant(f"{i}.{k}", state[f"{i}.{k}"]) for k in layer.buffer_names)
    return g.node("Div", [g.node("Sub", [x, shift], f"{i}.centered"), scale],
                  f"{i}.{type(layer).__name__.lower()}")


def _plain(op: str) -> Callable:
    """A layer that is one ONNX operator without attributes (Softmax: over the last axis)."""
    attributes = {"axis": -1} if op == "Softmax" else {}

    def emit(g: _Graph, layer: Optional[Layer], i: int, x: str, state: dict) -> str:
        return g.node(op, [x], f"{i}.{op.lower()}", **attributes)
    return emit


def _dropout(g: _Graph, layer: Dropout, i: int, x: str, state: dict) -> str:
    return x  # the identity at inference


# layer class -> the function that adds its operators
ONNX_LAYERS: dict[type[Layer], Callable[..., str]] = {
    Dense: _dense, ReLU: _plain("Relu"), LeakyReLU: _leaky_relu, ELU: _elu, GELU: _gelu,
    SiLU: _silu, Sigmoid: _plain("Sigmoid"), Tanh: _plain("Tanh"), Softplus: _softplus,
    Softmax: _plain("Softmax"), Dropout: _dropout, BatchNorm1d: _batch_norm,
    LayerNorm: _layer_norm, Standardize: _rescale, MinMaxScale: _rescale}


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install "
                          "'steepest[onnx]' (or pip install onnx)") from None
    return onnx


def check_output(layers: list[Layer], output: str) -> None:
    if not isinstance(output, str) or output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    last = next((layer for layer in reversed(layers) if not isinstance(layer, Dropout)), None)
    if output != "logits" and isinstance(last, (Softmax, Sigmoid)):
        raise ValueError(f"output={output!r} but the model already ends with {last!r}: "
                         "use output='logits'")


def build(layers: list[Layer], state: dict[str, np.ndarray], dtype: np.dtype, in_features: int,
          out_features: int, opset: int = DEFAULT_OPSET, output: str = "logits") -> Any:
    """The onnx.ModelProto of a stack of layers with the arrays of its state_dict."""
    onnx = _onnx()
    newest = onnx.defs.onnx_opset_version()
    opset = _checks.integer(opset, "opset", low=MIN_OPSET)
    if opset > newest:
        raise ValueError(f"opset must be at most {newest} (the newest the installed onnx "
                         f"{onnx.__version__} knows), got {opset}")
    check_output(layers, output)
    nbytes = sum(np.asarray(a).nbytes for a in state.values())
    if nbytes > _MAX_PROTO_BYTES:
        raise ValueError(f"the model's {nbytes:,} bytes of weights exceed the 2 GiB an ONNX "
                         "file holds")
    g = _Graph(onnx, dtype, opset)
    x = "input"
    for i, layer in enumerate(layers):
        emit = ONNX_LAYERS.get(type(layer))
        if emit is None:
            raise ValueError(f"layer {i} ({layer!r}) has no ONNX export")
        x = emit(g, layer, i, x, state)
    if output != "logits":  # probabilities from the logits, as one more layer would give them
        x = _plain(output.capitalize())(g, None, len(layers), x, state)
    assert g.nodes[-1].output[0] == x  # the last node added gives the model's output
    g.nodes[-1].output[0] = "output"
    elem = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    graph = onnx.helper.make_graph(
        g.nodes, "steepest", [onnx.helper.make_tensor_value_info("input", elem,
                                                                 ["batch", in_features])],
        [onnx.helper.make_tensor_value_info("output", elem, ["batch", out_features])],
        g.initializers)
    opsets = [onnx.helper.make_opsetid("", opset)]
    model = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="steepest",
                                   producer_version=__version__,
                                   doc_string=f"steepest {__version__} model, output: {output}")
    # The oldest IR version the opset allows, so older runtimes read the file too.
    model.ir_version = onnx.helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(model)
    return model


def export(model: Any, path: Union[str, "os.PathLike[str]"], opset: int = DEFAULT_OPSET,
           output: str = "logits") -> None:
    """Writes `model` (a Sequential) as an ONNX file at path, atomically."""
    proto = build(model.layers, model.state_dict(copy=True), model.dtype, model.in_features,
                  model.out_features, opset=opset, output=output)
    data = proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data))
