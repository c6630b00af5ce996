"""Sequential models: build once, then train step by step or with fit()."""
from __future__ import annotations

import os
import time
import weakref

import numpy as np

from . import _checks, _core
from . import checkpoint as _checkpoint
from .callbacks import Callback, ConsoleLogger, ProgressBar
from .diagnostics import Diagnostics
from .errors import TrainingDiverged
from .layers import Dense, Layer, layer_config
from .losses import LOSSES, Loss
from .optim import Optimizer

_FAST_LOSSES = frozenset(LOSSES.values())  # losses whose targets the core can validate
_NETWORKS = {"float32": _core.Network32, "float64": _core.Network64}
_OPTIMIZERS = {"float32": _core.Optimizer32, "float64": _core.Optimizer64}


class Parameter:
    """A weight or bias of a model. ``data`` and ``grad`` are zero-copy numpy views of the C++
    buffers: the optimizer updates ``data`` in place, backward fills ``grad``."""

    def __init__(self, model, name: str, offset: int, shape: tuple):
        # A weak reference: model -> parameter -> model would be a cycle, and the model's
        # buffers would wait for the cyclic garbage collector instead of going with the model.
        self._model = weakref.ref(model)
        self.name, self.offset, self.shape = name, offset, shape
        self.size = int(np.prod(shape))
        self.data = model._net.params[offset:offset + self.size].reshape(shape)
        self.grad = model._net.grads[offset:offset + self.size].reshape(shape)

    @property
    def model(self):
        model = self._model()
        if model is None:
            raise ReferenceError(f"the model of parameter {self.name!r} no longer exists")
        return model

    def __repr__(self):
        return f"Parameter({self.name!r}, shape={self.shape}, dtype={self.data.dtype})"


