"""The package's layering, read from the source with ast: levels, no import cycle, no import
inside a function used to break one, the binding objects kept inside the model's modules
(model.py and the model_*.py parts it inherits) and optim.py, one module-level constant per
name (one registry per concept)."""
from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "python" / "steepest"
TESTS = Path(__file__).resolve().parent

# module (dotted, inside the package; "__init__" is the package itself) -> level. A module
# imports only from lower levels. Fractions order modules inside one level of the design.
LEVELS = {
    "_core": 0,  # the compiled core
    # 1. foundations
    "errors": 1, "_checks": 1, "archive": 1, "_version": 1,
    "labels": 1.5,  # class labels
    "data": 1.5,  # data read in place: memory maps, .npy shards
    # 2. building blocks
    "layers": 2, "losses": 2, "parameter": 2, "callbacks": 2, "threads": 2,
    "progress": 2.2,  # fit's progress display: a callback
    "line_search": 2.4,  # L-BFGS's strong-Wolfe line search, on numpy vectors
    "optim": 2.5,  # knows Parameter, never a model
    # 3. on the building blocks
    "schedules": 3, "checkpoint": 3, "gradcheck": 3, "saving": 3,
    "distributed": 3,  # MPI (mpi4py imported when a run asks): the trainer's data parallelism
    # the other formats and bridges, on layers and state_dict arrays (the model calls them)
    "onnx_export": 3, "torch_bridge": 3, "safetensors_format": 3.2,
    "diagnostics": 3.5,  # measures gradients with gradcheck's backprop
    # 4. the fit loop
    "training": 4,
    # 5. the model: Sequential (model) inherits its parts (state, training, inference)
    "model_state": 4.5, "model_training": 4.5, "model_inference": 4.5,
    "model": 5,
    # 6. what the command line and the experiments share; the scikit-learn estimators (the
    # package: the two estimators on their shared base, its solvers and pickled state)
    "datasets": 6, "presets": 6,
    "sklearn.solvers": 5.7, "sklearn.state": 5.7, "sklearn.common": 5.8, "sklearn": 6,
    # 7. the studies, their report, the command line
    "experiments.common": 7,
    "experiments.batch": 7.2, "experiments.learning_rates": 7.2, "experiments.depth": 7.2,
    "experiments.training_techniques": 7.2, "experiments.initializers": 7.2,
    "experiments.backprop": 7.2,
    "experiments.report": 7.4,
    "experiments": 7.6,
    "cli": 7.8,
    "__main__": 7.9,
    # 8. the public surface: imports every level, imported by nothing
    "__init__": 8,
}
COMPILED = {"_core"}
# The only import inside a function: the package's __getattr__ imports the scikit-learn
# estimators when st.MLPClassifier / st.MLPRegressor is first used, so that `import steepest`
# does not import scikit-learn (an optional extra) yet both names work on the package.
LAZY_IMPORTS = [("__init__", "sklearn")]
BINDING_NAMES = {"_net", "_impl"}
# the model (Sequential and the parts it inherits) and the optimizers
BINDING_MODULES = {"model.py", "model_state.py", "model_training.py", "model_inference.py",
                   "optim.py"}


def modules(root: Path) -> dict:
    """{dotted name: path} of the package's Python modules."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _package_of(name: str, path: Path) -> str:
    """The package a module's relative imports start from ("" for the top one)."""
    if path.name == "__init__.py":
        return "" if name == "__init__" else name
    return name.rpartition(".")[0]


def _module(dotted: str, known) -> str:
    """A dotted name inside the package as a module name: "__init__" for the package itself,
    "?name" when no module has that name."""
    return "__init__" if dotted == "" else dotted if dotted in known else f"?{dotted}"


