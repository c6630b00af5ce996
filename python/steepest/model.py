"""Sequential models: build once, then train step by step or with fit().

``Sequential`` builds the core network (``_net``) and is put together from its parts, one
responsibility a module, the way Keras's Model inherits its Trainer:

- steepest.model_state: parameters, flat views, state_dict / load_state_dict, adapt;
- steepest.model_training: check_data, train_step, fit (into steepest.training),
  train_epoch, loss_and_grad;
- steepest.model_inference: predict, predict_classes, predict_proba, evaluate;
- here: the constructor, modes, class labels, forward / backward, the description, pickling,
  the files and bridges (save, safetensors, ONNX, torch) and load, load_safetensors,
  from_torch.

These modules and steepest.optim are the only Python code that touches the binding objects.
Everything else goes through the model's public methods: flat views of the buffers, the
random generator's state, every layer's output, per-layer gradient norms, and the trainer's
entry points (check_data, train_epoch, evaluate_checked).

A classifier keeps the labels it was trained on (``classes_``, see steepest.labels), so that
predict_classes returns them; pickling, copy.deepcopy and joblib go through the model file's
bytes (steepest.saving), never through pickled objects.
"""
from __future__ import annotations

import collections
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _checks, _core, labels, onnx_export, safetensors_format, saving, torch_bridge
from .archive import PathLike
from .layers import (Dense, Layer, Rescale, Sigmoid, Softmax, layer_config, layer_from_config,
                     layer_specs, state_table)
from .model_inference import ModelInference
from .model_state import ModelState
from .model_training import ModelTraining
from .parameter import Parameter

_NETWORKS = {"float32": _core.Network32, "float64": _core.Network64}


