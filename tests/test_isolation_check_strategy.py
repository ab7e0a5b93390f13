"""Each isolation strategy passes the shared strategy contract (``forgetbench.benchmark.front.testing.check_strategy``)."""

from __future__ import annotations

import pytest

from forgetbench.benchmark.front import testing

SPLIT_CNN = {
    "name": "split",
    "params": {"dataset": "digits", "tasks": 2, "classes_per_task": 2, "trunk": "cnn", "widths": [16, 16]},
}
TWO_MODEL = {"name": "two_model", "params": {"dataset": "digits", "depth_a": 2, "depth_b": 3, "width": 32, "shared": 1}}


@pytest.mark.parametrize(
    "name, params",
    [
        ("supsup", {"sparsity": 0.1}),
        ("exssnet", {"sparsity": 0.1}),
        ("exssnet", {"sparsity": 0.1, "kkt": "best", "knn_k": 50}),
        ("pic", {"rank": 2}),
        ("pic", {"rank": 2, "lam": 0.5, "init": "fresh"}),
    ],
)
def test_isolation_strategy_contract(name, params):
    testing.check_strategy(name, params)


@pytest.mark.parametrize("name", ["supsup", "exssnet", "pic"])
@pytest.mark.parametrize("scenario", [SPLIT_CNN, TWO_MODEL], ids=["split-cnn", "two_model"])
def test_isolation_strategy_contract_on_other_scenarios(name, scenario):
    testing.check_strategy(name, None, scenario)


@pytest.mark.parametrize("name", ["supsup", "exssnet", "pic"])
def test_isolation_strategy_contract_on_permuted(name):
    testing.check_strategy(name, None, {"name": "permuted", "params": {"dataset": "digits", "tasks": 3}})
