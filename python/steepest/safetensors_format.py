"""Weights as .safetensors: what ``model.save_safetensors(path)`` writes and
``st.load_safetensors(path)`` / ``model.load_safetensors(path)`` read.

A safetensors file holds the model's state_dict (torch's keys and shapes, so
``safetensors.torch.load_file`` fills the matching ``torch.nn.Sequential`` with
``strict=True``) and, in its string metadata, ``"steepest"``: the native format's JSON header
(``model.config()``, format name and version, see steepest.saving) plus ``"crc32"``, a
checksum per tensor, and ``"steepest.crc32"``, the checksum of that JSON text: the
safetensors layout has none of its own. Reading refuses what the native
format refuses: foreign or newer files, truncated or corrupted ones, tensors missing,
unexpected or of the wrong shape or dtype; every shape is checked before any data is read.
Files without steepest metadata (written by PyTorch) load into a model built by the caller.

The safetensors package is an optional extra, imported on use. It writes files readable only
by their owner and not atomically, so its bytes go through steepest's atomic writer.
"""
from __future__ import annotations

import json
import os
import zlib
from typing import Any, Optional, Union

import numpy as np

from .archive import atomic_write, check_header, check_names
from .saving import MODEL_FORMAT, declared_shapes, model_header

METADATA_KEY = "steepest"
METADATA_CRC_KEY = "steepest.crc32"
# safetensors dtype names -> numpy's
_SAFETENSORS_DTYPES = {"F16": "float16", "F32": "float32", "F64": "float64", "I8": "int8",
                       "I16": "int16", "I32": "int32", "I64": "int64", "U8": "uint8",
                       "BOOL": "bool"}


def _safetensors() -> Any:
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise ImportError("safetensors files need the safetensors package: pip install "
                          "'steepest[safetensors]' (or pip install safetensors)") from None
    return safetensors


def save(model: Any, path: Union[str, "os.PathLike[str]"]) -> None:
    """Writes model's state_dict and architecture to path as safetensors, atomically."""
    safetensors = _safetensors()
    # between two steps, also while another thread trains; np.require keeps a count's shape ()
    # (ascontiguousarray would make it (1,))
    arrays = {name: np.require(a, requirements="C")
              for name, a in model.state_dict(copy=True).items()}
    header = {**model_header(model), "crc32": {n: zlib.crc32(a.data) for n, a in arrays.items()}}
    text = json.dumps(header)
    metadata = {"format": "pt",  # torch's keys and layout: what safetensors tools look for
                METADATA_KEY: text, METADATA_CRC_KEY: str(zlib.crc32(text.encode()))}
    data = safetensors.numpy.save(arrays, metadata=metadata)
    atomic_write(path, lambda f: f.write(data))


def read(path: Union[str, "os.PathLike[str]"]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, {name: array}) of a file save() wrote: the architecture and every tensor
    checked against it."""
    return _read(path, None)


def read_weights(path: Union[str, "os.PathLike[str]"],
                 shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """{name: array} of any safetensors file whose tensors are exactly `shapes` ({name:
    shape}); their dtypes are the file's, checked by the caller."""
    return _read(path, shapes)[1]


def _read(path: Union[str, "os.PathLike[str]"],
          shapes: Optional[dict[str, tuple[int, ...]]]) -> tuple[Any, dict[str, np.ndarray]]:
    safetensors = _safetensors()
    path = os.fspath(path)
    try:
        with safetensors.safe_open(path, framework="np") as f:
            header = _header(f.metadata() or {}, path)
            if shapes is None:
                if header is None:
                    raise ValueError(f"{path} has no steepest architecture in its metadata: "
                                     "build the model and call model.load_safetensors(path)")
                wanted = declared_shapes(header, path)
            else:
                wanted = {name: (shape, None) for name, shape in shapes.items()}
            check_names(f.keys(), wanted, path)
            for name, (shape, dtype) in wanted.items():
                _check_tensor(f.get_slice(name), name, shape, dtype, path)
            arrays = {name: f.get_tensor(name) for name in wanted}
    except safetensors.SafetensorError as e:
        raise ValueError(f"{path} is truncated, corrupted or not a safetensors file: {e}") \
            from None
    checksums = header.get("crc32", {}) if header else {}
    for name, a in arrays.items():
        if name in checksums and zlib.crc32(a.data) != checksums[name]:
            raise ValueError(f"{path}: tensor {name!r} is corrupted (checksum mismatch)")
    return header, arrays


def _header(metadata: dict[str, str], path: str) -> Optional[dict[str, Any]]:
    """The steepest header in a file's metadata, checked (None if it has none)."""
    if METADATA_KEY not in metadata:
        return None
    text = metadata[METADATA_KEY]
    if metadata.get(METADATA_CRC_KEY) != str(zlib.crc32(text.encode())):
        raise ValueError(f"{path}: steepest metadata is corrupted (checksum mismatch)")
    try:
        header = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: steepest metadata is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: steepest metadata is not a JSON object")
    check_header(header, MODEL_FORMAT, path)
    if not isinstance(header.get("crc32", {}), dict):
        raise ValueError(f"{path}: steepest metadata has bad checksums")
    return header


def _check_tensor(tensor: Any, name: str, shape: tuple[int, ...], dtype: Any, path: str) -> None:
    got_dtype = tensor.get_dtype()
    if got_dtype not in _SAFETENSORS_DTYPES:
        raise ValueError(f"{path}: tensor {name!r} has dtype {got_dtype}, which numpy does not "
                         "hold: save it as float32 or float64")
    if dtype is not None and _SAFETENSORS_DTYPES[got_dtype] != np.dtype(dtype).name:
        raise ValueError(f"{path}: tensor {name!r} has dtype {got_dtype}, expected "
                         f"{np.dtype(dtype)}")
    if tuple(tensor.get_shape()) != tuple(shape):
        raise ValueError(f"{path}: tensor {name!r} has shape {tuple(tensor.get_shape())}, "
                         f"expected {tuple(shape)}")
