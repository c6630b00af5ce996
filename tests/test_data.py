"""Data read in place: memory maps and .npy shards train, predict and evaluate exactly like the
same data in memory, are validated a chunk at a time, resume from checkpoints, and a file three
times larger than the memory the process may allocate trains to the in-memory weights."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import steepest as st
from steepest import _checks

N, F, C = 600, 12, 3


@pytest.fixture()
def arrays():
    rng = np.random.default_rng(0)
    return rng.normal(size=(N, F)).astype(np.float32), rng.integers(0, C, N)


def save(path, a) -> str:
    np.save(path, a)
    return os.fspath(path)


def mapped(path, a):
    return np.load(save(path, a), mmap_mode="r")


def train(X, y, *, dtype="float32", epochs=3, loss=None, **fit):
    model = st.Sequential(st.Dense(F, 16), st.ReLU(), st.Dropout(0.25), st.Dense(16, C),
                          dtype=dtype, seed=3)
    opt = st.optim.Adam(model.parameters(), lr=0.01)
    history = model.fit(X, y, loss=loss or st.losses.CrossEntropy(), optimizer=opt,
                        epochs=epochs, batch_size=fit.pop("batch_size", 32), verbose=0, **fit)
    return model, history


@pytest.mark.parametrize("shuffle", [True, False])
def test_a_memory_map_trains_bitwise_like_the_array_in_memory(tmp_path, arrays, shuffle):
    X, y = arrays
    ref, h_ref = train(X, y, shuffle=shuffle)
    got, h = train(mapped(tmp_path / "x.npy", X), mapped(tmp_path / "y.npy", y),
                   shuffle=shuffle)
    np.testing.assert_array_equal(got.flat_params(), ref.flat_params())
    assert h["loss"] == h_ref["loss"] and h["accuracy"] == h_ref["accuracy"]


def test_shards_of_mixed_dtypes_train_like_the_converted_array(tmp_path, arrays):
    # Rows split unevenly (X in 3 shards, y in 2 at other places), parts of other dtypes: the
    # core converts each batch as numpy's astype would.
    X, y = arrays
    xs = [save(tmp_path / "x0.npy", X[:100]), save(tmp_path / "x1.npy", X[100:450].astype(np.float64)),
          save(tmp_path / "x2.npy", X[450:].astype(np.float16))]
    ys = [save(tmp_path / "y0.npy", y[:301].astype(np.int32)),
          save(tmp_path / "y1.npy", y[301:].astype(np.float64))]
    expected = np.concatenate([X[:450], X[450:].astype(np.float16).astype(np.float32)])
    for shuffle in (True, False):
        ref, h_ref = train(expected, y, shuffle=shuffle)
        got, h = train(xs, ys, shuffle=shuffle)
        np.testing.assert_array_equal(got.flat_params(), ref.flat_params())
        assert h["loss"] == h_ref["loss"]
    shards = st.data.open_npy(xs)
    assert shards.shape == (N, F) and len(shards.parts) == 3
    got, _ = train(shards, ys)  # the Shards object itself, as the list
    np.testing.assert_array_equal(got.flat_params(), train(expected, y)[0].flat_params())


@pytest.mark.parametrize("stored", [np.float64, np.float16, np.uint8, np.int16])
def test_a_memory_map_of_another_dtype_is_converted_per_batch(tmp_path, arrays, stored):
    X, y = arrays
    Xs = (X * 40).astype(stored) if np.dtype(stored).kind in "iu" else X.astype(stored)
    for dtype in ("float32", "float64"):
        ref, _ = train(Xs.astype(dtype), y, dtype=dtype, epochs=2)
        got, _ = train(mapped(tmp_path / "x.npy", Xs), y, dtype=dtype, epochs=2)
        np.testing.assert_array_equal(got.flat_params(), ref.flat_params())


def test_every_float16_value_converts_exactly(tmp_path):
    # All 63488 finite half values (the core's own float16 -> float32 widening), in rows of 4.
    bits = np.arange(2**16, dtype=np.uint16)
    half = bits.view(np.float16)
    half = half[np.isfinite(half)]
    half = half[: len(half) // 4 * 4].reshape(-1, 4)
    model = st.Sequential(st.Dense(4, 4, bias=False), seed=0)
    model.load_state_dict({"0.weight": np.eye(4, dtype=np.float32)})
    np.testing.assert_array_equal(model.predict(mapped(tmp_path / "h.npy", half)),
                                  half.astype(np.float32))


def test_regression_targets_and_predict_evaluate_read_in_place(tmp_path, arrays):
    X, _ = arrays
    Y = np.random.default_rng(1).normal(size=(N, C))
    Xm, Ym = mapped(tmp_path / "x.npy", X), mapped(tmp_path / "y.npy", Y)
    ref, _ = train(X, Y, loss=st.losses.MSE())
    got, _ = train(Xm, Ym, loss=st.losses.MSE())
    np.testing.assert_array_equal(got.flat_params(), ref.flat_params())
    np.testing.assert_array_equal(got.predict(Xm), ref.predict(X))
    assert got.evaluate(Xm, Ym, st.losses.MSE()) == ref.evaluate(X, Y, st.losses.MSE())


def test_predict_and_evaluate_in_chunks_match_one_pass(tmp_path, arrays, monkeypatch):
    # Chunks of 1 KiB: many pieces, many shards; the outputs and loss to rounding (a matrix
    # product's blocking, and so its last bit, depends on how many rows it has).
    X, y = arrays
    model, _ = train(X, y, epochs=1)
    monkeypatch.setattr(_checks, "CHUNK_BYTES", 1024)
    xs = [save(tmp_path / f"x{i}.npy", part) for i, part in enumerate(np.array_split(X, 4))]
    np.testing.assert_allclose(model.predict(xs), model.predict(X), rtol=1e-5, atol=1e-6)
    loss = st.losses.CrossEntropy()
    got, ref = model.evaluate(xs, mapped(tmp_path / "y.npy", y), loss), model.evaluate(X, y, loss)
    assert got["accuracy"] == ref["accuracy"]
    assert got["loss"] == pytest.approx(ref["loss"], rel=1e-6)


def test_validation_data_and_diagnostics_take_memory_maps(tmp_path, arrays):
    X, y = arrays
    Xm, ym = mapped(tmp_path / "x.npy", X), mapped(tmp_path / "y.npy", y)
    _, h_ref = train(X, y, validation_data=(X[:200], y[:200]), diagnostics=True)
    _, h = train(Xm, ym, validation_data=(Xm[:200], ym[:200]), diagnostics=True)
    assert h["val_loss"] == h_ref["val_loss"] and h["grad_ratio"] == h_ref["grad_ratio"]
    m_ref, h_ref = train(X, y, validation_split=0.25)
    shards = [save(tmp_path / "a.npy", X[:400]), save(tmp_path / "b.npy", X[400:])]
    m, h = train(shards, ym, validation_split=0.25)  # the held-out rows cross both shards
    assert h["val_loss"] == h_ref["val_loss"]
    np.testing.assert_array_equal(m.flat_params(), m_ref.flat_params())


def test_resume_reads_the_data_in_place_and_matches_in_memory(tmp_path, arrays):
    # A run checkpointed on a memory map resumes from the array in memory and from shards of
    # another dtype split elsewhere (the fingerprint is that of the data as the model reads it),
    # ending bitwise like an uninterrupted run.
    X, y = arrays
    ckpt = tmp_path / "run.ckpt"
    Xm, ym = mapped(tmp_path / "x.npy", X), mapped(tmp_path / "y.npy", y)
    ref, _ = train(X, y, epochs=4)
    train(Xm, ym, epochs=2, checkpoint=ckpt)
    got, _ = train(X, y, epochs=4, checkpoint=ckpt)
    np.testing.assert_array_equal(got.flat_params(), ref.flat_params())
    os.remove(ckpt)
    train(X, y, epochs=1, checkpoint=ckpt)
    xs = [save(tmp_path / "a.npy", X[:250].astype(np.float64)), save(tmp_path / "b.npy", X[250:])]
    got, _ = train(xs, ym, epochs=4, checkpoint=ckpt)
    np.testing.assert_array_equal(got.flat_params(), ref.flat_params())
    other = X.copy()
    other[-1, -1] += 1
    with pytest.raises(ValueError, match="differs in data"):
        train(mapped(tmp_path / "o.npy", other), ym, epochs=4, checkpoint=ckpt)


def test_bad_data_read_in_place_is_refused_naming_the_shard(tmp_path, arrays):
    X, y = arrays
    bad = X.copy()
    bad[N - 1, 3] = np.nan  # in the last row: every chunk is looked at
    with pytest.raises(ValueError, match=r"X contains NaN"):
        train(mapped(tmp_path / "nan.npy", bad), y)
    paths = [save(tmp_path / "ok.npy", X), save(tmp_path / "nan.npy", bad)]
    with pytest.raises(ValueError, match=r"X \(.*nan.npy\) contains NaN"):
        st.Sequential(st.Dense(F, C)).predict(paths)
    big = X.astype(np.float64)
    big[10, 0] = 1e300
    with pytest.raises(ValueError, match="too large for float32"):
        train(mapped(tmp_path / "big.npy", big), y)
    with pytest.raises(ValueError, match=r"y \(.*y1.npy\) holds labels in \[5, 7\]"):
        train(X, [save(tmp_path / "y0.npy", y[:10]), save(tmp_path / "y1.npy", y[10:] + 5)])
    with pytest.raises(ValueError, match="y has 599 samples but X has 600"):
        train(mapped(tmp_path / "x.npy", X), mapped(tmp_path / "y.npy", y[1:]))
    with pytest.raises(ValueError, match="has 5 features but the model expects 12"):
        train([save(tmp_path / "w.npy", X[:, :5])], y)
    with pytest.raises(ValueError, match="shape"):
        train([save(tmp_path / "a.npy", X), save(tmp_path / "b.npy", X[:, :5])], y)
    with pytest.raises(ValueError, match="C order"):
        train(mapped(tmp_path / "f.npy", np.asfortranarray(X)), y)
    with pytest.raises(TypeError, match="dtype >f4"):
        train(mapped(tmp_path / "be.npy", X.astype(">f4")), y)
    with pytest.raises(ValueError, match=r"cannot read .*missing.npy"):
        train([os.fspath(tmp_path / "missing.npy")], y)


def test_checks_hold_a_chunk_not_the_data(tmp_path):
    # 64 MiB of float64 read into a float32 model: validation, the checkpoint fingerprint and
    # prediction allocate a few chunks (16 MiB each) at most, never a copy of the data.
    rows = (64 << 20) // (8 * 64)
    X = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float64,
                                  shape=(rows, 64))
    X[:] = 0.5
    X.flush()
    X = np.load(tmp_path / "x.npy", mmap_mode="r")
    y = np.zeros(rows, dtype=np.int64)
    model = st.Sequential(st.Dense(64, 2), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.01)
    tracemalloc.start()
    try:
        model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=1, batch_size=4096,
                  verbose=0, checkpoint=tmp_path / "run.ckpt")
        model.predict(X)  # its output, (rows, 2) float32, is 1 MiB
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * _checks.CHUNK_BYTES, peak
    # In memory the finiteness check no longer allocates a boolean array the size of X.
    A = np.zeros((rows, 64))
    tracemalloc.start()
    try:
        _checks.check_finite(A, "A")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < _checks.CHUNK_BYTES, peak


LIMITED_RUN = textwrap.dedent("""
    import json, resource, sys
    limit = int(sys.argv[3]) << 20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    import numpy as np
    import steepest as st
    from conftest_data import big_model, big_fit
    X = np.load(sys.argv[1], mmap_mode="r")
    y = np.load(sys.argv[2], mmap_mode="r")
    try:
        np.ones(X.shape, dtype=np.float32)  # the limit bites: the data cannot be held
        sys.exit("the limit allowed a copy of the data")
    except MemoryError:
        pass
    model = big_model()
    big_fit(model, X, y)
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    print(json.dumps({"params": model.flat_params().tolist(),
                      "VmHWM": status["VmHWM"].strip(), "RssAnon": status["RssAnon"].strip()}))
