"""The native model file: what ``model.save(path)`` writes and ``st.load(path)`` reads.

A steepest archive (see steepest.archive) of format "steepest.model":

- the header: ``{"format": "steepest.model", "version": 1, "dtype": "float32" | "float64",
  "seed": int, "in_features": 784, "layers": [{"type": "Dense", "in_features": 784,
  "out_features": 128, "bias": true, "init": "torch_default"}, {"type": "ReLU"},
  {"type": "BatchNorm1d", "num_features": 128, "eps": 1e-05, "momentum": 0.1, "affine": true,
  "track_running_stats": true}, {"type": "Dropout", "p": 0.2}, ...]}`` (``model.config()``
  plus the format's name and version; files without "in_features" take it from the layers);
  a classifier trained on labels adds ``"classes": {"dtype": "<U3", "shape": [3]}`` (the
  declaration of the array below) and a multi-label one ``"multilabel": true``;
- ``"written_by": "steepest 0.1.0"``, and ``"metadata"``: ``model.metadata``, a JSON object of
  notes kept with the model (the command line's training summary and class labels), when
  not empty;
- one array per entry of ``model.state_dict()`` ("0.weight", "0.bias", "2.running_mean",
  "2.num_batches_tracked", ...): parameters and buffers with the model's dtype, counts as
  int64, all with torch's shapes;
- "classes": the label of each output (numbers, booleans or fixed-width unicode strings),
  when the model has classes_.

Reading checks every array's shape against the architecture the header declares before it
reads any data. Building the model from what was read is ``steepest.model.load``'s part.
The same archive, as bytes, is what pickling a model holds (``to_bytes``).
"""
from __future__ import annotations

import os
import re

import numpy as np

from ._checks import as_dtype, buffer_memory
from ._version import __version__
from .archive import FORMAT_VERSION, archive_bytes, read_archive, write_archive
from .layers import layer_from_config, state_table

MODEL_FORMAT = "steepest.model"
CLASSES = "classes"  # the array of class labels
# The dtypes class labels may have (booleans, numbers, strings; no Python objects), as text.
_LABEL_DTYPE = re.compile(r"[<>|=]?(b1|[iuf][1248]|U[1-9][0-9]{0,5})")


def model_header(model) -> dict:
    header = {"format": MODEL_FORMAT, "version": FORMAT_VERSION,
              "written_by": f"steepest {__version__}", **model.config()}
    if model.metadata:
        header["metadata"] = model.metadata
    return header


def pack(model, **extra) -> tuple:
    """(header, arrays) of model's file, the parameters of one moment between two steps;
    extra: more header entries."""
    header = {**model_header(model), **extra}
    arrays = model.state_dict(copy=True)
    if model.classes_ is not None:  # the array itself, so its dtype survives
        arrays[CLASSES] = model.classes_
        header["classes"] = {"dtype": model.classes_.dtype.str,
                             "shape": list(model.classes_.shape)}
    return header, arrays


def save(model, path) -> None:
    """Writes model's architecture, parameters and buffers to path, atomically; the state of
    one moment between two steps, also while another thread trains the model."""
    write_archive(path, *pack(model))


def to_bytes(model, **extra) -> bytes:
    """The bytes of model's file (extra: more header entries); read() takes them back."""
    return archive_bytes(*pack(model, **extra))


def read(source):
    """(header, {array name: array}) of a model file (a path, or bytes from to_bytes), every
    array checked against the architecture in its header. header["classes"] becomes the
    array of class labels (or None)."""
    name = "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source)
    header, arrays = read_archive(source, MODEL_FORMAT,
                                  lambda header: declared_shapes(header, name))
    header["classes"] = arrays.pop(CLASSES, None)
    return header, arrays


def metadata(header: dict, path="") -> dict:
    """The metadata a header holds ({} when none), checked to be a JSON object."""
    notes = header.get("metadata", {})
    if not isinstance(notes, dict):
        raise ValueError(f"{path}: metadata in header is not a JSON object")
    return notes


def declared_shapes(header: dict, path="") -> dict:
    """{name: (shape, dtype)} of the arrays a header declares (parameters, buffers and counts
    of its architecture, classes), validated, without allocating the model (so sizes are
    checked against the file first)."""
    try:
        table = state_table([layer_from_config(c) for c in header["layers"]],
                            header.get("in_features"))
        dtype = as_dtype(header["dtype"])
        n = sum(slot.size for slot in table)
        buffer_memory(2 * n * dtype.itemsize, f"a model of {n:,} parameters and buffers")
    except (KeyError, TypeError, ValueError, MemoryError) as e:
        raise ValueError(f"{path}: bad architecture in header: {e}") from None
    shapes = {slot.name: (slot.shape, np.dtype(np.int64) if slot.store == "counts" else dtype)
              for slot in table}
    if header.get("classes") is not None:
        shapes[CLASSES] = _classes_declaration(header["classes"], path)
    return shapes


def _classes_declaration(spec, path) -> tuple:
    try:
        text, shape = spec["dtype"], tuple(int(d) for d in spec["shape"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: bad classes declaration {spec!r} ({e})") from None
    # The dtype text is matched first: numpy's dtype parser never sees anything else.
    if not (isinstance(text, str) and _LABEL_DTYPE.fullmatch(text)) or len(shape) != 1:
        raise ValueError(f"{path}: classes must be a 1-D array of numbers, booleans or "
                         f"strings, got dtype {text!r} and shape {shape}")
    dtype = np.dtype(text)
    return shape, dtype
