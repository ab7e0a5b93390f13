"""Seeds whose datasets differ in size (each seed draws its own split of real data) train as one batch: a seed's
epoch may end steps before the others' (it sits those steps out, its weights and momentum untouched) and its last
batch may be shorter (it makes its own pass). The per-seed runner is the reference, record for record."""

from __future__ import annotations

import pytest
import torch

from helpers import VOLATILE

from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
from forgetbench.benchmark.data.loaders import TensorBatchLoader, ragged_lockstep_batches
from forgetbench.benchmark.run.batching import Unbatchable, run_seeds
from forgetbench.benchmark.run.batching.stack import step_except
from forgetbench.benchmark.run.runner import run, scenario_of
from forgetbench.benchmark.run.spec import RunSpec, new_record

# digits' classes hold 174-183 images: each seed's draw of class pairs gives tasks of other sizes, and at 8 samples a
# batch some seeds' epochs take a step more than others'
SPLIT = {"dataset": "digits", "tasks": 3, "classes_per_task": 2, "widths": [16]}
TRAINING = TrainingConfig(lr=0.05, momentum=0.9, batch_size=8, eval_batch_size=512)
STRATEGIES = {"naive": {}, "ewc": {"ewc_lambda": 1000.0}, "si": {"si_lambda": 3.0}, "mas": {"lambda_reg": 1.0},
              "wpl": {"alpha": 1000.0}, "lwf": {}}  # fmt: skip


def _specs(strategy: str, training: TrainingConfig = TRAINING, seeds=(0, 1, 2)) -> list[RunSpec]:
    return [
        RunSpec("ragged", ComponentSpec(name="split", params=SPLIT),
                ComponentSpec(name=strategy, params=STRATEGIES.get(strategy, {})), seed, training, "cpu")
        for seed in seeds
    ]  # fmt: skip


def _computed(record) -> dict:
    data = record.to_dict()
    for key in VOLATILE:
        data.pop(key, None)
    return data


def test_the_seeds_tasks_differ_in_size_and_in_their_steps(tmp_path):
    """What the tests below rest on: the seeds' splits differ in size, and in the number of 8-sample steps."""
    sizes = []
    for spec in _specs("naive"):
        scenario = scenario_of(spec, tmp_path, new_record(spec, torch.device("cpu")))
        sizes.append([len(task.train_y) for task in scenario.tasks])
    assert len({tuple(s) for s in sizes}) == 3, sizes
    assert len({tuple(-(-n // 8) for n in s) for s in sizes}) > 1, sizes


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_seeds_of_other_split_sizes_batch_to_their_own_runs_records(strategy, tmp_path):
    specs = _specs(strategy)
    batched = run_seeds(specs, tmp_path)
    assert [r.batch.seeds for r in batched] == [[0, 1, 2]] * 3, [r.batch for r in batched]
    alone = [run(spec, tmp_path) for spec in specs]
    for b, a in zip(batched, alone):
        assert b.status == a.status == "ok", (b.error, a.error)
        assert _computed(b) == _computed(a)  # every number, bit for bit


def test_an_optimiser_counting_its_steps_per_tensor_trains_seeds_of_other_step_counts_alone(tmp_path):
    specs = _specs("naive", TRAINING.model_copy(update={"optimizer": "adam", "lr": 0.01}))
    records = run_seeds(specs, tmp_path)
    assert all(r.batch.seeds is None for r in records)
    assert all("Adam counts its steps once for all the seeds' rows" in r.batch.alone for r in records), records[0].batch
    for b, a in zip(records, [run(spec, tmp_path) for spec in specs]):
        assert _computed(b) == _computed(a)


def test_a_step_some_seeds_sit_out_leaves_their_rows_and_momentum_as_they_were():
    torch.manual_seed(0)
    weight = torch.randn(3, 4, 5, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.9, weight_decay=0.01)
    weight.grad = torch.randn(3, 4, 5)
    optimizer.step()  # the momentum buffer exists, as after a turn's first step
    before, momentum = weight.detach().clone(), optimizer.state[weight]["momentum_buffer"].clone()
    weight.grad = torch.randn(3, 4, 5)
    step_except(optimizer, [1])
    assert torch.equal(weight[1], before[1]) and torch.equal(optimizer.state[weight]["momentum_buffer"][1], momentum[1])
    assert not torch.equal(weight[0], before[0]) and not torch.equal(weight[2], before[2])
    adam = torch.optim.Adam([weight], lr=0.1)
    adam.step()
    with pytest.raises(Unbatchable, match="'step' once for all the seeds' rows"):
        step_except(adam, [1])
    fresh = torch.optim.SGD([weight], lr=0.1, momentum=0.9)  # no momentum yet: the sitting seed would start one
    with pytest.raises(Unbatchable, match="began its state"):
        step_except(fresh, [0])


@pytest.mark.parametrize("shuffle, row, drop_last", [(True, (2, 3), False), (False, (2, 3), False),
                                                      (True, (64, 80), False), (True, (2, 3), True)])  # fmt: skip
def test_ragged_lockstep_batches_are_each_loaders_own_batches_padded(shuffle, row, drop_last):
    """Loaders of 10, 7 and 13 samples side by side: at each step row k's first ``sizes[k]`` rows are loader k's own
    batch (0 once its epoch ended), by small rows joined and by large rows gathered seed by seed."""

    def loaders() -> list[TensorBatchLoader]:
        return [
            TensorBatchLoader((torch.randn(n, *row), torch.arange(n) + 100 * k, torch.zeros(n, dtype=torch.long)), 4,
                              shuffle, generator=torch.Generator().manual_seed(k), drop_last=drop_last)
            for k, n in enumerate((10, 7, 13))
        ]  # fmt: skip

    torch.manual_seed(0)
    own = [list(loader) for loader in loaders()]
    torch.manual_seed(0)
    together = list(ragged_lockstep_batches(loaders()))
    assert len(together) == max(len(batches) for batches in own)
    for step, (stacked, sizes) in enumerate(together):
        assert stacked[0].shape[1] == max(sizes)
        for k in range(3):
            mine = own[k][step] if step < len(own[k]) else None
            assert sizes[k] == (0 if mine is None else len(mine[0]))
            for ours, theirs in zip(mine or [], stacked):
                assert torch.equal(ours, theirs[k, : sizes[k]])
