"""The native model file: what ``model.save(path)`` writes and ``st.load(path)`` reads.

A steepest archive (see steepest.archive) of format "steepest.model":

- the header: ``{"format": "steepest.model", "version": 1, "dtype": "float32" | "float64",
  "seed": int, "layers": [{"type": "Dense", "in_features": 784, "out_features": 128,
  "bias": true, "init": "torch_default"}, {"type": "ReLU"}, {"type": "Dropout", "p": 0.2},
  ...]}`` (``model.config()`` plus the format's name and version);
- ``"written_by": "steepest 0.1.0"``, and ``"metadata"``: ``model.metadata``, a JSON object of
  notes kept with the model (the command line's training summary and class labels), when
  not empty;
- one array per parameter, named as in ``model.state_dict()`` ("0.weight", "0.bias", ...),
  with the model's dtype and torch's shapes.

Reading checks every array's shape against the architecture the header declares before it
reads any data. Building the model from what was read is ``steepest.model.load``'s part.
"""
from __future__ import annotations

from ._checks import as_dtype, buffer_memory
from ._version import __version__
from .archive import FORMAT_VERSION, read_archive, write_archive
from .layers import layer_from_config, parameter_table

MODEL_FORMAT = "steepest.model"


def model_header(model) -> dict:
    header = {"format": MODEL_FORMAT, "version": FORMAT_VERSION,
              "written_by": f"steepest {__version__}", **model.config()}
    if model.metadata:
        header["metadata"] = model.metadata
    return header


def save(model, path) -> None:
    """Writes model's architecture and parameters to path, atomically; the parameters of one
    moment between two steps, also while another thread trains the model."""
    write_archive(path, model_header(model), model.state_dict(copy=True))


def read(path):
    """(header, {parameter name: array}) of a model file, every array checked against the
    architecture in its header."""
    return read_archive(path, MODEL_FORMAT, lambda header: declared_shapes(header, path))


def metadata(header: dict, path="") -> dict:
    """The metadata a header holds ({} when none), checked to be a JSON object."""
    notes = header.get("metadata", {})
    if not isinstance(notes, dict):
        raise ValueError(f"{path}: metadata in header is not a JSON object")
    return notes


def declared_shapes(header: dict, path="") -> dict:
    """{name: (shape, dtype)} of the parameters a header's architecture declares, validated,
    without allocating the model (so sizes are checked against the file first)."""
    try:
        table = parameter_table([layer_from_config(c) for c in header["layers"]])
        dtype = as_dtype(header["dtype"])
        n = sum(slot.size for slot in table)
        buffer_memory(2 * n * dtype.itemsize, f"a model of {n:,} parameters")
    except (KeyError, TypeError, ValueError, MemoryError) as e:
        raise ValueError(f"{path}: bad architecture in header: {e}") from None
    return {slot.name: (slot.shape, dtype) for slot in table}
