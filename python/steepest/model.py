"""Sequential models: build once, then train step by step or with fit().

The model owns the core network (``_net``); with steepest.optim it is the only Python code
that touches the binding objects. Everything else goes through its public methods: flat
views of the buffers, the random generator's state, every layer's output, per-layer gradient
norms, and the trainer's entry points (check_data, train_epoch, evaluate_checked).

A classifier keeps the labels it was trained on (``classes_``, see steepest.labels), so that
predict_classes returns them; pickling, copy.deepcopy and joblib go through the model file's
bytes (steepest.saving), never through pickled objects.
"""
from __future__ import annotations

import collections
import math
import os
import warnings
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import (_checks, _core, data, labels, onnx_export, safetensors_format, saving,
               torch_bridge, training)
from .callbacks import Callback
from .errors import check_step
from .layers import (Dense, FeatureMoments, Layer, Rescale, Sigmoid, Softmax, layer_config,
                     layer_from_config, layer_specs, set_statistics, state_table)
from .losses import (LOSSES, BinaryCrossEntropy, CrossEntropy, Loss, check_loss, sigmoid,
                     softmax)
from .optim import Optimizer, check_optimizer, clip_threshold
from .parameter import Parameter

_CORE_LOSSES = frozenset(LOSSES.values())  # losses whose targets are exactly the core's rules
_NETWORKS = {"float32": _core.Network32, "float64": _core.Network64}
PathLike = Union[str, "os.PathLike[str]"]  # a file name


