"""The one-way flow holds: each package imports only from the packages before it in ``PACKAGE_ORDER``.

    core -> data -> train -> strategies -> run -> reports -> front -> forgetbench (the public API)

Every import in the project's folders (function-level ones included: a lazy import hides a cycle, it
does not remove it) is read from the source with ``ast``. The test fails on a module that belongs to no
package of the order, on an import of a later package, and on an import cycle between modules; and on a
function-level import of a project module outside ``LAZY_IMPORTS_ALLOWED``, the few places where a lazy
import exists to delay torch, Avalanche or matplotlib.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder at the repository root -> the import name it is installed under
FOLDERS = {"forgetbench": "forgetbench", "benchmark": "forgetbench.benchmark", "strategies": "forgetbench.strategies",
           "reports": "forgetbench.reports"}

# The rule, in order: a module belongs to the longest entry its name starts with, and may import its own
# package and the ones before it. The package roots come first: they hold the version.
PACKAGE_ORDER = [
    "forgetbench.benchmark.__init__",
    "forgetbench.benchmark.core",
    "forgetbench.benchmark.data",
    "forgetbench.benchmark.train",
    "forgetbench.strategies",
    "forgetbench.benchmark.run",
    "forgetbench.reports",
    "forgetbench.benchmark.front",
    "forgetbench.__init__",
]
# where a function-level import of a project module is allowed, and why (each delays heavy libraries)
LAZY_IMPORTS_ALLOWED = (
    "forgetbench.benchmark.front",        # `forgetbench --help` and `import forgetbench` load no torch
    "forgetbench.__init__",
    "forgetbench.benchmark.run.executors",  # starts the workers' fork server / Ray before the driver imports torch
    "forgetbench.reports.html",           # matplotlib and seaborn only when a figure is drawn
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join((FOLDERS[parts[0]], *parts[1:]))  # package inits keep their ".__init__"


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for folder in FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an import of ``name`` loads (a package means its ``__init__``)."""
    if name in modules:
        return name
    if f"{name}.__init__" in modules:
        return f"{name}.__init__"
    return None


def _imported_names(node: ast.AST, modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        # `from pkg import sub` loads pkg.sub when it is a module, else pkg itself
        return [f"{node.module}.{alias.name}" if resolve(f"{node.module}.{alias.name}", modules)
                else node.module for alias in node.names]
    return []


def _package_inits(module: str, modules: dict[str, Path]) -> set[str]:
    parts = module.removesuffix(".__init__").split(".")
    return {f"{'.'.join(parts[:k])}.__init__" for k in range(1, len(parts))} & modules.keys()


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that importing ``path`` runs: what it names, and the ``__init__`` of each package on
    the way there that is not already one of its own (``import a.b.c`` runs ``a/b/__init__.py`` too)."""
    found = set()
    own = _package_inits(module_name(path), modules)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        for name in _imported_names(node, modules):
            if name.split(".")[0] == "forgetbench" and (target := resolve(name, modules)):
                found |= {target} | (_package_inits(target, modules) - own)
    return found


def lazy_imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules imported inside a function body."""
    found = set()
    for fn in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                found |= {t for name in _imported_names(node, modules)
                          if name.split(".")[0] == "forgetbench" and (t := resolve(name, modules))}
    return found


def layer_of(module: str) -> int:
    matches = [(len(p), rank) for rank, p in enumerate(PACKAGE_ORDER) if module == p or module.startswith(p + ".")]
    assert matches, f"{module} belongs to no package of PACKAGE_ORDER: add it (and to the Layout of docs/development.md)"
    return max(matches)[1]


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {m: imports_of(p, modules) - {m} for m, p in modules.items()}


def test_every_module_has_a_layer():
    for module in graph():
        layer_of(module)


def test_no_back_edges():
    back = [
        f"{m} ({PACKAGE_ORDER[layer_of(m)]}) imports {t} ({PACKAGE_ORDER[layer_of(t)]})"
        for m, targets in graph().items() for t in sorted(targets) if layer_of(t) > layer_of(m)
    ]
    assert not back, "imports against the one-way flow:\n" + "\n".join(back)


def test_lazy_imports_only_in_front_ends():
    modules = project_modules()
    lazy = [f"{m} imports {t} inside a function" for m, p in modules.items()
            if not m.startswith(LAZY_IMPORTS_ALLOWED) for t in sorted(lazy_imports_of(p, modules))]
    assert not lazy, "move these to the top of the module (a lazy import only delays heavy libraries, " \
                     "in the front ends):\n" + "\n".join(lazy)


def test_the_project_is_one_import_name():
    """No module imports the folders by their old top-level names (that would load a second copy)."""
    old = [f"{m} imports {name}" for m, p in project_modules().items() for node in ast.walk(ast.parse(p.read_text()))
           for name in _imported_names(node, {}) if name.split(".")[0] in ("benchmark", "strategies", "reports")]
    assert not old, "\n".join(old)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("edges,expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
])
def test_the_cycle_finder_finds_cycles(edges, expected):
    assert (find_cycle(edges) is not None) == expected
