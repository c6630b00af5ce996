"""Class labels on Sequential: any labels scikit-learn accepts, classes_ kept with the model
(and in its file), predict_classes / predict_proba / evaluate for multi-class, binary
(one output) and multi-label models, and the warning for a probability layer before a loss
that takes logits."""
from __future__ import annotations

import numpy as np
import pytest

import steepest as st
from steepest import saving
from steepest.archive import write_archive

CE, BCE = st.losses.CrossEntropy(), st.losses.BinaryCrossEntropy()


def blobs(rng, n=120, classes=3, features=4):
    """Well separated clusters: (X, class index per row)."""
    index = rng.integers(0, classes, n)
    centers = rng.normal(scale=4.0, size=(classes, features))
    return centers[index] + rng.normal(size=(n, features)), index


def classifier(outputs, features=4, seed=0, last=()):
    return st.Sequential(st.Dense(features, 16), st.Tanh(), st.Dense(16, outputs), *last,
                         seed=seed)


def fit(model, X, y, loss, epochs=30):
    opt = st.optim.Adam(model.parameters(), lr=0.05)
    return model.fit(X, y, loss=loss, optimizer=opt, epochs=epochs, batch_size=16, verbose=0)


@pytest.mark.parametrize("names", [
    np.array(["cat", "dog", "emu"]),
    np.array([1, 2, 3]),
    np.array([-5.0, 0.0, 7.0]),
    np.array(["b", "a", "c"], dtype=object),
], ids=["str", "int_1_2_3", "integral_float", "object_str"])
def test_multiclass_labels_are_learned_and_returned(names, rng):
    X, index = blobs(rng)
    y = names[index]
    model = classifier(3)
    fit(model, X, y, CE)
    expected = np.unique(names.astype(str) if names.dtype == object else names)
    np.testing.assert_array_equal(model.classes_, expected)
    assert model.classes_.dtype.kind != "O" and not model.classes_.flags.writeable
    predicted = model.predict_classes(X)
    assert predicted.dtype == model.classes_.dtype and predicted.shape == (len(X),)
    np.testing.assert_array_equal(predicted, model.classes_[model.predict(X).argmax(axis=1)])
    accuracy = model.evaluate(X, y, CE)["accuracy"]
    assert accuracy == np.mean(predicted == y.astype(expected.dtype)) > 0.9
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(model.classes_[proba.argmax(axis=1)], predicted)


def test_class_indices_stay_indices(rng):
    X, index = blobs(rng)
    model = classifier(4)  # labels 1, 2, 3 are valid indices of 4 outputs: torch's convention
    fit(model, X, index + 1, CE, epochs=3)
    assert model.classes_ is None
    assert set(model.predict_classes(X)) <= {0, 1, 2, 3}
    model = classifier(3)
    fit(model, X, index.astype(np.float32), CE, epochs=3)  # integral floats: indices too
    assert model.classes_ is None


def test_boolean_labels(rng):
    X, index = blobs(rng, classes=2)
    model = classifier(2)
    fit(model, X, index == 1, CE)
    np.testing.assert_array_equal(model.classes_, [False, True])
    assert model.predict_classes(X).dtype == bool
    assert model.evaluate(X, index == 1, CE)["accuracy"] > 0.9


@pytest.mark.parametrize("labels", [np.array([0, 1]), np.array(["no", "yes"]),
                                    np.array([False, True]), np.array([1, 2])],
                         ids=["0_1", "str", "bool", "1_2"])
