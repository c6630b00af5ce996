"""Every bad input raises ValueError/TypeError naming the argument, before anything changes;
non-contiguous inputs and other dtypes give the same results as contiguous float arrays."""
from __future__ import annotations

import numpy as np
import pytest

import steepest as st

CE = st.losses.CrossEntropy()


@pytest.fixture
def setup(rng):
    model = st.Sequential(st.Dense(4, 8), st.ReLU(), st.Dense(8, 3), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    X = rng.normal(size=(20, 4))
    y = rng.integers(0, 3, 20)
    return model, opt, X, y


def unchanged(model, opt, before):
    assert model.flat_params().tobytes() == before
    assert opt.steps == 0


def refuses_everywhere(model, opt, X, y, error, match, loss=CE):
    """fit, train_step and evaluate all refuse (X, y) with `error` matching `match`, and the
    weights stay as they were."""
    before = model.flat_params().tobytes()
    with pytest.raises(error, match=match):
        model.fit(X, y, loss=loss, optimizer=opt, epochs=1, verbose=0)
    with pytest.raises(error, match=match.replace("\\bX\\b", "x").replace("\\by\\b", "y")):
        model.train_step(X, y, loss, opt)
    with pytest.raises(error, match=match):
        model.evaluate(X, y, loss)
    unchanged(model, opt, before)


# -- shapes and sizes ----------------------------------------------------------------------------

def test_wrong_feature_count(setup):
    model, opt, X, y = setup
    bad = np.zeros((20, 5))
    refuses_everywhere(model, opt, bad, y, ValueError, r"(?i)\bx\b has 5 features .*expects 4")
    with pytest.raises(ValueError, match=r"X has 5 features"):
        model.predict(bad)
    with pytest.raises(ValueError, match=r"x has 5 features"):
        model.forward(bad)


@pytest.mark.parametrize("shape", [(4,), (2, 2, 4), ()])
def test_wrong_ndim(setup, shape):
    model, opt, X, y = setup
    refuses_everywhere(model, opt, np.zeros(shape), y, ValueError, r"(?i)\bx\b must be 2-D")
    with pytest.raises(ValueError, match=r"X must be 2-D"):
        model.predict(np.zeros(shape))


def test_x_y_length_mismatch(setup):
    model, opt, X, y = setup
    refuses_everywhere(model, opt, X, y[:15], ValueError, r"\by has 15 samples but X has 20")
    mse_model = st.Sequential(st.Dense(4, 2), seed=0)
    mse_opt = st.optim.SGD(mse_model.parameters(), lr=0.1)
    refuses_everywhere(mse_model, mse_opt, X, np.zeros((19, 2)), ValueError, r"\by has 19 samples",
                       loss=st.losses.MSE())


def test_regression_target_shape(setup):
    model, opt, X, y = setup
    with pytest.raises(ValueError, match=r"y must have shape \(samples, 3\)"):
        model.fit(X, np.zeros((20, 2)), loss=st.losses.MSE(), optimizer=opt, verbose=0)
    with pytest.raises(ValueError, match=r"y must be 1-D"):
        model.fit(X, np.zeros((20, 3), dtype=int), loss=CE, optimizer=opt, verbose=0)


def test_empty_data(setup):
    model, opt, X, y = setup
    refuses_everywhere(model, opt, np.zeros((0, 4)), y[:0], ValueError, r"(?i)\bx\b is empty")
    with pytest.raises(ValueError, match="X is empty"):
        model.predict(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="out is empty"):
        CE.forward(np.zeros((0, 3)), np.zeros(0, dtype=int))


# -- labels --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [3, 7, -1])
def test_labels_out_of_range_or_negative(setup, bad):
    # four distinct labels for three outputs: neither class indices nor one label per output
    model, opt, X, y = setup
    y = y.copy()
    y[4] = bad
    before = model.flat_params().tobytes()
    for train in (lambda: model.fit(X, y, loss=CE, optimizer=opt, verbose=0),
                  lambda: model.train_step(X, y, CE, opt)):
        with pytest.raises(ValueError, match=r"\by holds 4 distinct labels .* 3 outputs.*"
                                             r"labels must be in \[0, 2\]"):
            train()
    with pytest.raises(ValueError, match=r"\by holds labels in .* must be in \[0, 2\]"):
        model.evaluate(X, y, CE)
    unchanged(model, opt, before)
    assert model.classes_ is None


def test_non_integer_labels(setup):
    model, opt, X, y = setup
    refuses_everywhere(model, opt, X, y + 0.5, TypeError, r"\by must hold integer class labels")
    # booleans are labels, but two of them cannot name three outputs
    with pytest.raises(ValueError, match=r"\by holds 2 distinct labels \[False, True\]"):
        model.fit(X, y > 0, loss=CE, optimizer=opt, verbose=0)
    with pytest.raises(TypeError, match=r"\by holds labels of dtype bool.* has none"):
        model.evaluate(X, y > 0, CE)  # no classes_ to map them through


def test_integral_float_labels_are_accepted(setup):
    model, opt, X, y = setup
    a = model.evaluate(X, y.astype(np.float32), CE)
    assert a == model.evaluate(X, y, CE) == model.evaluate(X, y.astype(np.uint8)[:, None], CE)


def test_bce_targets_must_be_probabilities(rng):
    model = st.Sequential(st.Dense(4, 2), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    X = rng.normal(size=(10, 4))
    refuses_everywhere(model, opt, X, np.full((10, 2), 1.5), ValueError, r"\by must hold "
                       r"probabilities", loss=st.losses.BinaryCrossEntropy())


# -- non-numeric ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda X: X.astype(str),
    lambda X: X.astype(object),
    lambda X: [["a", "b", "c", "d"]] * len(X),
    lambda X: X.astype(complex),
], ids=["str", "object", "list_of_str", "complex"])
def test_non_numeric_x(setup, make):
    model, opt, X, y = setup
    refuses_everywhere(model, opt, make(X), y, TypeError, r"(?i)\bx\b must be a numeric array")
    with pytest.raises(TypeError, match="X must be a numeric array"):
        model.predict(make(X))


