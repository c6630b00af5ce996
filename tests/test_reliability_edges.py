"""Edges of the data, the numbers, the files, the threads and memory: each either works and
gives the right answer or fails with a clear ValueError / TypeError / MemoryError /
RuntimeError, never a crash, a hang or silent corruption."""
from __future__ import annotations

import gc
import io
import json
import os
import pickle
import resource
import threading
import weakref
import zipfile

import numpy as np
import pytest

import steepest as st
from conftest import members, npy, write_zip

SANITIZED = bool(os.environ.get("STEEPEST_SANITIZED"))


def small_model(n_in=3, n_out=2, dtype="float64", seed=0):
    return st.Sequential(st.Dense(n_in, 5), st.Tanh(), st.Dense(5, n_out), dtype=dtype,
                         seed=seed)


def clone(model):
    other = st.Sequential(*model.layers, dtype=model.dtype, seed=model.seed)
    other.load_state_dict(model.state_dict())
    return other


def problem(n=10, n_in=3, n_out=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in)), rng.integers(0, n_out, size=n)


# -- data edges -----------------------------------------------------------------------------
def test_batch_larger_than_the_data_set_is_one_full_batch():
    X, y = problem(10)
    a, b = small_model(), small_model()
    loss = st.losses.CrossEntropy()
    a.fit(X, y, loss=loss, optimizer=st.optim.SGD(a.parameters(), lr=0.1), epochs=3,
          batch_size=1000, verbose=0)
    b.fit(X, y, loss=loss, optimizer=st.optim.SGD(b.parameters(), lr=0.1), epochs=3,
          batch_size=None, verbose=0)
    np.testing.assert_array_equal(a.flat_params(), b.flat_params())
    assert a.flat_params().tolist() != small_model().flat_params().tolist()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_last_partial_batch_is_a_step_of_its_own(dtype):
    X, y = problem(10)
    a = small_model(dtype=dtype)
    b = clone(a)
    loss = st.losses.CrossEntropy()
    opt_a = st.optim.Adam(a.parameters(), lr=0.01)
    history = a.fit(X, y, loss=loss, optimizer=opt_a, epochs=1, batch_size=4, shuffle=False,
                    verbose=0)
    assert opt_a.steps == 3
    opt_b = st.optim.Adam(b.parameters(), lr=0.01)
    losses = [b.train_step(X[s:s + 4], y[s:s + 4], loss, opt_b) for s in (0, 4, 8)]
    np.testing.assert_array_equal(a.flat_params(), b.flat_params())
    # the epoch's loss is the mean over samples, the partial batch weighted by its 2 samples
    assert history["loss"][0] == pytest.approx((4 * losses[0] + 4 * losses[1] + 2 * losses[2])
                                               / 10, rel=1e-6)


@pytest.mark.parametrize("loss", [st.losses.CrossEntropy(0.1), st.losses.MSE(),
                                  st.losses.BinaryCrossEntropy()], ids=repr)
def test_a_single_sample(loss):
    model = small_model()
    X = np.array([[0.5, -1.0, 2.0]])
    y = np.array([1]) if isinstance(loss, st.losses.CrossEntropy) else np.array([[0.2, 0.9]])
    before = model.flat_params().copy()
    history = model.fit(X, y, loss=loss, optimizer=st.optim.SGD(model.parameters(), lr=0.1),
                        epochs=2, verbose=0)
    assert np.isfinite(history["loss"]).all() and history["loss"][1] < history["loss"][0]
    assert not np.array_equal(model.flat_params(), before)
    assert model.predict(X).shape == (1, 2)
    assert np.isfinite(model.evaluate(X, y, loss)["loss"])


