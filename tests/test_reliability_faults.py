"""Faults found by an adversarial pass (forks, threads, disk faults, kills, fuzzing of st.load,
memory pressure): each test reproduces one and checks how it is handled now."""
from __future__ import annotations

import csv
import errno
import hashlib
import importlib.util
import io
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import threading
import zipfile

import numpy as np
import pytest

import steepest as st
from conftest import CrashAtEpochEnd, members, npy, torch_state, write_zip

SANITIZED = bool(os.environ.get("STEEPEST_SANITIZED"))


def header_bytes(header: dict) -> bytes:
    b = io.BytesIO()
    np.save(b, np.frombuffer(json.dumps(header).encode(), np.uint8))
    return b.getvalue()


def npy_with_descr(array, descr: str) -> bytes:
    """array's .npy bytes with the header's dtype text replaced by descr."""
    b = io.BytesIO()
    header = np.lib.format.header_data_from_array_1_0(array)
    np.lib.format.write_array_header_1_0(b, header)
    text = b.getvalue().replace(repr(header["descr"]).encode(), repr(descr).encode())
    return text + array.tobytes()


@pytest.fixture
def saved(tmp_path):
    model = st.Sequential(st.Dense(3, 4), st.ReLU(), st.Dense(4, 2), seed=7)
    path = tmp_path / "model.stp"
    model.save(path)
    return model, path


# -- corrupted members of any zip compression -----------------------------------------------
@pytest.mark.parametrize("compression", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA],
                         ids=["bzip2", "lzma"])
def test_corrupted_bzip2_and_lzma_members_are_a_value_error(saved, tmp_path, compression):
    """Every byte of the compressed file flipped in turn: a ValueError or exactly the saved
    model, never lzma's LZMAError or another exception."""
    model, path = saved
    data = write_zip(tmp_path / "packed.stp", members(path), compression).read_bytes()
    out = tmp_path / "flipped.stp"
    refused = 0
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x55
        out.write_bytes(bytes(flipped))
        try:
            loaded = st.load(out)
        except ValueError:
            refused += 1
            continue
        np.testing.assert_array_equal(loaded.flat_params(), model.flat_params())
    assert refused > len(data) // 2


# -- dtype text that numpy's parser chokes on -----------------------------------------------
BAD_DTYPES = ["f4,(", "(f4,", ",4i", "f4,(2,", "(" * 300 + "f4", "a4", "[('a', 'f4')]"]


@pytest.mark.parametrize("text", BAD_DTYPES)
def test_unparsable_dtype_argument_names_the_argument(text):
    with pytest.raises((TypeError, ValueError), match="dtype"):
        st.Sequential(st.Dense(3, 2), dtype=text)


@pytest.mark.parametrize("text", BAD_DTYPES + ["<f8", ">f4", "|O", "O"])
def test_unparsable_dtype_in_a_file_is_a_value_error_naming_the_file(saved, tmp_path, text):
    model, path = saved
    header = json.loads(bytes(np.load(path)["__steepest__"]).decode())
    m = members(path)
    m["__steepest__.npy"] = header_bytes(dict(header, dtype=text))
    with pytest.raises(ValueError, match="hdr.stp.*dtype"):
        st.load(write_zip(tmp_path / "hdr.stp", m))
    m = members(path)
    m["0.weight.npy"] = npy_with_descr(model.state_dict()["0.weight"], text)
    with pytest.raises(ValueError, match="descr.stp.*0.weight"):
        st.load(write_zip(tmp_path / "descr.stp", m))


def test_unparsable_dtype_in_a_checkpoint_is_a_value_error(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    path = tmp_path / "run.ckpt"

    def fit():
        model = st.Sequential(st.Dense(3, 2), seed=0)
        model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=st.optim.SGD(
            model.parameters(), lr=0.1), epochs=1, checkpoint=path, verbose=0,
            callbacks=[st.callbacks.EarlyStopping(monitor="loss")])

    fit()
    header = json.loads(bytes(np.load(path)["__steepest__"]).decode())
    (name,) = [k for k in header["arrays"] if k.startswith("callbacks.")]
    header["arrays"][name][1] = "f4,("
    m = members(path)
    m["__steepest__.npy"] = header_bytes(header)
    write_zip(path, m)
    with pytest.raises(ValueError, match="run.ckpt"):
        fit()


@pytest.mark.parametrize("words", [["1", "2", "3", "4", "5"], ["1", "2", "3"],
                                   ["-1", "2", "3", "4"], [str(2**64), "2", "3", "4"]])
def test_a_checkpoint_with_a_bad_generator_state_is_a_value_error(tmp_path, words):
    """Found by the fuzzer: five words of generator state were a TypeError from the binding,
    raised after the model and optimizer had been restored; now refused before anything is."""
    X, y = np.random.default_rng(0).normal(size=(16, 3)), np.arange(16) % 2

    def run(path):
        model = st.Sequential(st.Dense(3, 2), seed=0)
        opt = st.optim.SGD(model.parameters(), lr=0.1)
        model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=2,
                  checkpoint=path, verbose=0)
        return model, opt

    run(tmp_path / "good.ckpt")
    parts = members(tmp_path / "good.ckpt")
    header = json.loads(np.load(io.BytesIO(parts["__steepest__.npy"])).tobytes())
    header["epoch"], header["rng_state"] = 1, words
    parts["__steepest__.npy"] = header_bytes(header)
    write_zip(tmp_path / "bad.ckpt", parts)
    with pytest.raises(ValueError, match="bad.ckpt.*random generator"):
        run(tmp_path / "bad.ckpt")


