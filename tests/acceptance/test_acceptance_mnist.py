"""Real-data acceptance: the Split MNIST suite on the MNIST files under the data root."""

from __future__ import annotations


import numpy as np
import pytest

from helpers import REPO, mnist_root

from forgetbench.benchmark.core.store import load_results
from forgetbench.benchmark.core.metrics import average_accuracy, forgetting


pytestmark = [pytest.mark.slow, pytest.mark.effect]


STRATEGIES = [
    "naive",
    "ewc",
    "si",
    "wpl",
    "spg",
    "mas",
    "lwf",
    "l2",
    "replay",
    "joint",
    "standalone",
]  # the suite file's
REGULARIZERS = ["ewc", "si", "wpl", "spg", "mas", "lwf", "l2"]


def test_split_mnist_suite(cli, tmp_path):
    """Every strategy of configs/split_mnist.yaml on seed 0 (the full 3-seed suite: `forgetbench run configs/split_mnist.yaml`)."""
    root = mnist_root()
    out = tmp_path / "split_mnist"
    status = cli(
        "run",
        "--no-report",
        REPO / "configs" / "split_mnist.yaml",
        "--out",
        out,
        "--data-root",
        root,
        "--seeds",
        "0",
        "--quiet",
    )
    assert status == 0
    records = {r.strategy.name: r for r in load_results(out)}
    assert sorted(records) == sorted(STRATEGIES) and all(r.status == "ok" for r in records.values())
    R = {name: np.array(r.accuracy_matrix) for name, r in records.items()}
    print(
        "measured:",
        {
            name: (round(float(np.diag(m).mean()), 4), round(float(m[-1].mean()), 4), round(forgetting(m), 4))
            for name, m in R.items()
        },
    )
    for name, matrix in R.items():
        assert matrix.shape == (5, 5), name
        assert np.diag(matrix).mean() > 0.9, name  # each binary task is learnt
        assert matrix[-1].mean() > 0.75, name
    assert forgetting(R["spg"]) < 0.5 * forgetting(R["naive"])
    assert forgetting(R["standalone"]) == 0.0
    assert average_accuracy(R["joint"]) >= max(average_accuracy(R[name]) for name in REGULARIZERS)
