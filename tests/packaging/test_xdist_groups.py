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
