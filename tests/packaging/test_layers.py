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
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# folder at the repository root -> the import name it is installed under
FOLDERS = {
    "forgetbench": "forgetbench",
    "benchmark": "forgetbench.benchmark",
    "strategies": "forgetbench.strategies",
    "reports": "forgetbench.reports",
}

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
    "forgetbench.benchmark.perf",
    "forgetbench.benchmark.front",
    "forgetbench.__init__",
]
# where a function-level import of a project module is allowed, and why (each delays heavy libraries)
LAZY_IMPORTS_ALLOWED = (
    "forgetbench.benchmark.front",  # `forgetbench --help` and `import forgetbench` load no torch
    "forgetbench.benchmark.perf",  # a measurement imports what it measures when it runs: listing them loads none
    "forgetbench.__init__",
    "forgetbench.benchmark.run.executors",  # starts the workers' fork server / Ray before the driver imports torch
    "forgetbench.reports.html",  # matplotlib only when a figure is drawn
    "forgetbench.reports.scenario_view",  # (the report's views) the same
    "forgetbench.reports.figure_views",
    "forgetbench.reports.drawing",  # matplotlib imported before the figure workers fork, not to read results
)
# project modules any module may import inside a function, and why: the training template subclasses Avalanche's
# and imports it, which takes seconds; a strategy imports it when it is built, never to read its params (issue 65)
LAZY_TARGETS_ALLOWED = ("forgetbench.benchmark.train.template",)


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
        return [
            f"{node.module}.{alias.name}" if resolve(f"{node.module}.{alias.name}", modules) else node.module
            for alias in node.names
        ]
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
                found |= {
                    t
                    for name in _imported_names(node, modules)
                    if name.split(".")[0] == "forgetbench" and (t := resolve(name, modules))
                }
    return found


def layer_of(module: str) -> int:
    matches = [(len(p), rank) for rank, p in enumerate(PACKAGE_ORDER) if module == p or module.startswith(p + ".")]
    assert matches, (
        f"{module} belongs to no package of PACKAGE_ORDER: add it (and to the Layout of docs/development.md)"
    )
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
        for m, targets in graph().items()
        for t in sorted(targets)
        if layer_of(t) > layer_of(m)
    ]
    assert not back, "imports against the one-way flow:\n" + "\n".join(back)


def test_lazy_imports_only_in_front_ends():
    modules = project_modules()
    lazy = [
        f"{m} imports {t} inside a function"
        for m, p in modules.items()
        if not m.startswith(LAZY_IMPORTS_ALLOWED)
        for t in sorted(lazy_imports_of(p, modules))
        if t not in LAZY_TARGETS_ALLOWED
    ]
    assert not lazy, (
        "move these to the top of the module (a lazy import only delays heavy libraries, "
        "in the front ends):\n" + "\n".join(lazy)
    )


def test_the_project_is_one_import_name():
    """No module imports the folders by their old top-level names (that would load a second copy)."""
    old = [
        f"{m} imports {name}"
        for m, p in project_modules().items()
        for node in ast.walk(ast.parse(p.read_text()))
        for name in _imported_names(node, {})
        if name.split(".")[0] in ("benchmark", "strategies", "reports")
    ]
    assert not old, "\n".join(old)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
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


@pytest.mark.parametrize(
    "edges,expected",
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
    ],
)
def test_the_cycle_finder_finds_cycles(edges, expected):
    assert (find_cycle(edges) is not None) == expected


def _top_level_names(tree: ast.Module) -> set[str]:
    """Names a module defines or imports at its top level (inside top-level ``if`` / ``try`` blocks too)."""
    names: set[str] = set()
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.If, ast.Try)):
            todo += node.body + node.orelse + [n for h in getattr(node, "handlers", []) for n in h.body]
    return names


@functools.cache
def _names_defined_in(file: Path) -> frozenset[str]:
    return frozenset(_top_level_names(ast.parse(file.read_text())))