# -- decompression bombs and memory limits ---------------------------------------------------
def zero_weight_bomb(path, n, compression=zipfile.ZIP_DEFLATED):
    """A model file declaring Dense(n, n) float32 whose weight is deflated zeros: n * n * 4
    bytes inflated from about a thousandth of that."""
    header = {"format": "steepest.model", "version": 1, "dtype": "float32", "seed": 0,
              "layers": [{"type": "Dense", "in_features": n, "out_features": n, "bias": True,
                          "init": "torch_default"}]}
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr("__steepest__.npy", header_bytes(header))
        with z.open("0.weight.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                     "shape": (n, n)})
            zeros = bytes(4 * n * 64)
            for _ in range(n // 64):
                f.write(zeros)
        z.writestr("0.bias.npy", npy(np.zeros(n, np.float32)))
    return path


LIMITED_LOAD = textwrap.dedent("""
    import resource, sys
    import steepest as st

    def vm_bytes():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

    headroom = int(sys.argv[2]) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + headroom, resource.RLIM_INFINITY))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        st.load(sys.argv[1])
        print("loaded")
    except BaseException as e:
        print(type(e).__name__, e)
    print("grew_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
""")


def limited_load(tmp_path, path, headroom_mib):
    script = tmp_path / "limited_load.py"
    script.write_text(LIMITED_LOAD)
    result = subprocess.run([sys.executable, str(script), str(path), str(headroom_mib)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    outcome, grew = result.stdout.strip().splitlines()
    return outcome, int(grew.split()[1])


@pytest.mark.skipif(SANITIZED, reason="ASan reserves terabytes of address space")
def test_a_decompression_bomb_is_refused_before_inflating(tmp_path):
    """A 64 KiB file declaring a 4096 x 4096 zero weight (64 MiB inflated, a model of 128 MiB):
    refused by its compression ratio, naming the file, without allocating it - also under a
    memory limit that the inflated model would not fit in."""
    path = zero_weight_bomb(tmp_path / "bomb.stp", 4096)
    assert path.stat().st_size < 100 * 2**10
    outcome, grew_kib = limited_load(tmp_path, path, headroom_mib=160)
    assert outcome.startswith("ValueError") and "bomb.stp" in outcome, outcome
    assert "compress" in outcome, outcome
    assert grew_kib < 16 * 2**10, outcome


def test_a_bomb_in_bzip2_or_lzma_is_refused_too(tmp_path):
    for compression in (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        path = zero_weight_bomb(tmp_path / "bomb.stp", 2112, compression)  # 17 MiB
        with pytest.raises(ValueError, match="bomb.stp.*compress"):
            st.load(path)


def claim_size(path, member, size):
    """Rewrites the sizes of member's zip directory entry (compressed and not) to size."""
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")
    while data[at + 46:at + 46 + len(member)] != member.encode():
        at = data.index(b"PK\x01\x02", at + 4)
    data[at + 20:at + 28] = size.to_bytes(4, "little") * 2
    path.write_bytes(bytes(data))
    return path


@pytest.mark.skipif(SANITIZED, reason="ASan reserves terabytes of address space")
def test_sizes_beyond_the_file_are_refused_before_reading(tmp_path):
    """A 2 KiB stored file whose directory claims a 256 MiB weight: refused by the file's own
    size, naming the file, also under a memory limit (no read buffer of the claimed size)."""
    n = 8192
    header = {"format": "steepest.model", "version": 1, "dtype": "float32", "seed": 0,
              "layers": [{"type": "Dense", "in_features": n, "out_features": n}]}
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": "<f4", "fortran_order": False,
                                             "shape": (n, n)})
    path = write_zip(tmp_path / "liar.stp", {
        "__steepest__.npy": header_bytes(header), "0.weight.npy": b.getvalue() + bytes(64),
        "0.bias.npy": npy(np.zeros(n, np.float32))})
    claim_size(path, "0.weight.npy", len(b.getvalue()) + 4 * n * n)
    with pytest.raises(ValueError, match="liar.stp"):
        st.load(path)
    outcome, grew_kib = limited_load(tmp_path, path, headroom_mib=160)
    assert outcome.startswith("ValueError") and "liar.stp" in outcome, outcome
    assert grew_kib < 16 * 2**10, outcome


def huge_lzma_dictionary(path, source):
    """source re-zipped with LZMA, its header member's properties asking for a 4 GiB
    dictionary (found by the fuzzer: the decompressor allocates it before reading data)."""
    path = write_zip(path, members(source), zipfile.ZIP_LZMA)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("__steepest__.npy")
    start = info.header_offset + 30 + len(info.filename.encode())
    start += int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    data[start + 5:start + 9] = (2**32 - 1).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


@pytest.mark.skipif(SANITIZED, reason="ASan reserves terabytes of address space")
def test_an_lzma_member_asking_for_a_huge_dictionary_is_refused(saved, tmp_path):
    _, source = saved
    path = huge_lzma_dictionary(tmp_path / "dict.stp", source)
    with pytest.raises(ValueError, match="dict.stp.*LZMA dictionary"):
        st.load(path)
    outcome, grew_kib = limited_load(tmp_path, path, headroom_mib=512)
    assert outcome.startswith("ValueError") and "LZMA dictionary" in outcome, outcome


@pytest.mark.skipif(SANITIZED, reason="ASan reserves terabytes of address space")
def test_a_real_model_too_big_for_the_memory_limit_is_a_memory_error_naming_the_file(tmp_path):
    """A genuine 32 MiB model under a 48 MiB allowance: MemoryError naming the file, not a
    claim that its architecture is bad, nor a bare allocation failure."""
    path = tmp_path / "big.stp"
    st.Sequential(st.Dense(2048, 4096), seed=0).save(path)
    outcome, _ = limited_load(tmp_path, path, headroom_mib=48)
    assert outcome.startswith("MemoryError") and "big.stp" in outcome, outcome
    outcome, _ = limited_load(tmp_path, path, headroom_mib=400)
    assert outcome == "loaded"


# -- checkpoints: the folder, stale temporaries, callbacks -----------------------------------
def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)), rng.integers(0, 3, n)


def test_a_missing_checkpoint_folder_is_refused_before_training(tmp_path):
    X, y = _data()
    model = st.Sequential(st.Dense(4, 3), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    before = model.flat_params().copy()
    target = tmp_path / "missing_dir" / "run.ckpt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(target))) as info:
        model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=3,
                  checkpoint=target, verbose=0)
    assert ".tmp" not in str(info.value) and "checkpoint" in str(info.value)
    assert opt.steps == 0
    np.testing.assert_array_equal(model.flat_params(), before)
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="checkpoint"):
        model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=3,
                  checkpoint=tmp_path / "file" / "run.ckpt", verbose=0)
    assert opt.steps == 0


