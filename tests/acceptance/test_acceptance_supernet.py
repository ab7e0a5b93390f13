"""Real-data acceptance: multi-model forgetting in the MNIST supernet, and WPL reducing it (paired, 16 seeds).

One seed cannot carry this claim on another CPU: seed 0's naive err2 - err1 is 0.0145 with this machine's
AVX-512 kernels and 0.0534 under ``ATEN_CPU_CAPABILITY=default`` (the old single-seed threshold was 0.01), and
across seeds it spreads from -0.005 to 0.087. So the claim is a paired test: naive's mean err2 - err1 has a 95%
interval above 0, and WPL's minus naive's, seed by seed, one below 0. At 16 seeds, under either kernel set,
naive's mean is 3.9 standard errors above 0 and the paired difference 4.3-4.4 below (2.13 is the bar), with
WPL's final accuracy 0.88 (docs/studies/robustness.md). 32 runs of about 6 s, split between two tests that two
xdist workers run at once.
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

pytestmark = [pytest.mark.slow, pytest.mark.effect, pytest.mark.timeout(900)]  # 16 or 32 MNIST supernet runs

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
    return {"gap": mean_err_gap(record.err1, record.err2), "final": float(np.mean(record.accuracy_matrix[-1]))}


def _runs(shared, name: str) -> dict[int, dict]:
    """The strategy's 16 seeds (about 6 s each), each once per session: the two tests below run on two xdist
    workers at once, the second starting with the strategy the first does not run."""
    root = mnist_root()
    strategies = {
        s["name"]: s for s in yaml.safe_load((REPO / "configs" / "nas_supernet.yaml").read_text())["strategies"]
    }
    found = shared.many(
        {f"supernet-{name}-{seed}": (lambda seed=seed: _run(strategies[name], seed, root)) for seed in SEEDS}
    )
    return {seed: found[f"supernet-{name}-{seed}"] for seed in SEEDS}


def test_naive_forgets_in_the_supernet(shared_results):
    gap_naive = {s: r["gap"] for s, r in _runs(shared_results, "naive").items()}
    low, _ = t_interval(list(gap_naive.values()))
    assert low > 0, f"naive err2 - err1 per seed {gap_naive}: no multi-model forgetting"


def test_wpl_reduces_multi_model_forgetting_in_the_supernet(shared_results):
    wpl = _runs(shared_results, "wpl")
    gap_wpl = {s: r["gap"] for s, r in wpl.items()}
    gap_naive = {s: r["gap"] for s, r in _runs(shared_results, "naive").items()}
    diff = paired_difference(gap_wpl, gap_naive)
    final = np.mean([r["final"] for r in wpl.values()])
    print(
        f"measured: err2 - err1 naive {np.mean(list(gap_naive.values())):.4f}, wpl minus "
        f"naive {diff.diff:+.4f} [{diff.ci_low:+.4f}, {diff.ci_high:+.4f}], wpl final {final:.4f}"
    )
    assert diff.ci_high < 0, f"WPL err2 - err1 {gap_wpl} vs naive {gap_naive}"
    assert final > 0.8
