#!/usr/bin/env bash
# Builds the extension with AddressSanitizer + UndefinedBehaviorSanitizer (CMake option
# STEEPEST_SANITIZE) into a throwaway virtual environment and runs the test suite under it.
#
#   tests/sanitize.sh                 # the default test run
#   tests/sanitize.sh -m slow -x      # extra pytest arguments (here: the long fuzzing runs)
#
# SANITIZE_VENV=dir keeps the environment (and its build folder) for faster re-runs.
# The build needs scikit-build-core, pybind11 and scipy-openblas32 importable by $PYTHON.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
. "$root/tests/native/build_venv.sh"
build_venv "${SANITIZE_VENV:-}" -C cmake.define.STEEPEST_SANITIZE=ON

# The interpreter is not instrumented, so the ASan runtime must be loaded first. CPython
# keeps objects alive until exit by design: leak checking is off (the no-leak test measures
# memory instead, and valgrind covers leaks in the core; see tests/native/).
# libstdc++ is preloaded too, so that ASan finds the real __cxa_throw when it starts (without
# it, a C++ exception thrown by an extension loaded later aborts in ASan's interceptor).
libasan="$(${CXX:-c++} -print-file-name=libasan.so)"
libstdcxx="$(${CXX:-c++} -print-file-name=libstdc++.so)"
export LD_PRELOAD="$libasan $libstdcxx"
# Reports go to files as well: pytest captures stderr and an abort would lose them.
reports="$venv/sanitizer-reports"
rm -rf "$reports" && mkdir -p "$reports"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:log_path=$reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
export MPLBACKEND=Agg
export STEEPEST_SANITIZED=1  # tests may skip what the sanitizers make impractically slow

# The extension must be the instrumented one, not a build left elsewhere on the path.
"$venv/bin/python" - <<'PY'
import subprocess, steepest._core as c
symbols = subprocess.run(["nm", "-D", c.__file__], capture_output=True, text=True).stdout
assert "__asan" in symbols, f"{c.__file__} is not built with AddressSanitizer"
print("sanitized extension:", c.__file__)
PY

cd "$root"
status=0
"$venv/bin/python" -m pytest -p no:cacheprovider "$@" || status=$?
if compgen -G "$reports/*" > /dev/null; then
  echo "sanitizer reports:" && cat "$reports"/*
  status=1
fi
exit "$status"