@pytest.mark.parametrize("make", [lambda p: st.callbacks.ModelCheckpoint(p),
                                  lambda p: st.callbacks.CSVLogger(p)], ids=["model", "csv"])
def test_a_callback_writing_into_a_missing_folder_is_refused_before_training(tmp_path, make):
    X, y = _data()
    model = st.Sequential(st.Dense(4, 3), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    target = tmp_path / "nowhere" / "out"
    with pytest.raises(FileNotFoundError, match=re.escape(str(target))):
        model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=2, verbose=0,
                  callbacks=[make(target)])
    assert opt.steps == 0


STALE = [".run.ckpt.a1b2c3d4.tmp", ".run.ckpt.zz_9x8y7.tmp"]
NOT_OURS = [".run.ckpt.a1b2c3d4.tmp.keep", ".other.ckpt.a1b2c3d4.tmp", ".run.ckpt.tmp",
            "run.ckpt.a1b2c3d4.tmp", ".run.ckpt.ABCDEFGH.tmp", ".run.ckpt.a1b2c3d.tmp",
            ".run.ckpt.a1b2c3d45.tmp", ".xrun.ckpt.a1b2c3d4.tmp", "notes.txt"]


def test_the_next_run_removes_only_its_own_stale_temporaries(tmp_path):
    X, y = _data()
    for name in STALE + NOT_OURS:
        (tmp_path / name).write_bytes(b"partial")
    model = st.Sequential(st.Dense(4, 3), seed=0)
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=st.optim.SGD(
        model.parameters(), lr=0.1), epochs=1, checkpoint=tmp_path / "run.ckpt", verbose=0)
    assert sorted(os.listdir(tmp_path)) == sorted(NOT_OURS + ["run.ckpt"])


KILLED_DURING_WRITE = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import steepest as st

    path, out, kill = sys.argv[1], sys.argv[2], sys.argv[3] == "kill"
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(120, 6)), rng.integers(0, 3, 120)
    if len(sys.argv) > 4:  # the same data read in place: two shards of X, a memory map of y
        X = [os.path.join(sys.argv[4], name) for name in ("x0.npy", "x1.npy")]
        y = np.load(os.path.join(sys.argv[4], "y.npy"), mmap_mode="r")
    if kill:  # the second checkpoint dies half written, with its temporary on disk
        savez, calls = np.savez, []

        def half_then_die(f, **arrays):
            calls.append(1)
            if len(calls) == 2:
                f.write(b"PK\\x03\\x04 half a checkpoint")
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            savez(f, **arrays)
        np.savez = half_then_die
    # BatchNorm1d's running statistics and count are in the checkpoint beside the weights
    model = st.Sequential(st.Dense(6, 16), st.BatchNorm1d(16), st.ReLU(), st.Dropout(0.2),
                          st.Dense(16, 8), st.LayerNorm(8), st.Dense(8, 3), seed=1)
    opt = st.optim.Adam(model.parameters(), lr=0.01)
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=4, batch_size=16,
              checkpoint=path, verbose=0)
    np.save(out, np.concatenate([model.flat_params(), model.flat_buffers(),
                                 model.flat_counts()]))
