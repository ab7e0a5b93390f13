"""The one-way flow holds: config -> scenario -> strategy -> runner -> suite -> reports -> front ends.

Every import in ``benchmark/``, ``strategies/`` and ``reports/`` (function-level ones included: a
lazy import hides a cycle, it does not remove it) is read from the source with ``ast``. The test
fails on an import cycle between modules and on a back-edge: a module importing one of a later layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "strategies", "reports")

# (layer, module-name prefixes), first match wins. Imports may go to the same or an earlier layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("benchmark.__init__", "benchmark.registry", "benchmark.references", "benchmark.registries", "benchmark.grid",
                    "benchmark.training", "benchmark.record", "benchmark.store", "benchmark.stop", "reports.__init__",
                    "reports.metrics", "reports.stats", "reports.units")),
    ("config", ("benchmark.config",)),
    ("scenario", ("benchmark.datasets", "benchmark.text", "benchmark.language", "benchmark.models", "benchmark.loaders",
                  "benchmark.detect", "benchmark.scenarios")),
    ("strategy", ("benchmark.template", "benchmark.harness", "strategies")),
    ("runner", ("benchmark.schedule", "benchmark.checkpoint", "benchmark.runner")),
    ("suite", ("benchmark.selection", "benchmark.executors", "benchmark.lock", "benchmark.tracking",
               "benchmark.suite")),
    ("reports", ("reports",)),
    ("front ends", ("benchmark.api", "benchmark.cli", "benchmark.testing", "benchmark.measure")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts)  # package inits keep their ".__init__"


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an import of ``name`` loads (a package means its ``__init__``)."""
    if name in modules:
        return name
    if f"{name}.__init__" in modules:
        return f"{name}.__init__"
    return None


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import sub` loads pkg.sub when it is a module, else pkg itself
            names = [f"{node.module}.{alias.name}" if resolve(f"{node.module}.{alias.name}", modules)
                     else node.module for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES and (target := resolve(name, modules)):
                found.add(target)
    return found


def layer_of(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS (and to the README's Layout)")


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {m: imports_of(p, modules) - {m} for m, p in modules.items()}


def test_every_module_has_a_layer():
    for module in graph():
        layer_of(module)


def test_no_back_edges():
    back = [
        f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
        for m, targets in graph().items() for t in sorted(targets) if layer_of(t) > layer_of(m)
    ]
    assert not back, "imports against the one-way flow:\n" + "\n".join(back)


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
