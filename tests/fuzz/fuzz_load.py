"""Coverage-guided fuzzing of st.load and of checkpoint resumption with atheris (libFuzzer for
Python), outside the test suite:

    python -m pip install atheris
    python tests/fuzz/fuzz_load.py --seconds 600            # a 10-minute run
    python tests/fuzz/fuzz_load.py --seconds 60 --corpus fuzz-corpus   # keep the corpus

The script writes a seed corpus (models of several architectures and dtypes, with and without
normalization buffers, re-zipped with every compression zip offers, checkpoints with callback
arrays and buffers), then mutates it: libFuzzer's byte-level mutations, and mutations of one
zip member (the JSON header, a .npy header, the data) re-zipped with valid checksums, so that
they reach past the zip's CRC checks. Every input goes through st.load and
steepest.checkpoint.load under a 1 GiB address-space allowance; the only accepted outcomes are
a model (which must then predict, or refuse with RuntimeError when a Standardize / MinMaxScale
layer has no statistics), a restored checkpoint, or a ValueError. Anything else - another
exception, a MemoryError from a small file, a crash, a hang past 10 s - is a finding: libFuzzer stops and writes the input to the artifacts folder
(--artifacts, default the current folder) as crash-<sha1>. Replay one with
`python tests/fuzz/fuzz_load.py crash-<sha1>`. Exit status 0: no finding within the time.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import sys
import tempfile
import zipfile

import atheris
import numpy as np

import steepest as st
from steepest import checkpoint as st_checkpoint

COMPRESSIONS = [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
MAX_LEN = 1 << 15
# The checkpoint target: a fixed run whose checkpoints the seeds hold.
RNG = np.random.default_rng(0)
RUN_X, RUN_Y = RNG.normal(size=(24, 3)), RNG.integers(0, 2, 24)


def run_parts():
    """(model, optimizer, callbacks, loss) of the checkpointed run, fresh."""
    model = st.Sequential(st.Standardize(), st.Dense(3, 4), st.BatchNorm1d(4), st.ReLU(),
                          st.Dropout(0.25), st.Dense(4, 2), seed=1)  # buffers and counts too
    opt = st.optim.Adam(model.parameters(), lr=0.01)
    callbacks = [st.schedules.StepLR(opt, step_size=1, gamma=0.5),
                 st.callbacks.EarlyStopping(monitor="loss", patience=9)]
    return model, opt, callbacks, st.losses.CrossEntropy()


def run_fingerprint(model, opt, loss):
    X, y = model.check_data(RUN_X, RUN_Y, loss)
    return st_checkpoint.fingerprint(model, opt, loss, X, y, 8, True, 0.0)


# -- seeds ------------------------------------------------------------------------------------
def members(path) -> dict:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def zipped(entries: dict, compression) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return out.getvalue()


def write_seeds(folder: str) -> int:
    models = [
        st.Sequential(st.Dense(3, 2), seed=0),
        st.Sequential(st.Dense(4, 5), st.ReLU(), st.Dropout(0.2), st.Dense(5, 3), seed=1),
        st.Sequential(st.Dense(2, 3, bias=False, init="he_normal"), st.GELU(), st.Dense(3, 2),
                      st.Softmax(), dtype="float64", seed=2),
        st.Sequential(st.Dense(3, 3), st.LeakyReLU(0.1), st.ELU(0.5), st.Dense(3, 1),
                      st.Sigmoid(), seed=3),
        # normalization: buffers and counts beside the parameters, adapted or not
        st.Sequential(st.Standardize(), st.Dense(3, 4), st.BatchNorm1d(4), st.ReLU(),
                      st.LayerNorm(4), st.Dense(4, 2), seed=4).adapt(RUN_X),
        st.Sequential(st.MinMaxScale(), st.Dense(3, 2),
                      st.BatchNorm1d(2, affine=False, track_running_stats=False),
                      st.LayerNorm(2, elementwise_affine=False), dtype="float64",
                      seed=5).adapt(RUN_X),
        st.Sequential(st.Standardize(), st.Dense(3, 2), seed=6),
    ]
    normalized = models[4]
    normalized.fit(RUN_X, RUN_Y, loss=st.losses.CrossEntropy(), epochs=1, batch_size=8,
                   optimizer=st.optim.SGD(normalized.parameters(), lr=0.1), verbose=0)
    files = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, model in enumerate(models):
            path = os.path.join(tmp, f"model{i}.stp")
            model.save(path)
            files.append(path)
        model, opt, callbacks, loss = run_parts()
        path = os.path.join(tmp, "run.ckpt")
        model.fit(RUN_X, RUN_Y, loss=loss, optimizer=opt, epochs=2, batch_size=8,
                  callbacks=callbacks, checkpoint=path, verbose=0)
        files.append(path)
        n = 0
        for path in files:
            entries = members(path)
            for compression in COMPRESSIONS:
                with open(os.path.join(folder, f"seed-{n}"), "wb") as f:
                    f.write(zipped(entries, compression))
                n += 1
    return n


# -- structure-aware mutation -----------------------------------------------------------------
ODD_VALUES = [0, -1, 1, 2**31, 2**63, 2**64, -2**63, 1e308, -0.0, 0.5, None, True, "", "f4,(",
              "float16", "<f8", "O", [], {}, [[]], "Dense", "steepest.model",
              "steepest.checkpoint", 10**40, float("nan"), "nan", "a" * 300]


def mutate_json(text: bytes, rng: random.Random) -> bytes:
    """text's JSON with one value somewhere replaced, a key dropped or a list item doubled."""
    try:
        doc = json.loads(text)
    except ValueError:
        return text
    spots = []  # (container, key) pairs anywhere in doc

    def walk(node):
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(items):
            spots.append((node, key))
            if isinstance(value, (dict, list)):
                walk(value)

    if isinstance(doc, (dict, list)):
        walk(doc)
    if not spots:
        return text
    node, key = rng.choice(spots)
    action = rng.random()
    if action < 0.7:
        node[key] = rng.choice(ODD_VALUES)
    elif action < 0.85:
        del node[key]
    elif isinstance(node, list):
        node.insert(key, node[key])
    else:
        node[key + "_"] = node[key]
    return json.dumps(doc).encode()


