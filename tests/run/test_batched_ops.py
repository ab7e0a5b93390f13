"""A batched training step's host cost does not grow with the seeds: the operations PyTorch dispatches per step at
K = 64 seeds are within 1.1x of those at K = 2 (issue 96: on a GPU the per-seed work inside a step, not the
arithmetic, set a batch's cost from K = 100 to 500). Counted, not timed: a count holds on any machine."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from torch.utils._python_dispatch import TorchDispatchMode

from forgetbench.benchmark.run.batching import lockstep, run_seeds
from test_batched import _specs


class DispatchCount(TorchDispatchMode):
    """Every operation PyTorch dispatches while it is active, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def ops_per_step(strategy: str, seeds: int, monkeypatch) -> tuple[float, Counter[str]]:
    """Operations dispatched inside the batch's training loops, per training step of one seed's record."""
    count = DispatchCount()
    epoch = lockstep._Lockstep._epoch

    def counted(self, kwargs):
        with count:
            return epoch(self, kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(lockstep._Lockstep, "_epoch", counted)
        records = run_seeds(_specs("two_model", strategy, seeds=tuple(range(seeds))), Path("."))
    assert records[0].batch.seeds == list(range(seeds)), records[0].batch  # trained as one batch
    return sum(count.ops.values()) / records[0].timing.steps, count.ops


@pytest.mark.parametrize("strategy", ["naive", "ewc", "si"])  # no penalty, the quadratic core, a path integral
def test_a_batched_steps_dispatched_operations_do_not_grow_with_the_seeds(strategy, monkeypatch):
    few, few_ops = ops_per_step(strategy, 2, monkeypatch)
    many, many_ops = ops_per_step(strategy, 64, monkeypatch)
    grown = sorted(((many_ops[k] - few_ops[k], k) for k in many_ops), reverse=True)[:3]
    assert many <= 1.1 * few, f"{many:.1f} operations a step at K = 64 against {few:.1f} at K = 2; grew: {grown}"