def test_binary_one_output_thresholds_the_logit(labels, rng):
    X, index = blobs(rng, classes=2)
    y = labels[index]
    model = classifier(1)
    history = fit(model, X, y, BCE)
    assert "val_accuracy" not in history
    if labels.dtype.kind in "iu" and labels.max() <= 1:
        assert model.classes_ is None  # targets in [0, 1] are used as they are
    else:
        np.testing.assert_array_equal(model.classes_, labels)
    logits = model.predict(X)[:, 0]
    predicted = model.predict_classes(X)
    assert predicted.shape == (len(X),)
    np.testing.assert_array_equal(predicted, labels[(logits > 0).astype(int)])
    assert len(set(predicted.tolist())) == 2  # not all one class (argmax over one column was)
    result = model.evaluate(X, y, BCE)
    assert result["accuracy"] == np.mean(predicted == y) > 0.9
    proba = model.predict_proba(X)  # torch-like: the positive class's probability, (N, 1)
    assert proba.shape == (len(X), 1) and proba.dtype == np.float32
    np.testing.assert_allclose(proba[:, 0], 1 / (1 + np.exp(-logits.astype(np.float64))),
                               rtol=1e-6)


def test_binary_validation_accuracy_in_history(rng):
    X, index = blobs(rng, classes=2)
    model = classifier(1)
    history = model.fit(X, index, loss=BCE, optimizer=st.optim.Adam(model.parameters()),
                        epochs=2, validation_data=(X, index), verbose=0)
    assert len(history["val_accuracy"]) == 2 and "accuracy" not in history


def test_multilabel_thresholds_each_output(rng):
    X = rng.normal(size=(200, 4))
    Y = np.stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 0] + X[:, 1] > 1], axis=1).astype(np.float64)
    model = classifier(3)
    fit(model, X, Y, BCE, epochs=60)
    assert model.multilabel and model.classes_ is None
    predicted = model.predict_classes(X)
    assert predicted.shape == (200, 3) and set(np.unique(predicted)) <= {0, 1}
    np.testing.assert_array_equal(predicted, (model.predict(X) > 0).astype(int))
    result = model.evaluate(X, Y, BCE)
    assert result["accuracy"] == np.mean((predicted == Y).all(axis=1)) > 0.8  # subset accuracy
    proba = model.predict_proba(X)
    assert proba.shape == (200, 3) and not np.allclose(proba.sum(axis=1), 1)
    # a multi-class model trained on the same outputs afterwards is multi-class again
    fit(model, X, (X[:, 0] > 0).astype(int), CE, epochs=1)
    assert not model.multilabel and model.predict_classes(X).shape == (200,)


def test_train_step_learns_classes_from_a_batch_with_every_label(rng):
    X, index = blobs(rng)
    names = np.array(["x", "y", "z"])
    model = classifier(3)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    first_two = np.flatnonzero(index < 2)[:8]
    with pytest.raises(ValueError, match=r"y holds 2 distinct labels \['x', 'y'\] but the model "
                                         r"has 3 outputs"):
        model.train_step(X[first_two], names[index[first_two]], CE, opt)
    assert model.classes_ is None and opt.steps == 0
    model.train_step(X, names[index], CE, opt)
    np.testing.assert_array_equal(model.classes_, names)
    model.train_step(X[first_two], names[index[first_two]], CE, opt)  # now any subset
    assert opt.steps == 2


def test_classes_can_be_set_in_any_order(rng):
    X, index = blobs(rng)
    order = np.array(["z", "x", "y"])
    model = classifier(3)
    model.classes_ = order
    fit(model, X, order[index], CE)
    np.testing.assert_array_equal(model.classes_, order)
    np.testing.assert_array_equal(model.predict_classes(X),
                                  order[model.predict(X).argmax(axis=1)])
    assert model.evaluate(X, order[index], CE)["accuracy"] > 0.9