class Sequential:
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

    def _note_training_loss(self, loss) -> None:
        """Before training with loss: remembers a multi-label model and warns (once per loss
        type) when a Sigmoid or Softmax feeds a loss that applies it itself."""
        if loss.classification:
            self.multilabel = isinstance(loss, BinaryCrossEntropy) and self.out_features > 1
        if type(loss) in self._losses_seen:
            return
        self._losses_seen.add(type(loss))
        if loss.classification and self._ends_with_probabilities():
            inner = "softmax" if isinstance(loss, CrossEntropy) else "sigmoid"
            warnings.warn(
                f"the model ends with {type(self.layers[-1]).__name__}, but "
                f"{type(loss).__name__} takes logits and applies the {inner} itself, so "
                "training sees it twice and learns badly: remove the last layer "
                "(predict_proba gives probabilities)", UserWarning, stacklevel=3)

    def _ends_with_probabilities(self) -> bool:
        return isinstance(self.layers[-1], (Sigmoid, Softmax))

    # -- parameters -------------------------------------------------------------------------
    def parameters(self) -> list[Parameter]:
        return list(self._params)

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        return [(p.name, p) for p in self._params]

    def num_parameters(self) -> int:
        return self._net.num_params

    def zero_grad(self) -> None:
        self._net.grads[...] = 0

    def flat_params(self) -> np.ndarray:
        """The flat parameter buffer (num_parameters(),): a zero-copy view, writable; every
        p.data is a piece of it (see p.offset)."""
        return self._net.params

    def flat_grads(self) -> np.ndarray:
        """The flat gradient buffer, laid out as flat_params(): a zero-copy view, writable."""
        return self._net.grads

    def flat_buffers(self) -> np.ndarray:
        """The flat store of buffers (model dtype: BatchNorm's running statistics, Standardize's
        mean and std, ...): a zero-copy view, writable; the optimizer never touches it."""
        return self._net.buffers

    def flat_counts(self) -> np.ndarray:
        """The flat store of int64 counts (num_batches_tracked, the samples a Standardize layer
        learned from): a zero-copy view, writable."""
        return self._net.counts

    @property
    def rng_state(self) -> list[int]:
        """The state of the model's random generator (dropout masks, fit's shuffling), as a
        list of integers; assign a saved one to replay the same draws."""
        return self._net.rng_state

    @rng_state.setter
    def rng_state(self, state: Sequence[int]) -> None:
        self._net.rng_state = state

    def grad_norms(self) -> list[float]:
        """Per Dense layer, ||(dL/dW, dL/db)||_2 of the gradients now in the flat buffer (as
        fit's history "grad_norm" measures it)."""
        return [math.sqrt(sq) for sq in self._net.measure_grads()]

    def layer_outputs(self, x: ArrayLike) -> list[np.ndarray]:
        """Every layer's output for x (N, in_features) in eval mode (dropout off, BatchNorm's
        running statistics): one new (N, width) array per layer. It reuses the core's activation
        buffers, so a backward() needs a new forward(training=True) after it."""
        self._require_adapted()
        return self._net.layer_outputs(_checks.features(x, "x", self.in_features, self.dtype))

    def named_buffers(self) -> list[tuple[str, np.ndarray]]:
        """[(name, array)] of the state that is not trained, as torch's named_buffers():
        BatchNorm1d's running_mean, running_var (model dtype) and num_batches_tracked (int64,
        0-d), Standardize's mean, std and count, ...: zero-copy views the optimizer never
        touches."""
        params = {p.name for p in self._params}
        return [(k, v) for k, v in self._state.items() if k not in params]

    def buffers(self) -> list[np.ndarray]:
        return [v for _, v in self.named_buffers()]

    def state_dict(self, copy: bool = False) -> dict[str, np.ndarray]:
        """{"0.weight": array, "0.bias": array, "1.running_mean": array, ...}: every parameter
        and buffer with torch's keys, order and shapes; zero-copy views of the live stores, or
        with copy=True copies of the model between two steps, also while another thread trains
        it (the copy waits for its next step boundary; copying the views then would mix two
        steps)."""
        if not copy:
            return dict(self._state)
        stores = dict(zip(("params", "buffers", "counts"), self._net.copy_state()))
        return {slot.name: stores[slot.store][slot.offset:slot.offset + slot.size]
                .reshape(slot.shape) for slot in self._slots}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copies arrays (numpy, or anything np.asarray takes, e.g. torch tensors) in place, all
        at once: every key of state_dict() must be there (parameters and buffers, as torch's
        strict load). Nothing is copied unless all of them pass the checks; refused
        (RuntimeError) while another thread trains or predicts."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        if set(state) != set(self._state):
            missing = sorted(set(self._state) - set(state))
            extra = sorted(set(state) - set(self._state))
            raise ValueError(f"state keys do not match: missing {missing}, unexpected {extra}")
        scales = {f"{i}.{self.layers[i].buffer_names[1]}" for i, _ in self._rescales}
        arrays = {name: _state_value(name, state[name], view, positive=name in scales)
                  for name, view in self._state.items()}
        stores = {"params": np.empty_like(self.flat_params()),  # all checked first: nothing
                  "buffers": np.empty_like(self.flat_buffers()),  # half-loaded
                  "counts": np.empty_like(self.flat_counts())}
        for slot in self._slots:
            stores[slot.store][slot.offset:slot.offset + slot.size] = arrays[slot.name].ravel()
        self._net.write_state(stores["params"], stores["buffers"], stores["counts"])

    def adapt(self, X: ArrayLike, only_unadapted: bool = False,
              chunk_rows: Optional[int] = None) -> Sequential:
        """Learns the statistics of every Standardize / MinMaxScale layer from X (N,
        in_features), each on the data as it reaches that layer (the layers before it in eval
        mode), reading X in chunks of rows (a memory-mapped X is fine); in float64, stored in
        the model's dtype. only_unadapted skips layers that have statistics already (fit's
        automatic adapt). Returns the model."""
        for i, count in self._rescales:
            if only_unadapted and count > 0:
                continue
            layer = self.layers[i]
            moments = None
            for rows in self._float64_chunks(X, chunk_rows):
                if i > 0:  # the input of layer i: the output of layer i - 1
                    x = np.ascontiguousarray(rows, dtype=self.dtype)
                    rows = np.asarray(self._net.layer_outputs(x)[i - 1], dtype=np.float64)
                if moments is None:
                    moments = FeatureMoments(rows.shape[1])
                moments.update(rows)
            shift, scale = (self._state[f"{i}.{name}"] for name in layer.buffer_names)
            set_statistics((shift, scale, count), *layer.shift_scale(moments), moments.count)
        return self

    def _float64_chunks(self, X, chunk_rows):
        """X (N, in_features), an array, a memory map or .npy shards, as checked float64
        chunks of rows."""
        shards = data.shards_of(X, "X")
        if shards is None:
            yield from _checks.float64_chunks(X, "X", self.in_features, chunk_rows)
            return
        for _, part, name in shards.chunks():
            yield from _checks.float64_chunks(part, name, self.in_features, chunk_rows)

    def _require_adapted(self) -> None:
        """Refuses to run a model with a Standardize / MinMaxScale layer that has no
        statistics yet."""
        for i, count in self._rescales:
            if count == 0:
                raise RuntimeError(
                    f"layer {i} ({self.layers[i]!r}) has not learned its statistics yet: call "
                    "model.adapt(X) with training data (fit does it at its start), or load "
                    "them (load_state_dict, st.load)")

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

    def check_data(self, X: ArrayLike, y: ArrayLike, loss: Loss,
                   names: tuple[str, str] = ("X", "y"),
                   training: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) validated and converted once for this model and loss: C-contiguous arrays of
        the model's dtype (int64 class indices for CrossEntropy; labels are mapped through
        classes_). Errors name the arguments `names`. With training (the data to train on),
        labels that are not class indices set classes_, and the loss is checked against the
        last layer. A memory map or a list of .npy paths is validated a chunk at a time and
        returned as steepest.data.Shards, read in place (converted per batch): its labels
        must be class indices. train_epoch and evaluate_checked take data from here and check
        nothing again."""
        X = self._features(X, names[0])
        classes = self._classes
        if training:
            self._note_training_loss(loss)
        shards = data.shards_of(y, names[1])
        if shards is not None:
            if classes is not None and loss.classification:
                raise ValueError(f"{names[1]} is read in place, so it must hold class indices, "
                                 "but this model maps its labels through classes_: pass "
                                 f"{names[1]} as an array in memory")
            return X, data.validate(shards, lambda rows, name: loss.targets(
                rows, len(rows), self.out_features, self.dtype, name), names[1], len(X))
        if training and classes is None and loss.classification:
            classes = loss.learn_classes(y, self.out_features, names[1])
        y = loss.targets(y, len(X), self.out_features, self.dtype, names[1], classes)
        if classes is not None:
            self.classes_ = classes
        return X, y

    def _features(self, X, name):
        """X converted once, or Shards of a memory map / .npy list validated in chunks."""
        shards = data.shards_of(X, name)
        if shards is None:
            return _checks.features(X, name, self.in_features, self.dtype)
        return data.validate(shards, lambda rows, part: _checks.features(
            rows, part, self.in_features, self.dtype), name)

    def train_step(self, x: ArrayLike, y: ArrayLike, loss: Loss, optimizer: Optimizer,
                   clip_grad_norm: Optional[float] = None, *,
                   sample_weight: Optional[ArrayLike] = None) -> float:
        """zero_grad + forward + loss + backward + optimizer step in one C++ call; returns the
        loss. sample_weight (N,): the loss is then sum_i w_i l_i / sum_i w_i (see
        steepest.losses). Raises TrainingDiverged, without updating, if the loss or gradients
        are not finite."""
        check_loss(loss)
        check_optimizer(optimizer, self)
        if self._rescales:
            self._require_adapted()
        clip = clip_threshold(clip_grad_norm)
        self._note_training_loss(loss)
        if (self._classes is not None or not (type(x) is np.ndarray and type(y) is np.ndarray
                                              and type(loss) in _CORE_LOSSES)):
            x, y = self.check_data(x, y, loss, ("x", "y"), training=True)
        w = _checks.sample_weight(sample_weight, "sample_weight", len(x) if x.ndim else 0)
        # The core checks the batch by its rules first (the one implementation of them) and
        # runs the step only when it passes; otherwise convert (labels that are not class
        # indices: through classes_, learnt here), or raise naming x and y.
        check, status, value = self._net.train_step(x, y, loss._spec, optimizer._impl, clip, w)
        if not check.ok:
            x, y = self.check_data(x, y, loss, ("x", "y"), training=True)
            check, status, value = self._net.train_step(x, y, loss._spec, optimizer._impl, clip,
                                                         w)
        self._last = None  # the core's forward state now belongs to this step
        check_step(status, loss=value)
        return value

    # -- the whole loop ---------------------------------------------------------------------
    def fit(self, X: ArrayLike, y: ArrayLike, *, loss: Loss, optimizer: Optimizer,
            epochs: int = 1, batch_size: Optional[int] = 32, shuffle: bool = True,
            validation_data: Optional[tuple[ArrayLike, ArrayLike]] = None,
            validation_split: Optional[float] = None,
            callbacks: Sequence[Callback] = (), verbose: int = 1,
            clip_grad_norm: Optional[float] = None, checkpoint: Optional[PathLike] = None,
            diagnostics: bool = False, distributed: Any = None,
            sample_weight: Optional[ArrayLike] = None,
            class_weight: Union[None, str, dict[Any, float]] = None
            ) -> dict[str, list[Any]]:
        """Trains for `epochs` passes over (X, y); each epoch is one C++ call with the GIL
        released.

        batch_size=None is (full) batch gradient descent: one update per epoch from the whole
        data set; batch_size=1 is stochastic gradient descent: one update per sample;
        anything between is mini-batch gradient descent.

        validation_data=(X_val, y_val) (or (X_val, y_val, sample_weight_val)) is evaluated
        after every epoch; validation_split=0.1 instead holds out the last tenth of (X, y) (and
        of sample_weight) for it, before any shuffling (as Keras).

        sample_weight (N,): each row's weight, >= 0; every batch's loss is then sum_i w_i l_i
        / sum_i w_i over its rows (scikit-learn's MLP and Keras's convention), the weights
        shuffled with their rows. class_weight: "balanced" (n_samples / (n_classes *
        count(class)), scikit-learn's, counting sample weights) or {class: weight} (classes
        left out weigh 1), for CrossEntropy with class labels or a one-output
        BinaryCrossEntropy with two classes: multiplies each row's sample weight by its
        class's weight. The history's accuracy stays the unweighted fraction of rows.
        verbose: 0 silent, 1 a progress bar (see steepest.progress), 2 a line per epoch.

        Returns the history (also kept as ``model.history``): per epoch "loss", "val_loss"
        (with validation data), "accuracy"/"val_accuracy" (classification), "lr", "time"
        (seconds) and "grad_norm" (per Dense layer, the mean L2 norm of its gradient over the
        epoch's steps: the vanishing/exploding-gradient signal). diagnostics=True adds, per
        epoch, weight norms, update-to-weight ratios, the first/last layer gradient ratio, the
        fraction of dead ReLU and saturated sigmoid/tanh units (see steepest.diagnostics), and
        warns (GradientWarning) when gradients vanish or explode.

        Failure modes: a non-finite loss or gradient raises TrainingDiverged with the model as
        after the last finite step (an update that would overflow a parameter restores the
        state of the epoch's start). Ctrl-C stops between two steps and re-raises
        KeyboardInterrupt; ``model.history`` keeps the finished epochs. With checkpoint=path
        the whole training state is written atomically after every epoch, and a later fit
        with the same model, optimizer, loss, data and batch size resumes from it and ends
        with bitwise the same weights as an uninterrupted run. The checkpoint's folder is
        checked before the first step, and temporaries of a checkpoint write killed in an
        earlier run are removed. Resuming restores the model, optimizer, random generator,
        epoch, history and the state of every callback the checkpoint has; callbacks that
        steer training (EarlyStopping, schedules, custom ones with state) must be the same
        as in the checkpoint's run, loggers and other observers may be added (they start
        fresh) or dropped (see steepest.checkpoint).

        X and y may be memory maps or lists of .npy paths, read in place (steepest.data).
        distributed=True (run under mpiexec or srun): data-parallel over the MPI ranks, each
        rank training on its share of every global batch of batch_size rows, the gradients
        summed before every update; see steepest.distributed.
        """
        return training.fit(self, X, y, loss=loss, optimizer=optimizer, epochs=epochs,
                            batch_size=batch_size, shuffle=shuffle,
                            validation_data=validation_data,
                            validation_split=validation_split, callbacks=callbacks,
                            verbose=verbose, clip_grad_norm=clip_grad_norm,
                            checkpoint=checkpoint, diagnostics=diagnostics,
                            distributed=distributed, sample_weight=sample_weight,
                            class_weight=class_weight)

    def train_epoch(self, X: np.ndarray, y: np.ndarray, loss: Loss, optimizer: Optimizer,
                    batch_size: int, shuffle: bool = True, clip: float = 0.0,
                    progress: Optional[Callable[[int, int, float], None]] = None,
                    group: Any = None,
                    on_step: Optional[Callable[[int, float], None]] = None,
                    sample_weight: Optional[np.ndarray] = None,
                    order: Optional[np.ndarray] = None) -> dict[str, Any]:
        """One epoch of train_step over (X, y) from check_data (the core checks their shapes,
        types and label range again, not their values), in batches of batch_size (the rows
        shuffled by the model's generator, or in `order`: N row indices), in one C++ call with
        the GIL released; clip: clip_grad_norm's threshold (0: off); progress: None or a
        function called as progress(steps, samples, mean loss) between steps, at most every
        50 ms; on_step: None or a function called as on_step(step, loss) after every step
        (fit's per-batch callbacks: it may change the optimizer, not the model; what it raises
        ends the epoch after that step); sample_weight: one weight per row, from
        check_sample_weight. fit's loop calls it; it stops at the first non-finite loss or
        gradient, or at Ctrl-C (within a step: the step is abandoned). Returns the core's
        record: "loss" (mean), "steps", "samples", "correct", "status" (the core's
        StepStatus), "bad_loss", "grad_norms" (per Dense layer, mean over the steps), "error"
        (the exception a signal or the sum raised, or None), "sum_seconds" and "sum_error".
        X and y may be steepest.data.Shards (read in place). group (a
        steepest.distributed.Group of several ranks): data-parallel, this process trains on
        its share of every global batch of batch_size rows and the gradients are summed over
        the group before each update ("sum_seconds": the time in those sums, "sum_error": the
        exception a failed sum raised, or None); it takes no sample weights and no l2
        penalty."""
        if order is not None:
            order = np.asarray(order)
            if (order.dtype != np.int64 or order.shape != (len(X),) or
                    not np.array_equal(np.sort(order), np.arange(len(X)))):
                raise ValueError("order must be a permutation of the rows (int64)")
            order = np.ascontiguousarray(order)
        self._last = None  # backward() needs a new forward() after training
        parts = [d.parts if isinstance(d, data.Shards) else d for d in (X, y)]
        parallel = {} if group is None or group.size == 1 else {
            "rank": group.rank, "size": group.size,
            "sum": group.in_place_sum(self._net.reduce_buffer), "stop": group.stop_requested}
        return self._net.train_epoch(*parts, batch_size, bool(shuffle), loss._spec,
                                     optimizer._impl, clip, progress, on_step=on_step,
                                     weights=sample_weight, order=order, **parallel)

    def check_sample_weight(self, sample_weight, n_samples: int, name="sample_weight"):
        """sample_weight as train_epoch and loss_and_grad take it: None, or (N,) float64,
        finite, non-negative, not all zero."""
        return _checks.sample_weight(sample_weight, name, n_samples)

    def loss_and_grad(self, X, y, loss, sample_weight=None, training: bool = False) -> float:
        """The loss on the whole of (X, y) (from check_data; sample_weight from
        check_sample_weight), its l2 penalty included, with its gradient in flat_grads()
        (overwritten): one C++ call, no update. The objective of full-batch optimizers such
        as L-BFGS. Dropout is active when training."""
        self._last = None
        return self._net.gradient(X, y, loss._spec, sample_weight, bool(training))

    @property
    def float64_sums(self) -> bool:
        """Whether training sums the weight and bias gradients over the rows in float64
        (rounded once): the gradient then depends neither on the order of the rows nor on
        whether a row of sample weight k stands for k copies of itself. Off by default; the
        weight-gradient products take about 2.5x as long."""
        return self._net.float64_sums

    @float64_sums.setter
    def float64_sums(self, on: bool) -> None:
        self._net.float64_sums = bool(on)

    # -- inference --------------------------------------------------------------------------
    def predict(self, X: ArrayLike) -> np.ndarray:
        """Outputs (N, out_features) for X (N, in_features); dropout off. Thread-safe: runs
        with the GIL released and may be called from many threads at once. A memory map or a
        list of .npy paths is read a chunk at a time."""
        self._require_adapted()
        shards = data.shards_of(X, "X")
        if shards is None:
            return self._net.infer(_checks.features(X, "X", self.in_features, self.dtype))
        if not len(shards):
            raise ValueError("X is empty: it has no samples")
        out = np.empty((len(shards), self.out_features), self.dtype)
        for first, rows, name in shards.chunks():
            out[first:first + len(rows)] = self._net.infer(
                _checks.features(rows, name, self.in_features, self.dtype))
        return out

    def predict_classes(self, X: ArrayLike) -> np.ndarray:
        """Predicted labels (N,): the largest output's index, or for one output the sign of
        its logit (0 or 1), mapped through classes_ when the model has them. A multi-label
        model (trained with BinaryCrossEntropy on several outputs) gives 0/1 per output
        (N, outputs). A model ending in Softmax or Sigmoid is thresholded at 0.5."""
        out = self.predict(X)
        threshold = 0.5 if self._ends_with_probabilities() else 0.0
        if self.out_features == 1:
            index = (out[:, 0] > threshold).astype(np.int64)
        elif self.multilabel:
            return (out > threshold).astype(np.int64)
        else:
            index = out.argmax(axis=1)
        return index if self._classes is None else self._classes[index]

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Probabilities from the outputs, which are logits for CrossEntropy and
        BinaryCrossEntropy: the softmax over the outputs (N, C) of a multi-class model; the
        sigmoid of each output (N, outputs) for one output (the positive class's probability,
        as torch.sigmoid gives it) and for a multi-label model. A model ending in Softmax or
        Sigmoid already outputs probabilities: they are returned as they are."""
        out = self.predict(X)
        if self._ends_with_probabilities():
            return out
        return sigmoid(out) if self.out_features == 1 or self.multilabel else softmax(out)

    def evaluate(self, X: ArrayLike, y: ArrayLike, loss: Loss,
                 sample_weight: Optional[ArrayLike] = None) -> dict[str, float]:
        """{"loss": mean loss (weighted by sample_weight when given, see steepest.losses),
        "accuracy": fraction correct (classification losses, unweighted: the largest logit at
        the label for CrossEntropy, rows with its ignore_index left out; every logit on the
        target's side of 0 for BinaryCrossEntropy)}."""
        check_loss(loss)
        self._require_adapted()
        X, y = self.check_data(X, y, loss)
        sample_weight = _checks.sample_weight(sample_weight, "sample_weight", len(X))
        return self.evaluate_checked(X, y, loss, sample_weight)

    def evaluate_checked(self, X: np.ndarray, y: np.ndarray, loss: Loss,
                         sample_weight: Optional[np.ndarray] = None) -> dict[str, float]:
        """evaluate() on (X, y) as check_data returns them and sample_weight as
        check_sample_weight does: nothing is checked again (fit's validation data, checked
        once before the first epoch)."""
        return self.evaluation(self.evaluate_sums(X, y, loss, sample_weight), loss)

    def evaluate_sums(self, X: np.ndarray, y: np.ndarray, loss: Loss,
                      sample_weight: Optional[np.ndarray] = None,
                      rows: Optional[tuple[int, int]] = None) -> dict[str, float]:
        """The sums an evaluation of rows [start, stop) = rows (all by default) adds up, so
        that the sums of several shares (processes) give the whole's (see evaluation):
        "loss" (the loss times its weight), "weight" (the rows, or their weights as the loss
        counts them), "correct" and "scored" (classification: rows right, rows counted)."""
        start, stop = rows if rows is not None else (0, len(X))
        sums = {"loss": 0.0, "weight": 0.0, "correct": 0, "scored": 0}
        first = start  # the pieces are consecutive rows
        for xs, ys in data.pieces(X, y, start, stop):  # one piece for arrays in memory
            first += len(xs)
            if not len(xs):
                continue
            ws = None if sample_weight is None else sample_weight[first - len(xs):first]
            out = self._net.infer(np.ascontiguousarray(xs, dtype=self.dtype))
            ys = loss.targets(ys, len(ys), self.out_features, self.dtype)
            value, _, weight = _core.loss_forward(loss._spec, out, ys, ws)
            sums["loss"] += value * weight
            sums["weight"] += weight
            if loss.classification:
                sums["correct"] += int(np.count_nonzero(loss.correct(out, ys)))
                sums["scored"] += loss.scored(ys)
        return sums

    @staticmethod
    def evaluation(sums: dict[str, float], loss: Loss) -> dict[str, float]:
        """{"loss": mean loss, "accuracy": fraction correct (classification)} from
        evaluate_sums's sums."""
        result = {"loss": sums["loss"] / sums["weight"] if sums["weight"] > 0 else 0.0}
        if loss.classification:
            result["accuracy"] = sums["correct"] / max(sums["scored"], 1)
        return result

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


def _state_value(name: str, value: Any, view: np.ndarray, positive: bool) -> np.ndarray:
    """value (an array, or a torch tensor) checked to replace the state entry `name` whose
    zero-copy view is `view`: same shape, finite numbers; a count is a non-negative integer;
    with positive (a Standardize/MinMaxScale scale, which divides), every value is > 0."""
    what = f"state[{name!r}]"
    value = _checks.numeric(value.detach() if hasattr(value, "detach") else value, what)
    if value.shape != view.shape:
        raise ValueError(f"{what} has shape {value.shape}, expected {view.shape}")
    _checks.check_finite(value, what)
    if view.dtype.kind == "i" and (value != np.round(value) or value < 0):
        raise ValueError(f"{what} must be a non-negative integer count, got {value}")
    if positive and not (value > 0).all():
        raise ValueError(f"{what} must be positive: it divides the features")
    return value
