"""Real-data acceptance: the Split MNIST suite on the MNIST files under the data root."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.datasets import DataMissingError, check_available, default_data_root
from benchmark.store import load_results

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _mnist_root() -> Path:
    root = default_data_root()
    try:
        check_available("mnist", root, download=False)
    except DataMissingError as exc:
        if __import__("os").environ.get("CI"):
            raise  # CI has ../shared/data: the real thing must run there
        pytest.skip(f"real MNIST not available offline: {exc}")
    return root


def test_split_mnist_suite(cli, tmp_path):
    root = _mnist_root()
    out = tmp_path / "split_mnist"
    status = cli("run", REPO / "configs" / "split_mnist.yaml", "--out", out, "--data-root", root, "--quiet")
    assert status == 0
    records = load_results(out)
    assert len(records) == 9 and all(r["status"] == "ok" for r in records)
    for record in records:
        R = np.array(record["accuracy_matrix"])
        assert R.shape == (5, 5)
        assert np.diag(R).mean() > 0.95  # each binary task is learnt
        assert R[-1].mean() > 0.8
