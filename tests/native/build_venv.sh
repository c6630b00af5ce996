# Sourced by tests/sanitize.sh and tests/native/valgrind.sh. build_venv KEEP [pip -C ...]
# installs steepest (RelWithDebInfo, plus the given config settings) into a virtual
# environment and sets $venv: the folder KEEP when it is not empty (kept for faster re-runs),
# else a throwaway one removed on exit. Needs $root (the repository) and $python.
build_venv() {
  local keep="$1"
  shift
  if [[ -n "$keep" ]]; then
    venv="$keep"
  else
    venv="$(mktemp -d)/venv"
    trap 'rm -rf "$(dirname "$venv")"' EXIT
  fi
  [[ -x "$venv/bin/python" ]] || "$python" -m venv --system-site-packages "$venv"
  "$venv/bin/python" -m pip install --no-build-isolation --force-reinstall --no-deps -q \
    "$@" -C cmake.build-type=RelWithDebInfo -C build-dir="$venv/build" "$root"
}
