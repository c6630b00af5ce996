"""Training end to end: accuracy on digits, the three flavours of gradient descent, determinism,
dropout, fit's history and its callbacks."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest

import steepest as st


def digits_model(seed=0, dropout=0.0, dtype="float32"):
    layers = [st.Dense(64, 64), st.ReLU()]
    if dropout:
        layers.append(st.Dropout(dropout))
    layers.append(st.Dense(64, 10))
    return st.Sequential(*layers, dtype=dtype, seed=seed)


def blobs(rng, n=120, classes=3, features=4):
    """Well separated Gaussian blobs: every flavour of gradient descent learns them."""
    centers = rng.normal(size=(classes, features)) * 3
    y = rng.integers(0, classes, n)
    return centers[y] + rng.normal(size=(n, features)), y


# -- accuracy ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_digits_reaches_high_test_accuracy(digits, dtype):
    X_train, X_test, y_train, y_test = digits
    model = digits_model(seed=0, dtype=dtype)
    loss = st.losses.CrossEntropy()
    opt = st.optim.Adam(model.parameters(), lr=3e-3)
    history = model.fit(X_train, y_train, loss=loss, optimizer=opt, epochs=15, batch_size=32,
                        validation_data=(X_test, y_test), verbose=0)
    result = model.evaluate(X_test, y_test, loss)
    assert result["accuracy"] > 0.95, result
    assert history["val_accuracy"][-1] == result["accuracy"]
    assert np.mean(model.predict_classes(X_test) == y_test) == result["accuracy"]
    assert history["loss"][-1] < 0.3 * history["loss"][0]


def test_digits_with_dropout_and_sgd_momentum(digits):
    X_train, X_test, y_train, y_test = digits
    model = digits_model(seed=1, dropout=0.2)
    opt = st.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    model.fit(X_train, y_train, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=15,
              batch_size=64, verbose=0)
    assert model.evaluate(X_test, y_test, st.losses.CrossEntropy())["accuracy"] > 0.95


@pytest.mark.parametrize("batch_size,steps_per_epoch", [(None, 1), (1, 120), (16, 8)],
                         ids=["full_batch", "stochastic", "mini_batch"])
def test_three_flavours_of_gradient_descent(batch_size, steps_per_epoch, rng):
    """batch_size=None: one update per epoch from all samples; 1: one update per sample;
    16: ceil(120 / 16) = 8 updates per epoch. All three learn the blobs."""
    X, y = blobs(rng)
    model = st.Sequential(st.Dense(4, 16), st.Tanh(), st.Dense(16, 3), seed=0)
    opt = st.optim.SGD(model.parameters(), lr={None: 0.5, 1: 0.01, 16: 0.1}[batch_size])
    loss = st.losses.CrossEntropy()
    before = model.evaluate(X, y, loss)
    epochs = 30 if batch_size is None else 5
    history = model.fit(X, y, loss=loss, optimizer=opt, epochs=epochs, batch_size=batch_size,
                        verbose=0)
    assert opt.steps == epochs * steps_per_epoch
    after = model.evaluate(X, y, loss)
    assert after["loss"] < 0.5 * before["loss"]
    assert after["accuracy"] > 0.9
    assert len(history["loss"]) == epochs


def test_batch_larger_than_data_is_full_batch(rng):
    X, y = blobs(rng, n=20)
    a = st.Sequential(st.Dense(4, 3), seed=0)
    b = st.Sequential(st.Dense(4, 3), seed=0)
    oa, ob = st.optim.SGD(a.parameters(), lr=0.1), st.optim.SGD(b.parameters(), lr=0.1)
    a.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=oa, epochs=3, batch_size=None,
          verbose=0)
    b.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=ob, epochs=3, batch_size=1000,
          verbose=0)
    assert oa.steps == ob.steps == 3
    np.testing.assert_array_equal(a.flat_params(), b.flat_params())


def test_regression_trains(rng):
    X = rng.uniform(-2, 2, size=(200, 1))
    y = np.sin(2 * X)
    model = st.Sequential(st.Dense(1, 32), st.Tanh(), st.Dense(32, 1), dtype="float64", seed=0)
    opt = st.optim.Adam(model.parameters(), lr=0.02)
    history = model.fit(X, y, loss=st.losses.MSE(), optimizer=opt, epochs=60, batch_size=20,
                        verbose=0)
    assert "accuracy" not in history
    assert model.evaluate(X, y, st.losses.MSE())["loss"] < 0.02


# -- determinism ---------------------------------------------------------------------------------

def _train(seed, X, y, shuffle=True, dropout=0.3):
    model = st.Sequential(st.Dense(4, 16), st.ReLU(), st.Dropout(dropout), st.Dense(16, 3),
                          seed=seed)
    opt = st.optim.Adam(model.parameters(), lr=0.01)
    history = model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=4,
                        batch_size=10, shuffle=shuffle, validation_data=(X[:20], y[:20]),
                        verbose=0)
    return model, history


def test_same_seed_same_result_bitwise(rng):
    X, y = blobs(rng)
    a, ha = _train(7, X, y)
    b, hb = _train(7, X, y)
    assert a.flat_params().tobytes() == b.flat_params().tobytes()
    for key in ha:
        if key != "time":
            assert ha[key] == hb[key], key


def test_different_seed_different_result(rng):
    X, y = blobs(rng)
    a, ha = _train(7, X, y)
    b, hb = _train(8, X, y)
    assert not np.array_equal(a.flat_params(), b.flat_params())
    assert ha["loss"] != hb["loss"]


def test_seed_also_drives_shuffling_and_dropout(rng):
    """Same initial weights (loaded), different seeds: shuffle order and masks differ."""
    X, y = blobs(rng)
    a = st.Sequential(st.Dense(4, 3), seed=1)
    b = st.Sequential(st.Dense(4, 3), seed=2)
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        m.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=st.optim.SGD(m.parameters(), lr=0.1),
              epochs=1, batch_size=10, verbose=0)
    assert not np.array_equal(a.flat_params(), b.flat_params())
    c = st.Sequential(st.Dense(4, 3), seed=1)
    d = st.Sequential(st.Dense(4, 3), seed=2)
    d.load_state_dict(c.state_dict())
    for m in (c, d):  # without shuffling the seed no longer matters
        m.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=st.optim.SGD(m.parameters(), lr=0.1),
              epochs=1, batch_size=10, shuffle=False, verbose=0)
    np.testing.assert_array_equal(c.flat_params(), d.flat_params())


def test_thread_count_does_not_change_results(rng):
    X, y = blobs(rng, n=200)
    old = st.get_num_threads()
    try:
        st.set_num_threads(1)
        a, _ = _train(3, X, y)
        st.set_num_threads(2)
        b, _ = _train(3, X, y)
    finally:
        st.set_num_threads(old)
    np.testing.assert_allclose(a.flat_params(), b.flat_params(), rtol=1e-5, atol=1e-6)


# -- dropout -------------------------------------------------------------------------------------

def _identity_dropout(p, width=200, dtype="float64"):
    model = st.Sequential(st.Dense(width, width), st.Dropout(p), dtype=dtype, seed=0)
    sd = model.state_dict()
    sd["0.weight"][...] = np.eye(width)
    sd["0.bias"][...] = 0
    return model


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_train_mode_keep_rate_and_scaling(p):
    model = _identity_dropout(p)
    x = np.ones((100, 200))
    out = model.forward(x, training=True)
    dropped = out == 0
    # 20000 Bernoulli draws: the dropped fraction is within 5 standard deviations of p
    assert abs(dropped.mean() - p) < 5 * math.sqrt(p * (1 - p) / out.size)
    np.testing.assert_allclose(out[~dropped], 1 / (1 - p), rtol=1e-15)  # inverted scaling
    assert out.mean() == pytest.approx(1.0, abs=5 * math.sqrt(p / (1 - p) / out.size))
    again = model.forward(x, training=True)
    assert not np.array_equal(again, out)  # a new mask every pass


def test_dropout_masks_are_not_correlated_with_position():
    model = _identity_dropout(0.5, width=64)
    out = model.forward(np.ones((400, 64)), training=True)
    kept = out != 0
    assert kept.mean(axis=0).min() > 0.3 and kept.mean(axis=0).max() < 0.7
    assert kept.mean(axis=1).min() > 0.2 and kept.mean(axis=1).max() < 0.8


def test_dropout_eval_and_predict_are_deterministic_identity(rng):
    model = _identity_dropout(0.5, width=10)
    x = rng.normal(size=(7, 10))
    np.testing.assert_array_equal(model.forward(x, training=False), x)
    np.testing.assert_array_equal(model.predict(x), x)
    np.testing.assert_array_equal(model(x), x)
    np.testing.assert_array_equal(model.predict(x), model.predict(x))


def test_dropout_zero_is_identity_in_training(rng):
    model = _identity_dropout(0.0, width=10)
    x = rng.normal(size=(5, 10))
    np.testing.assert_array_equal(model.forward(x, training=True), x)


def test_dropout_backward_uses_the_forward_mask(rng):
    model = _identity_dropout(0.5, width=30)
    x = rng.normal(size=(4, 30))
    out = model.forward(x, training=True)
    model.zero_grad()
    model.backward(np.ones_like(out))
    # d(sum out)/d(bias) = sum over rows of the mask values
    mask = np.where(out != 0, 2.0, 0.0)
    np.testing.assert_allclose(model.parameters()[1].grad, mask.sum(axis=0))


# -- fit's history -------------------------------------------------------------------------------

def test_history_keys_and_lengths(rng):
    X, y = blobs(rng)
    model = st.Sequential(st.Dense(4, 8), st.ReLU(), st.Dense(8, 8), st.ReLU(), st.Dense(8, 3),
                          seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.05)
    history = model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=3,
                        validation_data=(X[:30], y[:30]), verbose=0)
    assert history is model.history
    assert set(history) == {"loss", "val_loss", "accuracy", "val_accuracy", "lr", "time",
                            "grad_norm"}
    assert all(len(v) == 3 for v in history.values())
    assert all(len(g) == 3 and all(x > 0 for x in g) for g in history["grad_norm"])
    assert all(t > 0 for t in history["time"])
    assert history["lr"] == [0.05] * 3
    assert all(0 <= a <= 1 for a in history["accuracy"] + history["val_accuracy"])
    no_val = model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=2, verbose=0)
    assert set(no_val) == {"loss", "accuracy", "lr", "time", "grad_norm"}


def test_history_values_are_right(rng):
    """Full batch, one epoch: loss/accuracy are the initial model's, grad_norm the norm of each
    Dense layer's gradient (weight and bias together), val_* the evaluation after the step."""
    X, y = blobs(rng, n=50)
    model = st.Sequential(st.Dense(4, 8), st.Tanh(), st.Dense(8, 3), dtype="float64", seed=0)
    loss = st.losses.CrossEntropy()
    before = model.evaluate(X, y, loss)
    model.zero_grad()
    loss.forward(model.forward(X, training=True), y)
    model.backward(loss.backward())
    g = {n: p.grad.copy() for n, p in model.named_parameters()}
    norms = [math.sqrt((g[f"{i}.weight"] ** 2).sum() + (g[f"{i}.bias"] ** 2).sum())
             for i in (0, 2)]
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    history = model.fit(X, y, loss=loss, optimizer=opt, epochs=1, batch_size=None,
                        validation_data=(X, y), verbose=0)
    assert history["loss"][0] == pytest.approx(before["loss"], rel=1e-12)
    assert history["accuracy"][0] == before["accuracy"]
    np.testing.assert_allclose(history["grad_norm"][0], norms, rtol=1e-10)
    after = model.evaluate(X, y, loss)
    assert history["val_loss"][0] == after["loss"] and history["val_accuracy"][0] == \
        after["accuracy"]
    assert after["loss"] < before["loss"]


