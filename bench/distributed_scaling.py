"""Data-parallel scaling on this machine (1 vs 2 ranks) and a cost model fitted to it.

    python bench/distributed_scaling.py [--rounds 5] [--configs 1,2,3,4]

Measured, in rounds that alternate the order of the runs (medians over rounds; each run a
fresh process or mpiexec):
- one fit epoch of compare.py's models, each at its batch size B as the global batch: one
  process with 1 thread, 2 ranks under mpiexec (1 thread each), one process with 2 threads;
  the 2-rank run's allreduce time per step (the in-training gradient sums as fit reports them:
  the time a rank spends in MPI_Allreduce, waiting for the other rank included);
- the CPU time per step of one process (1 thread) at B, B/2 and B/4 rows: a line
  c * rows + f through them splits a step into compute(B) = c * B, which the ranks share, and
  fixed = f, which every rank repeats (the update of all P parameters, the step's overhead;
  0 when the fit puts it below 0). CPU time, not wall time, and the least of the rounds: on a
  shared machine it is the work done, which other processes disturb far less;
- MPI_Allreduce (in place, float32) between the 2 local ranks for 4 B-64 MiB; the minimum over
  repetitions (the undisturbed time) gets a line 2 alpha + bytes / bw, a ring's time at 2 ranks.

Predicted, with the cost model per step (strong scaling: the global batch B over N ranks)
    t(N) = compute(B) / N + fixed + 2 (N-1) alpha + 2 (N-1)/N * 4 P / bw
and efficiency(N) = t(1) / (N t(N)): first at N = 2 with this machine's alpha and bw, next to
the measurement (the check of the model); then at N = 8, 64, 512 on a 25 Gb/s and a 100 Gb/s
network (alpha per message --alpha-25, --alpha-100: assumed, not measured here), and with B
rows per rank (weak scaling: efficiency t(1) / t(N)).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

import steepest as st
from steepest.distributed import Group

ROWS = 16384  # rows per epoch; 8192 for the largest model (8 steps of 1024)
SWEEP = [4 ** k for k in range(13)] + [16 * 2 ** 20]  # float32 counts: 4 B ... 64 MiB


def epoch_rows(sizes, batch):
    return 8192 if sizes[1] >= 2048 else ROWS


# -- workers (run in fresh processes, print one JSON line) -------------------------------------
class CpuClock(st.callbacks.Callback):
    """The process's CPU time (user + system, all threads) over each epoch."""

    def on_epoch_begin(self, epoch, logs):
        self.start = time.process_time()

    def on_epoch_end(self, epoch, logs):
        self.seconds = time.process_time() - self.start


def worker_epochs(configs, batch_scale, threads, distributed) -> dict:
    """configs: {name: (sizes, batch, optimizer)}; one timed epoch of each, batch and rows
    divided by batch_scale."""
    group = None
    if distributed:
        group = Group(threads=threads)
    else:
        st.set_num_threads(threads)
    out = {}
    for index, (sizes, batch, opt_name) in configs.items():
        rows = epoch_rows(sizes, batch) // batch_scale
        batch = batch // batch_scale
        rng = np.random.default_rng(int(index))
        X = rng.random((rows, sizes[0]), dtype=np.float32)
        y = rng.integers(0, sizes[-1], rows)
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [st.Dense(a, b), st.ReLU()]
        model = st.Sequential(*layers[:-1], seed=0)
        opt = (st.optim.Adam(model.parameters(), lr=1e-4) if opt_name == "adam"
               else st.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9))
        fit = dict(loss=st.losses.CrossEntropy(), optimizer=opt, batch_size=batch, verbose=0,
                   distributed=group if group is not None else False)
        model.fit(X[:2 * batch], y[:2 * batch], epochs=1, **fit)  # warm-up: pages, pool
        clock = CpuClock()
        logs = {k: v[-1] for k, v in model.fit(X, y, epochs=1, callbacks=[clock],
                                                **fit).items()}
        steps = rows // batch
        out[index] = {"epoch": logs["time"], "cpu": clock.seconds, "steps": steps,
                      "allreduce": logs.get("allreduce_time", 0.0) / steps,
                      "params": model.num_parameters()}
    return out


def worker_sweep(repeat=30) -> dict:
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    out = {}
    for count in SWEEP:
        buf = np.ones(count, np.float32)
        times = []
        for _ in range(repeat if count < 2 ** 20 else 10):
            comm.Barrier()
            start = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf)
            times.append(time.perf_counter() - start)
        out[str(count * 4)] = min(times)
    return out


