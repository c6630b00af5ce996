"""The container of every steepest file (models, checkpoints), format version 1.

A file is a zip archive of .npy arrays (numpy's .npz layout, so any numpy can read it) that
never holds pickled objects: ``__steepest__``, a uint8 array holding a UTF-8 JSON header with
at least ``{"format": kind, "version": 1}``, and named numeric arrays.

Writing is atomic (a temporary file in the same folder, flushed, fsynced, then renamed over
the target), so a crash leaves either the old file or the new one. Reading checks the format
name and version, the declared shape of every array against what the caller expects and
against the bytes actually present before reading any data, and the zip's checksums;
anything else is a ValueError. Reading never executes code.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

FORMAT_VERSION = 1
HEADER = "__steepest__"
_MAX_HEADER_BYTES = 1 << 24


def write_archive(path, header: dict, arrays: dict) -> None:
    """Atomically writes header (JSON-able) and named arrays to path."""
    text = json.dumps(header, default=_json_default)
    payload = {HEADER: np.frombuffer(text.encode(), dtype=np.uint8)}
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.hasobject:
            raise TypeError(f"array {name!r} holds Python objects; only numeric arrays are saved")
        payload[name] = a
    atomic_write(path, lambda f: np.savez(f, **payload))


def atomic_write(path, write) -> None:
    """Replaces path with what write(f) writes to a binary file f, atomically: a temporary
    file in the same folder, flushed, fsynced, renamed over path, then the folder fsynced.
    A failure leaves the old file and no temporary."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as an ordinary new file, not mkstemp's 0600
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _json_default(value):
    """numpy scalars and arrays in a header become plain JSON numbers and lists."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a steepest file header")


def read_archive(path, kind: str, expected_shapes=None):
    """Reads (header, arrays) of a file written by write_archive with header format `kind`.

    expected_shapes(header) -> {name: (shape, dtype)} says which arrays must be present;
    every declared shape is checked before data is read."""
    path = os.fspath(path)
    fh = open(path, "rb")  # a missing or unreadable file is an OSError, not a ValueError
    try:
        with fh, zipfile.ZipFile(fh) as z:
            members = {n[:-4]: n for n in z.namelist() if n.endswith(".npy")}
            if HEADER not in members:
                raise ValueError(f"{path} is not a steepest file (no {HEADER} record)")
            header = _read_header(z, members[HEADER], path)
            check_header(header, kind, path)
            wanted = expected_shapes(header) if expected_shapes else {}
            check_names(set(members) - {HEADER}, wanted, path)
            arrays = {name: _read_array(z, members[name], name, shape, dtype, path)
                      for name, (shape, dtype) in wanted.items()}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, UnicodeDecodeError, zlib.error,
            OSError, NotImplementedError, RuntimeError, OverflowError) as e:
        # RuntimeError: a member flagged as encrypted; NotImplementedError: an unknown
        # compression method or zip version; OSError: seeks outside the file.
        raise ValueError(f"{path} is truncated, corrupted or not a steepest file: {e}") from None
    return header, arrays


def check_header(header: dict, kind: str, path) -> None:
    """Refuses a header of another format than `kind` or of a newer version than this
    steepest reads."""
    if header.get("format") != kind:
        raise ValueError(f"{path} holds {header.get('format')!r}, not {kind!r}")
    version = header.get("version")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"{path} has an invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} has format version {version}, newer than this "
                         f"steepest reads ({FORMAT_VERSION}); upgrade steepest")


def check_names(present, wanted, path) -> None:
    """Refuses a file whose array names are not exactly those `wanted`."""
    missing = set(wanted) - set(present)
    if missing:
        raise ValueError(f"{path} is missing arrays {sorted(missing)}")
    extra = set(present) - set(wanted)
    if extra:
        raise ValueError(f"{path} has unexpected arrays {sorted(extra)}")


def _read_header(z, member, path) -> dict:
    info = z.getinfo(member)
    if info.file_size > _MAX_HEADER_BYTES:
        raise ValueError(f"{path}: header record is implausibly large")
    raw = _read_array(z, member, HEADER, None, np.uint8, path)
    try:
        header = json.loads(raw.tobytes().decode())
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is not a JSON object")
    return header


def _read_array(z, member, name, shape, dtype, path) -> np.ndarray:
    info = z.getinfo(member)
    with z.open(member) as f:
        try:
            version = np.lib.format.read_magic(f)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            d_shape, fortran, d_dtype = read(f)
        except ValueError as e:
            raise ValueError(f"{path}: array {name!r} has a bad header ({e})") from None
        if d_dtype.hasobject:
            raise ValueError(f"{path}: array {name!r} holds pickled objects; refused")
        if d_dtype != np.dtype(dtype) or fortran:
            raise ValueError(f"{path}: array {name!r} has dtype {d_dtype}"
                             f"{' in Fortran order' if fortran else ''}, expected "
                             f"{np.dtype(dtype)} in C order")
        if shape is not None and tuple(d_shape) != tuple(shape):
            raise ValueError(f"{path}: array {name!r} has shape {d_shape}, expected {shape}")
        nbytes = int(np.prod(d_shape, dtype=np.int64)) * d_dtype.itemsize
        if nbytes != info.file_size - f.tell():
            raise ValueError(f"{path}: array {name!r} declares {nbytes} bytes but the file "
                             f"holds {info.file_size - f.tell()}")
        data = f.read(nbytes)  # the zip checks its CRC at the end of the member
    if len(data) != nbytes:
        raise ValueError(f"{path}: array {name!r} is truncated")
    return np.frombuffer(data, dtype=d_dtype).reshape(d_shape).copy()
