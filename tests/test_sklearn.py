"""steepest.sklearn: MLPClassifier / MLPRegressor as drop-in replacements for scikit-learn's,
with scikit-learn's own MLP as the oracle (in float64 the same random_state gives the same
trajectory), its estimator checks, and the extra parameters."""
from __future__ import annotations

import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import pickle_globals

sklearn = pytest.importorskip("sklearn")
from sklearn import neural_network  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.utils._param_validation import InvalidParameterError  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

import steepest as st  # noqa: E402
from steepest.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

SK = {MLPClassifier: neural_network.MLPClassifier, MLPRegressor: neural_network.MLPRegressor}
NO_CONVERGENCE = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def classification(n=120, classes=3, seed=0):
    X, y = make_classification(n_samples=n, n_features=6, n_informative=4, n_classes=classes,
                               random_state=seed)
    return X, y


def regression(n=120, outputs=1, seed=0):
    X, y = make_regression(n_samples=n, n_features=6, n_targets=outputs, noise=0.1,
                           random_state=seed)
    return X, y / y.std()


def both(cls, **params):
    """(steepest's estimator in float64, scikit-learn's) with the same parameters."""
    return cls(dtype="float64", **params), SK[cls](**params)


def assert_same_fit(ours, theirs, rtol=1e-9, losses=True):
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    if losses:
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=rtol)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol * 100, atol=rtol)


# -- scikit-learn as the oracle ------------------------------------------------------------------

@NO_CONVERGENCE
@pytest.mark.parametrize("params", [
    dict(solver="sgd", learning_rate="constant", learning_rate_init=0.05),
    dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.5, power_t=0.3),
    dict(solver="sgd", nesterovs_momentum=False, activation="tanh", alpha=0.01),
    dict(solver="sgd", momentum=0.0, activation="logistic", batch_size=32),
    dict(solver="adam", activation="identity", batch_size=50, shuffle=False),
], ids=["sgd", "invscaling", "heavy_ball_tanh", "plain_logistic", "adam_identity"])
@pytest.mark.parametrize("target", ["multiclass", "binary", "multilabel", "regression",
                                    "multi_regression", "poisson"])
def test_the_same_trajectory_as_scikit_learn_in_float64(params, target):
    """Same initial weights, same shuffles, same updates: loss curves and weights agree to
    rounding. (Adam adds epsilon as torch does, a relative change of ~1e-5 of early steps.)"""
    if target in ("multiclass", "binary", "multilabel"):
        X, y = classification(classes=2 if target == "binary" else 3)
        if target == "multilabel":
            y = np.stack([y == 0, y == 1, X[:, 0] > 0], axis=1).astype(int)
        cls = MLPClassifier
    else:
        X, y = regression(outputs=2 if target == "multi_regression" else 1)
        if target == "poisson":
            y = np.exp(0.3 * X[:, 0])
        params = dict(params, loss="poisson" if target == "poisson" else "squared_error")
        cls = MLPRegressor
    ours, theirs = both(cls, hidden_layer_sizes=(7, 5), max_iter=12, random_state=3, **params)
    ours.fit(X, y)
    theirs.fit(X, y)
    rtol = 1e-5 if params["solver"] == "adam" else 1e-9
    # Several outputs: scikit-learn's loss_ averages the squared error over them while its
    # gradient sums it; steepest reports the loss its gradient descends (the same weights).
    assert_same_fit(ours, theirs, rtol, losses=target != "multi_regression")
    assert ours.out_activation_ == theirs.out_activation_
    assert ours.n_layers_ == theirs.n_layers_ == 4 and ours.n_outputs_ == theirs.n_outputs_
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=rtol * 100, atol=1e-6)
    if cls is MLPClassifier:
        np.testing.assert_array_equal(ours.classes_, theirs.classes_)
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X),
                                   rtol=rtol * 100, atol=1e-7)


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_stopping_rules_and_early_stopping_as_scikit_learn(cls):
    X, y = classification(n=200) if cls is MLPClassifier else regression(n=200)
    for params in (dict(tol=1e-2, n_iter_no_change=3),
                   dict(early_stopping=True, validation_fraction=0.2, n_iter_no_change=4,
                        tol=1e-2),
                   dict(solver="sgd", learning_rate="adaptive", tol=0.05, n_iter_no_change=2,
                        learning_rate_init=0.1)):
        ours, theirs = both(cls, hidden_layer_sizes=(6,), max_iter=300, random_state=0,
                            **params)
        ours.fit(X, y)
        theirs.fit(X, y)
        assert ours.n_iter_ == theirs.n_iter_ < 300, params
        assert_same_fit(ours, theirs, rtol=1e-5)
        if params.get("early_stopping"):
            np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_,
                                       rtol=1e-5)
            assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_)
            assert ours.best_loss_ is None and theirs.best_loss_ is None
        else:
            assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-5)
            assert ours.validation_scores_ is None and ours.best_validation_score_ is None