@pytest.mark.parametrize("make", [lambda y: y.astype(str), lambda y: y.astype(object)],
                         ids=["str", "object"])
def test_non_numeric_y(setup, make):
    model, opt, X, y = setup
    mse = st.Sequential(st.Dense(4, 1), seed=0)
    mse_opt = st.optim.SGD(mse.parameters(), lr=0.1)
    refuses_everywhere(mse, mse_opt, X, make(y), TypeError, r"\by must be a numeric array",
                       loss=st.losses.MSE())
    # for a classification loss, strings are labels: without classes_ evaluate cannot map them
    # (Python integers in an object array are class indices, as scikit-learn takes them)
    if make(y).dtype == object:
        assert model.evaluate(X, make(y), CE) == model.evaluate(X, y, CE)
    else:
        with pytest.raises(TypeError, match=r"\by holds labels of dtype .*classes_, but it has "
                                            "none"):
            model.evaluate(X, make(y), CE)


def test_labels_of_mixed_types_are_refused(setup):
    model, opt, X, y = setup
    mixed = y.astype(object)
    mixed[0] = "a"
    with pytest.raises(TypeError, match=r"\by must hold labels of one type .*int, str"):
        model.fit(X, mixed, loss=CE, optimizer=opt, verbose=0)


# -- NaN and infinity ----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_x_refused_before_any_update(setup, value):
    model, opt, X, y = setup
    X = X.copy()
    X[13, 2] = value
    refuses_everywhere(model, opt, X, y, ValueError, r"(?i)\bx\b contains NaN or infinity")
    with pytest.raises(ValueError, match="X contains NaN"):
        model.predict(X)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_y_refused_before_any_update(rng, value):
    model = st.Sequential(st.Dense(4, 2), seed=0)
    opt = st.optim.Adam(model.parameters())
    X, y = rng.normal(size=(10, 4)), rng.normal(size=(10, 2))
    y[9, 1] = value
    refuses_everywhere(model, opt, X, y, ValueError, r"\by contains NaN or infinity",
                       loss=st.losses.MSE())
    labels = np.array([0.0, 1.0, value, 1.0] * 5)
    cls = st.Sequential(st.Dense(4, 3), seed=0)
    refuses_everywhere(cls, st.optim.SGD(cls.parameters()), rng.normal(size=(20, 4)), labels,
                       ValueError, r"\by contains NaN or infinity")