def test_one_feature():
    model = st.Sequential(st.Dense(1, 4), st.ReLU(), st.Dense(4, 1), dtype="float64", seed=3)
    X = np.linspace(-1, 1, 40)[:, None]
    y = 2 * X[:, 0] + 1
    history = model.fit(X, y, loss=st.losses.MSE(), optimizer=st.optim.Adam(
        model.parameters(), lr=0.05), epochs=200, batch_size=8, verbose=0)
    assert history["loss"][-1] < 0.05 * history["loss"][0]
    assert model.predict(X).shape == (40, 1)
    with pytest.raises(ValueError, match="features"):
        model.predict(X.ravel())  # 1-D is refused, not silently reshaped


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_one_class_cross_entropy(smoothing):
    """With one output the softmax is 1: loss 0, gradient 0, nothing moves."""
    model = small_model(n_out=1)
    X, _ = problem(7)
    y = np.zeros(7, dtype=np.int64)
    loss = st.losses.CrossEntropy(smoothing)
    before = model.flat_params().copy()
    history = model.fit(X, y, loss=loss, optimizer=st.optim.SGD(model.parameters(), lr=1.0),
                        epochs=2, verbose=0)
    assert history["loss"] == [0.0, 0.0] and history["accuracy"] == [1.0, 1.0]
    np.testing.assert_array_equal(model.flat_params(), before)
    with pytest.raises(ValueError, match="labels"):
        model.fit(X, np.ones(7, int), loss=loss, optimizer=st.optim.SGD(model.parameters()),
                  verbose=0)


def test_float64_model_matches_a_numpy_forward_pass():
    model = st.Sequential(st.Dense(3, 6), st.Tanh(), st.Dense(6, 2), dtype="float64", seed=4)
    X, y = problem(30)
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=st.optim.SGD(
        model.parameters(), lr=0.1), epochs=5, verbose=0)
    s = model.state_dict()
    assert all(v.dtype == np.float64 for v in s.values())
    ref = np.tanh(X @ s["0.weight"].T + s["0.bias"]) @ s["2.weight"].T + s["2.bias"]
    out = model.predict(X)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=1e-13, atol=1e-13)


def log_softmax(o):
    m = o.max(axis=1, keepdims=True)
    return o - m - np.log(np.exp(o - m).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("dtype,scale", [("float64", 1e30), ("float64", 1e300),
                                         ("float32", 1e4), ("float32", 1e30)])
def test_very_large_logits_cross_entropy(dtype, scale):
    out = np.array([[1.0, -1.0, 0.5], [-1.0, 0.25, 1.0], [0.0, 1.0, -0.5]]) * scale
    out = out.astype(dtype)
    y = np.array([0, 0, 2])
    loss = st.losses.CrossEntropy()
    value = loss.forward(out, y)
    o = out.astype(np.float64)
    expected = -log_softmax(o)[np.arange(3), y].mean()
    assert np.isfinite(value)
    assert value == pytest.approx(expected, rel=1e-6)
    grad = loss.backward()
    p = np.exp(log_softmax(o))
    p[np.arange(3), y] -= 1
    assert np.isfinite(grad).all() and grad.dtype == np.dtype(dtype)
    np.testing.assert_allclose(grad, p / 3, atol=1e-7)


@pytest.mark.parametrize("dtype,scale", [("float64", 1e30), ("float32", 1e4)])
def test_very_large_logits_binary_cross_entropy(dtype, scale):
    out = (np.array([[1.0, -1.0], [-0.5, 2.0]]) * scale).astype(dtype)
    t = np.array([[1.0, 1.0], [0.0, 0.5]])
    loss = st.losses.BinaryCrossEntropy()
    value = loss.forward(out, t)
    o = out.astype(np.float64)
    expected = np.mean(np.maximum(o, 0) - o * t + np.log1p(np.exp(-np.abs(o))))
    assert np.isfinite(value) and value == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(loss.backward(), ((o > 0) - t) / 4, atol=1e-7)


def test_very_large_logits_through_a_float32_model():
    """Logits of 1e4 in float32: the fused softmax + cross-entropy stays finite and correct."""
    model = st.Sequential(st.Dense(2, 3), dtype="float32", seed=0)
    w = model.state_dict()
    w["0.weight"][...] = np.array([[1e4, 0], [0, 1e4], [-1e4, -1e4]], np.float32)
    w["0.bias"][...] = 0
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([1, 1, 0])
    loss = st.losses.CrossEntropy()
    model.zero_grad()
    value = loss.forward(model.forward(X, training=True), y)
    model.backward(loss.backward())
    # rows 0 and 2 are confidently wrong by 1e4 and 2e4: loss (1e4 + 0 + 2e4 * ...)/3
    o = X @ w["0.weight"].T.astype(np.float64)
    expected = -log_softmax(o)[np.arange(3), y].mean()
    assert value == pytest.approx(expected, rel=1e-6)
    assert np.isfinite(model.flat_grads()).all()
    p = np.exp(log_softmax(o))
    p[np.arange(3), y] -= 1
    np.testing.assert_allclose(model.parameters()[0].grad, (p / 3).T @ X, atol=1e-6)


@pytest.mark.parametrize("label_dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8,
                                         np.uint16, np.uint32, np.uint64, np.intp, np.uintp])
