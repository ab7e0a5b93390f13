"""The permuted scenario: seeded pixel permutations, one shared single-head model."""

from __future__ import annotations

import pytest
import torch

from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
from forgetbench.benchmark.run.spec import RunSpec
from forgetbench.benchmark.run.runner import run
from forgetbench.benchmark.data.scenarios import SCENARIOS, ScenarioInputs


def permuted(seed=0, **params):
    entry = SCENARIOS.get("permuted")
    base = {"dataset": "digits", "tasks": 3, "widths": [16]}
    return entry.factory(entry.parse_params(base | params), ScenarioInputs(seed, None))


def test_each_task_is_one_seeded_permutation_of_the_same_data():
    scenario = permuted()
    perms = [torch.tensor(p) for p in scenario.meta["permutations"]]
    base = scenario.tasks[0].train_x[:, torch.argsort(perms[0])]  # undo task 0's permutation
    base_test = scenario.tasks[0].test_x[:, torch.argsort(perms[0])]
    for task, perm in zip(scenario.tasks, perms):
        assert sorted(perm.tolist()) == list(range(64))
        torch.testing.assert_close(task.train_x, base[:, perm])
        torch.testing.assert_close(task.test_x, base_test[:, perm])  # same permutation for test data
        assert torch.equal(task.train_y, scenario.tasks[0].train_y)
    assert len({tuple(p.tolist()) for p in perms}) == 3
    assert permuted().meta["permutations"] == scenario.meta["permutations"]
    assert permuted(seed=1).meta["permutations"] != scenario.meta["permutations"]
    assert permuted(identity_first=True).meta["permutations"][0] == list(range(64))


def test_one_head_every_parameter_shared_by_every_task():
    scenario = permuted()
    names = {n for n, _ in scenario.model.named_parameters()}
    assert all(t.used_params == names and t.model_key == 0 for t in scenario.tasks)
    assert len(scenario.model.heads) == 1 and scenario.model.heads[0].out_features == 10


@pytest.mark.effect
def test_subsampling_and_a_run():
    scenario = permuted(max_train_per_task=100)
    assert all(len(t.train_y) == 100 for t in scenario.tasks)
    spec = RunSpec(
        "t",
        ComponentSpec(name="permuted", params={"dataset": "digits", "tasks": 3, "widths": [16]}),
        ComponentSpec(name="naive"),
        0,
        TrainingConfig(batch_size=32, lr=0.05, momentum=0.9, epochs=3),
        "cpu",
    )
    record = run(spec, data_root=None)
    assert record.status == "ok", record.traceback
    R = record.accuracy_matrix
    assert len(R) == 3 and all(len(row) == 3 for row in R)
    assert min(R[j][j] for j in range(3)) > 0.5  # each permutation is learnt by the shared MLP
    assert [t.accuracy for t in record.turn_accuracy] == pytest.approx([R[j][j] for j in range(3)])


def test_si_penalty_is_active_on_cpu():
    """Avalanche's SI snapshots are views on CPU (SI == naive); ours must differ and forget less."""
    params = {"dataset": "digits", "tasks": 3, "widths": [32]}
    training = TrainingConfig(batch_size=32, lr=0.01, momentum=0.9, epochs=2)

    def final(strategy, sparams):
        spec = RunSpec(
            "t",
            ComponentSpec(name="permuted", params=params),
            ComponentSpec(name=strategy, params=sparams),
            0,
            training,
            "cpu",
        )
        record = run(spec, data_root=None)
        assert record.status == "ok", record.traceback
        return record.accuracy_matrix

    naive, si = final("naive", {}), final("si", {"si_lambda": 300.0})
    assert si != naive
    assert si[-1][0] > naive[-1][0]  # task 0 kept better under the penalty
