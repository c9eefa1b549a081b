"""The layers of docs/architecture.md, enforced: who may import whom, no cycle, no borrowed private names.

Imports are read from the source (`ast`), not under ``if TYPE_CHECKING``. A module's own imports count wherever
they are, inside functions too (a lazy import is still a dependency); what a module pulls in *through* others is
followed along their module-level imports only, since a lazy import inside another module's function is how a
layer is injected (``cost=measured`` imports the engine only when built) rather than imported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ios_core"
GPU_LIBRARIES = ("pycuda", "cudnn", "cuda")
ENTRY_POINTS = ("ios_core.config", "ios_core.optimize", "ios_core.measure", "ios_core.baseline",
                "ios_core.gpu_lock", "ios_core.baselines.__main__", "ios_core.tracking.__main__",
                "ios_core.figures.__main__")


def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def import_nodes(path: Path, lazy: bool = True) -> Iterable[ast.Import | ast.ImportFrom]:
    """The import statements of ``path`` (with ``lazy``, those inside functions too), except under TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    hidden = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(
        node.test) for n in ast.walk(node)}
    if not lazy:
        hidden |= {id(n) for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                   for n in ast.walk(node)}
    return [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in hidden]


def imports(path: Path, modules: Iterable[str], lazy: bool = True) -> set[str]:
    """What ``path`` imports: ``from a import b`` is module ``a.b`` where that is one of ``modules``, else ``a``."""
    modules, found = set(modules), set()
    for node in import_nodes(path, lazy):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif node.level == 0:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                      for a in node.names}
    return found


MODULES = package_modules()
GRAPH = {name: imports(path, MODULES) & set(MODULES) - {name} for name, path in MODULES.items()}
EAGER = {name: imports(path, MODULES, lazy=False) & set(MODULES) - {name} for name, path in MODULES.items()}


def reachable(module: str) -> set[str]:
    """The modules of ours that ``module`` depends on: its own imports, then theirs at module level (see above);
    importing a module imports its packages."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        for other in (GRAPH if name == module else EAGER)[name] | {p for p in parents(name) if p in MODULES}:
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen - {module}


def parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def under(package: str) -> list[str]:
    return sorted(m for m in MODULES if m == package or m.startswith(package + "."))


def test_the_package_has_no_import_cycle():
    state: dict[str, str] = {}

    def visit(module: str, path: tuple[str, ...]) -> None:
        state[module] = "open"
        for other in sorted(GRAPH[module]):
            if state.get(other) == "open":
                raise AssertionError("import cycle: " + " -> ".join((*path[path.index(other):], other)))
            if other not in state:
                visit(other, (*path, other))
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, (module,))


@pytest.mark.parametrize("module", under("ios_core.ir"))
def test_the_ir_imports_nothing_of_ours_but_itself(module):
    assert {m for m in GRAPH[module] if not m.startswith("ios_core.ir")} == set()


@pytest.mark.parametrize("module", ["ios_core.errors", "ios_core.files", "ios_core.precision", "ios_core.timing",
                                    "ios_core.gpu"])
def test_the_foundation_imports_only_the_error_contract(module):
    assert GRAPH[module] - {"ios_core.errors"} == set()


@pytest.mark.parametrize("module", under("ios_core.optimizer"))
def test_the_optimizer_never_reaches_the_engine_nor_a_measured_cost(module):
    assert {m for m in reachable(module) if m.startswith(("ios_core.engine", "ios_core.cost.measured"))} == set()


@pytest.mark.parametrize("module", under("ios_core.engine"))
def test_the_engine_never_reaches_the_optimizer(module):
    assert {m for m in reachable(module) if m.startswith("ios_core.optimizer")} == set()


@pytest.mark.parametrize("module", [m for m in under("ios_core.tracking") if m not in ENTRY_POINTS])
def test_tracking_imports_no_entry_point(module):
    assert reachable(module) & set(ENTRY_POINTS) == set()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_private_name_of_another(module):
    borrowed = [f"{node.module}.{alias.name}" for node in import_nodes(MODULES[module])
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ios_core")
                for alias in node.names if alias.name.startswith("_") and node.module != module]
    assert borrowed == []


def test_only_the_gpu_half_imports_the_gpu_libraries():
    for path in PACKAGE.rglob("*.py"):
        if "engine/gpu" in path.as_posix():
            continue
        used = {m for m in imports(path, ()) if m.split(".")[0] in GPU_LIBRARIES}
        assert not used, f"{path.relative_to(PACKAGE)} imports {used}"
