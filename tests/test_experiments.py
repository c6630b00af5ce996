"""The experiments report (quick mode) and the training diagnostics behind it."""
import json
import sys
import warnings

import numpy as np
import pytest

import steepest as st
from steepest import diagnostics as diag
from steepest import experiments as ex

pytest.importorskip("sklearn")  # the report's data sets (digits, diabetes)


# -- the report -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    results = ex.run(str(out), quick=True, seeds=2, verbose=False)
    return out, results


def test_quick_report_has_every_study_table_and_plot(quick_report):
    out, results = quick_report
    text = (out / "report.md").read_text(encoding="utf-8")
    for title in ex.TITLES.values():
        assert f"## {title}" in text
    assert "(regression)" in text  # study 1 also runs on the regression set
    assert text.count("Setup:") == 7  # every table's setup is stated
    assert "| --- |" in text and " ± " in text  # Markdown tables, mean ± std over 2 seeds
    assert "Regenerate: `python -m steepest experiments --quick --seeds 2`" in text
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(["batch_digits.png", "batch_diabetes.png", "learning_rate.png",
                           "depth_gradients.png", "depth_accuracy.png", "techniques.png",
                           "init_signal.png", "backprop_vs_numerical.png"])
    for name in pngs:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        assert f"![{name}]({name})" in text
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["results"]) == set(results) == {
        "batch", "batch_regression", "learning_rate", "depth", "techniques", "init",
        "backprop"}
    assert saved["environment"]["seeds"] == 2


def test_quick_report_numbers_make_sense(quick_report):
    _, r = quick_report
    lr = {(x["optimizer"], x["lr"]): x["status"] for x in r["learning_rate"]["runs"]}
    assert lr[("sgd", 10.0)] == "diverged" and lr[("sgd", 0.1)] == "ok"  # recorded, not raised
    deep = [x for x in r["depth"]["runs"] if x["activation"] == "sigmoid" and x["depth"] == 8
            and x["norm"] is None]
    assert all(x["init_grad_norm"][0] < 1e-3 * x["init_grad_norm"][-1] for x in deep)
    assert all(x["vanishing"] for x in deep)
    # BatchNorm between every Dense layer and its sigmoid keeps the first layer's gradient
    # within a factor 10 of the last one's, and that net learns
    normalized = [x for x in r["depth"]["runs"] if x["net"] == "sigmoid (torch_default) + "
                  "BatchNorm" and x["depth"] == 8]
    assert len(normalized) == 2
    assert all(x["init_grad_norm"][0] > 0.1 * x["init_grad_norm"][-1] for x in normalized)
    assert all(not x["vanishing"] and x["test_metric"] > 0.5 for x in normalized)
    bp = r["backprop"]["runs"]
    assert all(x["norm_rel_error"] < 1e-6 for x in bp)
    big = max(bp, key=lambda x: x["params"])
    assert big["t_numeric"] > 50 * big["t_backprop"]
    modes = {x["mode"]: x for x in r["batch"]["runs"]}
    assert modes["batch"]["updates_per_epoch"] == 1
    assert modes["stochastic (1)"]["updates_per_epoch"] == len(ex.prepare("digits")["X_train"])


def test_quick_report_has_the_normalization_rows(quick_report):
    out, _ = quick_report
    text = (out / "report.md").read_text(encoding="utf-8")
    for act in ("sigmoid", "relu"):
        for norm in ("BatchNorm", "LayerNorm"):
            assert f"| {act} (torch_default) + {norm} |" in text
            assert f"| {act} | {norm} |" in text  # the normalization table
        assert f"| {act} | none |" in text


def test_build_mlp_puts_the_normalization_before_each_hidden_activation():
    from steepest.presets import build_mlp

    model = build_mlp(5, [8, 6], 3, "sigmoid", dropout=0.1, norm="batch")
    assert [type(layer).__name__ for layer in model.layers] == [
        "Dense", "BatchNorm1d", "Sigmoid", "Dropout", "Dense", "BatchNorm1d", "Sigmoid",
        "Dropout", "Dense"]
    assert [layer.num_features for layer in model.layers[1::4]] == [8, 6]
    model = build_mlp(5, [8], 3, "relu", norm="layer")
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "LayerNorm", "ReLU",
                                                                 "Dense"]


