"""Every built-in regularizer's *default* params must regularize on the demo's scenarios
(``configs/demo.yaml``: the WPL paper's two-model setting and a weight-sharing supernet, offline
digits). Per scenario, the strategy's forgetting averaged over the demo's seeds is clearly lower than
naive's, and lower on most seeds. A default that behaves like plain fine-tuning (as SI's
si_lambda = 1 did, with Avalanche's omega capped at 1e-3) or that diverges (as WPL's alpha = 300 did
on the supernet before its curvature cap) fails here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from forgetbench.benchmark.core.config import ComponentSpec, load_config
from forgetbench.benchmark.run.spec import RunSpec
from forgetbench.benchmark.run.runner import run
from forgetbench.benchmark.core.metrics import run_metrics

DEMO = load_config(Path(__file__).parents[1] / "configs" / "demo.yaml")
REGULARIZERS = ["ewc", "si", "wpl", "l2", "mas", "lwf"]
SCENARIOS = {s.label or s.name: s for s in DEMO.scenarios}


def forgetting(scenario: str, strategy: str) -> np.ndarray:
    """Forgetting (points) per demo seed, with the strategy's default params."""
    values = []
    for seed in DEMO.seeds:
        spec = RunSpec("defaults", SCENARIOS[scenario], ComponentSpec(name=strategy), seed, DEMO.training, "cpu")
        record = run(spec, None)
        assert record.status == "ok", f"{scenario}/{strategy}/seed {seed}: {record.status}: {record.error}"
        values.append(100 * run_metrics(record)["forgetting"])
    return np.array(values)


@pytest.fixture(scope="module")
def naive() -> dict[str, np.ndarray]:
    out = {name: forgetting(name, "naive") for name in SCENARIOS}
    for name, values in out.items():
        assert values.mean() >= 5, f"the demo's {name} must make naive forget: {values}"
    return out


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("strategy", REGULARIZERS)
def test_default_params_forget_less_than_naive_on_the_demo(strategy, scenario, naive):
    mine, base = forgetting(scenario, strategy), naive[scenario]
    assert base.mean() - mine.mean() >= 3, f"{strategy} defaults on {scenario}: {mine} vs naive {base}"
    assert (mine < base).sum() > len(base) / 2, f"{strategy} defaults on {scenario} forget more than naive on most seeds"
