"""Data larger than memory: memory maps and lists of .npy shards, read in place.

fit, evaluate and predict take, besides arrays in memory, a memory map (``np.memmap`` or
``np.load(path, mmap_mode="r")``) of any float, integer or bool dtype in C order, or a list of
``.npy`` paths: shards stacked along the rows (targets may be shards too, split anywhere). Such
data is never copied whole: it is validated in chunks of at most ``CHUNK_BYTES`` (each chunk
through the same checks as an array in memory), and the core gathers every batch straight from
the mapping, converting it to the model's dtype as it copies. Only the rows a step uses are
read; the operating system keeps what fits of the file cached.
"""
from __future__ import annotations

import os

import numpy as np

from ._checks import row_chunks

# dtypes the core reads in place (native byte order): float16/32/64, integers, bool.
_READABLE_KINDS = {"f": (2, 4, 8), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "b": (1,)}


class Shards:
    """N rows held in one or more parts read in place (memory maps or arrays), in order: the
    data of fit, evaluate and predict when it is a memory map or a list of .npy files.

        X = st.data.open_npy(["x0.npy", "x1.npy"])   # or pass the list itself to fit

    parts: C-contiguous arrays of equal trailing shape, each of a dtype the core reads (float,
    integer or bool, native byte order); names: what error messages call each part.
    """

    def __init__(self, parts, names=None, name="X"):
        parts = list(parts)
        names = list(names) if names is not None else (
            [name] if len(parts) == 1 else [f"{name}[{i}]" for i in range(len(parts))])
        if not parts:
            raise ValueError(f"{name} is an empty list of shards")
        for part, part_name in zip(parts, names):
            if not isinstance(part, np.ndarray):
                raise TypeError(f"{part_name} must be a numpy array or memory map, got "
                                f"{type(part).__name__}")
            if part.dtype.itemsize not in _READABLE_KINDS.get(part.dtype.kind, ()) or \
                    part.dtype.byteorder == ">":
                raise TypeError(f"{part_name} has dtype {part.dtype}, which is not read in "
                                "place: use a native-order float, integer or bool dtype")
            if not part.flags.c_contiguous:
                raise ValueError(f"{part_name} is not in C order (row-major, contiguous); "
                                 "data read in place must be")
            if part.ndim not in (1, 2) or part.shape[1:] != parts[0].shape[1:]:
                raise ValueError(f"{part_name} has shape {part.shape}: every shard must be "
                                 f"1-D or 2-D with the shape {parts[0].shape[1:]} after its rows")
        self.parts, self.names = parts, names
        self.starts = np.cumsum([0] + [len(p) for p in parts])  # first row of each part

    @property
    def shape(self) -> tuple:
        return (int(self.starts[-1]),) + self.parts[0].shape[1:]

    @property
    def ndim(self) -> int:
        return self.parts[0].ndim

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __repr__(self):
        dtypes = sorted({str(p.dtype) for p in self.parts})
        return f"Shards({len(self.parts)} parts, shape {self.shape}, {'/'.join(dtypes)})"

    def __getitem__(self, rows: slice) -> Shards:
        """Rows start:stop (step 1) as Shards of views: validation_split's held-out rows."""
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("Shards take a slice of rows (start:stop); use read or take")
        start, stop, _ = rows.indices(len(self))
        kept = [(part[max(start - first, 0):max(stop - first, 0)], name)
                for part, name, first in zip(self.parts, self.names, self.starts)]
        kept = [(p, n) for p, n in kept if len(p)] or [(self.parts[0][:0], self.names[0])]
        return Shards([p for p, _ in kept], [n for _, n in kept])

    def chunks(self, start: int = 0, stop=None):
        """(first row, rows, name of their part) for rows [start, stop) in pieces of at most
        CHUNK_BYTES inside one part; rows are views of the mapping."""
        stop = len(self) if stop is None else stop
        for part, name, first in zip(self.parts, self.names, self.starts):
            lo, hi = max(start - first, 0), min(stop - first, len(part))
            if lo >= hi:
                continue
            for rows in row_chunks(part[lo:hi]):
                yield int(first + lo), rows, name
                lo += len(rows)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop): a view inside one part, else a copy."""
        runs = [part[max(start - first, 0):max(stop - first, 0)]
                for part, first in zip(self.parts, self.starts) if first < stop]
        runs = [r for r in runs if len(r)]
        return runs[0] if len(runs) == 1 else np.concatenate(runs or [self.parts[0][:0]])

    def take(self, rows) -> np.ndarray:
        """The rows at sorted indices `rows`, copied into one array."""
        rows = np.asarray(rows, dtype=np.int64)
        part = np.searchsorted(self.starts, rows, side="right") - 1
        pieces = [self.parts[i][rows[part == i] - self.starts[i]] for i in np.unique(part)]
        return np.concatenate(pieces) if pieces else self.parts[0][:0].copy()


def open_npy(paths, name: str = "X") -> Shards:
    """Shards of the .npy files at paths, memory-mapped read-only, stacked along the rows."""
    paths = [os.fspath(p) for p in paths]
    parts = []
    for path in paths:
        try:
            parts.append(np.load(path, mmap_mode="r", allow_pickle=False))
        except (OSError, ValueError) as e:
            raise ValueError(f"{name}: cannot read {path} as a .npy file ({e})") from None
    return Shards(parts, [f"{name} ({path})" for path in paths], name)


def shards_of(data, name: str):
    """data as Shards when it is read in place (a memory map, a list of .npy paths, Shards),
    else None: an array in memory is converted once instead. A list is paths when every item
    is a path object or a string ending in ".npy" (a list of other strings is labels)."""
    if isinstance(data, Shards):
        return data
    if isinstance(data, np.memmap):
        return Shards([data], name=name)
    if isinstance(data, (list, tuple)) and data and all(_is_npy_path(p) for p in data):
        return open_npy(data, name)
    return None


def _is_npy_path(item) -> bool:
    return isinstance(item, os.PathLike) or (isinstance(item, str) and item.endswith(".npy"))


def validate(shards: Shards, check, name: str, n_samples=None) -> Shards:
    """Runs check(rows, name) (the in-memory validation of one chunk) over every chunk;
    n_samples: the length the data must have."""
    if len(shards) == 0:
        raise ValueError(f"{name} is empty: it has no samples")
    if n_samples is not None and len(shards) != n_samples:
        raise ValueError(f"{name} has {len(shards)} samples but X has {n_samples}")
    for _, rows, part_name in shards.chunks():
        check(rows, part_name)
    return shards


def pieces(X, y, start: int = 0, stop=None):
    """(X rows, y rows) of rows [start, stop) of data as check_data returns it, in pieces
    of at most a chunk of X; one piece for arrays in memory."""
    stop = len(X) if stop is None else stop
    if not isinstance(X, Shards) and not isinstance(y, Shards):
        yield X[start:stop], y[start:stop]
        return
    for first, rows, _ in (X if isinstance(X, Shards) else Shards([X])).chunks(start, stop):
        last = first + len(rows)
        yield rows, y.read(first, last) if isinstance(y, Shards) else y[first:last]