def test_layer_grad_norms_in_training_mode_leaves_the_running_statistics():
    """training=True measures the gradient of a training step (BatchNorm on the rows' own
    statistics: not the eval-mode one) on a copy: the model's buffers stay as they were."""
    X, y = _toy()
    model = st.Sequential(st.Dense(16, 32), st.BatchNorm1d(32), st.Sigmoid(), st.Dense(32, 4),
                          seed=0)
    buffers = model.flat_buffers().copy()
    loss = st.losses.CrossEntropy()
    eval_mode = diag.layer_grad_norms(model, X, y, loss)  # all 256 rows
    train_mode = diag.layer_grad_norms(model, X, y, loss, training=True)
    np.testing.assert_array_equal(model.flat_buffers(), buffers)
    model.zero_grad()
    loss.forward(model.forward(X, training=True), y)
    model.backward(loss.backward())
    assert train_mode == pytest.approx(model.grad_norms(), rel=1e-6)
    assert eval_mode != pytest.approx(train_mode, rel=1e-3)


def test_cli_experiments_subcommand(tmp_path):
    from steepest.cli import main

    assert main(["experiments", "--quick", "--out", str(tmp_path), "--seeds", "1",
                 "--only", "init", "--quiet"]) == 0
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "## 5. Initialization" in text and "## 1." not in text
    assert (tmp_path / "init_signal.png").exists()


def test_report_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    ex.run(str(tmp_path), quick=True, seeds=1, only=["init"], verbose=False)
    assert "Plots need matplotlib" in (tmp_path / "report.md").read_text(encoding="utf-8")
    assert not list(tmp_path.glob("*.png"))


def test_run_restores_threads_and_rejects_unknown_study(tmp_path):
    before = st.get_num_threads()
    with pytest.raises(ValueError, match="unknown studies"):
        ex.run(str(tmp_path), only=["nope"], verbose=False)
    assert st.get_num_threads() == before


def test_study_on_user_data_records_divergence():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    data = ex.prepare((X, y))
    assert data["task"] == "classification" and data["n_classes"] == 2
    res = ex.learning_rate(data, seeds=1, optimizers=("sgd",), lrs=(0.1, 1e4), epochs=3)
    status = {r["lr"]: r["status"] for r in res["runs"]}
    assert status == {0.1: "ok", 1e4: "diverged"}
    assert "diverged" in ex.markdown(res)


# -- diagnostics: constructed cases with known answers ---------------------------------------------
def _set_dense(model, index, W, b):
    params = dict(model.named_parameters())
    params[f"{index}.weight"].data[...] = W
    params[f"{index}.bias"].data[...] = b


def test_dead_relu_fraction_known_answer():
    model = st.Sequential(st.Dense(2, 4), st.ReLU(), st.Dense(4, 1), seed=0)
    # units 0 and 1 are negative for every input in [0, 1]^2 (dead); units 2, 3 are positive
    _set_dense(model, 0, [[-1, -1], [-2, 0], [1, 0], [0, 1]], [-0.5, -0.1, 0.5, 0.5])
    X = np.random.default_rng(0).uniform(0, 1, (50, 2))
    (stats,) = diag.activation_stats(model, X)
    assert stats["type"] == "ReLU" and stats["dead"] == 0.5 and stats["saturated"] is None
    assert diag.dead_fraction(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])) == pytest.approx(1 / 3)


@pytest.mark.parametrize("act, name", [(st.Sigmoid, "sigmoid"), (st.Tanh, "tanh")])
def test_saturated_fraction_known_answer(act, name):
    model = st.Sequential(st.Dense(2, 2), act(), st.Dense(2, 1), seed=0)
    # unit 0: |z| = 100 on every row (saturated); unit 1: z = 0 (the steep middle)
    _set_dense(model, 0, [[100, 0], [0, 0]], [0, 0])
    X = np.array([[1.0, 3.0], [-1.0, 2.0], [1.0, -1.0], [-1.0, 0.0]])
    (stats,) = diag.activation_stats(model, X)
    assert stats["saturated"] == 0.5 and stats["dead"] is None
    assert diag.saturated_fraction(np.array([[0.995, 0.5]]), name) == 0.5
    with pytest.raises(ValueError, match="sigmoid and tanh"):
        diag.saturated_fraction(np.zeros((1, 1)), st.ReLU())


def test_update_ratio_known_answer():
    assert diag.update_ratios([np.array([3.0, 4.0])], [np.array([3.3, 4.4])]) == \
        [pytest.approx(0.1)]
    # one full-batch SGD step: delta W = -lr * dL/dW, measured at the start
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(64, 3)), rng.normal(size=(64, 1))
    model = st.Sequential(st.Dense(3, 5), st.Tanh(), st.Dense(5, 1), dtype="float64", seed=0)
    loss = st.losses.MSE()
    model.zero_grad()
    loss.forward(model.forward(X, training=True), y)
    model.backward(loss.backward())
    params = dict(model.named_parameters())
    expected = [0.05 * np.linalg.norm(params[f"{i}.weight"].grad) /
                np.linalg.norm(params[f"{i}.weight"].data) for i in (0, 2)]
    weights = diag.weight_norms(model)
    history = model.fit(X, y, loss=loss, optimizer=st.optim.SGD(model.parameters(), lr=0.05),
                        epochs=1, batch_size=None, callbacks=[diag.Diagnostics(X)], verbose=0)
    assert history["update_ratio"][0] == pytest.approx(expected, rel=1e-9)
    assert len(history["weight_norm"][0]) == 2 and history["weight_norm"][0] != weights
    assert history["grad_ratio"][0] == pytest.approx(history["grad_norm"][0][0] /
                                                     history["grad_norm"][0][1])
    assert len(history["saturated_fraction"][0]) == 1 and history["dead_fraction"][0] == []


