"""Data-parallel training over MPI, with 2 ranks under mpiexec (MPICH from PyPI in CI): the same
result as one process, identical parameters on every rank after every step, bitwise the same
from run to run, checkpoints any rank count resumes, and no hung rank when one fails, is
interrupted or is killed. Skipped without mpi4py and mpiexec."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
if MPIEXEC is None:
    pytest.skip("mpiexec not found", allow_module_level=True)

SCENARIOS = Path(__file__).resolve().parent / "mpi_scenarios.py"


def command(scenario, folder, ranks=2):
    return [MPIEXEC, "-n", str(ranks), sys.executable, os.fspath(SCENARIOS), scenario,
            os.fspath(folder)]


def launch(scenario, folder, ranks=2, env=None, timeout=120) -> list:
    """Runs a scenario on `ranks` ranks; each rank's result, by rank."""
    run = subprocess.run(command(scenario, folder, ranks), capture_output=True, text=True,
                         timeout=timeout, env=dict(os.environ, **(env or {})))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    return results(scenario, folder, ranks)


def results(scenario, folder, ranks) -> list:
    return [json.loads((Path(folder) / f"{scenario}-{r}.json").read_text())
            for r in range(ranks)]


def test_two_ranks_train_like_one_process(tmp_path):
    ranks = launch("against_one_process", tmp_path)
    for name, case in ranks[0].items():
        if name == "size":
            continue
        # The sum over the global batch splits in two: the same update up to rounding.
        tol = 1e-5 if "float32" in name else 1e-12
        assert case["max_diff"] <= tol * max(1.0, case["max_param"]), (name, case)
        np.testing.assert_allclose(*case["loss"], rtol=tol * 10, err_msg=name)
        np.testing.assert_allclose(*case["val_loss"], rtol=tol * 10, err_msg=name)
        assert all(t >= 0 for t in case["allreduce_time"]), name
    for name in ranks[0]:  # every rank ends with the same bits
        if name != "size":
            assert ranks[0][name]["crc"] == ranks[1][name]["crc"], name


def test_every_rank_holds_the_same_parameters_after_every_step(tmp_path):
    ranks = launch("every_step", tmp_path)
    assert ranks[0]["crcs"] == ranks[1]["crcs"]
    assert len(set(ranks[0]["crcs"])) == 8  # every step changed them
    assert ranks[0]["threads"] == ranks[1]["threads"] == max(
        1, len(os.sched_getaffinity(0)) // 2)  # the cores shared by the two ranks


def test_a_run_is_bitwise_reproducible_and_any_rank_count_resumes(tmp_path):
    # Run to run: the same bits. Resumed from a 2-rank checkpoint with 2 ranks: the bits of
    # the uninterrupted run; with 1 process (and a 1-process checkpoint with 2 ranks): the
    # same training to rounding.
    for name in "abcd":
        (tmp_path / name).mkdir()
    first = launch("checkpointed", tmp_path / "a")
    second = launch("checkpointed", tmp_path / "b")
    assert first[0]["full"] == first[1]["full"] == second[0]["full"]
    assert first[0]["resumed"] == first[0]["full"] and first[0]["epochs"] == 4
    one = launch("checkpointed", tmp_path / "c", ranks=1,
                 env={"SCENARIO_RESUME": os.fspath(tmp_path / "a" / "run.ckpt")})
    np.testing.assert_allclose(one[0]["resumed"], first[0]["full"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one[0]["full"], first[0]["full"], rtol=1e-5, atol=1e-6)
    two = launch("checkpointed", tmp_path / "d",
                 env={"SCENARIO_RESUME": os.fspath(tmp_path / "c" / "run.ckpt")})
    assert two[0]["resumed"] == two[1]["resumed"]
    np.testing.assert_allclose(two[0]["resumed"], one[0]["full"], rtol=1e-5, atol=1e-6)


def test_an_error_or_divergence_on_one_rank_stops_every_rank(tmp_path):
    ranks = launch("one_rank_fails", tmp_path)
    assert ranks[1]["error"] == "OSError: disk full (on purpose)"
    assert ranks[0]["error"].startswith("RuntimeError: rank 1 failed (OSError: disk full")
    # Both stopped in epoch 2 (rank 1's history lacks the epoch its callback failed in), with
    # the same parameters.
    assert (ranks[0]["epochs"], ranks[1]["epochs"]) == (2, 1)
    assert ranks[0]["crc"] == ranks[1]["crc"]
    ranks = launch("diverges_on_one_rank", tmp_path)
    for r in ranks:
        assert "non-finite loss" in r["error"] and r["unchanged"], r


def start(scenario, folder):
    process = subprocess.Popen(command(scenario, folder), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not all((folder / f"started-{r}").exists() for r in range(2)):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    time.sleep(0.5)  # well into the first epoch
    return process


def test_ctrl_c_stops_every_rank_after_the_same_step(tmp_path):
    process = start("interrupted", tmp_path)
    process.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends mpiexec
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err[-3000:]
    ranks = results("interrupted", tmp_path, 2)
    assert [r["error"] for r in ranks] == ["KeyboardInterrupt"] * 2
    assert ranks[0]["steps"] == ranks[1]["steps"] > 0 and ranks[0]["crc"] == ranks[1]["crc"]


def test_a_killed_rank_takes_the_others_down_within_seconds(tmp_path):
    process = start("killed", tmp_path)
    pids = [int((tmp_path / f"started-{r}").read_text()) for r in range(2)]
    killed_at = time.monotonic()
    os.kill(pids[1], signal.SIGKILL)
    try:
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert time.monotonic() - killed_at < 10
    assert process.returncode != 0
    # mpiexec reports the killed rank, or the survivor's failed collective, whichever it sees first
    reports = ("KILLED BY SIGNAL: 9", "Killed", "BAD TERMINATION", "Fatal error in")
    assert any(report in out + err for report in reports), out + err
    for pid in pids:  # no rank left behind
        assert not Path(f"/proc/{pid}").exists() or "zombie" in \
            Path(f"/proc/{pid}/status").read_text().lower()


def test_the_command_line_trains_on_every_rank_and_reports_once(tmp_path):
    run = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "steepest", "train",
                          "--data", "spirals", "--hidden", "16", "--epochs", "2",
                          "--save", os.fspath(tmp_path / "m.npz")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("train accuracy") == 1 and "on 2 ranks" in run.stdout
    assert (tmp_path / "m.npz").exists()