def test_non_finite_validation_data(setup):
    model, opt, X, y = setup
    before = model.flat_params().tobytes()
    Xv = X.copy()
    Xv[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"validation_data\[0\] contains NaN"):
        model.fit(X, y, loss=CE, optimizer=opt, validation_data=(Xv, y), verbose=0)
    with pytest.raises(ValueError, match=r"validation_data\[1\] holds labels"):
        model.fit(X, y, loss=CE, optimizer=opt, validation_data=(X, y + 5), verbose=0)
    unchanged(model, opt, before)


def test_non_finite_step_api(setup):
    model, opt, X, y = setup
    out = model.forward(X, training=True)
    bad = out.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="out contains NaN"):
        CE.forward(bad, y)
    with pytest.raises(ValueError, match="grad contains NaN"):
        model.backward(bad)
    with pytest.raises(ValueError, match=r"grad has shape \(20, 2\)"):
        model.backward(out[:, :2])


def test_load_state_dict_refuses_bad_values(setup):
    model, opt, X, y = setup
    before = model.flat_params().tobytes()
    sd = {k: v.copy() for k, v in model.state_dict().items()}
    sd["2.bias"] = sd["2.bias"] + 1
    sd["0.weight"][0, 0] = np.inf
    with pytest.raises(ValueError, match=r"0\.weight.*NaN or infinity"):
        model.load_state_dict(sd)
    assert model.flat_params().tobytes() == before  # nothing half-loaded
    sd["0.weight"] = np.zeros((4, 8))
    with pytest.raises(ValueError, match=r"0\.weight.*shape"):
        model.load_state_dict(sd)
    del sd["0.weight"]
    with pytest.raises(ValueError, match=r"missing \['0\.weight'\]"):
        model.load_state_dict(sd)
    with pytest.raises(TypeError, match="state"):
        model.load_state_dict([1, 2])


# -- hyper-parameters ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,kwargs,error,match", [
    ("SGD", {"lr": -0.1}, ValueError, "lr"),
    ("SGD", {"momentum": -0.5}, ValueError, "momentum"),
    ("SGD", {"weight_decay": -1}, ValueError, "weight_decay"),
    ("SGD", {"nesterov": True}, ValueError, "nesterov"),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, ValueError, "nesterov"),
    ("SGD", {"lr": "0.1"}, TypeError, "lr"),
    ("SGD", {"lr": float("nan")}, ValueError, "lr"),
    ("SGD", {"lr": True}, TypeError, "lr"),
    ("Adam", {"lr": -1e-3}, ValueError, "lr"),
    ("Adam", {"betas": (1.0, 0.999)}, ValueError, r"betas\[0\]"),
    ("Adam", {"betas": (0.9, 1.5)}, ValueError, r"betas\[1\]"),
    ("Adam", {"betas": (-0.1, 0.9)}, ValueError, r"betas\[0\]"),
    ("Adam", {"betas": 0.9}, TypeError, "betas"),
    ("Adam", {"eps": -1e-8}, ValueError, "eps"),
    ("Adam", {"weight_decay": -0.1}, ValueError, "weight_decay"),
    ("AdamW", {"betas": (0.9, 1.0)}, ValueError, r"betas\[1\]"),
    ("AdamW", {"lr": -1}, ValueError, "lr"),
    ("RMSprop", {"alpha": -0.9}, ValueError, "alpha"),
    ("RMSprop", {"momentum": -0.1}, ValueError, "momentum"),
    ("RMSprop", {"eps": -1.0}, ValueError, "eps"),
    ("Adagrad", {"lr_decay": -0.1}, ValueError, "lr_decay"),
    ("Adagrad", {"initial_accumulator_value": -1}, ValueError, "initial_accumulator_value"),
    ("Adagrad", {"eps": -1}, ValueError, "eps"),
])
def test_bad_optimizer_hyperparameters(name, kwargs, error, match):
    model = st.Sequential(st.Dense(2, 2), seed=0)
    with pytest.raises(error, match=match):
        getattr(st.optim, name)(model.parameters(), **kwargs)


