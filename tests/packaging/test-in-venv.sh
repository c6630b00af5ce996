#!/usr/bin/env bash
# The test suite in a fresh virtual environment, for another Python or another numpy than
# the development one, e.g. the oldest supported pair:
#
#   bash tests/packaging/test-in-venv.sh python3.10 "numpy==1.26.*"
#
# Arguments: the Python to use, then requirements that pin the install (pip constraints).
# Extra pytest arguments go in PYTEST_ARGS; the venv is kept in .test-venv-<python>.
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${1:?usage: tests/packaging/test-in-venv.sh PYTHON [REQUIREMENT...]}"
shift
venv=".test-venv-$(basename "$python")"
"$python" -m venv --clear "$venv"
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
printf '%s\n' "$@" > "$constraints"
python -m pip install -q -c "$constraints" ".[test]"
python -c "import sys, numpy; print('Python', sys.version.split()[0], '- numpy', numpy.__version__)"
python -m pytest ${PYTEST_ARGS:-}
