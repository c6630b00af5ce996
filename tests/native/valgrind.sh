#!/usr/bin/env bash
# valgrind memcheck of a short training run (tests/native/valgrind_train.py) against a
# RelWithDebInfo build of the extension in a throwaway virtual environment. Fails when an
# error's stack passes through steepest's core (the extension); what CPython, numpy and
# OpenBLAS do on their own is reported in the log but not counted (see the README).
#
# VALGRIND_VENV=dir keeps the environment for faster re-runs; the log goes to
# ${VALGRIND_LOG:-valgrind.log}.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-python3}"
log="${VALGRIND_LOG:-valgrind.log}"
. "$root/tests/native/build_venv.sh"
build_venv "${VALGRIND_VENV:-}"

# PYTHONMALLOC=malloc: CPython's small-object allocator reads memory it does not own by
# design, which memcheck would report everywhere. A forked child is not reported: the stacks
# of the parent's threads are gone there, so what they allocated looks lost.
PYTHONMALLOC=malloc OPENBLAS_NUM_THREADS=1 valgrind --tool=memcheck --leak-check=full \
  --show-leak-kinds=definite --errors-for-leak-kinds=definite --track-origins=yes \
  --child-silent-after-fork=yes \
  --num-callers=50 --log-file="$log" \
  "$venv/bin/python" "$root/tests/native/valgrind_train.py"

"$venv/bin/python" - "$log" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.split(r"\n==\d+== \n", text)
ours = [b for b in blocks if "_core.cpython" in b or "steepest::" in b]
errors = [b for b in ours if re.search(r"Invalid (read|write)|uninitialised|Mismatched|"
                                       r"Invalid free|definitely lost|overlap", b)]
summary = re.findall(r"ERROR SUMMARY: (\d+) errors", text)
print(f"valgrind: {summary[-1] if summary else '?'} errors in total, "
      f"{len(errors)} in steepest's core")
for b in errors:
    print(b)
sys.exit(1 if errors else 0)
PY
