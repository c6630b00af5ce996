"""Parameter: one weight or bias of a model, as zero-copy views of the model's flat buffers."""
from __future__ import annotations

import weakref
from typing import Any

import numpy as np


class Parameter:
    """A weight or bias of a model. ``data`` and ``grad`` are zero-copy numpy views of the C++
    buffers: the optimizer updates ``data`` in place, backward fills ``grad``.

    Built by the model from a slot of its size table (layer, name, offset, shape, size; see
    steepest.layers.state_table): ``params`` and ``grads`` are the model's flat buffers.
    """

    def __init__(self, model: Any, slot: Any, params: np.ndarray, grads: np.ndarray) -> None:
        # A weak reference: model -> parameter -> model would be a cycle, and the model's
        # buffers would wait for the cyclic garbage collector instead of going with the model.
        self._model = weakref.ref(model)
        self.layer, self.name, self.offset, self.shape = slot.layer, slot.name, slot.offset, \
            slot.shape
        self.size = slot.size
        self.data = params[self.offset:self.offset + self.size].reshape(self.shape)
        self.grad = grads[self.offset:self.offset + self.size].reshape(self.shape)

    @property
    def model(self) -> Any:
        model = self._model()
        if model is None:
            raise ReferenceError(f"the model of parameter {self.name!r} no longer exists")
        return model

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.shape}, dtype={self.data.dtype})"