class Sequential(ModelState, ModelTraining, ModelInference):
    """A stack of layers trained by backpropagation and gradient descent.

        model = st.Sequential(st.Dense(64, 32), st.ReLU(), st.Dense(32, 10), seed=0)

    dtype: "float32" (default) or "float64". seed: initial weights, dropout masks and
    shuffling all come from it (None draws one at random; see ``model.seed``).
    initialize=False, for parameters loaded right after (as st.load does): they start at zero
    and no initial weights are computed, yet the random generator skips their draws, so the
    model then trains exactly like one built with its initial weights and given the same
    parameters.

    Classification: with CrossEntropy (or BinaryCrossEntropy) the targets may be class indices
    0..C-1 (used as they are, as in torch) or any labels scikit-learn takes (strings,
    booleans, {1, 2, 3}, integral floats): training on such labels sets ``classes_``, the
    label of each output, and predict_classes returns labels. The losses take logits:
    predict_proba gives probabilities.
    """

    def __init__(self, *layers: Layer, dtype: DTypeLike = "float32",
                 seed: Optional[int] = None, initialize: bool = True,
                 in_features: Optional[int] = None) -> None:
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        if not layers:
            raise ValueError("layers is empty: a model needs at least one layer")
        self.layers = []
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} must be a steepest layer, got {layer!r}")
            self.layers.append(layer)
            if isinstance(layer, Dense) and layer.activation is not None:
                self.layers.append(layer.activation)  # Dense(..., activation=...), as Keras
        self.dtype = _checks.as_dtype(dtype)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % 2**63)
        self.seed = _checks.integer(seed, "seed", low=0)
        specs = layer_specs(self.layers, in_features)
        table = state_table(self.layers, in_features)
        sizes = collections.Counter()
        for slot in table:
            sizes[slot.store] += slot.size
        _checks.buffer_memory((2 * sizes["params"] + sizes["buffers"]) * self.dtype.itemsize,
                              f"a model of {sizes['params']:,} parameters (values and "
                              "gradients)")
        if not isinstance(initialize, bool):
            raise TypeError(f"initialize must be True or False, got {initialize!r}")
        self._net = _NETWORKS[self.dtype.name](specs, self.seed, initialize)
        stores = {"params": self._net.params, "buffers": self._net.buffers,
                  "counts": self._net.counts}
        self._params = [Parameter(self, slot, stores["params"], self._net.grads)
                        for slot in table if slot.store == "params"]
        # every named array, zero-copy: parameters' data, buffers and counts (0-d), torch's
        # state_dict order
        self._slots = table
        self._state = {slot.name: stores[slot.store][slot.offset:slot.offset + slot.size]
                       .reshape(slot.shape) for slot in table}
        self._rescales = []  # (layer index, its count view) of Standardize / MinMaxScale
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Rescale):
                shift, scale = (self._state[f"{i}.{name}"] for name in layer.buffer_names)
                layer.attach(shift, scale, self._state[f"{i}.count"])
                self._rescales.append((i, self._state[f"{i}.count"]))
        self._last = None  # (input, output shape) of the last forward, kept for backward
        self._classes = None
        self.multilabel = False  # trained with BinaryCrossEntropy on several outputs
        self._losses_seen = set()  # loss types checked against the last layer (a warning once)
        self.history = None
        self.stop_training = False
        self.training = False  # forward's default mode: see train() / eval()
        # JSON-able notes saved with the model (the command line keeps its task and training
        # summary here)
        self.metadata = {}

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index) -> Layer:
        """The layer at index, as torch's nn.Sequential (its parameters: named "{index}.weight"
        and "{index}.bias" in parameters() and state_dict())."""
        if isinstance(index, slice):
            raise TypeError("a model cannot be sliced into a model that shares its weights: "
                            "model.layers[a:b] gives the layers, st.Sequential(*model.layers"
                            "[a:b]) a new model of them (new weights)")
        return self.layers[index]

    def train(self, mode: bool = True) -> Sequential:
        """Sets forward()'s default mode, as torch's module.train(): training (dropout active,
        BatchNorm normalizing with batch statistics and updating its running ones) or, with
        mode=False, eval. fit and train_step (always training) and predict (always eval) do
        not depend on it. A new model starts in eval mode (forward's default before modes)."""
        if not isinstance(mode, bool):
            raise TypeError(f"mode must be True or False, got {mode!r}")
        self.training = mode
        return self

    def eval(self) -> Sequential:
        """train(False): forward() runs in eval mode (dropout off, BatchNorm's running
        statistics), as torch's eval()."""
        return self.train(False)

    @property
    def in_features(self) -> int:
        return self._net.layers[0].in_features

    @property
    def out_features(self) -> int:
        return self._net.layers[-1].out_features

    # -- class labels -----------------------------------------------------------------------
    @property
    def classes_(self):
        """The label of each output (a read-only 1-D array; for one output, [negative,
        positive]), or None: the outputs' indices are the labels. Set by training on labels
        that are not class indices; may be set by hand before training."""
        return self._classes

    @classes_.setter
    def classes_(self, classes) -> None:
        if classes is None:
            self._classes = None
            return
        classes = labels.as_classes(classes, "classes_")
        expected = 2 if self.out_features == 1 else self.out_features
        if classes.size != expected:
            raise ValueError(f"classes_ must hold {expected} labels for a model with "
                             f"{self.out_features} output{'s' * (self.out_features > 1)}, "
                             f"got {classes.size}")
        self._classes = classes

    def _ends_with_probabilities(self) -> bool:
        return isinstance(self.layers[-1], (Sigmoid, Softmax))

    # -- the two algorithms, one step at a time ---------------------------------------------
    def forward(self, x: ArrayLike, training: Optional[bool] = None) -> np.ndarray:
        """Forward propagation: x (N, in_features) -> a new array (N, out_features). With
        training=True dropout is active and BatchNorm normalizes with the batch's statistics
        (and updates its running ones); backward() then backpropagates through this pass.
        training=None takes the mode train() / eval() set (eval for a new model)."""
        self._require_adapted()
        x = _checks.features(x, "x", self.in_features, self.dtype)
        out = self._net.forward(x, self.training if training is None else bool(training))
        self._last = (x, out.shape)
        return out

    __call__ = forward

    def backward(self, grad: ArrayLike) -> None:
        """Backpropagation: grad = d(loss)/d(output) of the last forward, shape (N, outputs).
        Adds d(loss)/d(parameter) to every p.grad (call zero_grad between steps, as in torch)."""
        if self._last is None:
            raise RuntimeError("call forward(x, training=True) before backward(grad)")
        grad = np.asarray(grad)
        if grad.shape != self._last[1]:
            raise ValueError(f"grad has shape {grad.shape} but the last forward output has "
                             f"shape {self._last[1]}")
        grad = np.ascontiguousarray(_checks.numeric(grad, "grad"), dtype=self.dtype)
        _checks.check_finite(grad, "grad")
        self._net.backward(grad, True)

    # -- description ------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """A JSON-able description: layers, in_features, dtype, seed, and a classifier's
        "classes" (a list) and "multilabel" when it has them."""
        config = {"layers": [layer_config(layer) for layer in self.layers],
                  "in_features": self.in_features, "dtype": self.dtype.name, "seed": self.seed}
        if self._classes is not None:
            config["classes"] = self._classes.tolist()
        if self.multilabel:
            config["multilabel"] = True
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], initialize: bool = True) -> Sequential:
        """An untrained model of the architecture config() describes, with its classes
        (initialize: as in the constructor)."""
        model = cls(*[layer_from_config(c) for c in config["layers"]], dtype=config["dtype"],
                    seed=config["seed"], initialize=initialize,
                    in_features=config.get("in_features"))
        model._set_labels(config)
        return model

    def _set_labels(self, config: dict) -> None:
        self.classes_ = config.get("classes")
        self.multilabel = bool(config.get("multilabel", False))

    # -- pickling, copy.deepcopy, joblib: the bytes of the model file -------------------------
    def __getstate__(self) -> dict:
        """The model file's bytes (architecture, parameters, classes) with the random
        generator's state and the history: no pickled object, so unpickling runs no code
        besides this class's."""
        data = saving.to_bytes(self, rng_state=self.rng_state, history=self.history)
        return {saving.MODEL_FORMAT: data}

    def __setstate__(self, state: dict) -> None:
        header, arrays = saving.read(state[saving.MODEL_FORMAT])
        self._build(header, arrays, "<bytes>")
        self.rng_state = header["rng_state"]
        self.history = header["history"]

    def _build(self, header: dict, arrays: dict, source) -> None:
        """(Re)initializes this model from what saving.read returned."""
        try:
            Sequential.__init__(self, *[layer_from_config(c) for c in header["layers"]],
                                dtype=header["dtype"], seed=header["seed"], initialize=False,
                                in_features=header.get("in_features"))
            self._set_labels(header)
        except MemoryError as e:  # the architecture is sound (saving.read checked it)
            size = sum(a.nbytes for a in arrays.values())
            raise MemoryError(f"{source}: not enough memory for the model it holds "
                              f"({size / 2**20:,.1f} MiB of parameters, twice that with "
                              f"gradients): {e}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{source}: bad architecture in header: {e}") from None
        self.load_state_dict(arrays)
        self.metadata = saving.metadata(header, source)

    def __repr__(self) -> str:
        lines = [f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers)]
        return "Sequential(\n" + "\n".join(lines) + f"\n)  # {self.dtype.name}, " \
            f"{self.num_parameters():,} parameters"

    def summary(self) -> str:
        """A table of layers, output shapes and parameter counts (also printed)."""
        rows = [("#", "layer", "output shape", "params")]
        counts = collections.Counter()
        for p in self._params:
            counts[p.layer] += p.size
        for i, (layer, s) in enumerate(zip(self.layers, self._net.layers)):
            rows.append((str(i), repr(layer), f"(N, {s.out_features})", f"{counts[i]:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + f"  {{:>{widths[-1]}}}"
        buffers = sum(v.size for v in self.buffers())
        text = "\n".join([fmt.format(*rows[0]), "-" * (sum(widths) + 6)] +
                         [fmt.format(*r) for r in rows[1:]] +
                         [f"total: {self.num_parameters():,} parameters ({self.dtype.name}, "
                          f"{self.num_parameters() * self.dtype.itemsize:,} bytes)" +
                          (f" and {buffers:,} buffer values" if buffers else "")])
        print(text)
        return text

    def save(self, path: PathLike) -> None:
        """Writes architecture, parameters, buffers and metadata (see steepest.saving),
        atomically; the state as it is between two steps (also while another thread trains the
        model)."""
        saving.save(self, path)

    # -- deploy and share -------------------------------------------------------------------
    def save_safetensors(self, path: PathLike) -> None:
        """Writes the state_dict as a .safetensors file with the architecture in its metadata
        (see steepest.safetensors_format); atomic. Needs the safetensors package."""
        safetensors_format.save(self, path)

    def load_safetensors(self, path: PathLike) -> None:
        """Copies the tensors of a .safetensors file into this model, like load_state_dict:
        a file save_safetensors wrote, or weights saved from the matching torch model
        (``safetensors.torch.save_file(torch_model.state_dict(), path)``)."""
        shapes = {name: a.shape for name, a in self.state_dict().items()}
        self.load_state_dict(safetensors_format.read_weights(path, shapes))

    def export_onnx(self, path: PathLike, opset: int = onnx_export.DEFAULT_OPSET,
                    output: str = "logits") -> None:
        """Writes the model as an ONNX graph (input "input" (batch, in_features), output
        "output", the model's dtype), atomically; output="softmax" or "sigmoid" appends that
        function to the outputs. See steepest.onnx_export for the operators. Needs onnx."""
        self._require_adapted()
        onnx_export.export(self, path, opset=opset, output=output)

    def to_torch(self) -> Any:
        """A torch.nn.Sequential with this architecture and a copy of the weights (Dense is
        Linear; the same state_dict keys), in training mode like any new torch module: call
        .eval() for inference. Needs torch."""
        return torch_bridge.to_torch(self.layers, self.state_dict(copy=True), self.dtype)


def _from_file(header: dict[str, Any], arrays: dict[str, np.ndarray], path: PathLike) -> Sequential:
    """The model a file's header describes, holding the file's arrays."""
    model = Sequential.__new__(Sequential)
    model._build(header, arrays, path)
    return model


def load(path: PathLike) -> Sequential:
    """Reads a model written by save(): same architecture, bit-identical parameters and
    buffers, the same classes_."""
    header, arrays = saving.read(path)
    return _from_file(header, arrays, path)


def load_safetensors(path: PathLike) -> Sequential:
    """Reads a model written by save_safetensors(): same architecture, bit-identical
    parameters. Needs the safetensors package."""
    header, arrays = safetensors_format.read(path)
    return _from_file(header, arrays, path)


def from_torch(module: Any, *, seed: Optional[int] = None) -> Sequential:
    """The steepest model equivalent to a torch.nn.Sequential of Linear, activation, Softmax
    and Dropout modules (nested Sequentials flattened), with a copy of its weights, in the
    dtype of its parameters (float32 or float64). A module steepest cannot map raises a
    ValueError naming it. Needs torch."""
    layers, state, dtype = torch_bridge.from_torch(module)
    model = Sequential(*layers, dtype=dtype, seed=seed, initialize=False)
    model.load_state_dict(state)
    return model


