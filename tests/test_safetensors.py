"""safetensors files: bit-exact round trips, PyTorch reading ours and writing weights for us,
and the native format's refusals (truncated, corrupted, foreign, newer, wrong tensors).
Skipped without the safetensors package; the PyTorch tests also without torch."""
from __future__ import annotations

import json
import os
import struct
import sys
import zlib

import numpy as np
import pytest

import steepest as st

safetensors = pytest.importorskip("safetensors")
import safetensors.numpy  # noqa: E402


def model_of(dtype="float32", seed=0):
    return st.Sequential(st.Dense(4, 6), st.ELU(0.5), st.Dropout(0.25), st.Dense(6, 5, bias=False),
                         st.LeakyReLU(0.2), st.Dense(5, 3), dtype=dtype, seed=seed)


@pytest.fixture
def saved(tmp_path):
    model = model_of()
    model.state_dict()["0.bias"][...] += 0.5  # not the initial weights
    path = tmp_path / "model.safetensors"
    model.save_safetensors(path)
    return model, path


def assert_same_model(a, b):
    assert a.config() == b.config()
    assert list(a.state_dict()) == list(b.state_dict())
    for k, v in a.state_dict().items():
        assert b.state_dict()[k].dtype == v.dtype and b.state_dict()[k].tobytes() == v.tobytes()


def parts(path):
    """(tensors, metadata) of a safetensors file."""
    with safetensors.safe_open(str(path), framework="np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def write(path, tensors, metadata):
    path.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))
    return path


def with_header(path, out, change):
    """A copy of a saved file whose steepest header went through change(header), with a
    matching metadata checksum (a well-formed file that says something else)."""
    tensors, metadata = parts(path)
    header = json.loads(metadata["steepest"])
    change(header)
    text = json.dumps(header)
    metadata.update({"steepest": text, "steepest.crc32": str(zlib.crc32(text.encode()))})
    return write(out, tensors, metadata)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_safetensors_round_trip_is_bit_exact(dtype, rng, tmp_path):
    model = model_of(dtype, seed=7)
    model.fit(rng.normal(size=(20, 4)), rng.integers(0, 3, 20), loss=st.losses.CrossEntropy(),
              optimizer=st.optim.Adam(model.parameters()), epochs=2, verbose=0)
    model.save_safetensors(tmp_path / "m.safetensors")
    loaded = st.load_safetensors(tmp_path / "m.safetensors")
    assert_same_model(model, loaded)
    assert loaded.seed == 7
    X = rng.normal(size=(5, 4))
    assert loaded.predict(X).tobytes() == model.predict(X).tobytes()
    st.load_safetensors(str(tmp_path / "m.safetensors"))  # str paths too
    other = model_of(dtype, seed=1)
    other.load_safetensors(tmp_path / "m.safetensors")
    assert other.flat_params().tobytes() == model.flat_params().tobytes()


def test_safetensors_file_layout(saved):
    model, path = saved
    tensors, metadata = parts(path)
    assert set(tensors) == set(model.state_dict())
    for k, v in model.state_dict().items():
        assert tensors[k].shape == v.shape and tensors[k].dtype == v.dtype
    assert all(isinstance(v, str) for v in metadata.values())
    header = json.loads(metadata["steepest"])
    assert header["format"] == "steepest.model" and header["version"] == 1
    assert header["layers"] == model.config()["layers"]
    assert metadata["format"] == "pt"