def test_labels_of_any_integer_dtype(label_dtype):
    X, y = problem(20, n_out=3)
    a, b = small_model(n_out=3), small_model(n_out=3)
    loss = st.losses.CrossEntropy()
    a.fit(X, y.astype(np.int64), loss=loss, optimizer=st.optim.SGD(a.parameters(), lr=0.1),
          epochs=2, batch_size=6, verbose=0)
    b.fit(X, y.astype(label_dtype), loss=loss, optimizer=st.optim.SGD(b.parameters(), lr=0.1),
          epochs=2, batch_size=6, verbose=0)
    np.testing.assert_array_equal(a.flat_params(), b.flat_params())
    assert b.evaluate(X, y.astype(label_dtype), loss) == a.evaluate(X, y, loss)
    # non-contiguous and (N, 1) label arrays too
    wide = np.stack([y, y], axis=1).astype(label_dtype)
    assert b.evaluate(X, wide[:, 0], loss) == b.evaluate(X, wide[:, :1], loss)


def test_empty_data_is_a_clear_error():
    model = small_model()
    loss = st.losses.CrossEntropy()
    opt = st.optim.SGD(model.parameters())
    empty_X, empty_y = np.zeros((0, 3)), np.zeros(0, int)
    for call in (lambda: model.fit(empty_X, empty_y, loss=loss, optimizer=opt, verbose=0),
                 lambda: model.train_step(empty_X, empty_y, loss, opt),
                 lambda: model.predict(empty_X),
                 lambda: model.evaluate(empty_X, empty_y, loss),
                 lambda: model.forward(empty_X),
                 lambda: loss.forward(np.zeros((0, 2)), empty_y)):
        with pytest.raises(ValueError, match="empty"):
            call()
    with pytest.raises(ValueError):
        model.fit(np.zeros((4, 3)), empty_y, loss=loss, optimizer=opt, verbose=0)


