"""fit throughput on data read in place (steepest.data) against the same data in memory.

    python bench/memmap_throughput.py [--rows 60000] [--rounds 5] [--threads 1]

One shuffled epoch (784-256-128-10, batch 64, Adam, float32 model) over the same rows held
in RAM, memory-mapped as float32 (page cache warm), memory-mapped with the file dropped from
the page cache before the epoch (cold: every batch faults its rows in from disk), memory-mapped
as float64 (converted per batch), and as 4 float32 shards. Rounds alternate the order; the
figures are medians, ratios the median of the per-round ratios, for the wall time and for the
process's CPU time (user + system, all threads: the work done, which other processes on a
shared machine disturb less than the wall time; a page read from disk costs wall time only).
The weights after each epoch are checked to match the in-memory run first.

Then whether prefetching would pay: the same shuffled batches gathered from the file (numpy
fancy indexing) with a busy wait of one in-memory step's duration after each (the step's
compute), cold and warm, plain and with the next batch's pages requested from the kernel
(madvise MADV_WILLNEED) before the current batch's compute.
"""
from __future__ import annotations

import argparse
import mmap
import os
import statistics
import tempfile
import time

import numpy as np

import steepest as st


def drop_cache(paths) -> None:
    """Evicts the files' pages from the page cache (no root needed; only clean pages are
    dropped, so the file is written back first)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def epoch(X, y, paths=()):
    model = st.Sequential(st.Dense(784, 256), st.ReLU(), st.Dense(256, 128), st.ReLU(),
                          st.Dense(128, 10), seed=0)
    opt = st.optim.Adam(model.parameters(), lr=1e-3)
    drop_cache(paths)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=1, batch_size=64,
              verbose=0)
    return (time.perf_counter() - start, time.process_time() - cpu), model.flat_params().copy()


def gather_epoch(path, rows, step_seconds, cold, readahead, batch=64) -> float:
    """Seconds to gather every shuffled batch of the file, with step_seconds of busy waiting
    after each; readahead: ask the kernel for the next batch's pages first."""
    if cold:
        drop_cache([path])
    X = np.load(path, mmap_mode="r")
    order = np.random.default_rng(1).permutation(rows)
    batches = [np.sort(order[i:i + batch]) for i in range(0, rows, batch)]
    row_bytes = X.strides[0]
    start = time.perf_counter()
    for k, rows_k in enumerate(batches):
        if readahead and k + 1 < len(batches):
            for r in batches[k + 1]:
                first = X.offset + int(r) * row_bytes  # X._mmap maps the file from byte 0
                page = first - first % mmap.PAGESIZE
                X._mmap.madvise(mmap.MADV_WILLNEED, page, first + row_bytes - page)
        np.array(X[rows_k])
        until = time.perf_counter() + step_seconds
        while time.perf_counter() < until:
            pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    st.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    X = rng.random((args.rows, 784), dtype=np.float32)
    y = rng.integers(0, 10, args.rows)
    with tempfile.TemporaryDirectory() as folder:
        f32, f64 = os.path.join(folder, "x32.npy"), os.path.join(folder, "x64.npy")
        np.save(f32, X)
        np.save(f64, X.astype(np.float64))
        shards = [os.path.join(folder, f"s{i}.npy") for i in range(4)]
        for path, part in zip(shards, np.array_split(X, 4)):
            np.save(path, part)
        cases = {
            "in memory": lambda: epoch(X, y),
            "memmap float32 (warm)": lambda: epoch(np.load(f32, mmap_mode="r"), y),
            "memmap float32 (cold)": lambda: epoch(np.load(f32, mmap_mode="r"), y, [f32]),
            "memmap float64 (warm)": lambda: epoch(np.load(f64, mmap_mode="r"), y),
            "4 shards float32 (warm)": lambda: epoch(shards, y),
        }
        reference = epoch(X, y)[1]
        for name, run in cases.items():  # correctness first
            assert np.array_equal(run()[1], reference), name
        times = {name: [] for name in cases}
        for r in range(args.rounds):
            for name in (list(cases) if r % 2 == 0 else list(reversed(cases))):
                times[name].append(cases[name]()[0])
        step = statistics.median(t for t, _ in times["in memory"]) / -(-args.rows // 64)
        gathers = {(cold, ahead): [] for cold in (False, True) for ahead in (False, True)}
        for r in range(args.rounds):
            for key in (list(gathers) if r % 2 == 0 else list(reversed(gathers))):
                gathers[key].append(gather_epoch(f32, args.rows, step, *key))
    print(f"{args.rows} rows x 784 float32 ({X.nbytes / 2**20:.0f} MiB), one shuffled epoch, "
          f"784-256-128-10 batch 64 Adam, {st.get_num_threads()} thread(s), "
          f"median of {args.rounds} rounds")
    print("| data | epoch (wall) | samples/s | wall / in memory | CPU time | CPU / in memory |")
    print("| --- | --- | --- | --- | --- | --- |")
    base = times["in memory"]
    for name, t in times.items():
        wall, cpu = [a for a, _ in t], [c for _, c in t]
        ratios = [statistics.median(a[k] / b[k] for a, b in zip(t, base)) for k in (0, 1)]
        print(f"| {name} | {statistics.median(wall) * 1e3:.0f} ms | "
              f"{args.rows / statistics.median(wall):,.0f} | {ratios[0]:.2f} | "
              f"{statistics.median(cpu) * 1e3:.0f} ms | {ratios[1]:.2f} |")
    print(f"\nPrefetch test: gathering the epoch's batches from the float32 file with "
          f"{step * 1e6:.0f} us of busy waiting (one in-memory step) after each, median of "
          f"{args.rounds}")
    print("| page cache | plain | next batch's pages requested (MADV_WILLNEED) |")
    print("| --- | --- | --- |")
    for cold in (False, True):
        plain, ahead = (statistics.median(gathers[cold, a]) for a in (False, True))
        print(f"| {'cold' if cold else 'warm'} | {plain * 1e3:.0f} ms | {ahead * 1e3:.0f} ms |")


if __name__ == "__main__":
    main()
