"""Real-data acceptance for WPL: the paper's two-model study on MNIST (shared = 3, B permuted)."""

from __future__ import annotations

import pytest

from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
from forgetbench.benchmark.run.spec import RunSpec
from forgetbench.benchmark.run.runner import run
from helpers import mnist_root

pytestmark = [pytest.mark.slow, pytest.mark.effect, pytest.mark.timeout(600)]  # two 50 s MNIST runs

SCENARIO = {"dataset": "mnist", "shared": 3, "data_b": "permuted", "a_steps": 3000, "b_steps": 6000}
TRAINING = TrainingConfig(optimizer="sgd", lr=0.05, momentum=0.0, batch_size=64, eval_batch_size=2000, eval_every=1000)


def _run(strategy: str, params: dict, root) -> list[list[float]]:
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
    return record.accuracy_matrix


def _matrices(shared, *strategies: str) -> dict[str, list[list[float]]]:
    """Each run once per session (about 50 s each): the two tests below run their runs on two xdist workers at once,
    the one that needs both starting with the one the other does not."""
    root = mnist_root()
    params = {"naive": {}, "wpl": {"alpha": 300}}
    found = shared.many({f"wpl-acceptance-{s}": (lambda s=s: _run(s, params[s], root)) for s in strategies})
    return {s: found[f"wpl-acceptance-{s}"] for s in strategies}


def test_naive_forgets_model_a_while_b_trains(shared_results):
    (a_naive, _), (a_after_naive, _) = _matrices(shared_results, "naive")["naive"]
    assert a_naive > 0.96  # A trained to convergence
    assert a_naive - a_after_naive >= 0.05, f"naive forgot only {a_naive - a_after_naive:.3f}"


def test_wpl_keeps_model_a_while_b_trains(shared_results):
    found = _matrices(shared_results, "wpl", "naive")
    (a_naive, _), (a_after_naive, b_naive) = found["naive"]
    (a_wpl, _), (a_after_wpl, b_wpl) = found["wpl"]
    assert a_naive == a_wpl  # same A (same seed)
    naive_drop, wpl_drop = a_naive - a_after_naive, a_wpl - a_after_wpl
    print(
        f"measured: A {a_naive:.4f}, drop naive {naive_drop:.4f} wpl {wpl_drop:.4f}, B naive {b_naive:.4f} wpl {b_wpl:.4f}"
    )
    assert wpl_drop <= naive_drop / 4, f"WPL forgot {wpl_drop:.3f} vs naive {naive_drop:.3f}"
    assert b_wpl >= 0.97 * b_naive, f"B under WPL {b_wpl:.3f} vs naive {b_naive:.3f}"