""")


def test_a_kill_during_the_checkpoint_write_leaves_nothing_behind_after_the_next_run(tmp_path):
    """SIGKILL in the middle of the second checkpoint's write (a model with normalization
    buffers and counts): the next run removes the temporary and resumes to the weights,
    buffers and counts of an uninterrupted run."""
    script = tmp_path / "train.py"
    script.write_text(KILLED_DURING_WRITE)
    run = tmp_path / "runs"
    run.mkdir()

    def train(ckpt, out, mode):
        return subprocess.run([sys.executable, str(script), str(ckpt), str(out), mode],
                              capture_output=True, text=True, timeout=120)

    killed = train(run / "run.ckpt", run / "out.npy", "kill")
    assert killed.returncode == -signal.SIGKILL
    left = sorted(os.listdir(run))
    assert left[0].startswith(".run.ckpt.") and left[0].endswith(".tmp") and len(left) == 2
    resumed = train(run / "run.ckpt", run / "out.npy", "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(os.listdir(run)) == ["out.npy", "run.ckpt"]
    straight = train(tmp_path / "ref.ckpt", tmp_path / "ref.npy", "straight")
    assert straight.returncode == 0, straight.stderr
    np.testing.assert_array_equal(np.load(run / "out.npy"), np.load(tmp_path / "ref.npy"))


READER = textwrap.dedent("""
    import os, sys
    import numpy as np
    import steepest as st

    folder, stop = sys.argv[1], sys.argv[2]
    model = st.Sequential(st.Dense(6, 5), st.Tanh(), st.Dense(5, 3), seed=9)
    shards = [os.path.join(folder, name) for name in ("x0.npy", "x1.npy")]
    y = np.load(os.path.join(folder, "y.npy"), mmap_mode="r")
    outputs, reads = set(), 0
    while True:
        finished = os.path.exists(stop)  # one more read once the training is over
        out = model.predict(shards)
        loss = model.evaluate(shards, y, loss=st.losses.CrossEntropy())["loss"]
        outputs.add((out.tobytes(), loss))
        reads += 1
        if finished:
            break
    (out, loss), = outputs
    np.save(os.path.join(folder, "read.npy"), np.frombuffer(out, np.float32))
    print(reads)
""")


def test_a_run_on_memory_maps_killed_mid_write_resumes_bitwise_beside_a_reader(tmp_path):
    """The killed-checkpoint run again, on data read in place (two .npy shards of X, a memory
    map of y) while another process keeps predicting and evaluating from the same files: the
    next run removes the temporary and resumes to the weights of an uninterrupted run in
    memory; the reader sees the same results on every read, those of the data in memory; the
    files are unchanged."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(120, 6)), rng.integers(0, 3, 120)
    data, run = tmp_path / "data", tmp_path / "runs"
    data.mkdir()
    run.mkdir()
    np.save(data / "x0.npy", X[:50])
    np.save(data / "x1.npy", X[50:])
    np.save(data / "y.npy", y)
    digest = {name: hashlib.sha1((data / name).read_bytes()).hexdigest()
              for name in sorted(os.listdir(data))}
    (tmp_path / "train.py").write_text(KILLED_DURING_WRITE)
    (tmp_path / "read.py").write_text(READER)
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, str(tmp_path / "read.py"), str(data), str(stop)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def train(ckpt, out, mode, *folder):
        return subprocess.run([sys.executable, str(tmp_path / "train.py"), str(ckpt), str(out),
                               mode, *folder], capture_output=True, text=True, timeout=120)

    try:
        killed = train(run / "run.ckpt", run / "out.npy", "kill", str(data))
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert len(os.listdir(run)) == 2  # the first checkpoint and the second's temporary
        resumed = train(run / "run.ckpt", run / "out.npy", "resume", str(data))
        assert resumed.returncode == 0, resumed.stderr
        assert sorted(os.listdir(run)) == ["out.npy", "run.ckpt"]
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    assert int(out) >= 2
    straight = train(tmp_path / "ref.ckpt", tmp_path / "ref.npy", "straight")
    assert straight.returncode == 0, straight.stderr
    np.testing.assert_array_equal(np.load(run / "out.npy"), np.load(tmp_path / "ref.npy"))
    reference = st.Sequential(st.Dense(6, 5), st.Tanh(), st.Dense(5, 3), seed=9)
    np.testing.assert_array_equal(np.load(data / "read.npy"),
                                  reference.predict(X.astype(np.float32)).ravel())
    assert digest == {name: hashlib.sha1((data / name).read_bytes()).hexdigest()
                      for name in digest}


class Marker(st.callbacks.Callback):
    """A callback with no state (it only observes)."""


class Counter(st.callbacks.Callback):
    """A callback with state that steers nothing, by its own declaration."""

    steers_training = False

    def __init__(self):
        self.seen = 0

    def on_epoch_end(self, epoch, logs):
        self.seen += 1

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state["seen"]


def _resumable_fit(X, y, epochs, checkpoint, callbacks=lambda opt: []):
    """fit with checkpoint and the callbacks that callbacks(optimizer) makes; the weights."""
    model = st.Sequential(st.Dense(4, 8), st.Tanh(), st.Dense(8, 3), seed=5)
    opt = st.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=epochs,
              batch_size=8, checkpoint=checkpoint, verbose=0, callbacks=callbacks(opt))
    return model.flat_params().copy()


