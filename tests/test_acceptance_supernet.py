"""Real-data acceptance: multi-model forgetting in the MNIST supernet, and WPL reducing it (one seed)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
from forgetbench.benchmark.run.spec import RunSpec
from forgetbench.benchmark.run.runner import run
from forgetbench.benchmark.core.metrics import mean_err_gap
from helpers import REPO, mnist_root

pytestmark = pytest.mark.slow


def _run(strategy: dict, root) -> dict:
    suite = yaml.safe_load((REPO / "configs" / "nas_supernet.yaml").read_text())
    scenario = suite["scenarios"][0]["params"] | {"standalone": False}
    spec = RunSpec("supernet_acceptance", ComponentSpec(name="supernet", params=scenario),
                   ComponentSpec(**strategy), 0, TrainingConfig(**suite["training"]), "cpu")
    record = run(spec, root)
    assert record.status == "ok", record.error
    return record


def test_wpl_reduces_multi_model_forgetting_in_the_supernet():
    root = mnist_root()
    strategies = {s["name"]: s for s in yaml.safe_load((REPO / "configs" / "nas_supernet.yaml").read_text())["strategies"]}
    naive, wpl = _run(strategies["naive"], root), _run(strategies["wpl"], root)
    gap_naive = mean_err_gap(naive.err1, naive.err2)
    gap_wpl = mean_err_gap(wpl.err1, wpl.err2)
    assert gap_naive > 0.01, f"naive err2 - err1 = {gap_naive:.4f}: no multi-model forgetting"
    assert gap_wpl < gap_naive / 2, f"WPL err2 - err1 = {gap_wpl:.4f} vs naive {gap_naive:.4f}"
    assert np.mean(wpl.accuracy_matrix[-1]) > 0.8