# -- callbacks -----------------------------------------------------------------------------------

class Script(st.callbacks.Callback):
    """Puts a scripted value into the logs and snapshots the weights after every epoch."""

    def __init__(self, values):
        self.values, self.snapshots = values, []

    def on_epoch_end(self, epoch, logs):
        logs["score"] = self.values[epoch]
        self.snapshots.append(self.model.flat_params().copy())


def test_early_stopping_restores_best_weights(rng):
    X, y = blobs(rng)
    model = st.Sequential(st.Dense(4, 8), st.ReLU(), st.Dense(8, 3), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.05)
    script = Script([5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 1.0, 0.5])
    stopper = st.callbacks.EarlyStopping(monitor="score", patience=2)
    history = model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=8,
                        callbacks=[script, stopper], verbose=0)
    assert len(history["loss"]) == 6  # epochs 3, 4 and 5 did not improve on epoch 2 (0-based)
    assert history["score"] == [5.0, 4.0, 3.0, 3.5, 3.2, 3.1]
    assert stopper.best_epoch == 2 and stopper.stopped_epoch == 5
    np.testing.assert_array_equal(model.flat_params(), script.snapshots[2])
    assert not np.array_equal(model.flat_params(), script.snapshots[-1])


def test_early_stopping_without_restore_and_on_val_loss(rng):
    X, y = blobs(rng)
    model = st.Sequential(st.Dense(4, 8), st.ReLU(), st.Dense(8, 3), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.05)
    script = Script([3.0, 4.0, 4.0, 4.0, 4.0])
    stopper = st.callbacks.EarlyStopping(monitor="score", patience=1, restore_best_weights=False)
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=5,
              callbacks=[script, stopper], verbose=0)
    np.testing.assert_array_equal(model.flat_params(), script.snapshots[-1])
    assert len(script.snapshots) == 3
    # monitoring val_loss without validation data is refused with a clear message
    with pytest.raises(ValueError, match="val_loss"):
        model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=1,
                  callbacks=[st.callbacks.EarlyStopping()], verbose=0)


