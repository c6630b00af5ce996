"""The container of every steepest file (models, checkpoints), format version 1.

A file is a zip archive of .npy arrays (numpy's .npz layout, so any numpy can read it) that
never holds pickled objects: ``__steepest__``, a uint8 array holding a UTF-8 JSON header with
at least ``{"format": kind, "version": 1}``, and named arrays of plain dtypes (numbers,
booleans, fixed-width strings). The same bytes serve pickling (``archive_bytes``).

Writing is atomic (a temporary file ``.NAME.XXXXXXXX.tmp`` in the same folder, flushed,
fsynced, then renamed over the target), so a crash leaves either the old file or the new one,
and at worst that temporary, which ``remove_stale_temporaries`` clears. An error while writing
names the target. Reading checks, before inflating anything, that the arrays fit in the file
(their sizes in the zip directory against the file's size, at most _MAX_RATIO times their
compressed size); then the format name and version, the declared shape and dtype of every
array against what the caller expects and against the bytes present (the .npy headers are
parsed here, never by numpy's dtype parser), and the zip's checksums; anything else is a
ValueError naming the file, and running out of memory a MemoryError naming it. Reading never
executes code.
"""
from __future__ import annotations

import ast
import errno
import io
import json
import lzma
import math
import os
import re
import stat
import tempfile
import zipfile
import zlib
from typing import Union

import numpy as np

FORMAT_VERSION = 1
HEADER = "__steepest__"
PathLike = Union[str, "os.PathLike[str]"]  # a file name
_MAX_HEADER_BYTES = 1 << 24
_MAX_NPY_HEADER_BYTES = 10_000  # numpy's own limit for a .npy header
# Arrays may inflate to _MAX_RATIO times their compressed size, or to _FREE_BYTES whatever
# the ratio (a zip of a small model with zero biases): a decompression bomb needs more.
_MAX_RATIO = 100
_FREE_BYTES = 1 << 24
_READ_CHUNK = 1 << 20
_MAX_LZMA_DICTIONARY = 1 << 26  # xz -9's 64 MiB; a larger one only for larger data
_TEMPORARY_ID = "[a-z0-9_]{8}"  # the random part of tempfile.mkstemp's names


def write_archive(path, header: dict, arrays: dict) -> None:
    """Atomically writes header (JSON-able) and named arrays to path."""
    payload = _payload(header, arrays)
    atomic_write(path, lambda f: np.savez(f, **payload))


def archive_bytes(header: dict, arrays: dict) -> bytes:
    """The bytes write_archive would write (what pickling a steepest object holds);
    read_archive reads them back."""
    buffer = io.BytesIO()
    np.savez(buffer, **_payload(header, arrays))
    return buffer.getvalue()


def _payload(header: dict, arrays: dict) -> dict:
    text = json.dumps(header, default=_json_default)
    payload = {HEADER: np.frombuffer(text.encode(), dtype=np.uint8)}
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.hasobject:
            raise TypeError(f"array {name!r} holds Python objects; only plain arrays are saved")
        payload[name] = a
    return payload