def test_convergence_warning_as_scikit_learn():
    X, y = classification()
    with pytest.warns(ConvergenceWarning, match=r"Stochastic Optimizer: Maximum iterations "
                                                r"\(3\) reached and the optimization hasn't "
                                                "converged yet."):
        MLPClassifier(max_iter=3, random_state=0).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        MLPClassifier(solver="lbfgs", max_iter=2, random_state=0).fit(X, y)


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_lbfgs_as_scikit_learn(cls):
    X, y = classification() if cls is MLPClassifier else regression()
    ours, theirs = both(cls, solver="lbfgs", hidden_layer_sizes=(8,), max_iter=60,
                        random_state=1, alpha=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y)
        theirs.fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    np.testing.assert_allclose(ours.predict(X) if cls is MLPRegressor
                               else ours.predict_proba(X),
                               theirs.predict(X) if cls is MLPRegressor
                               else theirs.predict_proba(X), rtol=1e-4, atol=1e-6)
    assert not hasattr(ours, "loss_curve_") and not hasattr(ours, "partial_fit")


@NO_CONVERGENCE
def test_partial_fit_and_warm_start_as_scikit_learn():
    X, y = classification()
    ours, theirs = both(MLPClassifier, hidden_layer_sizes=(5,), random_state=0)
    for i in range(3):
        part = slice(40 * i, 40 * (i + 1))
        ours.partial_fit(X[part], y[part], classes=[0, 1, 2])
        theirs.partial_fit(X[part], y[part], classes=[0, 1, 2])
    assert ours.n_iter_ == theirs.n_iter_ == 1
    assert_same_fit(ours, theirs, rtol=1e-6)
    ours, theirs = both(MLPRegressor, hidden_layer_sizes=(5,), random_state=0, max_iter=5,
                        warm_start=True, solver="sgd")
    Xr, yr = regression()
    for _ in range(2):
        ours.fit(Xr, yr)
        theirs.fit(Xr, yr)
    assert_same_fit(ours, theirs)


@NO_CONVERGENCE
def test_sample_weight_as_scikit_learn():
    X, y = classification()
    sw = np.random.default_rng(0).integers(0, 4, len(y)).astype(float)
    ours, theirs = both(MLPClassifier, solver="sgd", hidden_layer_sizes=(6,), max_iter=10,
                        random_state=0)
    ours.fit(X, y, sample_weight=sw)
    theirs.fit(X, y, sample_weight=sw)
    assert_same_fit(ours, theirs)


# -- scikit-learn's estimator checks -------------------------------------------------------------