def test_model_checkpoint_writes_loadable_files(rng, tmp_path):
    X, y = blobs(rng)
    model = st.Sequential(st.Dense(4, 8), st.ReLU(), st.Dense(8, 3), seed=0)
    opt = st.optim.Adam(model.parameters(), lr=0.01)
    script = Script([0.0] * 3)
    every = st.callbacks.ModelCheckpoint(tmp_path / "m-{epoch:02d}.npz")
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=3,
              callbacks=[script, every], verbose=0)
    assert sorted(p.name for p in tmp_path.glob("m-*.npz")) == ["m-01.npz", "m-02.npz",
                                                                "m-03.npz"]
    for epoch in range(3):
        loaded = st.load(tmp_path / f"m-{epoch + 1:02d}.npz")
        np.testing.assert_array_equal(loaded.flat_params(), script.snapshots[epoch])
        assert repr(loaded) == repr(model)


def test_model_checkpoint_save_best_only(rng, tmp_path):
    X, y = blobs(rng)
    model = st.Sequential(st.Dense(4, 8), st.ReLU(), st.Dense(8, 3), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.05)
    script = Script([3.0, 2.0, 2.5, 2.7])
    best = st.callbacks.ModelCheckpoint(tmp_path / "best.npz", monitor="score",
                                        save_best_only=True)
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=4,
              callbacks=[script, best], verbose=0)
    np.testing.assert_array_equal(st.load(tmp_path / "best.npz").flat_params(),
                                  script.snapshots[1])