class NoOpGroup:
    """Rank 0 of 2 whose gradient sum does nothing: what remains of the sum's time is the
    hook's own cost (the core takes the GIL and calls a Python callable, then releases it)."""
    rank, size, stop_requested = 0, 2, None

    def in_place_sum(self, buffer):
        return tuple  # a C function taking no arguments


def hook_overhead(steps=2048) -> float:
    """Seconds per step the core spends calling the sum (a no-op here) from its epoch loop."""
    st.set_num_threads(1)
    model = st.Sequential(st.Dense(64, 16), st.ReLU(), st.Dense(16, 2), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.01)
    X = np.random.default_rng(0).random((steps * 8, 64), dtype=np.float32)
    y = np.zeros(len(X), np.int64)
    record = model.train_epoch(X, y, st.losses.CrossEntropy(), opt, 8, group=NoOpGroup())
    return record["sum_seconds"] / record["steps"]


# -- the driver ---------------------------------------------------------------------------------
def run_worker(args, ranks=1) -> dict:
    mpiexec = (shutil.which("mpiexec", path=os.path.dirname(sys.executable))
               or shutil.which("mpiexec"))
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    if ranks > 1:
        cmd = [mpiexec, "-n", str(ranks), *cmd]
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{run.stdout}\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[0])  # rank 0 prints first or alone


def fit_line(sweep) -> tuple:
    """Least squares t = c + bytes / bw over the sweep, weighted by 1/t (relative errors);
    for 2 ranks a ring's allreduce is 2 alpha + bytes / bw, so alpha = c / 2."""
    sizes = np.array([float(k) for k in sweep])
    times = np.array(list(sweep.values()))
    w = 1 / times
    A = np.stack([np.ones_like(sizes), sizes], axis=1) * w[:, None]
    (c, inv_bw), *_ = np.linalg.lstsq(A, times * w, rcond=None)
    return c / 2, 1 / inv_bw


def fmt_time(seconds) -> str:
    return (f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"
            if seconds < 1 else f"{seconds:.2f} s")


def fmt_bytes(n) -> str:
    return next(f"{n / 2 ** s:g} {u}" for s, u in ((20, "MiB"), (10, "KiB"), (0, "B"))
                if n >= 2 ** s or s == 0)


