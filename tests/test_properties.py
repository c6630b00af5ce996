"""Property-based tests (hypothesis) over random architectures, activations, losses, dtypes,
batch sizes and data shapes:

- training, prediction and the step-by-step API never crash, and never leave a non-finite
  parameter behind (a divergence is reported with TrainingDiverged);
- backpropagation agrees with central finite differences (float64, away from kinks);
- bad input of every kind raises ValueError or TypeError, never anything else.

The default run keeps the example counts small; ``-m slow`` runs the same properties with
many more examples (used for the sanitizer runs, see tests/sanitize.sh).
"""
from __future__ import annotations

import math

import hypothesis.strategies as hs
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings

import steepest as st
from steepest.gradcheck import backprop_gradient, numerical_gradient

FAST = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(max_examples=3000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

KINKED = (st.ReLU, st.LeakyReLU, st.ELU)  # derivative jumps at 0 (ELU unless alpha == 1)
INITS = ("torch_default", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
         "lecun_normal", "normal", "zeros")
LOSSES = ("MSE", "L1", "Huber", "BinaryCrossEntropy", "CrossEntropy")


# -- strategies ---------------------------------------------------------------------------------
@hs.composite
def activation_layer(draw, smooth=False):
    kinds = ["GELU", "SiLU", "Sigmoid", "Tanh", "Softplus", "Softmax", "Dropout"]
    if not smooth:
        kinds += ["ReLU", "LeakyReLU", "ELU"]
    kind = draw(hs.sampled_from(kinds))
    if kind == "LeakyReLU":
        return st.LeakyReLU(draw(hs.floats(-1.0, 1.0)))
    if kind == "ELU":
        return st.ELU(draw(hs.floats(0.0, 2.0)))
    if kind == "Dropout":
        return st.Dropout(draw(hs.floats(0.0, 0.9)))
    return getattr(st, kind)()


@hs.composite
def architecture(draw, smooth=False, max_dense=4):
    """1-4 Dense layers of widths 1-16 with 0-2 elementwise layers after each."""
    n_dense = draw(hs.integers(1, max_dense))
    widths = [draw(hs.integers(1, 16)) for _ in range(n_dense + 1)]
    inits = INITS[:-1] if smooth else INITS  # all-zero weights make a trivial gradient check
    layers = []
    for i in range(n_dense):
        layers.append(st.Dense(widths[i], widths[i + 1], bias=draw(hs.booleans()),
                               init=draw(hs.sampled_from(inits))))
        for _ in range(draw(hs.integers(0, 2 if i + 1 < n_dense else 1))):
            layers.append(draw(activation_layer(smooth)))
    return layers


def make_loss(name, draw):
    if name == "Huber":
        return st.losses.Huber(draw(hs.floats(0.05, 5.0)))
    if name == "CrossEntropy":
        return st.losses.CrossEntropy(draw(hs.sampled_from([0.0, 0.1, 0.5])))
    return getattr(st.losses, name)()


def make_targets(loss, n, c, rng):
    if isinstance(loss, st.losses.CrossEntropy):
        return rng.integers(0, c, size=n)
    if isinstance(loss, st.losses.BinaryCrossEntropy):
        return rng.uniform(0, 1, size=(n, c))
    return rng.normal(size=(n, c))


def make_optimizer(name, model, lr):
    params = model.parameters()
    if name == "SGD":
        return st.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
    if name == "RMSprop":
        return st.optim.RMSprop(params, lr=lr, momentum=0.5, centered=True)
    if name == "Adam":
        return st.optim.Adam(params, lr=lr, amsgrad=True)
    return getattr(st.optim, name)(params, lr=lr)


# -- 1. no crash, no NaN left behind ----------------------------------------------------------
def check_training_never_crashes(data):
    layers = data.draw(architecture(), label="layers")
    dtype = data.draw(hs.sampled_from(["float32", "float64"]), label="dtype")
    model = st.Sequential(*layers, dtype=dtype, seed=data.draw(hs.integers(0, 2**63 - 1)))
    loss = make_loss(data.draw(hs.sampled_from(LOSSES), label="loss"), data.draw)
    n = data.draw(hs.integers(1, 40), label="samples")
    rng = np.random.default_rng(data.draw(hs.integers(0, 2**32 - 1)))
    scale = data.draw(hs.sampled_from([1e-3, 1.0, 30.0]), label="scale")
    X = rng.normal(size=(n, model.in_features)) * scale
    y = make_targets(loss, n, model.out_features, rng)
    opt = make_optimizer(data.draw(hs.sampled_from(sorted(st.optim.OPTIMIZERS))), model,
                         data.draw(hs.sampled_from([1e-3, 0.1, 10.0]), label="lr"))
    batch = data.draw(hs.one_of(hs.none(), hs.integers(1, n + 5)), label="batch_size")
    clip = data.draw(hs.sampled_from([None, 1.0]), label="clip")
    try:
        history = model.fit(X, y, loss=loss, optimizer=opt, epochs=2, batch_size=batch,
                            shuffle=data.draw(hs.booleans()), verbose=0, clip_grad_norm=clip)
        assert len(history["loss"]) == 2
        assert all(math.isfinite(v) for v in history["loss"])
    except st.TrainingDiverged:
        pass
    assert np.isfinite(model.flat_params()).all(), "a parameter was left non-finite"

    out = model.predict(X)
    assert out.shape == (n, model.out_features) and out.dtype == model.dtype
    try:
        model.evaluate(X, y, loss)
        model.train_step(X[: max(1, n // 2)], y[: max(1, n // 2)], loss, opt)
    except st.TrainingDiverged:
        pass
    assert np.isfinite(model.flat_params()).all()
    # the step-by-step API: forward, loss, backward, step
    opt.zero_grad()
    out = model.forward(X, training=True)
    if np.isfinite(out).all():
        loss.forward(out, y)
        model.backward(loss.backward())
        assert model.flat_grads().shape == (model.num_parameters(),)


# random architectures may end with a Sigmoid or Softmax before a loss on logits: that warns
NO_LOGITS_WARNING = pytest.mark.filterwarnings("ignore:the model ends with:UserWarning")


@NO_LOGITS_WARNING
@FAST
@given(hs.data())
def test_training_never_crashes(data):
    check_training_never_crashes(data)


@NO_LOGITS_WARNING
@pytest.mark.slow
@SLOW
@given(hs.data())
def test_training_never_crashes_many(data):
    check_training_never_crashes(data)


# -- 2. backpropagation agrees with finite differences ----------------------------------------
def kink_distance(model, X):
    """The smallest |pre-activation| entering a kinked activation (inf when there is none)."""
    outs = model.layer_outputs(X)
    dist = math.inf
    for k, layer in enumerate(model.layers):
        if isinstance(layer, KINKED) and k > 0:
            if isinstance(layer, st.ELU) and layer.alpha == 1.0:
                continue
            dist = min(dist, float(np.abs(outs[k - 1]).min()))
    return dist


def check_gradients(data, smooth):
    layers = data.draw(architecture(smooth=smooth), label="layers")
    model = st.Sequential(*layers, dtype="float64", seed=data.draw(hs.integers(0, 2**32)))
    loss = make_loss(data.draw(hs.sampled_from(LOSSES), label="loss"), data.draw)
    n = data.draw(hs.integers(1, 12), label="samples")
    rng = np.random.default_rng(data.draw(hs.integers(0, 2**32 - 1)))
    X = rng.normal(size=(n, model.in_features))
    y = make_targets(loss, n, model.out_features, rng)
    eps = 1e-6
    # Finite differences are meaningless across a kink: keep every kink well away.
    assume(kink_distance(model, X) > 1e3 * eps * (1 + np.abs(model.flat_params()).sum()))
    if isinstance(loss, st.losses.L1):
        assume(np.abs(model.predict(X) - y).min() > 1e-3)

    analytic = backprop_gradient(model, loss, X, y)
    n = model.num_parameters()
    index = rng.choice(n, size=40, replace=False) if n > 40 else np.arange(n)
    numeric = numerical_gradient(model, loss, X, y, eps, index)
    np.testing.assert_allclose(analytic[index], numeric, rtol=1e-4, atol=1e-6)


@FAST
@given(hs.data())
def test_gradients_match_finite_differences(data):
    check_gradients(data, smooth=True)


@settings(FAST, max_examples=150)
@given(hs.data())
def test_gradients_match_finite_differences_with_kinked_activations(data):
    check_gradients(data, smooth=False)


@pytest.mark.slow
@SLOW
@given(hs.data(), hs.booleans())
def test_gradients_match_finite_differences_many(data, smooth):
    check_gradients(data, smooth=smooth)


@settings(FAST, max_examples=40)
@given(architecture(smooth=True, max_dense=3), hs.integers(0, 1000))
def test_gradcheck_agrees(layers, seed):
    model = st.Sequential(*layers, dtype="float32", seed=seed)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(5, model.in_features))
    y = rng.integers(0, model.out_features, size=5)
    # float32 model: gradcheck checks a float64 copy of it
    assert st.gradcheck(model, st.losses.CrossEntropy(), X, y, max_checks=30, atol=1e-5) < 1e-4


# -- 3. bad input raises ValueError / TypeError --------------------------------------------------
def small_problem(data):
    """A valid model, loss, optimizer and data set, to be spoiled one piece at a time."""
    dtype = data.draw(hs.sampled_from(["float32", "float64"]))
    n_in, n_out = data.draw(hs.integers(1, 6)), data.draw(hs.integers(1, 5))
    model = st.Sequential(st.Dense(n_in, 4), st.Tanh(), st.Dense(4, n_out), dtype=dtype, seed=0)
    loss = make_loss(data.draw(hs.sampled_from(LOSSES)), data.draw)
    n = data.draw(hs.integers(1, 10))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, n_in))
    y = make_targets(loss, n, n_out, rng)
    return model, loss, st.optim.SGD(model.parameters(), lr=0.01), X, y


BAD_SCALARS = [float("nan"), float("inf"), -float("inf"), -1, -1.5, "1", None, [1], True,
               -(2**64), np.float32("inf"), np.float64("nan"), complex(1, 1)]
BAD_INTEGERS = [0, -1, 1.5, "3", None, True, float("nan"), 2**64, np.float32(2), [2]]


def bad_array(data, shape, dtype):
    """Something that is not a valid (shape, dtype) array of finite values."""
    kind = data.draw(hs.sampled_from(["ndim", "shape", "empty", "nan", "inf", "object",
                                      "string", "complex", "overflow", "scalar", "ragged"]))
    if kind == "ndim":
        extra = data.draw(hs.sampled_from([(), (2,), (1, 1)]))
        bad = tuple(shape[:1]) + extra if extra else ()
        assume(len(bad) != len(shape))  # (n, 2) for (n, 1) is another shape, not another ndim
        return np.zeros(bad, dtype)
    if kind == "shape":
        bad = [s + data.draw(hs.sampled_from([-1, 1, 7])) for s in shape]
        assume(all(s > 0 for s in bad) and tuple(bad) != tuple(shape))
        return np.zeros(bad, dtype)
    if kind == "empty":
        return np.zeros((0,) + tuple(shape[1:]), dtype)
    if kind in ("nan", "inf"):
        a = np.zeros(shape, np.float64)
        a.flat[data.draw(hs.integers(0, a.size - 1))] = np.nan if kind == "nan" else -np.inf
        return a
    if kind == "object":
        return np.full(shape, None, dtype=object)
    if kind == "string":
        return np.full(shape, "1")
    if kind == "complex":
        return np.zeros(shape, np.complex128)
    if kind == "overflow":  # finite in float64, infinite in float32: only float32 refuses it
        a = np.zeros(shape, np.float64)
        a.flat[0] = 1e300
        return a
    if kind == "scalar":
        return 3.0
    return [[1.0] * (i + 1) for i in range(max(2, shape[0]))]


def bad_call(data):
    """(description, zero-argument callable that must raise ValueError/TypeError)."""
    model, loss, opt, X, y = small_problem(data)
    what = data.draw(hs.sampled_from([
        "fit X", "fit y", "predict X", "evaluate y", "train_step x", "labels", "targets",
        "hyper fit", "optimizer", "layer", "model", "loss", "backward", "load_state_dict",
        "loss.forward"]))
    classification = isinstance(loss, st.losses.CrossEntropy)
    n, c = X.shape[0], model.out_features

    def fit(**kw):
        args = dict(loss=loss, optimizer=opt, epochs=1, batch_size=4, verbose=0)
        args.update(kw)
        Xa, ya = args.pop("X", X), args.pop("y", y)
        return lambda: model.fit(Xa, ya, **args)

    if what in ("fit X", "predict X", "train_step x"):
        bad = bad_array(data, X.shape, X.dtype)
        if isinstance(bad, np.ndarray) and bad.dtype == np.float64 and np.isfinite(bad).all() \
                and bad.shape == X.shape:
            assume(model.dtype == np.float32)  # the overflow case
        if what == "fit X":
            return what, fit(X=bad)
        if what == "predict X":
            return what, lambda: model.predict(bad)
        return what, lambda: model.train_step(bad, y, loss, opt)
    if what in ("fit y", "evaluate y"):
        shape = (n,) if classification else (n, c)
        bad = bad_array(data, shape, y.dtype)
        if isinstance(bad, np.ndarray) and bad.shape in ((n,), (n, c), (n, 1)) \
                and bad.dtype.kind == "f" and np.isfinite(bad).all():
            assume(not classification and model.dtype == np.float32 and bad.max() > 1e38)
        if isinstance(bad, np.ndarray) and bad.ndim == 2 and bad.shape == (n, 1) and c == 1:
            assume(False)  # (n, 1) is a valid shape for one output
        if (what == "fit y" and classification and c == 1 and isinstance(bad, np.ndarray)
                and bad.dtype.kind == "U" and bad.shape == (n,)):
            assume(False)  # one string label for one output: a valid (degenerate) classifier
        if what == "fit y":
            return what, fit(y=bad)
        return what, lambda: model.evaluate(X, bad, loss)
    if what == "labels":
        assume(classification)
        bad = np.array(y)
        kind = data.draw(hs.sampled_from(["high", "negative", "fraction", "bool", "uint"]))
        if kind == "high":
            bad[data.draw(hs.integers(0, n - 1))] = c + data.draw(hs.integers(0, 2**40))
        elif kind == "negative":
            bad = bad.astype(data.draw(hs.sampled_from([np.int8, np.int16, np.int32, np.int64])))
            bad[0] = -1
        elif kind == "fraction":
            bad = bad.astype(np.float64) + 0.5
        elif kind == "bool":
            bad = bad.astype(bool)
        else:
            bad = bad.astype(np.uint64)
            bad[-1] = np.uint64(2**64 - 1)
        # (fit would learn classes_ from labels that are not class indices when there are as
        # many distinct ones as outputs; evaluate maps them through classes_, which is None)
        return what + " " + kind, lambda: model.evaluate(X, bad, loss)
    if what == "targets":
        assume(isinstance(loss, st.losses.BinaryCrossEntropy))
        bad = np.array(y)
        bad.flat[0] = data.draw(hs.sampled_from([-0.5, 1.5, 1e9]))
        return what, fit(y=bad)
    if what == "hyper fit":
        name = data.draw(hs.sampled_from(["epochs", "batch_size", "verbose", "clip_grad_norm",
                                          "shuffle_validation"]))
        if name == "clip_grad_norm":
            value = data.draw(hs.sampled_from([v for v in BAD_SCALARS if v is not None]
                                              + [0, 0.0]))
        elif name == "shuffle_validation":
            return what, fit(validation_data=data.draw(hs.sampled_from(
                [X, (X,), (X, y, y), (X[:, :0], y), "xy"])))
        else:
            value = data.draw(hs.sampled_from(BAD_INTEGERS + [-5]))
            assume(not (name in ("verbose", "epochs") and value == 0))
            assume(not (name == "batch_size" and value is None))  # None: full batch, valid
        return f"{what} {name}={value!r}", fit(**{name: value})
    if what == "optimizer":
        name = data.draw(hs.sampled_from(sorted(st.optim.OPTIMIZERS)))
        cls = st.optim.OPTIMIZERS[name]
        flags = ("amsgrad", "nesterov", "centered", "maximize")  # taken as bool(value)
        hyper = data.draw(hs.sampled_from([h for h in cls._hyper if h not in flags]))
        value = data.draw(hs.sampled_from(BAD_SCALARS))
        if hyper in ("beta1", "beta2"):
            betas = [0.9, 0.999]
            betas[hyper == "beta2"] = data.draw(hs.sampled_from(BAD_SCALARS + [1.0, 1.5]))
            kwargs = {"betas": tuple(betas)}
        else:
            assume(not (hyper == "dampening" and isinstance(value, (int, float))
                        and not isinstance(value, bool) and math.isfinite(value)))
            kwargs = {hyper: value}
        return f"{name}({kwargs})", lambda: cls(model.parameters(), **kwargs)
    if what == "layer":
        kind = data.draw(hs.sampled_from(["Dense", "Dropout", "ELU", "LeakyReLU", "init"]))
        if kind == "Dense":
            w = data.draw(hs.sampled_from(BAD_INTEGERS + [2**31, 2**40, -(2**31)]))
            return f"Dense({w})", lambda: st.Dense(w, 3)
        if kind == "Dropout":
            p = data.draw(hs.sampled_from(BAD_SCALARS + [1.0, 2.0]))
            assume(not (isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p < 1))
            return f"Dropout({p!r})", lambda: st.Dropout(p)
        if kind == "ELU":
            a = data.draw(hs.sampled_from(BAD_SCALARS))
            return f"ELU({a!r})", lambda: st.ELU(a)
        if kind == "LeakyReLU":
            s = data.draw(hs.sampled_from(BAD_SCALARS))
            assume(not (isinstance(s, (int, float)) and not isinstance(s, bool)
                        and math.isfinite(s)))
            return f"LeakyReLU({s!r})", lambda: st.LeakyReLU(s)
        init = data.draw(hs.sampled_from(["", "he", 3, None, "ZEROS"]))
        return f"init={init!r}", lambda: st.Dense(2, 2, init=init)
    if what == "model":
        kind = data.draw(hs.sampled_from(["dtype", "seed", "mismatch", "empty", "no dense",
                                          "not a layer"]))
        if kind == "dtype":
            d = data.draw(hs.sampled_from(["float16", "int32", "i", 3, "complex64", "float128"]))
            return f"dtype={d!r}", lambda: st.Sequential(st.Dense(2, 2), dtype=d)
        if kind == "seed":
            s = data.draw(hs.sampled_from([-1, 2**64, 1.5, "0", float("nan")]))
            return f"seed={s!r}", lambda: st.Sequential(st.Dense(2, 2), seed=s)
        if kind == "mismatch":
            return kind, lambda: st.Sequential(st.Dense(2, 3), st.ReLU(), st.Dense(4, 1))
        if kind == "empty":
            return kind, lambda: st.Sequential()
        if kind == "no dense":
            return kind, lambda: st.Sequential(st.ReLU(), st.Softmax())
        return kind, lambda: st.Sequential(st.Dense(2, 2), "relu")
    if what == "loss":
        kind = data.draw(hs.sampled_from(["Huber", "CrossEntropy", "wrong loss",
                                          "wrong optimizer"]))
        if kind == "Huber":
            d = data.draw(hs.sampled_from(BAD_SCALARS + [0, 0.0]))
            return f"Huber({d!r})", lambda: st.losses.Huber(d)
        if kind == "CrossEntropy":
            e = data.draw(hs.sampled_from(BAD_SCALARS + [1.5]))
            return f"CrossEntropy({e!r})", lambda: st.losses.CrossEntropy(e)
        if kind == "wrong loss":
            return kind, fit(loss="mse")
        other = st.Sequential(st.Dense(X.shape[1], c), seed=1)
        return kind, fit(optimizer=st.optim.SGD(other.parameters()))
    if what == "backward":
        out = model.forward(X, training=True)
        bad = bad_array(data, out.shape, out.dtype)
        assume(not (isinstance(bad, np.ndarray) and bad.dtype == np.float64
                    and bad.shape == out.shape and np.isfinite(bad).all()))
        return what, lambda: model.backward(bad)
    if what == "load_state_dict":
        state = {k: v.copy() for k, v in model.state_dict().items()}
        key = data.draw(hs.sampled_from(sorted(state)))
        kind = data.draw(hs.sampled_from(["shape", "nan", "missing", "extra", "object"]))
        if kind == "shape":
            state[key] = np.zeros(state[key].shape + (1,))
        elif kind == "nan":
            state[key].flat[0] = np.nan
        elif kind == "missing":
            del state[key]
        elif kind == "extra":
            state["9.weight"] = state[key]
        else:
            state[key] = np.full(state[key].shape, None, dtype=object)
        return f"{what} {kind}", lambda: model.load_state_dict(state)
    # loss.forward
    out = model.predict(X)
    bad = bad_array(data, out.shape, out.dtype)
    assume(not (isinstance(bad, np.ndarray) and bad.dtype.kind == "f"
                and bad.shape == out.shape and np.isfinite(bad).all()))
    return what, lambda: loss.forward(bad, y)


def check_bad_input(data):
    what, call = bad_call(data)
    before = None
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert not isinstance(info.value, SystemError), what
    assert str(info.value), f"{what}: the error has no message"
    del before


@settings(FAST, max_examples=1500)
@given(hs.data())
def test_bad_input_raises_value_or_type_error(data):
    check_bad_input(data)


@pytest.mark.slow
@settings(SLOW, max_examples=20000)
@given(hs.data())
def test_bad_input_raises_value_or_type_error_many(data):
    check_bad_input(data)


@settings(FAST, max_examples=200)
@given(hs.data())
def test_bad_input_leaves_the_model_unchanged(data):
    """A refused call changes nothing: no partial update, no NaN."""
    model, loss, opt, X, y = small_problem(data)
    before = model.flat_params().copy()
    bad = X.copy()
    bad[data.draw(hs.integers(0, X.shape[0] - 1)), 0] = data.draw(
        hs.sampled_from([np.nan, np.inf, -np.inf]))
    with pytest.raises(ValueError):
        model.fit(bad, y, loss=loss, optimizer=opt, verbose=0)
    with pytest.raises(ValueError):
        model.train_step(bad, y, loss, opt)
    np.testing.assert_array_equal(model.flat_params(), before)