def _targets(node, name, path, known) -> list:
    """The package's modules an import statement in module `name` loads."""
    if isinstance(node, ast.Import):  # import steepest[.x]
        return [_module(a.name.partition(".")[2], known) for a in node.names
                if a.name.partition(".")[0] == "steepest"]
    if node.level == 0:  # from steepest[.x] import ...
        if (node.module or "").partition(".")[0] != "steepest":
            return []
        base, explicit = node.module.partition(".")[2], True
    else:  # from .[x] import ..., from ..[x] import ...
        package = [p for p in _package_of(name, path).split(".") if p]
        if node.level - 1 > len(package):
            return ["?beyond the package"]
        base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]).strip(".")
        explicit = node.module is not None
    found = [_module(base, known)] if explicit else []  # `from .x import ...` runs x
    for alias in node.names:
        sub = f"{base}.{alias.name}".lstrip(".")
        if sub in known:  # a submodule: `from . import model`, `from .x import submodule`
            found.append(sub)
        elif not explicit:  # `from . import name`: an attribute of the package
            found.append(_module(base, known))
    return found


def import_graph(root: Path):
    """({module: set of modules it imports when it is imported}, [(module, line, target)] of
    imports inside functions)."""
    mods = modules(root)
    known = set(mods) | COMPILED
    edges, inside_functions = {m: set() for m in mods}, []
    for name, path in mods.items():
        def visit(node, in_function):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for target in _targets(child, name, path, known):
                        if in_function:
                            inside_functions.append((name, child.lineno, target))
                        else:
                            edges[name].add(target)
                visit(child, in_function or isinstance(
                    child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
        visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return edges, inside_functions


def cycles(edges) -> list:
    """Every import cycle found by a depth-first search, as [a, b, ..., a]."""
    found, state = [], {}

    def dfs(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                dfs(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            dfs(node, [])
    return found


def level_problems(edges) -> list:
    problems = [f"{m} is not in LEVELS" for m in edges if m not in LEVELS]
    problems += [f"LEVELS lists {m}, which does not exist" for m in LEVELS
                 if m not in edges and m not in COMPILED]
    for m, targets in sorted(edges.items()):
        for t in sorted(targets):
            if t.startswith("?"):
                problems.append(f"{m} imports {t[1:]}, which is no module of the package")
            elif m in LEVELS and t in LEVELS and LEVELS[t] >= LEVELS[m]:
                problems.append(f"{m} (level {LEVELS[m]}) imports {t} (level {LEVELS[t]})")
    return problems


def binding_uses(paths, allowed=()) -> list:
    """(file, line, name) of every _net / _impl identifier outside the allowed files."""
    uses = []
    for path in paths:
        if path.name in allowed:
            continue
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
        uses += [(path.name, t.start[0], t.string) for t in tokens
                 if t.type == tokenize.NAME and t.string in BINDING_NAMES]
    return uses


def repeated_constants(root: Path) -> dict:
    """{NAME: [modules]} of the module-level UPPER_CASE names defined in more than one module."""
    defined = {}
    for name, path in modules(root).items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            for t in targets:
                if isinstance(t, ast.Name) and t.id.isupper():
                    defined.setdefault(t.id, []).append(name)
    return {k: v for k, v in defined.items() if len(v) > 1}


@pytest.fixture(scope="module")
def source():
    if not SOURCE.is_dir():
        pytest.skip("the package's source tree is not next to the tests")
    return SOURCE


@pytest.fixture(scope="module")
def graph(source):
    return import_graph(source)


def test_no_import_cycle(graph):
    edges, _ = graph
    assert cycles(edges) == []


def test_each_module_imports_only_from_lower_levels(graph):
    edges, _ = graph
    assert level_problems(edges) == []
    assert not any("__init__" in targets for m, targets in edges.items() if m != "__init__")


def test_no_function_level_import_of_the_package(graph):
    _, inside_functions = graph
    assert [(m, target) for m, _, target in inside_functions] == LAZY_IMPORTS


def test_binding_objects_stay_in_model_and_optim(source):
    assert binding_uses(sorted(source.rglob("*.py")), BINDING_MODULES) == []
    assert binding_uses(sorted(TESTS.glob("*.py"))) == []
    assert {name for _, _, name in binding_uses(source.glob("*.py"))} == BINDING_NAMES


def test_one_module_level_constant_per_name(source):
    assert repeated_constants(source) == {}