@pytest.mark.parametrize("estimator", [MLPClassifier(), MLPRegressor()], ids=repr)
def test_check_estimator(estimator):
    """Every check of scikit-learn's, in the default float32, no expected failure (but on a CPU
    without AVX2 + FMA, see ROW_INVARIANT_CHECKS)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check_estimator(estimator, on_skip=None, expected_failed_checks=PENDING)


# Checks that need matrix products whose rows do not depend on the batch (a row predicted
# alone, or within other rows, in the same bits; in the sample-weight checks, the forward pass
# and the backward's dX of a weighted fit against a fit on repeated rows), with the float64
# sums of the full-batch fits (Sequential.float64_sums) for dW, the biases and the loss. The
# core's own GEMM kernels give such products on CPUs with AVX2 + FMA; elsewhere the products
# run on OpenBLAS, which rounds a row by its position in the batch, and these checks fail.
ROW_INVARIANT_CHECKS = (
    "check_sample_weight_equivalence_on_dense_data",
    "check_sample_weight_equivalence_on_sparse_data",
    "check_methods_subset_invariance",
    "check_methods_sample_order_invariance",
)
PENDING = {} if st._core.gemm_isa() != "none" else {
    name: "matrix products on OpenBLAS (no AVX2 + FMA): a row's bits depend on its batch"
    for name in ROW_INVARIANT_CHECKS}


# -- the package, errors, attributes -------------------------------------------------------------

def test_import_steepest_does_not_import_scikit_learn():
    code = ("import sys, steepest; assert 'sklearn' not in sys.modules; "
            "c = steepest.MLPClassifier; assert 'sklearn' in sys.modules; "
            "import steepest.sklearn as s; assert c is s.MLPClassifier and "
            "steepest.MLPRegressor is s.MLPRegressor; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
    assert {"MLPClassifier", "MLPRegressor"} <= set(dir(st))
    with pytest.raises(AttributeError, match="has no attribute 'MLPThing'"):
        st.MLPThing  # noqa: B018


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_same_parameters_and_defaults_as_scikit_learn(cls):
    ours, theirs = cls().get_params(), SK[cls]().get_params()
    extras = {"dropout": 0.0, "weight_decay": 0.01, "clip_grad_norm": None,
              "dtype": "float32", "n_threads": None, "progress": False}
    if cls is MLPClassifier:
        extras["class_weight"] = None
    assert ours == {**theirs, **extras}
    assert repr(cls(hidden_layer_sizes=(3,))) == f"{cls.__name__}(hidden_layer_sizes=(3,))"


def test_fitted_attributes_have_scikit_learns_shapes():
    X, y = classification()
    clf = MLPClassifier(hidden_layer_sizes=(9, 4), max_iter=5, random_state=0)
    with pytest.warns(ConvergenceWarning):
        clf.fit(X, np.array(["a", "b", "c"])[y])
    assert [c.shape for c in clf.coefs_] == [(6, 9), (9, 4), (4, 3)]
    assert [b.shape for b in clf.intercepts_] == [(9,), (4,), (3,)]
    assert clf.coefs_[0].dtype == np.float32
    np.testing.assert_array_equal(clf.classes_, ["a", "b", "c"])
    assert (clf.n_features_in_, clf.n_outputs_, clf.n_layers_, clf.out_activation_) == \
        (6, 3, 4, "softmax")
    assert len(clf.loss_curve_) == clf.n_iter_ == 5 and clf.t_ == 5 * len(X)
    assert clf.predict(X).dtype == clf.classes_.dtype
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64 and proba.shape == (120, 3)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))
    # coefs_ are the model's weights: writing one changes the predictions
    before = clf.predict_proba(X)
    clf.coefs_[-1][:] = 0
    clf.intercepts_[-1][:] = 0
    np.testing.assert_allclose(clf.predict_proba(X), 1 / 3)
    assert not np.allclose(before, 1 / 3)


@NO_CONVERGENCE
def test_feature_names_and_pandas():
    pd = pytest.importorskip("pandas")
    X, y = classification()
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    clf = MLPClassifier(max_iter=300, random_state=0).fit(frame, pd.Series(y))
    np.testing.assert_array_equal(clf.feature_names_in_, frame.columns)
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        np.testing.assert_array_equal(clf.predict(frame), clf.predict(X))


def test_sparse_input_equals_dense():
    sparse = pytest.importorskip("scipy.sparse")
    X, y = classification()
    X[np.abs(X) < 0.8] = 0
    dense = MLPClassifier(max_iter=20, random_state=0)
    sp = MLPClassifier(max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense.fit(X, y)
        sp.fit(sparse.csr_matrix(X), y)
    np.testing.assert_array_equal(dense.predict_proba(X), sp.predict_proba(sparse.csc_matrix(X)))


def test_errors_are_scikit_learns():
    X, y = classification()
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(X)
    with pytest.raises(InvalidParameterError, match="The 'solver' parameter"):
        MLPClassifier(solver="newton").fit(X, y)
    with pytest.raises(InvalidParameterError, match="The 'dropout' parameter"):
        MLPClassifier(dropout=1.0).fit(X, y)
    with pytest.raises(ValueError, match=r"hidden_layer_sizes must be > 0, got \[3, 0\]"):
        MLPClassifier(hidden_layer_sizes=(3, 0)).fit(X, y)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        MLPClassifier().partial_fit(X, y)
    clf = MLPClassifier(max_iter=2, random_state=0)
    with pytest.warns(ConvergenceWarning):
        clf.partial_fit(X, y, classes=[0, 1, 2]).fit(X, y)
    with pytest.raises(ValueError, match=r"`y` has classes not in `self.classes_`"):
        clf.partial_fit(X, y + 1)
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same"):
        clf.set_params(warm_start=True).fit(X, y % 2)
    with pytest.raises(ValueError, match="X has 5 features, but MLPClassifier is expecting 6"):
        clf.predict(X[:, :5])
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        MLPRegressor(early_stopping=True).partial_fit(*regression())
    with pytest.raises(ValueError, match="The validation set is too small"):
        MLPClassifier(early_stopping=True, validation_fraction=0.01).fit(X[:20], y[:20])
    for cls in (MLPClassifier, MLPRegressor):
        with pytest.raises(AttributeError, match="has no attribute 'partial_fit'") as info:
            cls(solver="lbfgs").partial_fit  # noqa: B018
        assert "only available for stochastic" in str(info.value.__cause__)
    with pytest.raises(ValueError, match="Sample weights must contain at least one non-zero"):
        MLPClassifier().fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match="negative which is not allowed for Poisson"):
        MLPRegressor(loss="poisson").fit(X, y - 1.0)
    with pytest.warns(UserWarning, match="Got `batch_size` less than 1 or larger than sample"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPRegressor(batch_size=500, max_iter=1).fit(*regression())


# -- the extra parameters ------------------------------------------------------------------------

@NO_CONVERGENCE
@pytest.mark.parametrize("solver", ["adamw", "rmsprop", "adagrad"])
def test_extra_solvers_learn(solver):
    X, y = classification(n=300)
    clf = MLPClassifier(solver=solver, learning_rate_init=0.01, max_iter=100,
                        random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.85
    assert type(clf._optimizer).__name__ == {"adamw": "AdamW", "rmsprop": "RMSprop",
                                              "adagrad": "Adagrad"}[solver]


@NO_CONVERGENCE
def test_dropout_trains_and_predicts_deterministically():
    X, y = classification(n=300)
    clf = MLPClassifier(dropout=0.3, max_iter=150, random_state=0).fit(X, y)
    assert sum(isinstance(layer, st.Dropout) for layer in clf._model.layers) == 1
    assert clf.score(X, y) > 0.85
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(X))
    again = MLPClassifier(dropout=0.3, max_iter=150, random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.coefs_[0], again.coefs_[0])  # seeded masks


@NO_CONVERGENCE
def test_class_weight_is_a_sample_weight_per_class():
    X, y = classification()
    weights = {0: 3.0, 1: 0.5, 2: 1.0}
    a = MLPClassifier(class_weight=weights, max_iter=5, random_state=0).fit(X, y)
    b = MLPClassifier(max_iter=5, random_state=0).fit(
        X, y, sample_weight=np.array([weights[c] for c in y]))
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    balanced = MLPClassifier(class_weight="balanced", max_iter=5, random_state=0)
    balanced.fit(X[:90], y[:90])
    with pytest.raises(ValueError, match="class_weight 'balanced' is not supported for "
                                         "partial_fit"):
        balanced.partial_fit(X, y)


@NO_CONVERGENCE
def test_clip_grad_norm_dtype_threads_and_progress(capsys):
    X, y = regression()
    clipped = MLPRegressor(clip_grad_norm=1e-3, solver="sgd", max_iter=3, random_state=0)
    free = MLPRegressor(solver="sgd", max_iter=3, random_state=0)
    assert not np.allclose(clipped.fit(X, y).coefs_[0], free.fit(X, y).coefs_[0])
    assert MLPRegressor(dtype="float64", max_iter=2).fit(X, y).coefs_[0].dtype == np.float64
    threads = st.get_num_threads()
    MLPRegressor(n_threads=1, max_iter=2).fit(X, y).predict(X)
    assert st.get_num_threads() == threads
    capsys.readouterr()
    MLPRegressor(progress=True, max_iter=3).fit(X, y)
    assert "3/3" in capsys.readouterr().err  # tqdm, rich or steepest's own bar


# -- pickling ------------------------------------------------------------------------------------

@NO_CONVERGENCE
def test_pickled_estimator_predicts_and_trains_on_alike(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = classification()
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    labels = np.array(["x", "y", "z"], dtype=object)[y]
    rs = np.random.RandomState(5)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=4, random_state=rs,
                        class_weight={"x": 2.0, "y": 1.0, "z": 1.0})
    clf.fit(frame, labels)
    data = pickle.dumps(clf)
    assert pickle_globals(data) == {("steepest.sklearn", "MLPClassifier")}
    twin = pickle.loads(data)
    assert twin.get_params()["class_weight"] == clf.get_params()["class_weight"]
    assert twin.random_state.get_state()[1].tobytes() == rs.get_state()[1].tobytes()
    np.testing.assert_array_equal(twin.feature_names_in_, clf.feature_names_in_)
    assert twin.feature_names_in_.dtype == object
    np.testing.assert_array_equal(twin.predict_proba(frame), clf.predict_proba(frame))
    assert twin.loss_curve_ == clf.loss_curve_ and twin.best_loss_ == clf.best_loss_
    for est in (clf, twin):  # the optimizer's state and the random stream came along
        est.partial_fit(frame, labels)
    np.testing.assert_array_equal(twin.coefs_[0], clf.coefs_[0])
    assert twin._optimizer.model is twin._model
    # joblib and a new process
    joblib = pytest.importorskip("joblib")
    joblib.dump(clf, tmp_path / "clf.joblib")
    np.save(tmp_path / "X.npy", X)
    code = ("import joblib, sys, numpy as np; c = joblib.load(sys.argv[1]); "
            "print(' '.join(c.predict(np.load(sys.argv[2]))))")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = clf.predict(X).tolist()
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code,
                          str(tmp_path / "clf.joblib"), str(tmp_path / "X.npy")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == expected
    unfitted = pickle.loads(pickle.dumps(MLPRegressor(hidden_layer_sizes=[3, 4])))
    assert unfitted.get_params() == MLPRegressor(hidden_layer_sizes=[3, 4]).get_params()


# -- the README's example ------------------------------------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"
IMPORT = "from steepest.sklearn import MLPClassifier  # was: from sklearn.neural_network import ..."


def readme_example() -> str:
    """The python block of the README's scikit-learn section."""
    if not README.is_file():
        pytest.skip("the README is not next to the tests")
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## scikit-learn estimators"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("\n```", start)]


@pytest.mark.parametrize("import_line", [
    IMPORT, "from sklearn.neural_network import MLPClassifier"], ids=["steepest", "sklearn"])
def test_the_readme_example_runs_unchanged_but_for_the_import(import_line, capsys):
    pytest.importorskip("pandas")
    code = readme_example()
    assert IMPORT in code
    namespace = {}
    exec(compile(code.replace(IMPORT, import_line), "README example", "exec"), namespace)
    assert type(namespace["mlp"]).__module__.startswith(import_line.split()[1])
    assert namespace["grid"].score(namespace["X_test"], namespace["y_test"]) >= 0.9
    assert namespace["scores"].mean() >= 0.9
    assert list(namespace["mlp"].feature_names_in_[:3]) == ["alcohol", "malic_acid", "ash"]
    assert "cross-validated accuracy" in capsys.readouterr().out