def _module_file(dotted: str) -> Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def test_every_forgetbench_import_resolves_to_its_file_in_the_checkout_by_path_alone():
    # What a type checker, an editor's "go to definition" or an import-graph tool does with no help from the
    # installed package: forgetbench.benchmark.core.config is forgetbench/benchmark/core/config.py (the folders
    # benchmark/, strategies/ and reports/ are linked into forgetbench/), and each name imported from a
    # module is a submodule or a name that module defines.
    unresolved = []
    sources = [
        p
        for folder in ("benchmark", "strategies", "reports", "tests", "scripts")
        for p in (ROOT / folder).rglob("*.py")
    ]
    for path in [ROOT / "forgetbench" / "__init__.py", *sources]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                wanted = [(a.name, None) for a in node.names if a.name.split(".")[0] == "forgetbench"]
            elif (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and (node.module or "").split(".")[0] == "forgetbench"
            ):
                wanted = [(node.module, a.name) for a in node.names]
            else:
                continue
            for module, name in wanted:
                file = _module_file(module)
                if file is None:
                    unresolved.append(f"{path.relative_to(ROOT)}:{node.lineno}: no file for {module}")
                elif (
                    name is not None
                    and name != "*"
                    and _module_file(f"{module}.{name}") is None
                    and name not in _names_defined_in(file)
                ):
                    unresolved.append(f"{path.relative_to(ROOT)}:{node.lineno}: {module} has no {name}")
    assert not unresolved, "\n".join(unresolved)
    assert (
        ROOT / "forgetbench" / "benchmark" / "core" / "config.py"
    ).resolve() == ROOT / "benchmark" / "core" / "config.py"


LONGEST_FUNCTION = 80  # lines, decorators excluded: a longer procedure reads as named steps


def test_no_library_function_is_longer_than_a_screen():
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in project_modules().values()
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > LONGEST_FUNCTION
    ]
    assert not long, "split these into named steps:\n" + "\n".join(long)


LONGEST_TEST_FILE = 600  # lines: a longer one holds two subjects


def test_tests_live_in_a_folder_per_package_and_none_is_longer_than_its_subject():
    """Test files sit in the folder of what they test (tests/core/, tests/run/, ...), none at the top where only
    the shared parts live, and each is under 600 lines."""
    tests = ROOT / "tests"
    loose = sorted(p.name for p in tests.glob("test_*.py"))
    assert not loose, f"move these into the folder of the package they test: {loose}"
    long = [
        f"{p.relative_to(ROOT)} ({n} lines)"
        for p in sorted(tests.rglob("test_*.py"))
        if (n := len(p.read_text().splitlines())) > LONGEST_TEST_FILE
    ]
    assert not long, "split these by subject:\n" + "\n".join(long)


def test_the_results_folders_layout_is_named_in_one_place():
    """Issue 81: the folder's layout was known in about 20 files (``ROUNDS_FILE`` defined twice). Every name of it is
    ``ResultFolder``'s (benchmark/core/store.py); no other module of run/, core/, front/ or reports/ spells one."""
    from forgetbench.benchmark.core.store import ResultFolder

    names = [
        getattr(ResultFolder, k) for k in dir(ResultFolder) if k.isupper() and isinstance(getattr(ResultFolder, k), str)
    ]
    files = [n for n in names if "." in n]  # file names: any spelling of them is the layout's
    folders = [n for n in names if "." not in n]  # folder names: as a path part (``/ "runs"``)
    found = []
    for part in ("benchmark/core", "benchmark/run", "benchmark/front", "reports"):
        for path in sorted((ROOT / part).rglob("*.py")):
            if path.name == "store.py" and part == "benchmark/core":
                continue
            text = path.read_text()
            found += [f"{path.relative_to(ROOT)}: {n!r}" for n in files if f'"{n}"' in text]
            found += [f"{path.relative_to(ROOT)}: / {n!r}" for n in folders if f'/ "{n}"' in text]
    assert not found, "name these through ResultFolder:\n  " + "\n  ".join(found)


MODULE_LINES_AT_MOST = 600  # a library module a reader holds in mind; past it, it is two jobs


def test_no_library_module_is_longer_than_the_limit():
    long = [
        f"{path.relative_to(ROOT)} ({lines} lines)"
        for path in project_modules().values()
        if path.relative_to(ROOT).parts[0] not in ("tests", "scripts")
        and (lines := len(path.read_text().splitlines())) > MODULE_LINES_AT_MOST
    ]
    assert not long, f"split these into modules of one job each (at most {MODULE_LINES_AT_MOST} lines):\n" + "\n".join(
        long
    )