def test_bad_optimizer_params_and_lr_changes(setup):
    model, opt, X, y = setup
    with pytest.raises(ValueError, match="params is empty"):
        st.optim.Adam([])
    with pytest.raises(TypeError, match="params"):
        st.optim.Adam([np.zeros(3)])
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -0.5
    with pytest.raises(TypeError, match="lr"):
        opt.lr = None
    assert opt.lr == 0.1
    other = st.Sequential(st.Dense(4, 3), seed=1)
    with pytest.raises(ValueError, match="optimizer"):
        model.fit(X, y, loss=CE, optimizer=st.optim.SGD(other.parameters()), verbose=0)
    with pytest.raises(TypeError, match="optimizer"):
        model.fit(X, y, loss=CE, optimizer="adam", verbose=0)
    with pytest.raises(TypeError, match="loss"):
        model.fit(X, y, loss="mse", optimizer=opt, verbose=0)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"epochs": -1}, ValueError, "epochs"),
    ({"epochs": 2.5}, TypeError, "epochs"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": 1.5}, TypeError, "batch_size"),
    ({"verbose": -1}, ValueError, "verbose"),
    ({"validation_data": np.zeros((3, 4))}, TypeError, "validation_data"),
    ({"callbacks": [print]}, TypeError, "callbacks"),
    ({"clip_grad_norm": 0.0}, ValueError, "clip_grad_norm"),
    ({"clip_grad_norm": -1.0}, ValueError, "clip_grad_norm"),
])
def test_bad_fit_arguments(setup, kwargs, error, match):
    model, opt, X, y = setup
    before = model.flat_params().tobytes()
    with pytest.raises(error, match=match):
        model.fit(X, y, loss=CE, optimizer=opt, **{"verbose": 0, **kwargs})
    unchanged(model, opt, before)


@pytest.mark.parametrize("make,error,match", [
    (lambda: st.Dense(0, 3), ValueError, "in_features"),
    (lambda: st.Dense(3, 0), ValueError, "out_features"),
    (lambda: st.Dense(-2, 3), ValueError, "in_features"),
    (lambda: st.Dense(2.5, 3), TypeError, "in_features"),
    (lambda: st.Dense(3, "4"), TypeError, "out_features"),
    (lambda: st.Dense(3, 4, bias="yes"), TypeError, "bias"),
    (lambda: st.Dense(3, 4, init="uniformish"), ValueError, "init"),
    (lambda: st.Dense(3, 4, init=None), TypeError, "init"),
    (lambda: st.Dropout(-0.1), ValueError, r"\bp\b"),
    (lambda: st.Dropout(1.0), ValueError, r"\bp\b"),
    (lambda: st.Dropout(1.5), ValueError, r"\bp\b"),
    (lambda: st.Dropout("0.5"), TypeError, r"\bp\b"),
    (lambda: st.LeakyReLU("x"), TypeError, "negative_slope"),
    (lambda: st.ELU(-1.0), ValueError, "alpha"),
    (lambda: st.losses.Huber(0.0), ValueError, "delta"),
    (lambda: st.losses.Huber(-1.0), ValueError, "delta"),
    (lambda: st.losses.CrossEntropy(label_smoothing=1.5), ValueError, "label_smoothing"),
    (lambda: st.losses.CrossEntropy(label_smoothing=-0.1), ValueError, "label_smoothing"),
])
def test_bad_layer_and_loss_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("make,error,match", [
    (lambda: st.Sequential(), ValueError, "layers is empty"),
    (lambda: st.Sequential(st.ReLU()), ValueError, "Dense"),
    (lambda: st.Sequential("relu"), TypeError, "layer 0"),
    (lambda: st.Sequential(st.Dense(2, 3), st.ReLU, st.Dense(3, 1)), TypeError, "layer 1"),
    (lambda: st.Sequential(st.Dense(4, 8), st.ReLU(), st.Dense(7, 2)), ValueError,
     r"layer 2 .*expects 7 features .*gives 8"),
    (lambda: st.Sequential(st.Dense(2, 2), dtype="float16"), ValueError, "dtype"),
    (lambda: st.Sequential(st.Dense(2, 2), dtype=None), TypeError, "dtype"),
    (lambda: st.Sequential(st.Dense(2, 2), dtype="int32"), ValueError, "dtype"),
    (lambda: st.Sequential(st.Dense(2, 2), dtype="banana"), TypeError, "dtype"),
    (lambda: st.Sequential(st.Dense(2, 2), seed=-1), ValueError, "seed"),
    (lambda: st.Sequential(st.Dense(2, 2), seed=1.5), TypeError, "seed"),
])
def test_bad_model_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_numpy_dtypes_accepted_for_dtype():
    assert st.Sequential(st.Dense(2, 2), dtype=np.float64).dtype == np.float64
    assert st.Sequential(st.Dense(2, 2), dtype=np.dtype("float32")).dtype == np.float32