def atomic_write(path, write) -> None:
    """Replaces path with what write(f) writes to a binary file f, atomically: a temporary
    file in the same folder, flushed, fsynced, renamed over path, then the folder fsynced.
    A failure leaves the old file and no temporary; an OSError (ENOSPC, EFBIG, EACCES, ...)
    names path, not the temporary."""
    path = os.fspath(path)
    fd, tmp = _make_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # as an ordinary new file, not 0600
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and e.errno is not None:
            raise OSError(e.errno, e.strerror, path) from e
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(_folder(path), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def check_writable(path, what: str) -> None:
    """Fails now, naming `what` and path, where an atomic_write of path would fail later
    creating its temporary: a missing folder, a file in the way, no permission, a read-only
    file system. Creates and removes one temporary."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"{what} is a folder", path)
    fd, tmp = _make_temporary(path, what)
    os.close(fd)
    os.unlink(tmp)


def remove_stale_temporaries(path) -> list:
    """Deletes the temporaries that killed atomic_writes of path left in its folder: regular
    files named exactly as _make_temporary names them for path, nothing else. Call it only
    while no other process writes path. Returns the names removed."""
    path = os.fspath(path)
    prefix, suffix = _affixes(path)
    pattern = re.compile(re.escape(prefix) + _TEMPORARY_ID + re.escape(suffix))
    folder, removed = _folder(path), []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not pattern.fullmatch(name):
            continue
        full = os.path.join(folder, name)
        try:
            if stat.S_ISREG(os.lstat(full).st_mode):
                os.unlink(full)
                removed.append(name)
        except FileNotFoundError:
            pass
    return removed


def _make_temporary(path: str, what: str = "") -> tuple:
    """(fd, name) of a new temporary .NAME.XXXXXXXX.tmp beside path; an OSError names path."""
    prefix, suffix = _affixes(path)
    try:
        return tempfile.mkstemp(dir=_folder(path), prefix=prefix, suffix=suffix)
    except OSError as e:
        if e.errno is None:
            raise
        where = f" (cannot write {what} in its folder)" if what else ""
        raise OSError(e.errno, f"{e.strerror}{where}", path) from None


def _affixes(path: str) -> tuple:
    return "." + os.path.basename(path) + ".", ".tmp"


def _folder(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _json_default(value):
    """numpy scalars and arrays in a header become plain JSON numbers and lists."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a steepest file header")


def read_archive(source, kind: str, expected_shapes=None):
    """Reads (header, arrays) of a file written by write_archive with header format `kind`,
    from a path or from bytes (archive_bytes).

    expected_shapes(header) -> {name: (shape, dtype)} says which arrays must be present;
    every declared shape is checked before data is read."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        path, fh = "<bytes>", io.BytesIO(source)
    else:
        path = os.fspath(source)
        fh = open(path, "rb")  # a missing or unreadable file is an OSError, not a ValueError
    inflated = 0
    try:
        with fh, zipfile.ZipFile(fh) as z:
            members = {n[:-4]: n for n in z.namelist() if n.endswith(".npy")}
            inflated = _check_sizes(z, fh, members.values(), path)
            if HEADER not in members:
                raise ValueError(f"{path} is not a steepest file (no {HEADER} record)")
            header = _read_header(z, members[HEADER], path)
            check_header(header, kind, path)
            wanted = expected_shapes(header) if expected_shapes else {}
            check_names(set(members) - {HEADER}, wanted, path)
            arrays = {name: _read_array(z, members[name], name, shape, dtype, path)
                      for name, (shape, dtype) in wanted.items()}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, UnicodeDecodeError, zlib.error,
            lzma.LZMAError, OSError, NotImplementedError, RuntimeError, OverflowError) as e:
        # RuntimeError: a member flagged as encrypted; NotImplementedError: an unknown
        # compression method or zip version; OSError: seeks outside the file, bzip2 errors.
        raise ValueError(f"{path} is truncated, corrupted or not a steepest file: {e}") from None
    except MemoryError:
        raise MemoryError(f"{path}: not enough memory to read its arrays "
                          f"({inflated / 2**20:,.1f} MiB)") from None
    return header, arrays


def declared_dtype(text) -> np.dtype:
    """The numeric dtype a header declares for an array ("<f8", "|u1", ...); ValueError for
    anything else, without handing the text to numpy's dtype parser."""
    if not (isinstance(text, str) and re.fullmatch(r"[<>|=]?[biuf][1248]", text)):
        raise ValueError(f"bad dtype {text!r}")
    return np.dtype(text)


def _check_sizes(z, fh, names, path) -> int:
    """Refuses, before inflating anything, arrays whose zip directory entries claim more bytes
    than the file holds, an inflated size beyond _MAX_RATIO times the compressed one (past
    _FREE_BYTES), or an LZMA dictionary beyond what the data needs; returns the inflated
    size."""
    infos = [z.getinfo(name) for name in names]
    packed = sum(info.compress_size for info in infos)
    inflated = sum(info.file_size for info in infos)
    file_size = fh.seek(0, os.SEEK_END)  # a file, or the bytes of a pickled object
    if packed > file_size:
        raise ValueError(f"{path}: its zip directory claims {packed:,} bytes of arrays, more "
                         f"than the whole file ({file_size:,} bytes)")
    if inflated > max(_FREE_BYTES, _MAX_RATIO * packed):
        raise ValueError(f"{path}: its arrays would inflate from {packed:,} compressed bytes "
                         f"to {inflated:,} (more than {_MAX_RATIO} times): refused as a "
                         "decompression bomb")
    for info in infos:
        if info.compress_type == zipfile.ZIP_LZMA:
            dictionary = _lzma_dictionary(fh, info)
            if dictionary > max(_MAX_LZMA_DICTIONARY, info.file_size):
                raise ValueError(f"{path}: array member {info.filename!r} asks for an LZMA "
                                 f"dictionary of {dictionary:,} bytes to inflate "
                                 f"{info.file_size:,}; refused")
    return inflated