""")

BIG_HELPERS = textwrap.dedent("""
    import steepest as st

    def big_model():
        return st.Sequential(st.Dense(256, 8), st.ReLU(), st.Dense(8, 2), seed=0)

    def big_fit(model, X, y):
        opt = st.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=1,
                  batch_size=512, verbose=0)
""")


@pytest.mark.skipif(bool(os.environ.get("STEEPEST_SANITIZED")),
                    reason="ASan's shadow memory cannot be mapped under RLIMIT_DATA")
def test_a_file_three_times_the_allowed_memory_trains_like_in_memory(tmp_path):
    # 600 MiB of float32 under RLIMIT_DATA = 200 MiB (the heap and every private mapping; a
    # read-only file mapping is not counted): a copy of the data cannot even be allocated, yet
    # one shuffled epoch completes with the weights of in-memory training.
    limit_mib, rows, width = 200, (600 << 20) // (256 * 4), 256
    rng = np.random.default_rng(0)
    X = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32,
                                  shape=(rows, width))
    for start in range(0, rows, 1 << 16):
        block = rng.standard_normal((min(1 << 16, rows - start), width), dtype=np.float32)
        X[start:start + len(block)] = block
    labels = (X[:, 0] > 0).astype(np.int64)
    X.flush()
    del X
    np.save(tmp_path / "y.npy", labels)
    (tmp_path / "conftest_data.py").write_text(BIG_HELPERS)
    (tmp_path / "limited.py").write_text(LIMITED_RUN)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=os.fspath(tmp_path))
    run = subprocess.run([sys.executable, tmp_path / "limited.py", tmp_path / "x.npy",
                          tmp_path / "y.npy", str(limit_mib)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-1000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print("limited run:", {k: v for k, v in result.items() if k != "params"})

    sys.path.insert(0, os.fspath(tmp_path))
    try:
        from conftest_data import big_fit, big_model
    finally:
        sys.path.remove(os.fspath(tmp_path))
        sys.modules.pop("conftest_data", None)
    model = big_model()
    big_fit(model, np.load(tmp_path / "x.npy"), labels)  # all 600 MiB in memory
    np.testing.assert_array_equal(np.asarray(result["params"], dtype=np.float32),
                                  model.flat_params())
