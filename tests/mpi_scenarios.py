"""Data-parallel scenarios, run by tests/test_distributed.py under mpiexec: each rank runs
`python mpi_scenarios.py SCENARIO OUT_DIR` and writes what it saw to OUT_DIR/SCENARIO-RANK.json
for the test to compare across ranks, runs and process counts."""
from __future__ import annotations

import json
import os
import sys
import time
import zlib

import numpy as np

import steepest as st
from steepest.distributed import Group

N, F, C = 203, 10, 3  # 203 rows: batches that do not split evenly over 2 ranks


def data(dtype=np.float32):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, F)).astype(dtype)
    return X, rng.integers(0, C, N), rng.normal(size=(N, 2)).astype(dtype)


def model(dtype="float32", dropout=0.3, outputs=C):
    return st.Sequential(st.Dense(F, 16), st.Tanh(), st.Dropout(dropout), st.Dense(16, outputs),
                         dtype=dtype, seed=7)


def fit(m, X, y, *, distributed, loss=None, epochs=3, batch_size=25, opt="adam", **kw):
    optimizer = (st.optim.Adam(m.parameters(), lr=0.01) if opt == "adam"
                 else st.optim.SGD(m.parameters(), lr=0.05, momentum=0.9))
    return m.fit(X, y, loss=loss or st.losses.CrossEntropy(), optimizer=optimizer,
                 epochs=epochs, batch_size=batch_size, verbose=0, distributed=distributed, **kw)


def crc(m) -> int:
    return zlib.crc32(memoryview(m.flat_params()).cast("B"))


def against_one_process(group, out):
    """Several runs, each data-parallel and in this one process: the largest difference."""
    X, y, Y = data(np.float64)
    weights = np.random.default_rng(1).uniform(0, 2, N) * (np.arange(N) % 5 != 0)
    cases = {
        "float64 adam dropout": dict(dtype="float64"),
        "float32 adam dropout": dict(dtype="float32"),
        "float64 sgd clip, no shuffle": dict(dtype="float64", opt="sgd", clip_grad_norm=0.5,
                                             shuffle=False),
        "float64 mse": dict(dtype="float64", loss=st.losses.MSE(), outputs=2),
        "float64 batch 1": dict(dtype="float64", batch_size=1, epochs=1),
        "float64 full batch": dict(dtype="float64", batch_size=None, epochs=5),
        # Each rank's share normalized by the global batch's weight (not its rows).
        "float64 weighted": dict(dtype="float64", sample_weight=weights, class_weight="balanced",
                                 loss=st.losses.CrossEntropy(0.1, weight=[0.5, 1.0, 2.0],
                                                             ignore_index=1)),
        "float64 mse weighted": dict(dtype="float64", loss=st.losses.MSE(), outputs=2,
                                     sample_weight=weights, batch_size=8),
    }
    for name, case in cases.items():
        dtype, outputs = case.pop("dtype"), case.pop("outputs", C)
        target = Y if outputs == 2 else y
        val = (X[:50], target[:50]) + (() if "sample_weight" not in case else (weights[:50],))
        runs = []
        for distributed in (group, None):
            m = model(dtype, outputs=outputs)
            history = fit(m, X, target, distributed=distributed, **dict(case),
                          validation_data=val)
            runs.append((m.flat_params().copy(), history))
        (par, h_par), (one, h_one) = runs
        out[name] = {"max_diff": float(np.abs(par - one).max()),
                     "max_param": float(np.abs(one).max()),
                     "loss": [h_par["loss"], h_one["loss"]],
                     "val_loss": [h_par["val_loss"], h_one["val_loss"]],
                     "crc": zlib.crc32(memoryview(par).cast("B")),
                     "allreduce_time": h_par.get("allreduce_time")}