def test_bad_labels_and_classes(rng):
    X, index = blobs(rng)
    model = classifier(3)
    with pytest.raises(ValueError, match=r"classes_ must hold 3 labels"):
        model.classes_ = ["a", "b"]
    with pytest.raises(ValueError, match=r"classes_ must hold distinct labels"):
        model.classes_ = ["a", "b", "a"]
    with pytest.raises(TypeError, match=r"classes_ must hold labels of one type"):
        model.classes_ = np.array(["a", 1, 2.5], dtype=object)
    with pytest.raises(ValueError, match=r"classes_ must hold 2 labels for a model with 1 "):
        classifier(1).classes_ = ["a", "b", "c"]
    fit(model, X, np.array(["a", "b", "c"])[index], CE, epochs=1)
    with pytest.raises(ValueError, match=r"y holds labels that are not in the model's classes_ "
                                         r"\['a', 'b', 'c'\]: \['d'\]"):
        model.evaluate(X[:3], ["a", "d", "b"], CE)
    with pytest.raises(ValueError, match=r"y holds labels that are not in the model's classes_ "
                                         r"\['a', 'b', 'c'\]: \[0, 1, 2\]"):
        model.evaluate(X, index, CE)
    with pytest.raises(ValueError, match=r"y has 2 samples but X has 3"):
        model.evaluate(X[:3], ["a", "b"], CE)
    with pytest.raises(ValueError, match=r"y holds 3 distinct labels .*needs two"):
        fit(classifier(1), X, index + 5, BCE, epochs=1)


@pytest.mark.parametrize("last, loss", [(st.Softmax(), CE), (st.Sigmoid(), BCE)],
                         ids=["softmax_ce", "sigmoid_bce"])
def test_probability_layer_before_a_logit_loss_warns_once(last, loss, rng):
    X, index = blobs(rng, classes=2)
    outputs = 2 if isinstance(loss, st.losses.CrossEntropy) else 1
    model = classifier(outputs, last=(last,))
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    name = type(last).__name__
    with pytest.warns(UserWarning, match=rf"ends with {name}, but {type(loss).__name__} takes "
                                         "logits"):
        model.train_step(X, index, loss, opt)
    model.train_step(X, index, loss, opt)  # once per model and loss: filterwarnings=error
    fresh = classifier(outputs, last=(last,))
    with pytest.warns(UserWarning, match="takes logits"):
        fresh.fit(X, index, loss=loss, optimizer=st.optim.SGD(fresh.parameters()), verbose=0)
    # such a model already outputs probabilities
    np.testing.assert_array_equal(model.predict_proba(X), model.predict(X))
    expected = (model.predict(X)[:, 0] > 0.5) if outputs == 1 else model.predict(X).argmax(1)
    np.testing.assert_array_equal(model.predict_classes(X), expected)


@pytest.mark.parametrize("labels", [np.array(["ab", "c", "def"]), np.array([3, 7, 9]),
                                    np.array([0.5, 2.0, 4.0]) * 2, np.array([True, False])],
                         ids=["str", "int", "float", "bool"])
def test_classes_survive_save_and_load(labels, rng, tmp_path):
    k = labels.size
    X, index = blobs(rng, classes=k)
    model = classifier(k if k > 2 else 1)
    fit(model, X, labels[index], CE if k > 2 else BCE, epochs=2)
    model.save(tmp_path / "m.npz")
    loaded = st.load(tmp_path / "m.npz")
    assert loaded.classes_.dtype == model.classes_.dtype
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    np.testing.assert_array_equal(loaded.predict_classes(X), model.predict_classes(X))
    assert loaded.config() == model.config()
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:  # a plain array, no pickle
        np.testing.assert_array_equal(z["classes"], model.classes_)


def test_multilabel_flag_survives_save_and_load(rng, tmp_path):
    X = rng.normal(size=(30, 4))
    model = classifier(2)
    fit(model, X, (X[:, :2] > 0).astype(float), BCE, epochs=1)
    model.save(tmp_path / "m.npz")
    assert st.load(tmp_path / "m.npz").multilabel


@pytest.mark.parametrize("dtype", ["|O", "f4,(", "<U0", "V8"])
def test_a_file_declaring_object_classes_is_refused(dtype, rng, tmp_path):
    # Objects, or text numpy's dtype parser would choke on, never reach it.
    model = classifier(3)
    model.classes_ = ["a", "b", "c"]
    model.save(tmp_path / "m.npz")
    header, arrays = saving.read(tmp_path / "m.npz")
    header["classes"] = {"dtype": dtype, "shape": [3]}
    write_archive(tmp_path / "bad.npz", header, arrays)
    with pytest.raises(ValueError, match="classes must be a 1-D array of numbers, booleans or "
                                         "strings"):
        st.load(tmp_path / "bad.npz")