def _lzma_dictionary(fh, info) -> int:
    """The dictionary size an LZMA zip member's properties ask for: the decompressor allocates
    it whole, up to 4 GiB, before reading any data."""
    fh.seek(info.header_offset)
    local = fh.read(30)  # the local file header: name and extra field lengths at 26 and 28
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        return 0  # zipfile refuses it when the member is opened
    skip = int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
    fh.seek(info.header_offset + 30 + skip)
    head = fh.read(9)  # LZMA SDK version (2), properties size (2), lc/lp/pb (1), dictionary (4)
    return int.from_bytes(head[5:9], "little") if len(head) == 9 else 0


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
    """The array `name` (of `dtype`, and `shape` unless None), checked against its .npy header
    and its size in the zip before it is read, in chunks, into its own memory."""
    info = z.getinfo(member)
    dtype = np.dtype(dtype)
    with z.open(member) as f:
        d_shape, descr, fortran = _npy_header(f, name, path)
        if isinstance(descr, str) and "O" in descr:
            raise ValueError(f"{path}: array {name!r} holds pickled objects; refused")
        expected = np.lib.format.dtype_to_descr(dtype)
        if descr != expected or fortran:
            raise ValueError(f"{path}: array {name!r} has dtype {descr!r}"
                             f"{' in Fortran order' if fortran else ''}, expected "
                             f"{expected!r} ({dtype}) in C order")
        if shape is not None and d_shape != tuple(shape):
            raise ValueError(f"{path}: array {name!r} has shape {d_shape}, expected {shape}")
        nbytes = math.prod(d_shape) * dtype.itemsize
        if nbytes != info.file_size - f.tell():
            raise ValueError(f"{path}: array {name!r} declares {nbytes} bytes but the file "
                             f"holds {info.file_size - f.tell()}")
        out = np.empty(d_shape, dtype)
        into, done = memoryview(out.reshape(-1).view(np.uint8)), 0
        while done < nbytes:  # the zip checks its CRC at the end of the member
            chunk = f.read(min(_READ_CHUNK, nbytes - done))
            if not chunk:
                raise ValueError(f"{path}: array {name!r} is truncated")
            into[done:done + len(chunk)] = chunk
            done += len(chunk)
    return out


def _npy_header(f, name, path) -> tuple:
    """(shape, descr, fortran_order) of the .npy header at f, parsed as numpy writes it (a
    Python dict literal) but without numpy's dtype parser, which raises SyntaxError and
    warnings on text such as "f4,(": descr stays text, compared as text."""
    def bad(why):
        return ValueError(f"{path}: array {name!r} has a bad header ({why})")

    magic = f.read(8)
    if len(magic) != 8 or magic[:6] != b"\x93NUMPY" or magic[6] not in (1, 2, 3):
        raise bad("not a .npy array")
    width = 2 if magic[6] == 1 else 4
    size = int.from_bytes(f.read(width), "little")
    if size > _MAX_NPY_HEADER_BYTES:
        raise bad(f"{size:,} bytes long")
    text = f.read(size)
    try:
        d = ast.literal_eval(text.decode("utf-8" if magic[6] == 3 else "latin-1"))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError,
            UnicodeDecodeError) as e:
        raise bad(e) from None
    if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
        raise bad("not numpy's dict of descr, fortran_order and shape")
    shape, fortran = d["shape"], d["fortran_order"]
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)
            and isinstance(fortran, bool)):
        raise bad(f"shape {shape!r}, fortran_order {fortran!r}")
    return shape, d["descr"], fortran
