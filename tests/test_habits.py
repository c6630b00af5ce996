"""Keras and PyTorch habits: each works, or fails with a message that says what to write."""
from __future__ import annotations

import numpy as np
import pytest

import steepest as st


def blobs(n=90, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64)


def test_dense_activation_argument_adds_the_activation_layer():
    model = st.Sequential(st.Dense(4, 8, activation="relu"), st.Dense(8, 3, activation="tanh"),
                          st.Dense(3, 2, activation="softmax"), st.Dense(2, 2, activation=None),
                          seed=0)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Dense", "ReLU", "Dense", "Tanh", "Dense", "Softmax", "Dense"]
    plain = st.Sequential(st.Dense(4, 8), st.ReLU(), st.Dense(8, 3), st.Tanh(), st.Dense(3, 2),
                          st.Softmax(), st.Dense(2, 2), seed=0)
    assert list(model.state_dict()) == list(plain.state_dict())
    X, _ = blobs()
    np.testing.assert_array_equal(model.predict(X), plain.predict(X))
    leaky = st.LeakyReLU(0.2)
    assert st.Sequential(st.Dense(4, 2, activation=leaky), seed=0)[1] is leaky


def test_dense_activation_survives_save_and_load(tmp_path):
    model = st.Sequential(st.Dense(4, 8, activation="gelu"), st.Dense(8, 2), seed=1)
    model.save(tmp_path / "m.npz")
    loaded = st.load(tmp_path / "m.npz")
    assert [type(layer).__name__ for layer in loaded.layers] == ["Dense", "GELU", "Dense"]
    X, _ = blobs()
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_bad_dense_arguments_say_what_to_write():
    with pytest.raises(ValueError, match="activation must be one of"):
        st.Dense(4, 8, activation="swishy")
    with pytest.raises(TypeError, match=r"st\.Dense\(64, 32\)"):
        st.Dense(32)  # Keras's Dense(units)


def test_optimizer_takes_a_model():
    X, y = blobs()
    a = st.Sequential(st.Dense(4, 2), seed=0)
    b = st.Sequential(st.Dense(4, 2), seed=0)
    opt_a, opt_b = st.optim.Adam(a, lr=0.1), st.optim.Adam(b.parameters(), lr=0.1)
    loss = st.losses.CrossEntropy()
    for _ in range(3):
        a.train_step(X, y, loss, opt_a)
        b.train_step(X, y, loss, opt_b)
    np.testing.assert_array_equal(a.flat_params(), b.flat_params())
    with pytest.raises(TypeError, match=r"model\.parameters\(\)"):
        st.optim.SGD([np.zeros(3)], lr=0.1)


def test_len_and_indexing_as_torch_sequential():
    model = st.Sequential(st.Dense(4, 8), st.ReLU(), st.Dropout(0.1), st.Dense(8, 2), seed=0)
    assert len(model) == 4
    assert isinstance(model[0], st.Dense) and model[-1] is model.layers[3]
    assert [type(layer).__name__ for layer in model] == ["Dense", "ReLU", "Dropout", "Dense"]
    assert model[3].out_features == 2 and "3.weight" in model.state_dict()
    with pytest.raises(IndexError):
        model[4]
    with pytest.raises(TypeError, match=r"st\.Sequential\(\*model\.layers"):
        model[1:3]


def test_train_and_eval_set_forwards_default_mode():
    X, _ = blobs()
    model = st.Sequential(st.Dense(4, 64), st.Dropout(0.5), st.Dense(64, 2), seed=0)
    assert model.training is False  # a new model infers
    np.testing.assert_array_equal(model(X), model.predict(X))
    assert model.train() is model and model.training is True
    assert not np.array_equal(model(X), model.predict(X))  # dropout active
    np.testing.assert_array_equal(model(X, training=False), model.predict(X))
    assert model.eval() is model and model.training is False
    np.testing.assert_array_equal(model(X), model.predict(X))
    with pytest.raises(TypeError, match="mode"):
        model.train("yes")


def test_validation_split_holds_out_the_last_rows():
    X, y = blobs(n=100)
    loss = st.losses.CrossEntropy()
    a = st.Sequential(st.Dense(4, 2), seed=0)
    b = st.Sequential(st.Dense(4, 2), seed=0)
    ha = a.fit(X, y, loss=loss, optimizer=st.optim.SGD(a, lr=0.1), epochs=3, batch_size=10,
               validation_split=0.2, verbose=0)
    hb = b.fit(X[:80], y[:80], loss=loss, optimizer=st.optim.SGD(b, lr=0.1), epochs=3,
               batch_size=10, validation_data=(X[80:], y[80:]), verbose=0)
    np.testing.assert_array_equal(a.flat_params(), b.flat_params())
    assert ha["val_loss"] == hb["val_loss"] and ha["val_accuracy"] == hb["val_accuracy"]


@pytest.mark.parametrize("kwargs,error,words", [
    ({"validation_split": 0.0}, ValueError, "validation_split"),
    ({"validation_split": 1.0}, ValueError, "validation_split"),
    ({"validation_split": "10%"}, TypeError, "validation_split"),
    ({"validation_split": 0.001}, ValueError, "at least one"),
    ({"validation_split": 0.1, "validation_data": "given"}, ValueError, "not both"),
])
def test_bad_validation_split_is_refused(kwargs, error, words):
    X, y = blobs(n=100)
    model = st.Sequential(st.Dense(4, 2), seed=0)
    if kwargs.get("validation_data") == "given":
        kwargs["validation_data"] = (X, y)
    with pytest.raises(error, match=words):
        model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=st.optim.SGD(model, lr=0.1),
                  verbose=0, **kwargs)