def ring(n, params, alpha, bw) -> float:
    return 2 * (n - 1) * alpha + 2 * (n - 1) / n * 4 * params / bw if n > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--configs", default="1,2,3,4",
                        help="indices into compare.py's CONFIGS (default 1,2,3,4)")
    parser.add_argument("--alpha-25", type=float, default=10e-6,
                        help="assumed latency per message on the 25 Gb/s network (s)")
    parser.add_argument("--alpha-100", type=float, default=3e-6,
                        help="assumed latency per message on the 100 Gb/s network (s)")
    parser.add_argument("--worker", choices=["epochs", "sweep"], help=argparse.SUPPRESS)
    parser.add_argument("--models", help=argparse.SUPPRESS)  # the workers' configs, JSON
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "epochs":
        result = worker_epochs(json.loads(args.models), args.scale, args.threads,
                               args.distributed)
        if not args.distributed or int(os.environ.get("PMI_RANK", "0")) == 0:
            print(json.dumps(result), flush=True)
        return
    if args.worker == "sweep":
        result = worker_sweep()
        if int(os.environ.get("PMI_RANK", "0")) == 0:
            print(json.dumps(result), flush=True)
        return

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from compare import CONFIGS  # the models of the other benchmarks (imports torch if there)
    configs = [int(i) for i in args.configs.split(",")]
    common = ["--models", json.dumps({i: CONFIGS[i] for i in configs})]
    one, two, threads2 = "1 rank", "2 ranks", "1 rank, 2 threads"
    runs = {  # name: (worker arguments, ranks)
        one: (["--worker", "epochs", *common], 1),
        two: (["--worker", "epochs", "--distributed", *common], 2),
        threads2: (["--worker", "epochs", "--threads", "2", *common], 1),
        "B/2": (["--worker", "epochs", "--scale", "2", *common], 1),
        "B/4": (["--worker", "epochs", "--scale", "4", *common], 1),
    }
    results = {name: [] for name in runs}
    sweeps = []
    load = os.getloadavg()[0]
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            results[name].append(run_worker(*runs[name]))
        sweeps.append(run_worker(["--worker", "sweep"], ranks=2))
    sweep = {k: min(s[k] for s in sweeps) for k in sweeps[0]}
    alpha, bw = fit_line(sweep)

    def per_step(name, index, key):  # median over rounds
        return statistics.median(res[str(index)][key] / res[str(index)]["steps"]
                                 for res in results[name])

    def least_cpu(name, index):  # the least disturbed round's CPU time per step
        return min(res[str(index)]["cpu"] / res[str(index)]["steps"] for res in results[name])

    def ratio(num, den, index):  # median of the per-round quotients of epoch times
        return statistics.median(a[str(index)]["epoch"] / b[str(index)]["epoch"]
                                 for a, b in zip(results[num], results[den]))

    print(f"Measured: {args.rounds} rounds, medians; load average {load:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at the end, {len(os.sched_getaffinity(0))} cores; "
          "float32, 1 thread per rank\n")
    print("| model | batch | P | step, 1 rank | step, 2 ranks | speed-up | efficiency "
          "| allreduce / step, 2 ranks | share of the step | 1 rank, 2 threads: speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    models = {}
    for index in configs:
        sizes, batch, _ = CONFIGS[index]
        params = results[one][0][str(index)]["params"]
        t1, t2 = per_step(one, index, "epoch"), per_step(two, index, "epoch")
        reduce2 = per_step(two, index, "allreduce") * results[two][0][str(index)]["steps"]
        rows = [batch, batch // 2, batch // 4]
        cpu = [least_cpu(name, index) for name in (one, "B/2", "B/4")]
        slope, fixed = np.polyfit(rows, cpu, 1)
        slope, fixed = (slope, fixed) if fixed > 0 else (cpu[0] / batch, 0.0)  # within noise
        models[index] = (sizes, batch, params, slope * batch, fixed, t2, reduce2)
        speedup = ratio(one, two, index)
        print(f"| {'-'.join(map(str, sizes))} | {batch} | {params:,} | {fmt_time(t1)} | "
              f"{fmt_time(t2)} | {speedup:.2f}x | {speedup / 2:.0%} | {fmt_time(reduce2)} | "
              f"{reduce2 / t2:.0%} | {ratio(one, threads2, index):.2f}x |")
    print(f"\nMPI_Allreduce between the 2 local ranks (in place, float32, the minimum over "
          f"{args.rounds} sweeps of 10-30 calls): " + ", ".join(
              f"{fmt_bytes(int(k))} {fmt_time(v)}" for k, v in sweep.items()))
    print(f"Fitted: 2 alpha + bytes / bw with alpha = {fmt_time(alpha)}, "
          f"bw = {bw / 1e9:.2f} GB/s")
    print(f"The hook (the core calling the sum, a Python callable, from its epoch loop with the "
          f"GIL taken for the call), timed with a no-op sum: {fmt_time(hook_overhead())} "
          "per step\n")

    print("Cost model per step: t(N) = compute(B)/N + fixed + 2(N-1) alpha + 2(N-1)/N 4P/bw; "
          "compute(B) and fixed from the 1-process CPU time per step at B, B/2, B/4 rows (least "
          "of the rounds); "
          "alpha, bw from the allreduce line\n")
    print("| model | batch | compute(B) | fixed | 2 ranks: predicted step | measured "
          "| predicted allreduce | measured |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for sizes, batch, params, compute, fixed, t2, reduce2 in models.values():
        r2 = ring(2, params, alpha, bw)
        print(f"| {'-'.join(map(str, sizes))} | {batch} | {fmt_time(compute)} | "
              f"{fmt_time(fixed)} | {fmt_time(compute / 2 + fixed + r2)} | {fmt_time(t2)} | "
              f"{fmt_time(r2)} | {fmt_time(reduce2)} |")

    networks = [("25 Gb/s", 25e9 / 8, args.alpha_25), ("100 Gb/s", 100e9 / 8, args.alpha_100)]
    ranks = [8, 64, 512]
    print(f"\nPredicted efficiency (alpha {fmt_time(args.alpha_25)} at 25 Gb/s, "
          f"{fmt_time(args.alpha_100)} at 100 Gb/s, assumed); strong: the global batch B over "
          "N ranks, t(1) / (N t(N)) (- where N > B); weak: B rows per rank, t(1) / t(N)\n")
    head = [f"{net} N={n}" for net, _, _ in networks for n in ranks]
    print("| model | batch | scaling | " + " | ".join(head) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in head) + " |")
    for sizes, batch, params, compute, fixed, _, _ in models.values():
        for kind in ("strong", "weak"):
            cells = []
            for _, bw_net, alpha_net in networks:
                for n in ranks:
                    share = compute / n if kind == "strong" else compute
                    step = share + fixed + ring(n, params, alpha_net, bw_net)
                    eff = (compute + fixed) / (n * step if kind == "strong" else step)
                    cells.append("-" if kind == "strong" and n > batch else f"{eff:.0%}")
            print(f"| {'-'.join(map(str, sizes))} | {batch} | {kind} | " + " | ".join(cells)
                  + " |")

if __name__ == "__main__":
    main()
