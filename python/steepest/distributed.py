"""Data-parallel training over processes with MPI (mpi4py), imported only when a run asks.

    mpiexec -n 4 python train.py      # train.py calls model.fit(X, y, ..., distributed=True)

Every process (rank) runs the same script: the same model (rank 0's parameters, optimizer
state and random generator are broadcast when fit starts), the same data arguments (a memory
map or .npy shards on a shared file system: each rank reads only its rows). Each global batch
of batch_size rows is split in consecutive shares, one per rank; each rank backpropagates its
share and the flat gradient buffer is summed over the ranks with one in-place
``MPI_Allreduce`` per step, inside the core's epoch loop, before every rank applies the same
update. The result is that of one process training on the same global batches (dropout masks
included), up to the order of the sums.

Determinism: every rank applies the same update to the same summed gradient, so parameters
are bitwise identical on every rank after every step (fit checks it after every epoch with a
CRC of the parameters). The sum is MPI's: with 2 ranks it is a + b on both (IEEE addition
commutes), and MPI libraries pick their reduction algorithm from the message size and rank
count only, so a run with the same rank count and MPI library is bitwise reproducible.

Failures: a stop request (Ctrl-C, which mpiexec forwards to every rank) travels with the next
step's sum, so every rank stops after the same step; divergence is decided on the summed
gradient, the same on every rank; an exception on one rank (a callback, a file it cannot
write) reaches every rank at the end of the epoch; a rank that dies is cleaned up by the
launcher (mpiexec kills the others at once; with Slurm use ``srun --kill-on-bad-exit=1``).
"""
from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
import zlib

import numpy as np

from . import _checks
from .threads import default_threads, set_num_threads


class Solo:
    """A single process: the group fit uses when it is not distributed (no MPI)."""

    rank, size = 0, 1

    def sum(self, values) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    def broadcast(self, obj):
        return obj

    def share(self, n: int) -> tuple:
        return 0, n

    @contextlib.contextmanager
    def together(self, digest=None):
        yield

    @contextlib.contextmanager
    def interrupts_deferred(self):
        yield

    def start(self, model, optimizer) -> None:
        pass

    stop_requested = None  # no callable: Ctrl-C raises as usual


class Group(Solo):
    """The ranks of an MPI communicator (COMM_WORLD by default) training one model.

    threads: steepest's threads per rank; None: the cores this rank may use divided by the
    ranks on this machine that share them (one thread per rank when the ranks fill the
    cores: two BLAS threads per rank on shared cores ran 50x slower).
    """

    def __init__(self, comm=None, threads=None):
        try:
            from mpi4py import MPI
        except ImportError:
            raise ImportError("distributed training needs mpi4py and an MPI library: "
                              "pip install 'steepest[mpi]'") from None
        self._mpi = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._interrupted = False
        if threads is None:
            threads = self._threads_per_rank()
        set_num_threads(_checks.integer(threads, "threads", low=1))

    def __repr__(self):
        return f"Group(rank={self.rank}, size={self.size})"

    def _threads_per_rank(self) -> int:
        local = self.comm.Split_type(self._mpi.COMM_TYPE_SHARED)
        try:
            mine = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            everyone = local.allgather(mine)
        finally:
            local.Free()
        if mine is None:
            return max(1, default_threads() // len(everyone))
        sharing = sum(1 for cpus in everyone if cpus is None or cpus & mine)
        return max(1, len(mine) // sharing)

    # -- collectives fit uses ------------------------------------------------------------------
    def in_place_sum(self, buffer: np.ndarray):
        """A callable that sums buffer over the ranks in place: mpi4py's Allreduce bound to
        it, a C function the core calls once per step (no Python bytecode runs, so no signal
        handler can interrupt the step)."""
        return functools.partial(self.comm.Allreduce, self._mpi.IN_PLACE, buffer)

    def sum(self, values) -> np.ndarray:
        out = np.array(values, dtype=np.float64)
        self.comm.Allreduce(self._mpi.IN_PLACE, out)
        return out

    def broadcast(self, obj):
        """Rank 0's obj (any picklable object) on every rank."""
        return self.comm.bcast(obj, root=0)

    def share(self, n: int) -> tuple:
        """This rank's rows [start, stop) of n rows split in consecutive shares."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def start(self, model, optimizer) -> None:
        """Every rank takes rank 0's parameters, buffers, optimizer state and random
        generator."""
        for buf in (model.flat_params(), model.flat_buffers(), model.flat_counts()):
            self.comm.Bcast(buf, root=0)
        for buf in optimizer.state_buffers().values():
            self.comm.Bcast(buf, root=0)
        model.rng_state = self.broadcast(model.rng_state)

    @contextlib.contextmanager
    def together(self, digest=None):
        """Runs a block on every rank; when it raised on any rank, it raises on all: the
        local exception, KeyboardInterrupt if any rank was interrupted, else a RuntimeError
        naming the rank that failed. digest: a value every rank must agree on (the
        parameters' CRC after an epoch). The block must reach its collectives on every rank
        before any step that can fail on one rank only."""
        error = None
        try:
            yield
        except BaseException as e:  # noqa: BLE001 (re-raised below, on every rank)
            error = e
        report = None if error is None else f"{type(error).__name__}: {error}"
        gathered = self.comm.allgather((report, self._interrupted, digest and digest()))
        if error is not None:
            raise error
        failed = [(r, rep) for r, (rep, _, _) in enumerate(gathered) if rep is not None]
        if failed:
            rank, report = failed[0]
            raise RuntimeError(f"rank {rank} failed ({report}); every rank stopped")
        if any(interrupted for _, interrupted, _ in gathered):
            raise KeyboardInterrupt
        if len({d for _, _, d in gathered}) > 1:
            raise RuntimeError("the ranks' parameters differ: "
                               f"{[d for _, _, d in gathered]} (CRC-32 per rank)")

    @contextlib.contextmanager
    def interrupts_deferred(self):
        """Ctrl-C (SIGINT) records a stop request instead of raising, so that every rank
        stops at the same point: inside an epoch after the same step (the request travels
        with the step's sum), else at the end of the epoch (see together)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._interrupted = False
        previous = signal.signal(signal.SIGINT, self._on_interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _on_interrupt(self, signum, frame):
        self._interrupted = True

    def stop_requested(self) -> bool:
        return self._interrupted

    def abort(self, error: BaseException) -> None:
        """Ends every rank at once (a sum failed: the communicator cannot be trusted)."""
        print(f"steepest: rank {self.rank}: {type(error).__name__}: {error}; aborting all "
              f"{self.size} ranks", file=sys.stderr, flush=True)
        self.comm.Abort(1)


def params_digest(model):
    """A callable giving the CRC-32 of the model's parameters (for Group.together)."""
    return lambda: zlib.crc32(memoryview(model.flat_params()).cast("B"))


def group_of(distributed):
    """fit's distributed argument as a group: None/False a Solo, True a Group over
    COMM_WORLD, a Group itself, or an mpi4py communicator."""
    if distributed is None or distributed is False:
        return Solo()
    if isinstance(distributed, Solo):
        return distributed
    if distributed is True:
        return Group()
    if hasattr(distributed, "Allreduce") and hasattr(distributed, "Get_rank"):
        return Group(distributed)
    raise TypeError("distributed must be True, False, a steepest.distributed.Group or an "
                    f"mpi4py communicator, got {distributed!r}")


def launched_by_mpi() -> bool:
    """Whether this process is one of several started by an MPI launcher (mpiexec, srun)."""
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        if os.environ.get(name, "1").isdigit() and int(os.environ.get(name, "1")) > 1:
            return True
    return False