def step_lr(opt):
    return st.schedules.StepLR(opt, step_size=1, gamma=0.7)


def test_resume_needs_only_the_callbacks_that_steer_training(tmp_path):
    """Loggers and stateless callbacks may be added or dropped between the interrupted run and
    its resumption; schedules and early stopping must be the same. A resumed run ends with
    the weights of an uninterrupted one either way."""
    X, y = _data()
    straight = _resumable_fit(X, y, 4, None, lambda opt: [step_lr(opt)])
    ckpt, log = tmp_path / "run.ckpt", tmp_path / "log.csv"
    with pytest.raises(RuntimeError, match="crash"):
        _resumable_fit(X, y, 4, ckpt, lambda opt: [
            Marker(), step_lr(opt), st.callbacks.CSVLogger(log), Counter(), CrashAtEpochEnd(1)])
    # the schedule gone, or an early stopping added: refused, naming what differs
    with pytest.raises(ValueError, match="StepLR"):
        _resumable_fit(X, y, 4, ckpt)
    with pytest.raises(ValueError, match="EarlyStopping"):
        _resumable_fit(X, y, 4, ckpt, lambda opt: [
            step_lr(opt), st.callbacks.EarlyStopping(monitor="loss")])
    # every observer gone, another one added: resumes, bitwise as the uninterrupted run
    resumed = _resumable_fit(X, y, 4, ckpt, lambda opt: [step_lr(opt), Marker(), Marker()])
    np.testing.assert_array_equal(straight, resumed)


def test_a_resumed_observer_gets_its_state_back_when_it_is_there(tmp_path):
    X, y = _data()
    ckpt, log = tmp_path / "run.ckpt", tmp_path / "log.csv"
    counter = Counter()
    with pytest.raises(RuntimeError, match="crash"):
        _resumable_fit(X, y, 4, ckpt, lambda opt: [counter, st.callbacks.CSVLogger(log),
                                                   CrashAtEpochEnd(1)])
    assert counter.seen == 2  # the checkpoint was written after epoch 1 only
    again = Counter()
    _resumable_fit(X, y, 4, ckpt, lambda opt: [Marker(), again, st.callbacks.CSVLogger(log)])
    assert again.seen == 4  # 1 restored + 3 trained
    with open(log, newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3", "4"]


# -- disk faults name the file ----------------------------------------------------------------
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG, errno.EIO, errno.EACCES])
@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_write_errors_name_the_file_being_written(tmp_path, monkeypatch, code, where):
    model = st.Sequential(st.Dense(3, 2), seed=0)
    path = tmp_path / "m.stp"

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(*{"write": (np, "savez"), "fsync": (os, "fsync"),
                          "replace": (os, "replace")}[where], fail)
    with pytest.raises(OSError) as info:
        model.save(path)
    assert info.value.errno == code
    assert info.value.filename == str(path) and str(path) in str(info.value)
    assert ".tmp" not in str(info.value)
    assert os.listdir(tmp_path) == []


SMALL_FILE_LIMIT = textwrap.dedent("""
    import resource, signal, sys
    import steepest as st

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    model = st.Sequential(st.Dense(64, 64), seed=0)
    try:
        model.save(sys.argv[1])
    except OSError as e:
        print(e.errno, e.filename)
""")


def test_a_real_file_size_limit_names_the_file(tmp_path):
    script = tmp_path / "efbig.py"
    script.write_text(SMALL_FILE_LIMIT)
    target = tmp_path / "m.stp"
    result = subprocess.run([sys.executable, str(script), str(target)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    code, name = result.stdout.split()
    assert int(code) == errno.EFBIG and name == str(target)
    assert os.listdir(tmp_path) == ["efbig.py"]


# -- a batch too large for memory, then a normal one -------------------------------------------
AFTER_MEMORY_ERROR = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import steepest as st

    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, resource.RLIM_INFINITY))
    how = sys.argv[1]

    def build():
        return st.Sequential(st.Dense(4, 4096), st.ReLU(), st.Dense(4096, 3), seed=0)

    model, twin = build(), build()
    ce = st.losses.CrossEntropy()
    opt, twin_opt = (st.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in (model, twin))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200_000, 4)).astype(np.float32)  # 6.5 GB of activations
    y = rng.integers(0, 3, 200_000)
    try:
        if how == "step":
            model.train_step(X, y, ce, opt)
        else:
            model.fit(X, y, loss=ce, optimizer=opt, batch_size=None, verbose=0)
        print("no MemoryError")
    except MemoryError:
        pass
    assert opt.steps == 0
    twin.rng_state = model.rng_state  # fit shuffled before its step failed
    for m, o in ((model, opt), (twin, twin_opt)):
        if how == "step":
            for i in range(0, 64, 8):
                m.train_step(X[i:i + 8], y[i:i + 8], ce, o)
        else:
            m.fit(X[:64], y[:64], loss=ce, optimizer=o, batch_size=8, epochs=2, verbose=0)
    assert np.array_equal(model.flat_params(), twin.flat_params())
    print("ok", opt.steps)