def _deep(act, depth, seed=0):
    layers = [st.Dense(16, 32), act()]
    for _ in range(depth - 1):
        layers += [st.Dense(32, 32), act()]
    return st.Sequential(*layers, st.Dense(32, 4), seed=seed)


def _toy(n=256):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 16))
    return X, np.argmax(X[:, :4], axis=1)


def test_vanishing_gradient_warning_deep_sigmoid():
    X, y = _toy()
    model = _deep(st.Sigmoid, 8)
    cb = diag.Diagnostics(X)
    with pytest.warns(diag.GradientWarning, match="vanishing gradients at epoch 1") as rec:
        model.fit(X, y, loss=st.losses.CrossEntropy(), epochs=3, callbacks=[cb], verbose=0,
                  optimizer=st.optim.SGD(model.parameters(), lr=0.1))
    assert len([w for w in rec if issubclass(w.category, diag.GradientWarning)]) == 1  # once
    assert [k for _, k, _ in cb.problems] == ["vanishing"] * 3
    assert model.history["grad_ratio"][0] < 1e-3
    assert issubclass(diag.GradientWarning, RuntimeWarning)


def test_no_warning_for_shallow_relu():
    X, y = _toy()
    model = _deep(st.ReLU, 2)
    cb = diag.Diagnostics(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(X, y, loss=st.losses.CrossEntropy(), epochs=3, callbacks=[cb], verbose=0,
                  optimizer=st.optim.SGD(model.parameters(), lr=0.1))
    assert cb.problems == []
    assert len(model.history["dead_fraction"][-1]) == 2


def test_warn_false_records_silently_and_exploding_checks():
    X, y = _toy()
    model = _deep(st.Sigmoid, 8)
    cb = diag.Diagnostics(X, warn=False)
    model.fit(X, y, loss=st.losses.CrossEntropy(), epochs=1, callbacks=[cb], verbose=0,
              optimizer=st.optim.SGD(model.parameters(), lr=0.1))
    assert cb.problems and cb.problems[0][1] == "vanishing"
    assert diag.gradient_problems([5e3, 1.0])[0][0] == "exploding"
    assert diag.gradient_problems([1.0, float("nan")])[0][0] == "exploding"
    assert diag.gradient_problems([1.0, 2.0, 1.5]) == []
    assert diag.gradient_problems([1e-12, 1e-11])[0][0] == "vanishing"
    assert diag.gradient_problems([1.0, 50.0], explode_abs=10)[0][0] == "exploding"


def test_report_table_and_grads_untouched():
    X, y = _toy()
    model = _deep(st.Sigmoid, 8)
    model.flat_grads()[...] = 7.0
    rep = diag.report(model, X, y, st.losses.CrossEntropy(), max_rows=64)
    assert np.all(model.flat_grads() == 7.0)  # measured on a copy
    assert rep["rows"] == 64 and len(rep["layers"]) == len(model.layers)
    assert [k for k, _ in rep["problems"]] == ["vanishing"]
    text = str(rep)
    assert "||grad||" in text and "vanishing" in text and "Sigmoid" in text
    dense = [r for r in rep["layers"] if r["type"] == "Dense"]
    assert [r["grad_norm"] for r in dense] == pytest.approx(
        diag.layer_grad_norms(model, X, y, st.losses.CrossEntropy(), max_rows=64))
    assert "pass y and loss" in str(diag.report(model, X))
    with pytest.raises(ValueError, match="both y and loss"):
        diag.report(model, X, y)


def test_fit_diagnostics_flag_adds_entries_and_warns_for_deep_sigmoid():
    X, y = _toy()
    model = _deep(st.Sigmoid, 8)
    with pytest.warns(diag.GradientWarning, match="vanishing"):
        history = model.fit(X, y, loss=st.losses.CrossEntropy(), epochs=2, verbose=0,
                            optimizer=st.optim.SGD(model.parameters(), lr=0.1),
                            diagnostics=True)
    for key in ("weight_norm", "update_ratio", "grad_ratio", "saturated_fraction"):
        assert len(history[key]) == 2, key
    assert len(history["saturated_fraction"][0]) == 8
    assert history["grad_ratio"][0] < 1e-3