class Sequential:
    """A stack of layers trained by backpropagation and gradient descent.

        model = st.Sequential(st.Dense(64, 32), st.ReLU(), st.Dense(32, 10), seed=0)

    dtype: "float32" (default) or "float64". seed: initial weights, dropout masks and
    shuffling all come from it (None draws one at random; see ``model.seed``).
    """

    def __init__(self, *layers: Layer, dtype="float32", seed=None):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        if not layers:
            raise ValueError("layers is empty: a model needs at least one Dense layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} must be a steepest layer, got {layer!r}")
        if not any(isinstance(layer, Dense) for layer in layers):
            raise ValueError("a model needs at least one Dense layer")
        self.layers = list(layers)
        self.dtype = _checks.as_dtype(dtype)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % 2**63)
        self.seed = _checks.integer(seed, "seed", low=0)
        n_params = sum(layer.out_features * (layer.in_features + layer.bias)
                       for layer in self.layers if isinstance(layer, Dense))
        _checks.buffer_memory(2 * n_params * self.dtype.itemsize,
                              f"a model of {n_params:,} parameters (values and gradients)")
        self._net = _NETWORKS[self.dtype.name](self._specs(), self.seed)
        self._params = []
        for i, s in enumerate(self._net.layers):
            if s.kind == _core.LayerKind.Dense:
                self._params.append(Parameter(self, f"{i}.weight", s.weight_offset,
                                              (s.out_features, s.in_features)))
                if s.bias:
                    self._params.append(Parameter(self, f"{i}.bias", s.bias_offset,
                                                  (s.out_features,)))
        self._last = None  # (input, output shape) of the last forward, kept for backward
        self.history = None
        self.stop_training = False

    def _specs(self):
        """Core layer specs; elementwise layers take the width of what they follow."""
        width = next(layer.in_features for layer in self.layers if isinstance(layer, Dense))
        specs = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Dense):
                if layer.in_features != width:
                    raise ValueError(f"layer {i} ({layer!r}) expects {layer.in_features} "
                                     f"features but the layer before it gives {width}")
                width = layer.out_features
            specs.append(layer.spec(width))
        return specs

    @property
    def in_features(self) -> int:
        return self._net.layers[0].in_features

    @property
    def out_features(self) -> int:
        return self._net.layers[-1].out_features

    def _core_optimizer(self, config, ranges):
        return _OPTIMIZERS[self.dtype.name](config, ranges)

    # -- parameters -------------------------------------------------------------------------
    def parameters(self) -> list:
        return list(self._params)

    def named_parameters(self) -> list:
        return [(p.name, p) for p in self._params]

    def num_parameters(self) -> int:
        return self._net.num_params

    def zero_grad(self) -> None:
        self._net.grads[...] = 0

    def state_dict(self) -> dict:
        """{"0.weight": array, "0.bias": array, ...}: zero-copy views, torch's keys and shapes."""
        return {p.name: p.data for p in self._params}

    def load_state_dict(self, state: dict) -> None:
        """Copies arrays (numpy, or anything np.asarray takes, e.g. torch tensors) in place."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        expected = {p.name for p in self._params}
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise ValueError(f"state keys do not match: missing {missing}, unexpected {extra}")
        arrays = {}
        for p in self._params:
            value = np.asarray(state[p.name].detach() if hasattr(state[p.name], "detach")
                               else state[p.name])
            if value.shape != p.shape:
                raise ValueError(f"state[{p.name!r}] has shape {value.shape}, expected {p.shape}")
            arrays[p.name] = _checks.numeric(value, f"state[{p.name!r}]")
            _checks.check_finite(arrays[p.name], f"state[{p.name!r}]")
        for p in self._params:  # all checked first: nothing half-loaded
            p.data[...] = arrays[p.name]

    # -- the two algorithms, one step at a time ---------------------------------------------
    def forward(self, x, training: bool = False) -> np.ndarray:
        """Forward propagation: x (N, in_features) -> a new array (N, out_features). With
        training=True dropout is active; backward() then backpropagates through this pass."""
        x = _checks.features(x, "x", self.in_features, self.dtype)
        out = self._net.forward(x, bool(training))
        self._last = (x, out.shape)
        return out

    __call__ = forward

    def backward(self, grad) -> None:
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

    def _check_optimizer(self, loss, optimizer):
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be a steepest loss (st.losses.*), got {loss!r}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a steepest optimizer (st.optim.*), got "
                            f"{optimizer!r}")
        if optimizer.model is not self:
            raise ValueError("optimizer was built for another model's parameters")

    def _data(self, X, y, loss, names=("X", "y")):
        X = _checks.features(X, names[0], self.in_features, self.dtype)
        return X, loss.targets(y, X.shape[0], self.out_features, self.dtype, names[1])

    def train_step(self, x, y, loss, optimizer, clip_grad_norm=None) -> float:
        """zero_grad + forward + loss + backward + optimizer step in one C++ call; returns the
        loss. Raises TrainingDiverged, without updating, if the loss or gradients are not
        finite."""
        self._check_optimizer(loss, optimizer)
        status = "unchecked"
        if (clip_grad_norm is None and type(x) is np.ndarray and type(y) is np.ndarray
                and type(loss) in _FAST_LOSSES):
            # Fast path: arrays that need no conversion are validated by the core in one pass
            # (shapes, dtypes, finiteness, label range); anything else takes the path below.
            status, value = self._net.train_step_checked(x, y, loss._spec, optimizer._impl, 0.0)
            if status != "unchecked":
                self._last = None  # the core's forward state now belongs to this step
        if status == "unchecked":
            x, y = self._data(x, y, loss, ("x", "y"))
            clip = _clip(clip_grad_norm)
            self._last = None  # the core's forward state now belongs to this step
            status, value = self._net.train_step(x, y, loss._spec, optimizer._impl, clip)
        if status != "ok":
            raise TrainingDiverged(status, loss=value)
        return value

    # -- the whole loop ---------------------------------------------------------------------
    def fit(self, X, y, *, loss, optimizer, epochs: int = 1, batch_size=32, shuffle=True,
            validation_data=None, callbacks=(), verbose: int = 1, clip_grad_norm=None,
            checkpoint=None, diagnostics: bool = False) -> dict:
        """Trains for `epochs` passes over (X, y); each epoch is one C++ call with the GIL
        released.

        batch_size=None is (full) batch gradient descent: one update per epoch from the whole
        data set; batch_size=1 is stochastic gradient descent: one update per sample;
        anything between is mini-batch gradient descent.

        Returns the history (also kept as ``model.history``): per epoch "loss", "val_loss"
        (with validation_data), "accuracy"/"val_accuracy" (classification), "lr", "time"
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
        with bitwise the same weights as an uninterrupted run.
        """
        self._check_optimizer(loss, optimizer)
        X, y = self._data(X, y, loss)
        epochs = _checks.integer(epochs, "epochs", low=0)
        batch = X.shape[0] if batch_size is None else _checks.integer(batch_size, "batch_size",
                                                                      low=1)
        val = None
        if validation_data is not None:
            if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            val = self._data(*validation_data, loss, ("validation_data[0]",
                                                      "validation_data[1]"))
        clip = _clip(clip_grad_norm)
        user_callbacks = list(callbacks or ())
        for cb in user_callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be steepest callbacks, got {cb!r}")
        if diagnostics:  # first, so that user callbacks (CSVLogger, ...) see its entries
            user_callbacks.insert(0, Diagnostics(X))
        callbacks = user_callbacks + _reporters(_checks.integer(verbose, "verbose", low=0),
                                                epochs)
        run = None
        if checkpoint is not None:
            checkpoint = os.fspath(checkpoint)
            run = _checkpoint.fingerprint(self, optimizer, loss, X, y, batch, shuffle, clip)

        history = {"loss": [], "lr": [], "time": [], "grad_norm": []}
        if loss.classification:
            history["accuracy"] = []
        if val is not None:
            history["val_loss"] = []
            if loss.classification:
                history["val_accuracy"] = []
        self.history = history
        self.stop_training = False
        for cb in callbacks:
            cb.on_train_begin(self, optimizer)
        first = 0
        if checkpoint is not None and os.path.exists(checkpoint):
            state = _checkpoint.load(checkpoint, self, optimizer, user_callbacks, run)
            first, self.stop_training = state["epoch"], state["finished"]
            history.clear()
            history.update(state["history"])
        try:
            for epoch in range(first, epochs):
                if self.stop_training:
                    break
                logs = self._fit_epoch(epoch, X, y, batch, shuffle, loss, optimizer, clip, val)
                for cb in callbacks:  # callbacks may add entries (diagnostics) to logs
                    cb.on_epoch_end(epoch, logs)
                for key, value in logs.items():
                    history.setdefault(key, [None] * epoch).append(value)
                if checkpoint is not None:
                    _checkpoint.save(checkpoint, self, optimizer, user_callbacks, epoch + 1,
                                     history, run, finished=self.stop_training)
        except BaseException:
            for cb in callbacks:
                cb.on_train_abort()
            raise
        for cb in callbacks:
            cb.on_train_end()
        return history

    def _fit_epoch(self, epoch, X, y, batch, shuffle, loss, optimizer, clip, val) -> dict:
        """One epoch in C++; returns its logs or raises (divergence, Ctrl-C)."""
        start = time.perf_counter()
        lr = optimizer.lr
        saved = optimizer._snapshot(), self._net.rng_state
        self._last = None  # backward() needs a new forward() after training
        stats = self._net.train_epoch(X, y, batch, bool(shuffle), loss._spec, optimizer._impl,
                                      clip)
        if stats["error"] is not None:  # Ctrl-C: the model is as after the last step
            raise stats["error"]
        if not np.isfinite(self._net.params).all():
            # Finite gradients, but an update overflowed: back to the epoch's start.
            optimizer._restore(saved[0])
            self._net.rng_state = saved[1]
            raise TrainingDiverged("non-finite parameter after an update (overflow); the "
                                   "state of the epoch's start was restored", epoch=epoch,
                                   step=stats["steps"], loss=stats["loss"])
        if stats["status"] != "ok":
            raise TrainingDiverged(stats["status"], epoch=epoch, step=stats["steps"],
                                   loss=stats["bad_loss"])
        logs = {"loss": stats["loss"], "lr": lr, "time": time.perf_counter() - start,
                "grad_norm": stats["grad_norms"]}
        if loss.classification:  # counted during the epoch, before each update
            logs["accuracy"] = stats["correct"] / max(stats["samples"], 1)
        if val is not None:
            logs.update({"val_" + k: v for k, v in self._evaluate(*val, loss).items()})
        return logs

    # -- inference --------------------------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        """Outputs (N, out_features) for X (N, in_features); dropout off. Thread-safe: runs
        with the GIL released and may be called from many threads at once."""
        return self._net.infer(_checks.features(X, "X", self.in_features, self.dtype))

    def predict_classes(self, X) -> np.ndarray:
        return self.predict(X).argmax(axis=1)

    def evaluate(self, X, y, loss) -> dict:
        """{"loss": mean loss, "accuracy": fraction correct (classification losses)}."""
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be a steepest loss (st.losses.*), got {loss!r}")
        return self._evaluate(*self._data(X, y, loss), loss)

    def _evaluate(self, X, y, loss):
        out = self._net.infer(X)
        result = {"loss": _core.loss_forward(loss._spec, out, y)[0]}
        if loss.classification:
            result["accuracy"] = float(np.mean(out.argmax(axis=1) == y))
        return result

    # -- description ------------------------------------------------------------------------
    def config(self) -> dict:
        return {"layers": [layer_config(layer) for layer in self.layers],
                "dtype": self.dtype.name, "seed": self.seed}

    def __repr__(self):
        lines = [f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers)]
        return "Sequential(\n" + "\n".join(lines) + f"\n)  # {self.dtype.name}, " \
            f"{self.num_parameters():,} parameters"

    def summary(self) -> str:
        """A table of layers, output shapes and parameter counts (also printed)."""
        rows = [("#", "layer", "output shape", "params")]
        for i, (layer, s) in enumerate(zip(self.layers, self._net.layers)):
            n = s.in_features * s.out_features + (s.out_features if s.bias else 0) \
                if s.kind == _core.LayerKind.Dense else 0
            rows.append((str(i), repr(layer), f"(N, {s.out_features})", f"{n:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + f"  {{:>{widths[-1]}}}"
        text = "\n".join([fmt.format(*rows[0]), "-" * (sum(widths) + 6)] +
                         [fmt.format(*r) for r in rows[1:]] +
                         [f"total: {self.num_parameters():,} parameters ({self.dtype.name}, "
                          f"{self.num_parameters() * self.dtype.itemsize:,} bytes)"])
        print(text)
        return text

    def save(self, path) -> None:
        """Writes architecture and parameters (see steepest.io); atomic."""
        from .io import save

        save(self, path)


def _reporters(verbose: int, epochs: int) -> list:
    """The console callbacks for fit's verbose level: 0 none, 1 progress bar, 2 a line each."""
    if verbose == 1:
        return [ProgressBar(epochs)]
    return [ConsoleLogger()] if verbose >= 2 else []


def _clip(clip_grad_norm) -> float:
    if clip_grad_norm is None:
        return 0.0
    return _checks.real(clip_grad_norm, "clip_grad_norm", low=0.0, low_open=True)
