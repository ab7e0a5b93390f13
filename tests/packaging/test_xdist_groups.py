"""The suite's xdist groups hold: under ``--dist loadgroup`` a test marked ``xdist_group`` carries its group in its
id, the key pytest-xdist's scheduler sends a group to one worker by (conftest's pytest_collection_modifyitems)."""

from __future__ import annotations

import pytest


@pytest.mark.xdist_group("probe")
def test_a_grouped_test_carries_its_group_in_its_id_under_loadgroup(request):
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not run by an xdist worker under --dist loadgroup (make test and make test-fast are)")
    assert request.node.nodeid.endswith("::test_a_grouped_test_carries_its_group_in_its_id_under_loadgroup@probe")


def test_an_ungrouped_test_keeps_its_id(request):
    assert "@" not in request.node.nodeid


def test_no_test_module_imports_a_private_pytest_module():
    """An older pytest (a GPU machine's own Python stack) has other private modules, or none of ours: the suite must
    start under it, so nothing of the tests imports ``_pytest``."""
    import ast
    from pathlib import Path

    tests = Path(__file__).parents[1]
    found = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{path.relative_to(tests)}:{node.lineno} {n}" for n in names if n.split(".")[0] == "_pytest"]
    assert not found, found