""")


@pytest.mark.skipif(SANITIZED, reason="ASan aborts on an allocation it cannot serve")
@pytest.mark.parametrize("how", ["step", "fit"])
def test_a_batch_too_large_for_memory_changes_nothing(tmp_path, how):
    """A MemoryError while growing the activation buffers leaves the network as it was: the
    next, smaller batches train as on a network that never saw the large one (this crashed
    with SIGSEGV: the capacity was recorded before the allocations)."""
    script = tmp_path / "oom.py"
    script.write_text(AFTER_MEMORY_ERROR)
    result = subprocess.run([sys.executable, str(script), how], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.split() == ["ok", "8" if how == "step" else "16"]


# -- saving while another thread trains --------------------------------------------------------
def flat_of(state: dict, model) -> np.ndarray:
    """state (name -> array: parameters, buffers, counts) as one flat vector of the model's
    dtype in its state_dict order."""
    return np.concatenate([np.asarray(state[name], model.dtype).ravel()
                           for name in model.state_dict()])


def torn_copies_while_training(copy_of, normalized=False) -> tuple:
    """Runs fit in one thread while another keeps calling copy_of(model, i) (flat_of copies of
    the model's state, by some routes); returns (copies that match no whole step, number of
    copies). The fit's result is checked against the same steps taken one at a time. With
    normalized, the model has a BatchNorm1d: its running statistics and count change every
    step with the weights."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(960, 64)).astype(np.float32)
    y = rng.integers(0, 10, 960)
    ce = st.losses.CrossEntropy()

    def build():
        norm = [st.BatchNorm1d(256)] if normalized else []
        model = st.Sequential(st.Dense(64, 256), *norm, st.ReLU(), st.Dense(256, 256),
                              st.ReLU(), st.Dense(256, 10), seed=0)
        return model, st.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    model, opt = build()
    done = threading.Event()
    copies, errors = [], []
    epochs = 0

    def take(i):
        copies.extend(np.asarray(c, model.dtype) for c in copy_of(model, i))

    def train():
        # epoch after epoch (at least 3) until the other thread made 10 copies: how many
        # steps that takes depends on the machine's speed, not on the property tested
        nonlocal epochs
        try:
            while epochs < 3 or (len(copies) < 10 and epochs < 100):
                model.fit(X, y, loss=ce, optimizer=opt, epochs=1, batch_size=8, shuffle=False,
                          verbose=0)
                epochs += 1
        finally:
            done.set()

    def copy():
        i = 1
        try:
            while not done.is_set():
                take(i)
                i += 1
        except BaseException as e:  # raised again in the test's thread
            errors.append(e)

    take(0)  # the first copy imports what the route needs (onnx, torch) before the race
    threads = [threading.Thread(target=train), threading.Thread(target=copy)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)

    if errors:
        raise errors[0]

    # every state the trained model passed through, step by step
    twin, twin_opt = build()
    def digest(m):
        return hashlib.sha1(flat_of(m.state_dict(), m).tobytes()).hexdigest()

    whole = {digest(twin)}
    for _ in range(epochs):
        for i in range(0, len(X), 8):
            twin.train_step(X[i:i + 8], y[i:i + 8], ce, twin_opt)
            whole.add(digest(twin))
    assert digest(model) == digest(twin)
    torn = [c for c in copies if hashlib.sha1(c.tobytes()).hexdigest() not in whole]
    return torn, len(copies)


@pytest.mark.parametrize("normalized", [False, True], ids=["plain", "batchnorm"])
def test_save_and_state_dict_copies_while_another_thread_trains_are_whole_steps(tmp_path,
                                                                             normalized):
    """model.save, state_dict(copy=True) and pickling from a second thread while fit runs: each
    waits for a step boundary, so every copy is the model after some step (weights, running
    statistics and counts alike), never a mix of two."""
    def save_and_copy(model, i):
        path = tmp_path / f"m{i % 4}.stp"
        model.save(path)
        return [flat_of(copy.state_dict(), model) for copy in
                (st.load(path), pickle.loads(pickle.dumps(model)))] + \
            [flat_of(model.state_dict(copy=True), model)]

    torn, count = torn_copies_while_training(save_and_copy, normalized)
    assert count >= 10
    assert torn == [], f"{len(torn)} of {count} copies mix two steps"


def read_safetensors(model, path):
    model.save_safetensors(path)
    return flat_of(st.load_safetensors(path).state_dict(), model)


def read_onnx(model, path):
    onnx = pytest.importorskip("onnx")
    model.export_onnx(path)
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    return flat_of(weights, model)


def read_torch(model, path):
    torch_model = model.to_torch()
    return flat_of(torch_state(torch_model), model)


@pytest.mark.parametrize("export", [read_safetensors, read_onnx, read_torch],
                         ids=["safetensors", "onnx", "torch"])
def test_exports_while_another_thread_trains_are_whole_steps(tmp_path, export):
    """save_safetensors, export_onnx and to_torch from a second thread while fit runs take the
    parameters at a step boundary too (a safetensors file written from the live buffers could
    also fail its own checksums)."""
    pytest.importorskip({read_safetensors: "safetensors", read_onnx: "onnx",
                         read_torch: "torch"}[export])
    torn, count = torn_copies_while_training(
        lambda model, i: [export(model, tmp_path / f"m{i % 4}.out")])
    assert count >= 5
    assert torn == [], f"{len(torn)} of {count} copies mix two steps"


