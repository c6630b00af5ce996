"""Standardize and MinMaxScale: statistics learned from data (adapt, and fit at its start) in
float64, stored in the model's dtype, saved with the model; un-adapted layers refused; the
gradient flows through them."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import steepest as st


def data(rng, n=60):
    X = rng.normal(size=(n, 4)) * [1.0, 10.0, 0.1, 3.0] + [5.0, -20.0, 0.0, 1.0]
    X[:, 2] = 7.0  # a constant feature
    return X


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adapt_learns_mean_and_std_in_float64(dtype, rng):
    X = data(rng)
    model = st.Sequential(st.Standardize(), st.Dense(4, 2), dtype=dtype, seed=0)
    assert model.adapt(X) is model
    sd = model.state_dict()
    std = X.std(axis=0)
    std[2] = 1.0  # zero variance: scale 1, as scikit-learn's StandardScaler
    assert sd["0.mean"].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(sd["0.mean"], X.mean(axis=0).astype(dtype))
    np.testing.assert_allclose(sd["0.std"], std.astype(dtype), rtol=1e-15)
    assert sd["0.count"] == 60 and sd["0.count"].dtype == np.int64
    out = model.layer_outputs(X)[0]
    np.testing.assert_allclose(out, ((X - X.mean(0)) / std).astype(dtype),
                               rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-6)


def test_min_max_scale(rng):
    X = data(rng)
    model = st.Sequential(st.MinMaxScale(), st.Dense(4, 2), dtype="float64", seed=0).adapt(X)
    sd = model.state_dict()
    span = X.max(0) - X.min(0)
    span[2] = 1.0
    np.testing.assert_array_equal(sd["0.min"], X.min(0))
    np.testing.assert_array_equal(sd["0.range"], span)
    out = model.layer_outputs(X)[0]
    assert out.min() == 0.0 and out[:, [0, 1, 3]].max() == 1.0


def test_fit_adapts_unadapted_layers_at_its_start(rng):
    """A model that standardizes its own input trains on raw data as the same net does on
    data standardized beforehand; a second fit keeps the statistics of the first."""
    X, y = data(rng), rng.integers(0, 3, 60)
    mean, std = X.mean(0), np.where(X.std(0) > 0, X.std(0), 1.0)
    inner = [st.Dense(4, 8), st.Tanh(), st.Dense(8, 3)]
    raw = st.Sequential(st.Standardize(), *inner, dtype="float64", seed=1)
    plain = st.Sequential(*inner, dtype="float64", seed=1)
    for model, inputs in ((raw, X), (plain, (X - mean) / std)):
        model.fit(inputs, y, loss=st.losses.CrossEntropy(), epochs=3, batch_size=10, verbose=0,
                  optimizer=st.optim.SGD(model.parameters(), lr=0.1))
    np.testing.assert_allclose(raw.predict(X), plain.predict((X - mean) / std), rtol=1e-10)
    raw.fit(X[:20] * 100, y[:20], loss=st.losses.CrossEntropy(), epochs=1, verbose=0,
            optimizer=st.optim.SGD(raw.parameters(), lr=0.0))
    np.testing.assert_array_equal(raw.state_dict()["0.mean"], mean)
    assert raw.state_dict()["0.count"] == 60


def test_an_unadapted_layer_is_refused(rng):
    X, y = data(rng), rng.normal(size=(60, 2))
    model = st.Sequential(st.Standardize(), st.Dense(4, 2), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    for use in (lambda: model.predict(X), lambda: model.forward(X),
                lambda: model.evaluate(X, y, st.losses.MSE()),
                lambda: model.train_step(X, y, st.losses.MSE(), opt)):
        with pytest.raises(RuntimeError, match=r"layer 0 \(Standardize\(\)\) has not learned its "
                                               r"statistics yet: call model.adapt\(X\)"):
            use()
    assert opt.steps == 0
    model.adapt(X)
    model.predict(X)


def test_adapt_reads_a_memory_mapped_array_in_chunks(rng, tmp_path):
    X = data(rng, 1000)
    path = tmp_path / "X.f64"
    X.tofile(path)
    mapped = np.memmap(path, dtype=np.float64, mode="r", shape=X.shape)
    whole = st.Sequential(st.Standardize(), st.Dense(4, 1), dtype="float64").adapt(X)
    chunked = st.Sequential(st.Standardize(), st.Dense(4, 1), dtype="float64").adapt(
        mapped, chunk_rows=7)
    for k in ("0.mean", "0.std"):
        np.testing.assert_allclose(chunked.state_dict()[k], whole.state_dict()[k], rtol=1e-13)
    bad = X.copy()
    bad[500, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        whole.adapt(bad, chunk_rows=64)
    with pytest.raises(ValueError, match="X has 3 features but the model expects 4"):
        whole.adapt(X[:, :3])


def test_fit_adapts_on_data_read_in_place(rng, tmp_path):
    """fit's X as a list of .npy shards (read in place, never whole): the statistics those
    rows give in memory."""
    X, y = data(rng, 300), rng.normal(size=(300, 1))
    paths = [tmp_path / "x0.npy", tmp_path / "x1.npy"]
    np.save(paths[0], X[:120])
    np.save(paths[1], X[120:])
    models = [st.Sequential(st.Standardize(), st.Dense(4, 1), dtype="float64", seed=0)
              for _ in range(2)]
    for model, inputs in zip(models, (X, [str(p) for p in paths])):
        model.fit(inputs, y, loss=st.losses.MSE(), optimizer=st.optim.SGD(model.parameters()),
                  epochs=1, verbose=0)
    for k in ("0.mean", "0.std", "0.count"):
        np.testing.assert_allclose(models[1].state_dict()[k], models[0].state_dict()[k],
                                   rtol=1e-13)
    np.testing.assert_allclose(models[1].predict(X), models[0].predict(X), rtol=1e-12,
                               atol=1e-14)


def test_a_later_layer_learns_from_what_reaches_it(rng):
    """model.adapt learns each layer's statistics from the output of the layers before it
    (eval mode), so a Standardize after a Dense layer standardizes the Dense outputs."""
    X = data(rng)
    model = st.Sequential(st.Dense(4, 5), st.Standardize(), st.Dense(5, 2), dtype="float64",
                          seed=3).adapt(X)
    out = model.layer_outputs(X)[1]
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.std(0), 1.0, rtol=1e-12)


@pytest.mark.parametrize("training", [False, True])
def test_the_gradient_flows_through_a_standardize_layer(training, rng):
    model = st.Sequential(st.Dense(4, 5), st.Standardize(), st.Tanh(), st.Dense(5, 2),
                          dtype="float64", seed=3).adapt(data(rng))
    X, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 2))
    assert st.gradcheck(model, st.losses.MSE(), X, y, eps=1e-5, atol=1e-4,
                        training=training) < 1e-6


def test_the_layer_adapts_before_or_after_the_model_is_built(rng):
    """Keras habits: norm.adapt(X) then a model with it; model.layers[0].adapt(X) later."""
    X = data(rng)
    layer = st.Standardize().adapt(X)
    assert layer.in_width == 4
    model = st.Sequential(layer, st.Dense(4, 2), seed=0)  # the width from the statistics
    np.testing.assert_array_equal(model.state_dict()["0.mean"], X.mean(0).astype(np.float32))
    late = st.Sequential(st.Standardize(), st.Dense(4, 2), seed=0)
    late.layers[0].adapt(X + 1)
    np.testing.assert_array_equal(late.state_dict()["0.mean"], (X + 1).mean(0).astype(np.float32))
    copied = copy.deepcopy(late.layers[0])  # a copy does not reach the original's model
    copied.adapt(X + 2)
    np.testing.assert_array_equal(late.state_dict()["0.mean"], (X + 1).mean(0).astype(np.float32))
    with pytest.raises(ValueError, match="expects 4 features but"):
        st.Sequential(st.Standardize().adapt(X[:, :3]), st.Dense(4, 2))


def test_statistics_are_state(rng, tmp_path):
    model = st.Sequential(st.Standardize(), st.Dense(4, 2), seed=0).adapt(data(rng))
    assert [n for n, _ in model.named_buffers()] == ["0.mean", "0.std", "0.count"]
    assert [n for n, _ in model.named_parameters()] == ["1.weight", "1.bias"]
    model.save(tmp_path / "m.npz")
    loaded = st.load(tmp_path / "m.npz")
    X = data(rng)
    assert loaded.predict(X).tobytes() == model.predict(X).tobytes()
    state = {k: v.copy() for k, v in model.state_dict().items()}
    state["0.std"][1] = 0.0
    with pytest.raises(ValueError, match=r"state\['0.std'\] must be positive"):
        model.load_state_dict(state)