@pytest.mark.parametrize("make,error,match", [
    (lambda o: st.schedules.StepLR(o, step_size=0), ValueError, "step_size"),
    (lambda o: st.schedules.StepLR(o, step_size=2, gamma=-1), ValueError, "gamma"),
    (lambda o: st.schedules.ExponentialLR(o, gamma=-0.5), ValueError, "gamma"),
    (lambda o: st.schedules.CosineAnnealingLR(o, T_max=0), ValueError, "T_max"),
    (lambda o: st.schedules.LinearWarmup(o, warmup_epochs=0), ValueError, "warmup_epochs"),
    (lambda o: st.schedules.LinearWarmup(o, 5, start_factor=0.0), ValueError, "start_factor"),
    (lambda o: st.schedules.ReduceLROnPlateau(o, factor=1.0), ValueError, "factor"),
    (lambda o: st.schedules.ReduceLROnPlateau(o, mode="up"), ValueError, "mode"),
    (lambda o: st.schedules.StepLR("opt", step_size=1), TypeError, "optimizer"),
    (lambda o: st.schedules.ConstantLR(o, factor=0.0), ValueError, "factor"),
    (lambda o: st.schedules.ConstantLR(o, factor=1.5), ValueError, "factor"),
    (lambda o: st.schedules.LinearLR(o, end_factor=1.2), ValueError, "end_factor"),
    (lambda o: st.schedules.LinearLR(o, total_iters=0), ValueError, "total_iters"),
    (lambda o: st.schedules.PolynomialLR(o, total_iters=0), ValueError, "total_iters"),
    (lambda o: st.schedules.CosineAnnealingWarmRestarts(o, T_0=0), ValueError, "T_0"),
    (lambda o: st.schedules.CosineAnnealingWarmRestarts(o, 2, T_mult=0), ValueError, "T_mult"),
    (lambda o: st.schedules.OneCycleLR(o, 1.0), ValueError, "total_steps"),
    (lambda o: st.schedules.OneCycleLR(o, 1.0, 10, pct_start=1.5), ValueError, "pct_start"),
    (lambda o: st.schedules.OneCycleLR(o, 1.0, 10, anneal_strategy="exp"), ValueError,
     "anneal_strategy"),
    (lambda o: st.schedules.OneCycleLR(o, 1.0, 10, cycle_momentum=False, div_factor=0),
     ValueError, "div_factor"),
    (lambda o: st.schedules.ReduceLROnPlateau(o, threshold_mode="pct"), ValueError,
     "threshold_mode"),
    (lambda o: st.schedules.ReduceLROnPlateau(o, cooldown=-1), ValueError, "cooldown"),
    (lambda o: st.schedules.SequentialLR(o, [], []), ValueError, "at least one"),
    (lambda o: st.schedules.SequentialLR(o, [st.schedules.StepLR(o, 2)], [3]), ValueError,
     "milestones"),
    (lambda o: st.schedules.SequentialLR(o, [st.schedules.ReduceLROnPlateau(o)], []),
     ValueError, "ReduceLROnPlateau"),
    (lambda o: st.schedules.ChainedScheduler([st.schedules.StepLR(o, 2), "x"]), TypeError,
     "schedulers\\[1\\]"),
    (lambda o: st.callbacks.EarlyStopping(patience=-1), ValueError, "patience"),
    (lambda o: st.callbacks.EarlyStopping(mode="best"), ValueError, "mode"),
])
def test_bad_schedule_and_callback_arguments(make, error, match):
    model = st.Sequential(st.Dense(2, 2), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(error, match=match):
        make(opt)


def test_bad_gradcheck_and_clip_arguments(setup):
    model, opt, X, y = setup
    with pytest.raises(ValueError, match="eps"):
        st.gradcheck(model, CE, X, y, eps=0)
    with pytest.raises(ValueError, match="max_norm"):
        st.clip_grad_norm_(model, 0)
    with pytest.raises(RuntimeError, match="forward"):
        st.Sequential(st.Dense(2, 2), seed=0).backward(np.zeros((1, 2)))
    with pytest.raises(RuntimeError, match="forward"):
        st.losses.MSE().backward()


# -- layouts and dtypes: converted once, same results --------------------------------------------

def _layouts(rng):
    base = rng.normal(size=(30, 8))
    X = np.ascontiguousarray(base[:, ::2])  # the reference: C-contiguous float64
    return X, {
        "strided": base[:, ::2],
        "fortran": np.asfortranarray(X),
        "reversed_rows": X[::-1][::-1],
        "transposed_view": np.ascontiguousarray(X.T).T,
        "big_endian": X.astype(">f8"),
        "readonly": np.frombuffer(X.tobytes(), dtype=np.float64).reshape(X.shape),
        "list": X.tolist(),
    }


@pytest.mark.parametrize("layout", ["strided", "fortran", "reversed_rows", "transposed_view",
                                    "big_endian", "readonly", "list"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_non_contiguous_inputs_give_identical_results(layout, dtype, rng):
    X, variants = _layouts(rng)
    Xv = variants[layout]
    y = rng.integers(0, 3, 30)
    y_strided = np.repeat(y, 2)[::2]
    assert not y_strided.flags.c_contiguous

    def train(X_, y_):
        model = st.Sequential(st.Dense(4, 6), st.Tanh(), st.Dense(6, 3), dtype=dtype, seed=0)
        opt = st.optim.Adam(model.parameters(), lr=0.01)
        model.fit(X_, y_, loss=CE, optimizer=opt, epochs=2, batch_size=7, verbose=0,
                  validation_data=(X_, y_))
        model.train_step(X_, y_, CE, opt)
        return model

    ref, other = train(X, y), train(Xv, y_strided)
    assert ref.flat_params().tobytes() == other.flat_params().tobytes()
    assert ref.predict(X).tobytes() == ref.predict(Xv).tobytes()
    assert ref.evaluate(X, y, CE) == ref.evaluate(Xv, y_strided, CE)


@pytest.mark.parametrize("in_dtype", [np.float16, np.float32, np.int64, np.int8, np.uint8,
                                      np.bool_])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_other_input_dtypes_equal_the_converted_float_case(in_dtype, dtype, rng):
    X = (rng.normal(size=(25, 4)) * 3).astype(in_dtype)
    y = rng.normal(size=(25, 2))
    reference = np.asarray(X, dtype=np.float64)

    def train(X_, y_):
        model = st.Sequential(st.Dense(4, 5), st.SiLU(), st.Dense(5, 2), dtype=dtype, seed=1)
        opt = st.optim.SGD(model.parameters(), lr=0.01)
        model.fit(X_, y_, loss=st.losses.MSE(), optimizer=opt, epochs=2, batch_size=5, verbose=0)
        return model

    a, b = train(X, y.astype(np.float32)), train(reference, y.astype(np.float32).astype(float))
    assert a.flat_params().tobytes() == b.flat_params().tobytes()
    assert a.predict(X).tobytes() == a.predict(reference).tobytes()
    assert a.predict(X).dtype == np.dtype(dtype)


def test_values_beyond_float32_range_are_refused(rng):
    """1e39 is a finite float64 but overflows float32: refused by name, no warning."""
    model = st.Sequential(st.Dense(2, 2), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    X = np.array([[1e39, 0.0], [0.0, 1.0]])
    refuses_everywhere(model, opt, X, np.array([0, 1]), ValueError, r"(?i)\bx\b holds values too "
                       r"large for float32")
    with pytest.raises(ValueError, match=r"\by holds values too large"):
        model.fit(X[1:], np.array([[-1e40, 0.0]]), loss=st.losses.MSE(), optimizer=opt,
                  verbose=0)


def test_float64_data_into_float32_model(rng):
    model = st.Sequential(st.Dense(4, 3), seed=0)
    X = rng.normal(size=(5, 4))
    np.testing.assert_array_equal(model.predict(X), model.predict(X.astype(np.float32)))
    out = st.losses.MSE().forward(np.ones((2, 2), dtype=np.int32), np.zeros((2, 2)))
    assert out == 1.0  # integer outputs are converted too