def npy_parts(blob: bytes):
    """(header text, data) of a .npy blob, or None."""
    if blob[:6] != b"\x93NUMPY" or len(blob) < 10:
        return None
    width = 2 if blob[6] == 1 else 4
    size = int.from_bytes(blob[8:8 + width], "little")
    return blob[8 + width:8 + width + size], blob[8 + width + size:]


def npy_blob(header: bytes, data: bytes) -> bytes:
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    try:
        entries = members(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - not a zip: byte-level only
        entries = None
    if not entries or rng.random() < 0.25:
        return atheris.Mutate(data, max_size)
    name = rng.choice(sorted(entries))
    parts = npy_parts(entries[name])
    if parts is None:
        entries[name] = atheris.Mutate(entries[name], 2 * len(entries[name]) + 64)
    else:
        header, body = parts
        which = rng.random()
        if name == "__steepest__.npy" and which < 0.6:
            text = mutate_json(body, rng)
            header = header.replace(repr((len(body),)).encode(), repr((len(text),)).encode())
            body = text
        elif which < 0.8:
            header = atheris.Mutate(header, len(header) + 32)
        else:
            body = atheris.Mutate(body, 2 * len(body) + 64)
        entries[name] = npy_blob(header, body)
    if rng.random() < 0.05:
        del entries[name]
    out = zipped(entries, rng.choice(COMPRESSIONS))
    return out if len(out) <= max_size else atheris.Mutate(data, max_size)


# -- the target -------------------------------------------------------------------------------
def unadapted(model) -> bool:
    """Whether a Standardize / MinMaxScale layer of model has learned no statistics."""
    state = model.state_dict()
    return any(isinstance(layer, (st.Standardize, st.MinMaxScale)) and state[f"{i}.count"] == 0
               for i, layer in enumerate(model.layers))


class Target:
    def __init__(self, folder: str):
        self.path = os.path.join(folder, "input.stp")

    def __call__(self, data: bytes) -> None:
        with open(self.path, "wb") as f:
            f.write(data)
        try:
            model = st.load(self.path)
        except ValueError:
            pass
        else:
            x = np.zeros((2, model.in_features), model.dtype)
            if unadapted(model):  # a saved model may have no statistics yet: refused to run
                try:
                    model.predict(x)
                except RuntimeError as e:
                    assert "has not learned its statistics" in str(e), e
                else:
                    raise AssertionError("an unadapted model predicted")
            else:
                assert model.predict(x).shape == (2, model.out_features)
        model, opt, callbacks, loss = run_parts()
        run = run_fingerprint(model, opt, loss)
        try:
            for cb in callbacks:
                cb.on_train_begin(model, opt)
            state = st_checkpoint.load(self.path, model, opt, callbacks, run)
        except ValueError:
            return
        assert isinstance(state["epoch"], int) and isinstance(state["history"], dict)


def limit_memory(extra_bytes: int) -> None:
    """Address space capped at what the process has now plus extra_bytes."""
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + extra_bytes, resource.RLIM_INFINITY))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=600, help="how long to fuzz")
    parser.add_argument("--corpus", help="corpus folder to keep (default: a temporary one)")
    parser.add_argument("--artifacts", default=".", help="where findings are written")
    parser.add_argument("inputs", nargs="*", help="inputs to replay instead of fuzzing")
    args = parser.parse_args()
    st.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        target = Target(scratch)
        limit_memory(1 << 30)
        if args.inputs:
            for path in args.inputs:
                with open(path, "rb") as f:
                    target(f.read())
                print(f"{path}: no finding")
            return
        corpus = args.corpus or os.path.join(scratch, "corpus")
        os.makedirs(corpus, exist_ok=True)
        print(f"seed corpus: {write_seeds(corpus)} files in {corpus}", flush=True)
        # Coverage of every Python function loaded (steepest, zipfile, json, numpy's ...);
        # the editable install's import hook hides modules from atheris.instrument_imports.
        atheris.instrument_all()
        libfuzzer = [sys.argv[0], corpus, f"-max_total_time={args.seconds}", "-timeout=10",
                     f"-max_len={MAX_LEN}", "-rss_limit_mb=3072", "-print_final_stats=1",
                     f"-artifact_prefix={os.path.join(os.path.abspath(args.artifacts), '')}"]
        atheris.Setup(libfuzzer, target, custom_mutator=mutate)
        atheris.Fuzz()


if __name__ == "__main__":
    main()