def test_backward_after_another_call_is_refused_not_a_stale_read():
    """forward(small) -> train_step(big) -> backward(small grad): the core's buffers now hold
    the big batch, and the small forward's input may be gone. It must refuse, not read past
    the small gradient or from the freed input (what the core did before the check)."""
    model = small_model()
    loss = st.losses.CrossEntropy()
    X, y = problem(50)
    out = model.forward(X[:2], training=True)
    loss.forward(out, y[:2])
    model.train_step(X, y, loss, st.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(RuntimeError, match="forward"):
        model.backward(loss.backward())
    model.forward(X[:3], training=True)
    model.layer_outputs(X[:3])  # reuses the buffers that forward kept for backward
    with pytest.raises(RuntimeError, match="forward"):
        model.backward(np.zeros((3, 2)))
    # a fresh forward makes backward valid again
    model.zero_grad()
    loss.forward(model.forward(X[:3], training=True), y[:3])
    model.backward(loss.backward())
    assert np.abs(model.flat_grads()).sum() > 0


# -- sizes beyond 32 bits ----------------------------------------------------------------------
def test_width_beyond_blas_limit_is_refused_before_allocation():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for args in [(2**31, 1), (1, 2**31), (2**40, 2**40)]:
        with pytest.raises(ValueError, match="BLAS"):
            st.Dense(*args)
    with pytest.raises(ValueError, match="BLAS"):
        st.Sequential(st.Dense(2, 2**31 + 5))
    # nothing of gigabytes was touched
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024


@pytest.mark.parametrize("widths", [(2**31 - 1, 2**31 - 1), (2**20, 2**20, 2**20),
                                    (2**24, 2**14)])
def test_model_larger_than_memory_is_refused_before_allocation(widths):
    """Widths within BLAS's limits but parameter buffers beyond this machine's memory: a
    MemoryError that says how much, raised before any allocation (no OOM kill)."""
    layers = [st.Dense(a, b) for a, b in zip(widths, widths[1:])]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(MemoryError, match="GiB"):
        st.Sequential(*layers, dtype="float64")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024


def _mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.mark.slow
@pytest.mark.skipif(SANITIZED, reason="needs 10 GB; too slow and too big under ASan")
def test_more_than_2_to_the_31_elements():
    """A data set of more than 2^31 values goes through predict (64-bit offsets in the
    core): the last rows' predictions are right, not wrapped around."""
    if _mem_available() < 14 * 2**30:
        pytest.skip("needs about 12 GB of free memory")
    model = st.Sequential(st.Dense(4, 1), dtype="float32", seed=0)
    n = 2**29 + 7  # 4 * n > 2^31 elements
    X = np.empty((n, 4), np.float32)
    X[:] = 0
    X[-3:] = [[1, 2, 3, 4], [4, 3, 2, 1], [-1, 0, 1, 0]]
    out = model.predict(X)
    w, b = model.state_dict()["0.weight"], model.state_dict()["0.bias"]
    np.testing.assert_allclose(out[-3:, 0], X[-3:] @ w[0] + b[0], rtol=1e-6)
    np.testing.assert_allclose(out[:5, 0], b[0], rtol=1e-6)


# -- files ----------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    model = st.Sequential(st.Dense(3, 4), st.ReLU(), st.Dropout(0.2), st.Dense(4, 2), seed=7)
    path = tmp_path / "model.stp"
    model.save(path)
    return model, path


def header_of(path):
    return json.loads(bytes(np.load(path)["__steepest__"]).decode())


def with_header(path, out, header):
    m = members(path)
    m["__steepest__.npy"] = npy(np.frombuffer(json.dumps(header).encode(), np.uint8))
    write_zip(out, m)
    return out


def test_load_roundtrip_is_bit_identical(saved):
    model, path = saved
    loaded = st.load(path)
    assert loaded.config() == model.config()
    for a, b in zip(loaded.parameters(), model.parameters()):
        assert a.data.tobytes() == b.data.tobytes()


def test_load_refuses_truncated_files(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    out = tmp_path / "cut.stp"
    for n in sorted(set(range(0, len(data), 7)) | {1, len(data) - 1, len(data) - 22}):
        out.write_bytes(data[:n])
        with pytest.raises(ValueError):
            st.load(out)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_load_refuses_corrupted_files(saved, tmp_path, compression):
    """Every byte flipped in turn (three patterns): a ValueError, or - where the byte does not
    matter (timestamps, padding) - exactly the saved model. Never another exception."""
    model, path = saved
    source = tmp_path / "source.stp"
    write_zip(source, members(path), compression)
    data = source.read_bytes()
    out = tmp_path / "flipped.stp"
    outcomes = {"ValueError": 0, "identical": 0}
    for i in range(len(data)):
        for pattern in (0x01, 0x80, 0xFF):
            d = bytearray(data)
            d[i] ^= pattern
            out.write_bytes(bytes(d))
            try:
                loaded = st.load(out)
            except ValueError:
                outcomes["ValueError"] += 1
                continue
            assert loaded.config() == model.config(), (i, pattern)
            for a, b in zip(loaded.parameters(), model.parameters()):
                assert a.data.tobytes() == b.data.tobytes(), (i, pattern)
            outcomes["identical"] += 1
    assert outcomes["ValueError"] > outcomes["identical"] > 0


def test_load_refuses_foreign_files(tmp_path, saved):
    rng = np.random.default_rng(0)
    cases = {
        "empty": b"",
        "text": b"layers: Dense(3, 4)\n" * 10,
        "random": rng.bytes(3000),
        "json": json.dumps({"format": "steepest.model", "version": 1}).encode(),
        "pickle": pickle.dumps({"0.weight": np.zeros(3)}),
        "npy": npy(np.zeros((4, 3), np.float32)),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    np.savez(tmp_path / "plain.npz", a=np.zeros(3), b=np.ones((2, 2)))
    write_zip(tmp_path / "other.zip", {"readme.txt": b"hello", "data.csv": b"1,2\n3,4\n"})
    write_zip(tmp_path / "renamed.zip", {"__steepest__.npy": npy(np.zeros(3))})
    m = members(saved[1])
    m["__steepest__.npy"] = npy(np.frombuffer(b"[1, 2, 3]", np.uint8))
    write_zip(tmp_path / "list_header.zip", m)
    m["__steepest__.npy"] = npy(np.frombuffer(b"[" * 200000 + b"]" * 200000, np.uint8))
    write_zip(tmp_path / "deep_header.zip", m)
    m["__steepest__.npy"] = npy(np.frombuffer(b"\xff\xfe{", np.uint8))
    write_zip(tmp_path / "binary_header.zip", m)
    for path in sorted(tmp_path.iterdir()):
        if path.name.startswith("model"):
            continue
        with pytest.raises(ValueError):
            st.load(path)
    with pytest.raises(FileNotFoundError):  # a missing file is not "corrupted"
        st.load(tmp_path / "missing.stp")


def test_load_refuses_a_newer_format_version(saved, tmp_path):
    _, path = saved
    header = header_of(path)
    for version in (2, 99, 0, -1, "1", None, 1.5):
        header["version"] = version
        with pytest.raises(ValueError, match="version"):
            st.load(with_header(path, tmp_path / "v.stp", header))


def test_load_refuses_pickled_object_arrays_and_runs_no_code(saved, tmp_path):
    _, path = saved
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    m = members(path)
    m["0.weight.npy"] = npy(np.array([Exploit()], dtype=object), allow_pickle=True)
    write_zip(tmp_path / "evil.stp", m)
    with pytest.raises(ValueError, match="pickled"):
        st.load(tmp_path / "evil.stp")
    m = members(path)
    m["__steepest__.npy"] = npy(np.array([Exploit()], dtype=object), allow_pickle=True)
    write_zip(tmp_path / "evil2.stp", m)
    with pytest.raises(ValueError):
        st.load(tmp_path / "evil2.stp")
    assert not marker.exists()


def test_load_refuses_wrong_declared_sizes(saved, tmp_path):
    model, path = saved
    weight = model.state_dict()["0.weight"]
    cases = {}
    # the array header declares more (or fewer) values than its bytes
    for shape in [(4, 4), (4, 2), (2**40, 3), (-4, 3), (2**70, 3)]:
        hdr = np.lib.format.header_data_from_array_1_0(weight)
        hdr["shape"] = shape
        b = io.BytesIO()
        np.lib.format.write_array_header_1_0(b, hdr)
        b.write(weight.tobytes())
        cases[f"declares {shape}"] = b.getvalue()
    cases["wrong dtype"] = npy(weight.astype(np.float64))
    cases["wrong shape"] = npy(weight.T.copy())
    cases["fortran"] = npy(np.asfortranarray(weight))
    cases["missing bytes"] = npy(weight)[:-4]
    cases["extra bytes"] = npy(weight) + b"\0\0\0\0"
    for name, blob in cases.items():
        m = members(path)
        m["0.weight.npy"] = blob
        write_zip(tmp_path / "bad.stp", m)
        with pytest.raises(ValueError):
            st.load(tmp_path / "bad.stp")
    m = members(path)
    del m["3.bias.npy"]
    write_zip(tmp_path / "missing.stp", m)
    with pytest.raises(ValueError, match="missing"):
        st.load(tmp_path / "missing.stp")
    m = members(path)
    m["9.weight.npy"] = npy(weight)
    write_zip(tmp_path / "extra.stp", m)
    with pytest.raises(ValueError, match="unexpected"):
        st.load(tmp_path / "extra.stp")


@pytest.mark.parametrize("layers", [
    [{"type": "Dense", "in_features": 10**6, "out_features": 10**6}],  # 8 TB
    [{"type": "Dense", "in_features": 50000, "out_features": 40000}],  # 8 GB: fits, not there
    [{"type": "Dense", "in_features": 2**31, "out_features": 1}],      # beyond BLAS
    [{"type": "Dense", "in_features": 3, "out_features": 2**62}],
    [{"type": "Dense", "in_features": -3, "out_features": 2}],
    [{"type": "Dropout", "p": 0.5}] * 1000,
])
def test_load_refuses_absurd_sizes_without_allocating(saved, tmp_path, layers):
    _, path = saved
    header = header_of(path)
    header["layers"] = layers
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError):
        st.load(with_header(path, tmp_path / "absurd.stp", header))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024


def test_load_refuses_bad_architectures(saved, tmp_path):
    _, path = saved
    base = header_of(path)
    for key, value in [("layers", "Dense"), ("layers", 3), ("layers", [{"type": "Conv2d"}]),
                       ("layers", [{"type": "Dense", "in_features": 3}]),
                       ("layers", [{"type": "Dense", "in_features": 3, "out_features": 4,
                                    "exec": "print(1)"}]),
                       ("dtype", "float16"), ("dtype", None), ("seed", -1), ("seed", 2**64),
                       ("seed", "0"), ("format", "steepest.checkpoint"), ("format", None)]:
        header = dict(base, **{key: value})
        with pytest.raises(ValueError):
            st.load(with_header(path, tmp_path / "arch.stp", header))
    header = dict(base)
    del header["layers"]
    with pytest.raises(ValueError):
        st.load(with_header(path, tmp_path / "arch.stp", header))


def stray_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")
                  or p.name.startswith("."))


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    a = st.Sequential(st.Dense(3, 2), seed=1)
    b = st.Sequential(st.Dense(3, 2), seed=2)
    path = tmp_path / "m.stp"
    a.save(path)
    b.save(path)  # replaces
    assert stray_files(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["m.stp"]
    np.testing.assert_array_equal(st.load(path).flat_params(), b.flat_params())
    a.save(str(path))  # str and PathLike both work
    np.testing.assert_array_equal(st.load(path).flat_params(), a.flat_params())


@pytest.mark.parametrize("fault", ["savez", "savez_partial", "fsync", "replace", "interrupt"])
def test_a_failing_save_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch, fault):
    old = st.Sequential(st.Dense(3, 2), seed=1)
    new = st.Sequential(st.Dense(3, 2), seed=2)
    path = tmp_path / "m.stp"
    old.save(path)
    original = path.read_bytes()

    def savez_partial(f, **arrays):
        f.write(b"PK\x03\x04 half a file")
        raise OSError(28, "No space left on device")

    def boom(*args, **kwargs):
        raise OSError(5, "Input/output error")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    target, replacement = {
        "savez": (np, boom), "savez_partial": (np, savez_partial), "fsync": (os, boom),
        "replace": (os, boom), "interrupt": (np, interrupt)}[fault]
    name = {"savez": "savez", "savez_partial": "savez", "fsync": "fsync",
            "replace": "replace", "interrupt": "savez"}[fault]
    monkeypatch.setattr(target, name, replacement)
    with pytest.raises((OSError, KeyboardInterrupt)):
        new.save(path)
    monkeypatch.undo()
    assert stray_files(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["m.stp"]
    assert path.read_bytes() == original
    np.testing.assert_array_equal(st.load(path).flat_params(), old.flat_params())


def test_save_into_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        st.Sequential(st.Dense(3, 2), seed=1).save(tmp_path / "no" / "such" / "m.stp")
    assert list(tmp_path.iterdir()) == []


# -- threads --------------------------------------------------------------------------------
def run_threads(target, n):
    errors = []

    def wrapped(i):
        try:
            target(i)
        except BaseException as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a thread hung"
    return errors


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_from_8_threads_at_once(dtype):
    model = st.Sequential(st.Dense(20, 64), st.GELU(), st.Dropout(0.3), st.Dense(64, 64),
                          st.Softmax(), st.Dense(64, 5), dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(300 + 37 * i, 20)) for i in range(8)]
    expected = [model.predict(x) for x in inputs]
    results = [None] * 8

    def work(i):
        for _ in range(20):
            out = model.predict(inputs[i])
            assert np.array_equal(out, expected[i])
        results[i] = out

    assert run_threads(work, 8) == []
    for r, e in zip(results, expected):
        np.testing.assert_array_equal(r, e)


def test_fit_and_predict_racing_on_one_model():
    """predict while another thread trains: each call works or raises the core's clear
    RuntimeError (fit too, when a prediction holds the model at the moment it starts an
    epoch); a fit that completes ends exactly as an undisturbed run."""
    X, y = problem(2000, n_in=10, n_out=3)
    model = st.Sequential(st.Dense(10, 32), st.ReLU(), st.Dense(32, 3), seed=0)
    twin = clone(model)
    loss = st.losses.CrossEntropy()
    stop = threading.Event()
    outcomes = {"ok": 0, "busy": 0}

    trained = []

    def train(_):
        try:
            model.fit(X, y, loss=loss, optimizer=st.optim.Adam(model.parameters(), lr=1e-3),
                      epochs=15, batch_size=16, verbose=0)
            trained.append(True)
        except RuntimeError as e:
            assert "in use by another thread" in str(e)
        finally:
            stop.set()

    def predict(_):
        while not stop.is_set():
            try:
                out = model.predict(X[:100])
                assert out.shape == (100, 3) and np.isfinite(out).all()
                outcomes["ok"] += 1
            except RuntimeError as e:
                assert "being trained" in str(e) or "in use" in str(e)
                outcomes["busy"] += 1

    errors = run_threads(lambda i: train(i) if i == 0 else predict(i), 3)
    assert errors == []
    assert outcomes["ok"] + outcomes["busy"] > 0
    assert np.isfinite(model.flat_params()).all() and np.isfinite(model.predict(X)).all()
    if not trained:
        return
    twin.fit(X, y, loss=loss, optimizer=st.optim.Adam(twin.parameters(), lr=1e-3), epochs=15,
             batch_size=16, verbose=0)
    np.testing.assert_array_equal(model.flat_params(), twin.flat_params())


def test_two_fits_on_one_model_one_refused():
    X, y = problem(3000, n_in=10, n_out=3)
    model = st.Sequential(st.Dense(10, 64), st.ReLU(), st.Dense(64, 3), seed=0)
    loss = st.losses.CrossEntropy()
    busy = []

    def train(_):
        opt = st.optim.SGD(model.parameters(), lr=1e-3)
        for _ in range(10):
            try:
                model.fit(X, y, loss=loss, optimizer=opt, epochs=1, batch_size=8, verbose=0)
            except RuntimeError as e:
                assert "in use" in str(e)
                busy.append(e)

    assert run_threads(train, 2) == []
    assert np.isfinite(model.flat_params()).all()


# -- no leaks -------------------------------------------------------------------------------
def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(SANITIZED, reason="ASan's quarantine holds freed memory on purpose")
def test_building_training_and_dropping_models_keeps_memory_flat(tmp_path):
    X, y = problem(64, n_in=8, n_out=3)
    loss = st.losses.CrossEntropy()

    def cycle(i):
        model = st.Sequential(st.Dense(8, 32), st.ReLU(), st.Dropout(0.1), st.Dense(32, 3),
                              dtype="float64" if i % 2 else "float32", seed=i)
        opt = st.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
        model.fit(X, y, loss=loss, optimizer=opt, epochs=2, batch_size=16, verbose=0)
        model.predict(X)
        views = model.state_dict(), opt.state_dict()  # views that keep the core alive
        if i % 50 == 0:
            model.save(tmp_path / "m.stp")
            st.load(tmp_path / "m.stp")
        del model, opt, views

    for i in range(300):  # warm up allocator pools and caches
        cycle(i)
    before = rss_bytes()
    for i in range(3000):
        cycle(i)
    growth = rss_bytes() - before
    # a leak of one model's buffers per cycle would be > 3000 * 10 KB = 30 MB
    assert growth < 8 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 3000 models"


def test_a_dropped_model_is_freed_at_once_without_the_garbage_collector():
    """No reference cycle through the parameters: a model (and its C++ buffers) goes as soon
    as the last reference does, not at some later cyclic collection. A parameter view alone
    keeps the buffers alive, safely."""
    X, y = problem(8)
    gc.collect()
    gc.disable()
    try:
        model = small_model()
        opt = st.optim.Adam(model.parameters())
        model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=2, verbose=0,
                  callbacks=[st.callbacks.Callback()])
        ref = weakref.ref(model)
        view = model.parameters()[0].data
        del model, opt
        assert ref() is None
        assert view.shape == (5, 3) and np.isfinite(view).all()  # still valid memory
        before = rss_bytes()
        for _ in range(5):
            big = st.Sequential(st.Dense(1000, 2000), dtype="float64", seed=0)  # 32 MB
            big.predict(np.ones((2, 1000)))
            del big
        if not SANITIZED:  # ASan's quarantine keeps freed memory on purpose
            assert rss_bytes() - before < 48 * 2**20
    finally:
        gc.enable()