def test_a_signal_handler_saves_between_two_steps_of_its_own_epoch(tmp_path):
    """A handler run by fit between two steps (here SIGALRM's) saves the model and stops the
    run: the file holds the model as fit leaves it, with no wait for a step boundary the
    handler's own thread would have to reach."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 32))
    y = (X[:, 0] > 0).astype(np.int64)
    model = st.Sequential(st.Dense(32, 64), st.ReLU(), st.Dense(64, 2), seed=0)
    path = tmp_path / "on_signal.stp"

    class Stop(Exception):
        pass

    def handler(signum, frame):
        model.save(path)
        raise Stop

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(Stop):
            model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=st.optim.SGD(
                model.parameters(), lr=0.01), epochs=50, batch_size=1, verbose=0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    np.testing.assert_array_equal(st.load(path).flat_params(), model.flat_params())


def test_load_state_dict_while_another_thread_trains_is_refused():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40000, 16)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    model = st.Sequential(st.Dense(16, 32), st.ReLU(), st.Dense(32, 2), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.01)
    before = {k: v * 0 for k, v in model.state_dict(copy=True).items()}
    thread = threading.Thread(target=lambda: model.fit(
        X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=1, batch_size=1, verbose=0))
    thread.start()
    try:
        while opt.steps == 0 and thread.is_alive():
            thread.join(0.001)
        assert thread.is_alive(), "the epoch ended before the test could act"
        with pytest.raises(RuntimeError, match="in use"):
            model.load_state_dict(before)
    finally:
        thread.join(300)
    assert opt.steps == 40000 and np.abs(model.flat_params()).sum() > 0


# -- forks and worker processes ------------------------------------------------------------------
FORKED_WHILE_TRAINING = textwrap.dedent("""
    import copy, os, pickle, signal, sys, threading
    import numpy as np
    import steepest as st

    saved = sys.argv[1]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 16)).astype(np.float32)
    y = rng.integers(0, 3, 20000)
    ce = st.losses.CrossEntropy()

    exports = sys.argv[2].split(",") if sys.argv[2] else []

    def build():  # with normalization buffers and counts, which copies take with the weights
        model = st.Sequential(st.Standardize(), st.Dense(16, 64), st.BatchNorm1d(64),
                              st.ReLU(), st.Dropout(0.2), st.Dense(64, 64), st.LayerNorm(64),
                              st.ReLU(), st.Dense(64, 3), seed=0)
        model.adapt(X)
        return model, st.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    model, opt = build()
    model.save(saved)
    in_epoch, forked = threading.Event(), threading.Event()

    class HoldFirstStep(st.callbacks.Callback):  # the epoch holds the model while it waits
        def wants_batches(self):
            return True

        def on_batch_end(self, batch, logs):
            if not in_epoch.is_set():
                in_epoch.set()
                forked.wait()

    trainer = threading.Thread(target=lambda: model.fit(
        X, y, loss=ce, optimizer=opt, epochs=2, batch_size=4, verbose=0,
        callbacks=[HoldFirstStep()]))
    trainer.start()
    in_epoch.wait()
    pid = os.fork()
    if pid == 0:  # no thread of the parent exists here: nothing may wait for them
        signal.alarm(60)  # a wait that never ends ends the child (as in valgrind_train.py)
        refused = []
        routes = {"pickle": lambda: pickle.dumps(model),
                  "deepcopy": lambda: copy.deepcopy(model),
                  "save": lambda: model.save(saved + ".child"),
                  "state_dict": lambda: model.state_dict(copy=True),
                  "safetensors": lambda: model.save_safetensors(saved + ".safetensors"),
                  "onnx": lambda: model.export_onnx(saved + ".onnx"),
                  "torch": lambda: model.to_torch(),
                  "predict": lambda: model.predict(X[:4]),
                  "evaluate": lambda: model.evaluate(X[:4], y[:4], loss=ce),
                  "load_state_dict": lambda: model.load_state_dict(model.state_dict()),
                  "train_step": lambda: model.train_step(X[:4], y[:4], ce, opt)}
        for name, route in routes.items():
            if name in ("safetensors", "onnx", "torch") and name not in exports:
                continue
            try:
                route()
            except RuntimeError as e:
                refused.append(name if "forked" in str(e) else f"{name}: {e}")
        other, other_opt = build()  # a model of this process trains, a saved one loads
        other.fit(X[:512], y[:512], loss=ce, optimizer=other_opt, epochs=1, verbose=0)
        loaded, built = st.load(saved), build()[0]
        ok = (np.array_equal(loaded.flat_params(), built.flat_params()) and
              np.array_equal(loaded.flat_buffers(), built.flat_buffers()))
        print(" ".join(refused + [str(ok)]), flush=True)
        os._exit(0)
    forked.set()
    _, status = os.waitpid(pid, 0)
    trainer.join()
    twin, twin_opt = build()
    twin.fit(X, y, loss=ce, optimizer=twin_opt, epochs=2, batch_size=4, verbose=0)
    print(os.waitstatus_to_exitcode(status), np.array_equal(model.flat_params(),
                                                            twin.flat_params()))
