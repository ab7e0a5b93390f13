"""Real-data acceptance for WPL: the paper's two-model study on MNIST (shared = 3, B permuted)."""

from __future__ import annotations

import pytest

from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
from forgetbench.benchmark.run.spec import RunSpec
from forgetbench.benchmark.run.runner import run
from helpers import mnist_root

pytestmark = [pytest.mark.slow, pytest.mark.effect]

SCENARIO = {"dataset": "mnist", "shared": 3, "data_b": "permuted", "a_steps": 3000, "b_steps": 6000}
TRAINING = TrainingConfig(optimizer="sgd", lr=0.05, momentum=0.0, batch_size=64, eval_batch_size=2000, eval_every=1000)


def _run(strategy: str, params: dict, root) -> dict:
    spec = RunSpec(
        "wpl_acceptance",
        ComponentSpec(name="two_model", params=SCENARIO),
        ComponentSpec(name=strategy, params=params),
        0,
        TRAINING,
        "cpu",
    )
    record = run(spec, root)
    assert record.status == "ok", record.error
    return record


def test_wpl_keeps_model_a_while_b_trains():
    root = mnist_root()
    naive = _run("naive", {}, root)
    wpl = _run("wpl", {"alpha": 300}, root)
    (a_naive, _), (a_after_naive, b_naive) = naive.accuracy_matrix
    (a_wpl, _), (a_after_wpl, b_wpl) = wpl.accuracy_matrix
    assert a_naive == a_wpl and a_naive > 0.96  # same A (same seed), trained to convergence
    naive_drop, wpl_drop = a_naive - a_after_naive, a_wpl - a_after_wpl
    print(
        f"measured: A {a_naive:.4f}, drop naive {naive_drop:.4f} wpl {wpl_drop:.4f}, B naive {b_naive:.4f} wpl {b_wpl:.4f}"
    )
    assert naive_drop >= 0.05, f"naive forgot only {naive_drop:.3f}"
    assert wpl_drop <= naive_drop / 4, f"WPL forgot {wpl_drop:.3f} vs naive {naive_drop:.3f}"
    assert b_wpl >= 0.97 * b_naive, f"B under WPL {b_wpl:.3f} vs naive {b_naive:.3f}"