def test_csv_logger_content(rng, tmp_path):
    X, y = blobs(rng)
    model = st.Sequential(st.Dense(4, 8), st.ReLU(), st.Dense(8, 3), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.05)
    path = tmp_path / "log.csv"
    history = model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=3,
                        validation_data=(X, y), callbacks=[st.callbacks.CSVLogger(path)],
                        verbose=0)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"loss", "val_loss", "accuracy", "val_accuracy", "lr", "grad_norm_0",
            "grad_norm_1"} <= set(rows[0])
    for key in ("loss", "val_loss", "accuracy", "val_accuracy", "lr"):
        np.testing.assert_allclose([float(r[key]) for r in rows], history[key], rtol=1e-12)
    np.testing.assert_allclose([float(r["grad_norm_1"]) for r in rows],
                               [g[1] for g in history["grad_norm"]], rtol=1e-12)
    # append=True adds rows under the same header
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=2,
              validation_data=(X, y), callbacks=[st.callbacks.CSVLogger(path, append=True)],
              verbose=0)
    with open(path, newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3", "1", "2"]


@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_verbose_output(verbose, rng, capsys):
    X, y = blobs(rng, n=40)
    model = st.Sequential(st.Dense(4, 3), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.05)
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=3,
              validation_data=(X, y), verbose=verbose)
    out, err = capsys.readouterr()
    if verbose == 0:
        assert out == "" and err == ""
    elif verbose == 1:  # a progress bar (tqdm, or a line rewritten in place) on stderr
        assert out == ""
        assert "3/3" in err and "loss=" in err
    else:
        lines = out.strip().splitlines()
        assert len(lines) == 3
        for i, line in enumerate(lines):
            assert line.startswith(f"epoch {i + 1}") and "loss=" in line and "val_loss=" in line
