"""Every built-in regularizer's *default* params must regularize: on the WPL paper's two-model setting
(offline digits, B on pixel-permuted data), A's accuracy drop under each regularizer is lower than
naive's on every seed. A default that behaves like plain fine-tuning (as SI's si_lambda = 1 did,
with Avalanche's omega capped at 1e-3) fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.config import ComponentSpec, TrainingConfig
from benchmark.runner import RunSpec, run

REGULARIZERS = ["ewc", "si", "wpl", "l2", "mas", "lwf"]
SEEDS = (0, 1, 2)
TRAINING = TrainingConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, epochs=1, eval_batch_size=2000)
TWO_MODEL = ComponentSpec(name="two_model", params={"dataset": "digits", "depth_a": 2, "depth_b": 3, "width": 64,
                                                    "shared": 2, "data_b": "permuted", "a_steps": 200, "b_steps": 200})


def a_drops(strategy: str) -> np.ndarray:
    """Points of A's accuracy lost while B trains, per seed (default params)."""
    drops = []
    for seed in SEEDS:
        record = run(RunSpec("defaults", TWO_MODEL, ComponentSpec(name=strategy), seed, TRAINING, "cpu"), None)
        assert record["status"] == "ok", record.get("error")
        R = record["accuracy_matrix"]
        drops.append(100 * (R[0][0] - R[1][0]))
    return np.array(drops)


@pytest.fixture(scope="module")
def naive_drops() -> np.ndarray:
    drops = a_drops("naive")
    assert drops.mean() >= 5, f"the setting must make naive forget: {drops}"
    return drops


@pytest.mark.parametrize("strategy", REGULARIZERS)
def test_default_params_forget_less_than_naive_on_every_seed(strategy, naive_drops):
    drops = a_drops(strategy)
    assert (drops < naive_drops).all(), f"{strategy} defaults: A drops {drops} vs naive {naive_drops}"
    assert naive_drops.mean() - drops.mean() >= 3, f"{strategy} defaults barely differ from naive"