def test_safetensors_written_atomically_with_ordinary_permissions(saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    model.state_dict()["0.bias"][...] = 0
    with pytest.raises(OSError):
        model.save_safetensors(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]
    mask = os.umask(0o022)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask  # not safetensors' own 0600


def test_safetensors_refuses_truncated_files(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    out = tmp_path / "cut.safetensors"
    for n in sorted(set(range(0, len(data), 5)) | {1, 8, len(data) - 1}):
        out.write_bytes(data[:n])
        with pytest.raises(ValueError):
            st.load_safetensors(out)


def test_safetensors_refuses_corrupted_files(saved, tmp_path):
    """Every byte flipped in turn (three patterns): a ValueError, or - where the byte does not
    matter (the "format" value, header padding) - exactly the saved model."""
    model, path = saved
    data = path.read_bytes()
    outcomes = {"ValueError": 0, "identical": 0}
    for i in range(len(data)):
        for pattern in (0x01, 0x80, 0xFF):
            d = bytearray(data)
            d[i] ^= pattern
            out = tmp_path / f"flipped{i}.{pattern}"  # a new file: truncating one is slower
            out.write_bytes(bytes(d))
            try:
                loaded = st.load_safetensors(out)
            except ValueError:
                outcomes["ValueError"] += 1
                continue
            assert_same_model(model, loaded)
            outcomes["identical"] += 1
    assert outcomes["ValueError"] > 10 * outcomes["identical"]


def test_safetensors_refuses_foreign_files(saved, tmp_path):
    model, path = saved
    tensors, metadata = parts(path)
    cases = {
        "empty": b"",
        "text": b"layers: Dense(3, 4)\n" * 10,
        "random": np.random.default_rng(0).bytes(3000),
        "huge_header_length": struct.pack("<Q", 2**40) + b"{}",
        "native": None,
    }
    for name, data in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
    model.save(tmp_path / "native")
    write(tmp_path / "no_metadata", tensors, None)
    write(tmp_path / "other_metadata", tensors, {"format": "pt"})
    bad_json = {**metadata, "steepest": "{not json",
                "steepest.crc32": str(zlib.crc32(b"{not json"))}
    write(tmp_path / "bad_json", tensors, bad_json)
    write(tmp_path / "no_checksum", tensors, {"steepest": metadata["steepest"]})
    with_header(path, tmp_path / "other_format", lambda h: h.update(format="steepest.checkpoint"))
    for case in sorted(p for p in tmp_path.iterdir() if p != path):
        with pytest.raises(ValueError):
            st.load_safetensors(case)
    with pytest.raises(ValueError, match="no steepest architecture"):
        st.load_safetensors(tmp_path / "no_metadata")
    with pytest.raises(FileNotFoundError):  # a missing file is not "corrupted"
        st.load_safetensors(tmp_path / "missing.safetensors")


def test_safetensors_refuses_a_newer_format_version(saved, tmp_path):
    _, path = saved
    for version in (2, 99, 0, -1, "1", None, 1.5):
        out = with_header(path, tmp_path / "v.safetensors", lambda h: h.update(version=version))
        with pytest.raises(ValueError, match="version"):
            st.load_safetensors(out)


def test_safetensors_refuses_wrong_tensors(saved, tmp_path):
    model, path = saved
    tensors, metadata = parts(path)
    weight = tensors["0.weight"]
    cases = {"wrong dtype": {**tensors, "0.weight": weight.astype(np.float64)},
             "wrong shape": {**tensors, "0.weight": weight.T.copy()},
             "flat": {**tensors, "0.weight": weight.ravel()},
             "missing": {k: v for k, v in tensors.items() if k != "5.bias"},
             "extra": {**tensors, "9.weight": weight}}
    for name, case in cases.items():
        out = write(tmp_path / "bad.safetensors", case, metadata)
        with pytest.raises(ValueError, match="dtype|shape|missing|unexpected|checksum"):
            st.load_safetensors(out)
        if name != "wrong dtype":  # into a model, float64 converts as in load_state_dict
            with pytest.raises(ValueError):
                model.load_safetensors(out)


def test_safetensors_refuses_a_changed_architecture_or_checksum(saved, tmp_path):
    _, path = saved
    changes = {"widths": lambda h: h["layers"][0].update(out_features=7),
               "dtype": lambda h: h.update(dtype="float64"),
               "unknown layer": lambda h: h["layers"].append({"type": "Conv2d"}),
               "absurd": lambda h: h.update(layers=[{"type": "Dense", "in_features": 10**6,
                                                     "out_features": 10**6}]),
               "tensor checksum": lambda h: h["crc32"].update({"0.weight": 12345}),
               "checksums": lambda h: h.update(crc32=[1, 2])}
    for name, change in changes.items():
        with pytest.raises(ValueError):
            st.load_safetensors(with_header(path, tmp_path / "c.safetensors", change))


def test_load_safetensors_into_a_model_checks_names_and_shapes(saved, tmp_path):
    model, path = saved
    with pytest.raises(ValueError, match="missing|unexpected"):
        st.Sequential(st.Dense(4, 6), st.Dense(6, 3)).load_safetensors(path)
    with pytest.raises(ValueError, match="shape"):
        st.Sequential(st.Dense(4, 6), st.ReLU(), st.ReLU(), st.Dense(6, 5, bias=False),
                      st.ReLU(), st.Dense(5, 2)).load_safetensors(path)
    target = model_of("float64")  # converts, like load_state_dict
    target.load_safetensors(path)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[k], v)


def test_safetensors_without_the_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(ImportError, match="pip install"):
        model_of().save_safetensors(tmp_path / "m.safetensors")
    with pytest.raises(ImportError, match="pip install"):
        st.load_safetensors(tmp_path / "m.safetensors")


# -- PyTorch reads ours, writes weights for us ------------------------------------------------

def torch_sequential(torch, dtype=None):
    """The torch.nn.Sequential matching model_of(), built by hand."""
    nn = torch.nn
    return nn.Sequential(nn.Linear(4, 6), nn.ELU(0.5), nn.Dropout(0.25),
                         nn.Linear(6, 5, bias=False), nn.LeakyReLU(0.2), nn.Linear(5, 3)
                         ).to(dtype or torch.float32).eval()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_loads_our_safetensors_strictly(dtype, rng, tmp_path):
    torch = pytest.importorskip("torch")
    import safetensors.torch

    model = model_of(dtype, seed=3)
    model.save_safetensors(tmp_path / "m.safetensors")
    tmodel = torch_sequential(torch, getattr(torch, dtype))
    tmodel.load_state_dict(safetensors.torch.load_file(str(tmp_path / "m.safetensors")),
                           strict=True)
    X = rng.normal(size=(8, 4)).astype(dtype)
    np.testing.assert_allclose(tmodel(torch.from_numpy(X)).detach().numpy(), model.predict(X),
                               rtol=1e-5 if dtype == "float32" else 1e-13, atol=1e-7)


def test_weights_saved_by_torch_load_into_steepest(rng, tmp_path):
    torch = pytest.importorskip("torch")
    import safetensors.torch

    torch.manual_seed(0)
    tmodel = torch_sequential(torch)
    path = tmp_path / "torch.safetensors"
    safetensors.torch.save_file(tmodel.state_dict(), str(path))
    model = model_of(seed=5)
    model.load_safetensors(path)
    for k, v in tmodel.state_dict().items():
        assert model.state_dict()[k].tobytes() == v.numpy().tobytes()
    X = rng.normal(size=(8, 4)).astype(np.float32)
    np.testing.assert_allclose(model.predict(X), tmodel(torch.from_numpy(X)).detach().numpy(),
                               rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="model.load_safetensors"):
        st.load_safetensors(path)  # no architecture in a file torch wrote
    safetensors.torch.save_file(tmodel.bfloat16().state_dict(), str(path))
    with pytest.raises(ValueError, match="BF16"):
        model.load_safetensors(path)


# -- buffers and counts: preprocessing and normalization layers ------------------------------

def normalized_model(dtype="float32", seed=0, standardize=True):
    first = [st.Standardize()] if standardize else []
    return st.Sequential(*first, st.Dense(4, 6), st.BatchNorm1d(6), st.ReLU(), st.Dense(6, 5),
                         st.LayerNorm(5, bias=False), st.Dense(5, 3), dtype=dtype, seed=seed)


def fitted(model, rng):
    X = rng.normal(3.0, 2.0, size=(40, 4))
    model.fit(X, rng.integers(0, 3, 40), loss=st.losses.CrossEntropy(), batch_size=8,
              optimizer=st.optim.Adam(model.parameters()), epochs=2, verbose=0)
    return model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_safetensors_carry_buffers_and_counts(dtype, rng, tmp_path):
    model = fitted(normalized_model(dtype, seed=2), rng)
    model.save_safetensors(tmp_path / "m.safetensors")
    tensors, _ = parts(tmp_path / "m.safetensors")
    assert tensors["2.num_batches_tracked"].dtype == np.int64
    assert int(tensors["2.num_batches_tracked"]) == 10  # 2 epochs of 5 batches
    assert tensors["0.count"] == 40 and tensors["0.mean"].dtype == np.dtype(dtype)
    assert {"0.mean", "0.std", "2.running_mean", "2.running_var", "5.weight"} <= set(tensors)
    assert "5.bias" not in tensors
    loaded = st.load_safetensors(tmp_path / "m.safetensors")
    assert_same_model(model, loaded)
    X = rng.normal(size=(7, 4))
    assert loaded.predict(X).tobytes() == model.predict(X).tobytes()


def torch_normalized(torch, dtype):
    nn = torch.nn
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 5),
                         nn.LayerNorm(5, bias=False), nn.Linear(5, 3)).to(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_reads_and_writes_buffers_through_safetensors(dtype, rng, tmp_path):
    torch = pytest.importorskip("torch")
    import safetensors.torch

    model = fitted(normalized_model(dtype, seed=4, standardize=False), rng)
    model.save_safetensors(tmp_path / "m.safetensors")
    tmodel = torch_normalized(torch, getattr(torch, dtype))
    tmodel.load_state_dict(safetensors.torch.load_file(str(tmp_path / "m.safetensors")),
                           strict=True)
    assert int(tmodel[1].num_batches_tracked) == 10
    X = rng.normal(size=(8, 4)).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(tmodel.eval()(torch.from_numpy(X)).detach().numpy(),
                               model.predict(X), **tol)
    # torch trains (its running statistics move), saves; steepest reads every tensor bitwise
    tmodel.train()
    for _ in range(3):
        tmodel(torch.from_numpy(rng.normal(size=(16, 4)).astype(dtype)))
    safetensors.torch.save_file(tmodel.state_dict(), str(tmp_path / "t.safetensors"))
    other = normalized_model(dtype, standardize=False)
    other.load_safetensors(tmp_path / "t.safetensors")
    for k, v in tmodel.state_dict().items():
        assert other.state_dict()[k].tobytes() == v.numpy().tobytes(), k
    np.testing.assert_allclose(other.predict(X), tmodel.eval()(torch.from_numpy(X)).detach().numpy(),
                               **tol)