def every_step(group, out):
    """One global batch per fit call, so each call is one step: every rank's parameters
    after every step, and shards read in place on the way."""
    X, y, _ = data()
    folder = os.environ["SCENARIO_DIR"]
    if group.rank == 0:
        np.save(f"{folder}/x.npy", X)
    group.comm.Barrier()
    Xm = np.load(f"{folder}/x.npy", mmap_mode="r")
    m = model()
    opt = st.optim.Adam(m.parameters(), lr=0.01)
    crcs = []
    for step in range(8):
        rows = slice(step * 25, step * 25 + 25)
        m.fit(Xm[rows], y[rows], loss=st.losses.CrossEntropy(), optimizer=opt, epochs=1,
              batch_size=25, shuffle=False, verbose=0, distributed=group)
        crcs.append(crc(m))
    out["crcs"] = crcs
    out["threads"] = st.get_num_threads()


def one_rank_fails(group, out):
    """A callback raises on rank 1 only, in epoch 2: every rank stops after that epoch."""
    class FailOnRank1(st.callbacks.Callback):
        def on_epoch_end(self, epoch, logs):
            if group.rank == 1 and epoch == 1:
                raise OSError("disk full (on purpose)")

    X, y, _ = data()
    m = model()
    try:
        fit(m, X, y, distributed=group, epochs=5, callbacks=[FailOnRank1()])
        out["error"] = None
    except Exception as e:  # noqa: BLE001
        out["error"] = f"{type(e).__name__}: {e}"
    out["epochs"] = len(m.history["loss"])
    out["crc"] = crc(m)


def diverges_on_one_rank(group, out):
    """Only rank 1's rows give an infinite output, so an infinite loss: every rank refuses
    the same step."""
    X, _, Y = data()
    X[N // 2:] = 3e38
    m = st.Sequential(st.Dense(F, 2), seed=7)
    m.load_state_dict({"0.weight": np.ones((2, F)), "0.bias": np.zeros(2)})
    before = crc(m)
    try:
        fit(m, X, Y, distributed=group, batch_size=None, shuffle=False, loss=st.losses.MSE())
        out["error"] = None
    except st.TrainingDiverged as e:
        out["error"] = str(e)
    out["unchanged"] = crc(m) == before


def checkpointed(group, out):
    """A run of 4 epochs, and the same run checkpointed after 2 and resumed (with this rank
    count, or another: the checkpoint given in SCENARIO_RESUME)."""
    X, y, _ = data()
    folder = os.environ["SCENARIO_DIR"]
    m = model()
    fit(m, X, y, distributed=group, epochs=4)
    out["full"] = m.flat_params().tolist()
    path = os.environ.get("SCENARIO_RESUME") or f"{folder}/run.ckpt"
    if not os.environ.get("SCENARIO_RESUME"):
        fit(model(), X, y, distributed=group, epochs=2, checkpoint=path)
    m = model()
    history = fit(m, X, y, distributed=group, epochs=4, checkpoint=path)
    out["resumed"] = m.flat_params().tolist()
    out["epochs"] = len(history["loss"])


def interrupted(group, out):
    """Trains until Ctrl-C (SIGINT to mpiexec, which forwards it to every rank)."""
    X = np.random.default_rng(0).normal(size=(20000, 64)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    m = st.Sequential(st.Dense(64, 64), st.ReLU(), st.Dense(64, 2), seed=0)
    opt = st.optim.SGD(m.parameters(), lr=0.01)
    with open(f"{os.environ['SCENARIO_DIR']}/started-{group.rank}", "w") as f:
        f.write(str(os.getpid()))
    started = time.monotonic()
    try:
        m.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=10**6, batch_size=8,
              verbose=0, distributed=group)
        out["error"] = None
    except KeyboardInterrupt:
        out["error"] = "KeyboardInterrupt"
    out["seconds"] = time.monotonic() - started
    out["steps"] = opt.state_dict()["steps"]
    out["crc"] = crc(m)


def killed(group, out):
    """Trains for long: the test kills one rank."""
    interrupted(group, out)


SCENARIOS = {f.__name__: f for f in (against_one_process, every_step, one_rank_fails,
                                     diverges_on_one_rank, checkpointed, interrupted, killed)}

if __name__ == "__main__":
    scenario, folder = sys.argv[1], sys.argv[2]
    os.environ["SCENARIO_DIR"] = folder
    group = Group()
    result = {"size": group.size}
    SCENARIOS[scenario](group, result)
    with open(f"{folder}/{scenario}-{group.rank}.json", "w") as f:
        json.dump(result, f)
