"""The package as users install it: license and metadata, the typing marker and the compiled
module's stub (in step with the module), and mypy --strict on a user's script."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
from importlib import metadata, resources
from pathlib import Path

import pytest

import steepest as st
from steepest import _core

USER_SCRIPT = Path(__file__).resolve().parent / "typing" / "user_script.py"


def test_license_and_metadata():
    meta = metadata.metadata("steepest")
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in meta.get_all("License-File")
    assert meta["Requires-Python"] == ">=3.10"
    classifiers = meta.get_all("Classifier")
    assert "Typing :: Typed" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # the expression says it
    assert meta.get_all("Keywords") or meta.get("Keywords")
    assert meta.get_all("Project-URL")
    assert meta["Version"] == st.__version__
    license_file = [f for f in metadata.files("steepest") if f.name == "LICENSE"]
    assert license_file and "MIT License" in license_file[0].read_text()


def test_typing_marker_and_stub_are_shipped():
    package = resources.files("steepest")
    assert package.joinpath("py.typed").is_file()
    assert package.joinpath("_core.pyi").is_file()


def _stub_members() -> dict:
    """{top-level name: set of member names (classes) or None} of _core.pyi."""
    tree = ast.parse(resources.files("steepest").joinpath("_core.pyi").read_text())
    members: dict = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members[node.name] = {n.name if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                                  else n.target.id for n in node.body
                                  if isinstance(n, (ast.FunctionDef, ast.AnnAssign, ast.ClassDef))}
        elif isinstance(node, ast.FunctionDef):
            members[node.name] = None
    return members


def test_stub_lists_what_the_compiled_module_has():
    stub = _stub_members()
    runtime = {name for name in dir(_core) if not name.startswith("_")}
    assert set(stub) == runtime
    base = set(dir(type(_core.LayerSpec()).__mro__[1]))  # pybind11's object base
    for name, members in stub.items():
        if members is None:
            continue
        cls = getattr(_core, name)
        missing = {m for m in set(dir(cls)) - base if not m.startswith("_")} - members
        assert not missing, f"{name}: the stub lacks {sorted(missing)}"
        absent = {m for m in members if not m.startswith("_")} - set(dir(cls))
        assert not absent, f"{name}: the stub has {sorted(absent)}, the module does not"


def test_user_script_runs():
    done = subprocess.run([sys.executable, str(USER_SCRIPT)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "accuracy" in done.stdout


def test_user_script_passes_mypy_strict(tmp_path):
    pytest.importorskip("mypy")
    env = dict(os.environ)
    args = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache")]
    folder = str(Path(st.__file__).resolve().parent.parent)
    installed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    if folder not in {str(Path(p).resolve()) for p in installed}:
        # an editable install (the package is the source tree): mypy reads it as a user would
        # read an installed one, its own errors not reported
        env["MYPYPATH"] = folder
        args.append("--follow-imports=silent")
    done = subprocess.run(args + [str(USER_SCRIPT)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout
