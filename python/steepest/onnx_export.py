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
- GELU: 0.5 x (1 + Erf(x / sqrt(2))), the exact form; SiLU: x * Sigmoid(x);
- Softplus: Where(x > 20, x, Softplus(x)), torch's threshold;
- Dropout: nothing (inference).

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
from .layers import (ELU, GELU, Dense, Dropout, Layer, LeakyReLU, ReLU, Sigmoid, SiLU, Softmax,
                     Softplus, Tanh)

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Softmax over one axis, Gemm with an optional bias
OUTPUTS = ("logits", "softmax", "sigmoid")
_MAX_PROTO_BYTES = 2**31 - 2**20  # protobuf's 2 GiB limit, with room for the graph itself


class _Graph:
    """Nodes and initializers of an ONNX graph under construction, in one dtype."""

    def __init__(self, onnx: Any, dtype: np.dtype) -> None:
        self.onnx, self.dtype = onnx, dtype
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
    erf = g.node("Erf", [g.node("Mul", [x, g.constant(f"{i}.sqrt1_2", math.sqrt(0.5))],
                                f"{i}.scaled")], f"{i}.erf")
    half_x = g.node("Mul", [x, g.constant(f"{i}.half", 0.5)], f"{i}.half_x")
    return g.node("Mul", [half_x, g.node("Add", [erf, g.constant(f"{i}.one", 1.0)],
                                         f"{i}.one_plus_erf")], f"{i}.gelu")


def _silu(g: _Graph, layer: SiLU, i: int, x: str, state: dict) -> str:
    return g.node("Mul", [x, g.node("Sigmoid", [x], f"{i}.sigmoid")], f"{i}.silu")


def _softplus(g: _Graph, layer: Softplus, i: int, x: str, state: dict) -> str:
    linear = g.node("Greater", [x, g.constant(f"{i}.threshold", 20.0)], f"{i}.linear")
    return g.node("Where", [linear, x, g.node("Softplus", [x], f"{i}.log1p_exp")],
                  f"{i}.softplus")


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
    Softmax: _plain("Softmax"), Dropout: _dropout}


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
    g = _Graph(onnx, dtype)
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
    proto = build(model.layers, model.state_dict(), model.dtype, model.in_features,
                  model.out_features, opset=opset, output=output)
    data = proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data))
