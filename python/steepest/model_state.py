"""A model's state: parameters, buffers, counts and the random generator (part of the model).

``Sequential`` inherits ``ModelState``; the constructor (steepest.model) builds what it reads:
``_net`` (the core network), ``_params`` (the Parameters), ``_slots`` (the size table's rows)
and ``_state`` (every named array as a zero-copy view of the flat stores), ``_rescales``
(the Standardize / MinMaxScale layers and their counts). Here: parameters() and the flat
views, the random generator's state, per-layer gradient norms and outputs, torch's
state_dict / load_state_dict protocol (a copy at a step boundary, a load checked whole
before anything is written), and adapt(), which fills the preprocessing layers' statistics.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from . import _checks, data
from .layers import FeatureMoments, set_statistics
from .parameter import Parameter

_Model = TypeVar("_Model", bound="ModelState")


class ModelState:
    """The parameters and state of a built Sequential (see the module's notes)."""

    _net: Any  # the core network: steepest._core.Network32 or Network64
    _params: list  # [Parameter], in state_dict order
    _slots: list  # the size table's rows (steepest.layers.state_table)
    _state: dict  # {name: zero-copy view} of every parameter, buffer and count
    _rescales: list  # [(layer index, its count view)] of Standardize / MinMaxScale

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

    def adapt(self: _Model, X: ArrayLike, only_unadapted: bool = False,
              chunk_rows: Optional[int] = None) -> _Model:
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
