"""Real-data acceptance: multi-model forgetting in the MNIST supernet, and WPL reducing it (paired, 16 seeds).

One seed cannot carry this claim on another CPU: seed 0's naive err2 - err1 is 0.0145 with this machine's
AVX-512 kernels and 0.0534 under ``ATEN_CPU_CAPABILITY=default`` (the old single-seed threshold was 0.01), and
across seeds it spreads from -0.005 to 0.087. So the claim is a paired test: naive's mean err2 - err1 has a 95%
interval above 0, and WPL's minus naive's, seed by seed, one below 0. At 16 seeds, under either kernel set,
naive's mean is 3.9 standard errors above 0 and the paired difference 4.3-4.4 below (2.13 is the bar), with
WPL's final accuracy 0.88 (docs/studies/robustness.md). About 80 s.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
from forgetbench.benchmark.core.metrics import mean_err_gap
from forgetbench.benchmark.core.stats import paired_difference, t_interval
from forgetbench.benchmark.run.runner import run
from forgetbench.benchmark.run.spec import RunSpec
from helpers import REPO, mnist_root

pytestmark = [pytest.mark.slow, pytest.mark.effect]

SEEDS = range(16)


def _run(strategy: dict, seed: int, root) -> dict:
    suite = yaml.safe_load((REPO / "configs" / "nas_supernet.yaml").read_text())
    scenario = suite["scenarios"][0]["params"] | {"standalone": False}
    spec = RunSpec(
        "supernet_acceptance",
        ComponentSpec(name="supernet", params=scenario),
        ComponentSpec(**strategy),
        seed,
        TrainingConfig(**suite["training"]),
        "cpu",
    )
    record = run(spec, root)
    assert record.status == "ok", record.error
    return record


def test_wpl_reduces_multi_model_forgetting_in_the_supernet():
    root = mnist_root()
    strategies = {
        s["name"]: s for s in yaml.safe_load((REPO / "configs" / "nas_supernet.yaml").read_text())["strategies"]
    }
    naive = {seed: _run(strategies["naive"], seed, root) for seed in SEEDS}
    wpl = {seed: _run(strategies["wpl"], seed, root) for seed in SEEDS}
    gap_naive = {s: mean_err_gap(r.err1, r.err2) for s, r in naive.items()}
    gap_wpl = {s: mean_err_gap(r.err1, r.err2) for s, r in wpl.items()}
    low, _ = t_interval(list(gap_naive.values()))
    diff = paired_difference(gap_wpl, gap_naive)
    final = np.mean([np.mean(r.accuracy_matrix[-1]) for r in wpl.values()])
    print(
        f"measured: err2 - err1 naive {np.mean(list(gap_naive.values())):.4f} (interval low {low:.4f}), wpl minus "
        f"naive {diff.diff:+.4f} [{diff.ci_low:+.4f}, {diff.ci_high:+.4f}], wpl final {final:.4f}"
    )
    assert low > 0, f"naive err2 - err1 per seed {gap_naive}: no multi-model forgetting"
    assert diff.ci_high < 0, f"WPL err2 - err1 {gap_wpl} vs naive {gap_naive}"
    assert final > 0.8
