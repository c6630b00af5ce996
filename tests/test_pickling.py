"""pickle, copy.deepcopy and joblib for models and optimizers: through the bytes of steepest's
own file format (no pickled object, nothing in the stream but the classes), bitwise round
trips, training that continues exactly as it would have, a new process that predicts alike."""
from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import numpy as np
import pytest
from conftest import pickle_globals

import steepest as st


def trained(optimizer="Adam", dtype="float32", rng=None, **hyper):
    """A model with dropout and string labels, its optimizer after a few steps, the data."""
    rng = rng or np.random.default_rng(0)
    model = st.Sequential(st.Dense(5, 12), st.ReLU(), st.Dropout(0.3), st.Dense(12, 3),
                          dtype=dtype, seed=7)
    opt = getattr(st.optim, optimizer)(model.parameters(), **hyper)
    X = rng.normal(size=(40, 5))
    y = np.array(["ant", "bee", "cow"])[rng.integers(0, 3, 40)]
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=2, batch_size=8,
              verbose=0)
    return model, opt, X, y


def same_model(a, b):
    assert a.config() == b.config()
    assert a.flat_params().tobytes() == b.flat_params().tobytes()
    assert a.rng_state == b.rng_state
    np.testing.assert_array_equal(a.classes_, b.classes_)


def same_optimizer(a, b):
    assert type(a) is type(b) and a.steps == b.steps
    assert a.hyperparameters() == b.hyperparameters()
    assert [p.name for p in a.params] == [p.name for p in b.params]
    sa, sb = a.state_buffers(), b.state_buffers()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert sa[k].tobytes() == sb[k].tobytes(), k


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer, hyper", [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)), ("Adam", dict(amsgrad=True)),
    ("AdamW", {}), ("RMSprop", dict(momentum=0.5, centered=True)), ("Adagrad", {})])
def test_model_and_optimizer_round_trip_and_train_on_alike(optimizer, hyper, dtype):
    model, opt, X, y = trained(optimizer, dtype, **hyper)
    model2, opt2 = pickle.loads(pickle.dumps((model, opt)))
    assert opt2.model is model2 and opt2.params[0].model is model2  # the link, restored
    same_model(model, model2)
    same_optimizer(opt, opt2)
    assert model2.history == model.history
    # dropout masks and shuffling come from the restored generator: bitwise the same run
    for m, o in ((model, opt), (model2, opt2)):
        m.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=o, epochs=2, batch_size=8,
              verbose=0)
    same_model(model, model2)
    same_optimizer(opt, opt2)


def test_the_stream_holds_only_steepest_classes_and_bytes():
    model, opt, _, _ = trained()
    assert pickle_globals(pickle.dumps(model)) == {("steepest.model", "Sequential")}
    assert pickle_globals(pickle.dumps(opt)) == {("steepest.optim", "Adam"),
                                             ("steepest.model", "Sequential")}


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol(protocol):
    model, opt, _, _ = trained("SGD", lr=0.1, momentum=0.9)
    model2, opt2 = pickle.loads(pickle.dumps((model, opt), protocol=protocol))
    same_model(model, model2)
    same_optimizer(opt, opt2)


def test_an_optimizer_alone_brings_its_model():
    model, opt, X, y = trained()
    opt2 = pickle.loads(pickle.dumps(opt))
    same_model(model, opt2.model)
    opt2.model.train_step(X, y, st.losses.CrossEntropy(), opt2)
    assert opt2.steps == opt.steps + 1


def test_an_optimizer_of_some_parameters():
    model, _, X, y = trained()
    opt = st.optim.Adam(model.parameters()[2:])  # the last layer only
    model.train_step(X, y, st.losses.CrossEntropy(), opt)
    model2, opt2 = pickle.loads(pickle.dumps((model, opt)))
    assert [p.name for p in opt2.params] == ["3.weight", "3.bias"]
    same_optimizer(opt, opt2)


def test_deepcopy_is_independent():
    model, opt, X, y = trained()
    model2, opt2 = copy.deepcopy((model, opt))
    same_model(model, model2)
    assert opt2.model is model2 and model2 is not model
    model2.train_step(X, y, st.losses.CrossEntropy(), opt2)
    assert model.flat_params().tobytes() != model2.flat_params().tobytes()
    assert opt.steps + 1 == opt2.steps
    untrained = st.Sequential(st.Dense(2, 2), seed=1)
    same_model_copy = copy.copy(untrained)  # a shallow copy is a full copy as well
    assert same_model_copy.flat_params().tobytes() == untrained.flat_params().tobytes()
    assert not np.shares_memory(same_model_copy.flat_params(), untrained.flat_params())


def test_joblib(tmp_path):
    joblib = pytest.importorskip("joblib")
    model, opt, _, _ = trained()
    joblib.dump((model, opt), tmp_path / "run.joblib")
    model2, opt2 = joblib.load(tmp_path / "run.joblib")
    same_model(model, model2)
    same_optimizer(opt, opt2)
    assert opt2.model is model2


def test_usable_in_a_new_process(tmp_path):
    model, _, X, _ = trained()
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    np.save(tmp_path / "X.npy", X)
    code = ("import pickle, sys, numpy as np; "
            "m = pickle.loads(open(sys.argv[1], 'rb').read()); "
            "print(' '.join(m.predict_classes(np.load(sys.argv[2]))))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.pkl"),
                          str(tmp_path / "X.npy")], capture_output=True, text=True, check=True)
    assert out.stdout.split() == model.predict_classes(X).tolist()


def test_tampered_bytes_are_refused():
    model, opt, _, _ = trained()
    state = model.__getstate__()
    (key, data), = state.items()
    clone = st.Sequential.__new__(st.Sequential)
    with pytest.raises(ValueError, match="truncated, corrupted"):
        clone.__setstate__({key: data[: len(data) // 2]})
    data = bytearray(data)
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(ValueError):
        clone.__setstate__({key: bytes(data)})