""")


def test_a_process_forked_while_a_thread_trains_refuses_what_would_wait_for_it(tmp_path):
    """fork() while a thread of the parent trains a model with normalization buffers (held in
    its epoch): in the child, every route that copies the model at a step boundary (pickle,
    deepcopy, save, state_dict(copy=True), the safetensors/ONNX/torch exports whose packages
    are installed) and every call that needs the model's lock (predict, evaluate,
    load_state_dict, train_step) is a RuntimeError saying so - copies waited forever for a step
    boundary no thread would reach; the child's own models train and saved ones load with
    their buffers; the parent's run ends as an uninterrupted one."""
    exports = [name for name, package in [("safetensors", "safetensors"), ("onnx", "onnx"),
                                          ("torch", "torch")]
               if importlib.util.find_spec(package) is not None]
    script = tmp_path / "fork.py"
    script.write_text(FORKED_WHILE_TRAINING)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "saved.stp"),
                             ",".join(exports)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    child, parent = result.stdout.splitlines()
    assert child.split() == ["pickle", "deepcopy", "save", "state_dict", *exports, "predict",
                             "evaluate", "load_state_dict", "train_step", "True"]
    assert parent.split() == ["0", "True"]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimators_pickled_to_worker_processes_score_as_in_one():
    """cross_val_score with n_jobs=2 pickles the estimator to worker processes, started by
    fork (after this process's thread pool has run) or as new interpreters (loky): the scores
    are bitwise those of one process."""
    pytest.importorskip("sklearn")
    joblib = pytest.importorskip("joblib")
    from sklearn.model_selection import cross_val_score

    from steepest.sklearn import MLPClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, random_state=3)
    clf.fit(X, y)  # the pool has threads before the fork
    alone = cross_val_score(clf, X, y, cv=3)
    for backend in ("multiprocessing", "loky"):
        with joblib.parallel_backend(backend, n_jobs=2):
            assert cross_val_score(clf, X, y, cv=3, n_jobs=2).tolist() == alone.tolist(), backend


# -- Ctrl-C inside a full-batch step of a checkpointed run, with a saving thread ---------------
def test_an_interrupted_full_batch_run_resumes_bitwise_and_copies_stay_whole(tmp_path):
    """A signal halfway into the second full-batch step (the core abandons the step) while
    another thread keeps saving: every saved copy is the model after a whole step, the saving
    thread is not left waiting, and running the same fit again resumes from the checkpoint to
    the weights of an uninterrupted run."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(4000, 256)).astype(np.float32)
    y = rng.integers(0, 10, 4000)
    ce = st.losses.CrossEntropy()

    def build():
        model = st.Sequential(st.Dense(256, 512), st.ReLU(), st.Dropout(0.1), st.Dense(512, 512),
                              st.ReLU(), st.Dense(512, 10), seed=2)
        return model, st.optim.Adam(model.parameters(), lr=1e-3)

    twin, twin_opt = build()
    whole, times = [twin.flat_params().copy()], []
    for _ in range(3):
        twin.fit(X, y, loss=ce, optimizer=twin_opt, epochs=1, batch_size=None, verbose=0)
        whole.append(twin.flat_params().copy())
        times.append(twin.history["time"][0])
    # the fastest full-batch epoch seen (a loaded machine slows some): half of it lands the
    # signal inside the next step however fast that one is
    fastest = min(times)

    class Stop(Exception):
        pass

    def handler(signum, frame):
        raise Stop

    armed = [True]

    class AlarmInSecondStep(st.callbacks.Callback):
        # Once, as epoch 1 begins: after epoch 0's checkpoint is written (a signal inside that
        # write would leave no checkpoint, and the resumed run would start over).
        def on_epoch_begin(self, epoch, logs):
            if epoch == 1 and armed:
                armed.clear()
                signal.setitimer(signal.ITIMER_REAL, fastest / 2)

    model, opt = build()
    ckpt = tmp_path / "run.ckpt"
    done, copies = threading.Event(), []

    def save():
        while not done.is_set():
            copies.append(model.state_dict(copy=True))

    saver = threading.Thread(target=save)
    old = signal.signal(signal.SIGALRM, handler)
    saver.start()
    try:
        with pytest.raises(Stop):
            model.fit(X, y, loss=ce, optimizer=opt, epochs=3, batch_size=None, verbose=0,
                      checkpoint=ckpt, callbacks=[AlarmInSecondStep()])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        done.set()
        saver.join(60)
    assert not saver.is_alive() and copies
    assert opt.steps == 1 and len(model.history["loss"]) == 1
    np.testing.assert_array_equal(model.flat_params(), whole[1])
    for copy in copies:
        assert any(np.array_equal(flat_of(copy, model), w) for w in whole[:2])
    again, again_opt = build()
    again.fit(X, y, loss=ce, optimizer=again_opt, epochs=3, batch_size=None, verbose=0,
              checkpoint=ckpt, callbacks=[AlarmInSecondStep()])  # the alarm is spent
    np.testing.assert_array_equal(again.flat_params(), whole[3])
