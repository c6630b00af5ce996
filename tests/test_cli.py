"""The command line: python -m steepest train ..."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import steepest as st


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "steepest", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_train_on_digits_prints_test_accuracy():
    pytest.importorskip("sklearn")
    r = run("train", "--data", "digits", "--epochs", "3", "--quiet")
    assert r.returncode == 0, r.stderr
    match = re.search(r"test accuracy (\d\.\d+)", r.stdout)
    assert match, r.stdout
    assert float(match.group(1)) > 0.85  # 3 epochs of Adam on digits
    assert "epoch 1" not in r.stdout  # --quiet


def test_train_on_spirals_with_options_and_save(tmp_path):
    path = tmp_path / "spirals.npz"
    r = run("train", "--data", "spirals", "--epochs", "4", "--hidden", "16", "16",
            "--activation", "tanh", "--optimizer", "rmsprop", "--lr", "0.01", "--batch-size",
            "0", "--dtype", "float64", "--seed", "3", "--save", str(path))
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout
    assert len(re.findall(r"^epoch \d+", r.stdout, flags=re.M)) == 4  # progress, not quiet
    model = st.load(path)
    assert model.dtype == np.float64
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Tanh", "Dense", "Tanh",
                                                                "Dense"]
    assert model.in_features == 2 and model.out_features == 2
    assert model.predict(np.zeros((3, 2))).shape == (3, 2)


def test_help():
    r = run("--help")
    assert r.returncode == 0 and "train" in r.stdout
    r = run("train", "--help")
    assert r.returncode == 0
    for option in ("--data", "--hidden", "--activation", "--optimizer", "--lr", "--batch-size",
                   "--epochs", "--save"):
        assert option in r.stdout, option


@pytest.mark.parametrize("args,words", [
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--epochs", "many"], "--epochs"),
    (["train", "--optimizer", "lbfgs"], "--optimizer"),
    (["train", "--data", "no-such-set"], "no-such-set"),
    (["train", "--data", "missing.npz"], "missing.npz"),
    (["train", "--no-such-flag"], "--no-such-flag"),
    ([], "command"),
])
def test_bad_arguments_exit_non_zero_with_a_message(args, words):
    r = run(*args)
    assert r.returncode != 0
    assert words in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_user_csv_file(tmp_path, rng):
    X = rng.normal(size=(120, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    path = tmp_path / "data.csv"
    with open(path, "w") as f:
        f.write("a,b,c,label\n")
        for row, label in zip(X, y):
            f.write(",".join(f"{v:.6f}" for v in row) + f",{label}\n")
    r = run("train", "--data", str(path), "--epochs", "30", "--quiet", "--lr", "0.01")
    assert r.returncode == 0, r.stderr
    assert "classes 2" in r.stdout and "features 3" in r.stdout
    assert float(re.search(r"test accuracy (\d\.\d+)", r.stdout).group(1)) > 0.8


def test_user_npz_regression_file(tmp_path, rng):
    X = rng.normal(size=(100, 2))
    y = X @ np.array([[1.0], [-2.0]]) + 0.5
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    r = run("train", "--data", str(path), "--epochs", "5", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "regression" in r.stdout
    assert re.search(r"test MSE \d+\.\d+", r.stdout), r.stdout
    bad = tmp_path / "bad.npz"
    np.savez(bad, features=X)
    r = run("train", "--data", str(bad))
    assert r.returncode != 0 and "'X' and 'y'" in r.stderr


def test_console_script_entry_point(capsys):
    from steepest.cli import main

    assert main(["train", "--data", "spirals", "--epochs", "1", "--quiet", "--hidden", "4"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    script = Path(sys.executable).parent / "steepest"
    if script.exists():  # installed into this environment: the `steepest` command works too
        r = subprocess.run([str(script), "train", "--help"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0 and "--epochs" in r.stdout
