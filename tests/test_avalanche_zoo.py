"""Avalanche's own methods by name (strategies/avalanche_zoo.py).

* every method forgetbench lists runs on a split scenario (the one its network requirements allow);
* forgetbench's run of GEM, AGEM, DER and ER_ACE equals Avalanche's own class and loop on the same scenario,
  model, seed and data order (the accuracy matrices agree to float tolerance);
* what the zoo leans on: samples of a scenario's datasets are Avalanche's ``(x, y, t)``, one-head networks answer
  ``model(x)``, strategy classes run without checkpoints and say so.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from forgetbench.benchmark.core.config import ComponentSpec, resolve_config
from forgetbench.benchmark.core.training import TrainingConfig
from forgetbench.benchmark.run.assemble import build_scenario
from forgetbench.benchmark.run.runner import run
from forgetbench.benchmark.run.schedule import scheduled_experiences
from forgetbench.benchmark.run.spec import RunSpec, seed_everything
from forgetbench.benchmark.train.harness import evaluate
from forgetbench.strategies import STRATEGIES
from forgetbench.strategies.avalanche_zoo import PREFIX, REQUIRES, UNAVAILABLE
from conftest import tiny_suite

TRAINING = TrainingConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, epochs=2, eval_batch_size=256)

# Arguments without a default, and small memories for digits (a few hundred samples per task).
ARGS = {
    "AGEM": {"patterns_per_exp": 64, "sample_size": 32},
    "GEM": {"patterns_per_exp": 64, "memory_strength": 0.5},
    "CWRStar": {"cwr_layer_name": "heads.0"},
    "EWC": {"ewc_lambda": 10.0},
    "LFL": {"lambda_e": 0.1},
    "LwF": {"alpha": 1.0, "temperature": 2.0},
    "MIR": {"mem_size": 100, "subsample": 50},
    "SynapticIntelligence": {"si_lambda": 1.0},
    "RAR": {"batch_size_mem": 16},
    "GSS_greedy": {"input_size": [1, 8, 8], "mem_size": 100},
    "DER": {"mem_size": 100},
    "ER_ACE": {"mem_size": 100, "batch_size_mem": 16},
    # an experience of digits is ~10 iterations: score every one (RWalk's scores are 0/0 with none in an experience)
    "RWalk": {"delta_t": 1},
}


def _scenario(setting: str) -> ComponentSpec:
    params = {"dataset": "digits", "tasks": 3, "classes_per_task": 2, "trunk": "mlp", "widths": [32], "setting": setting}
    if setting == "class-IL":
        params["mask_unseen_classes"] = False
    return ComponentSpec(name="split", params=params)


def _setting_for(name: str) -> str:
    """task-IL unless the method needs one head (then class-IL with every output unit live)."""
    return "class-IL" if "single_head" in REQUIRES.get(name, {}) else "task-IL"


def _runnable() -> list[str]:
    return [e.name[len(PREFIX):] for e in STRATEGIES if e.name.startswith(PREFIX) and not e.extra.get("unavailable")]


def test_thirty_strategies_run_and_the_unavailable_say_why():
    listed = [e for e in STRATEGIES if not e.extra.get("unavailable")]
    assert len(listed) >= 30
    for name, reason in UNAVAILABLE.items():
        if PREFIX + name in STRATEGIES:
            assert STRATEGIES.get(PREFIX + name).extra["unavailable"] == reason


@pytest.mark.parametrize("name", _runnable())
def test_every_listed_avalanche_method_runs(name):
    spec = RunSpec("zoo", _scenario(_setting_for(name)), ComponentSpec(name=PREFIX + name, params=ARGS.get(name, {})),
                   0, TRAINING, "cpu")
    resolve_config({**tiny_suite(), "scenarios": [spec.scenario.model_dump()], "strategies": [spec.strategy.model_dump()]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Avalanche's own deprecation chatter
        record = run(spec, data_root=None)
    assert record.status == "ok", (name, record.error)
    assert len(record.accuracy_matrix) == 3 and all(len(row) == 3 for row in record.accuracy_matrix)


class _SeededBatches:
    """The training batches of ``dataset`` in the order forgetbench's tensor loader draws them: one
    ``torch.randperm(n, generator)`` per epoch, cut into batches, each sample read through the dataset (Avalanche's
    own items and collate). Not a torch DataLoader: that draws a base seed from the global RNG every epoch even with
    a fixed sampler, and GEM, DER and ER_ACE sample their memories from the global RNG, so it would shift them
    (torch's RandomSampler would also draw one permutation more per epoch)."""

    def __init__(self, dataset, batch_size: int, generator: torch.Generator):
        self.dataset, self.batch_size, self.generator = dataset, batch_size, generator

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.dataset), generator=self.generator).tolist()
        for start in range(0, len(order), self.batch_size):
            yield self.dataset.collate_fn([self.dataset[i] for i in order[start : start + self.batch_size]])


def _avalanche_reference(spec: RunSpec, cls: type, args: dict) -> list[list[float]]:
    """Avalanche's own ``cls`` and training loop on the run's scenario, model and seed; only the order in which the
    training batches are drawn is pinned to forgetbench's (the same generator, seeded with the run's seed)."""
    generator = torch.Generator().manual_seed(spec.seed)

    class Ordered(cls):
        def make_train_dataloader(self, num_workers=0, shuffle=True, pin_memory=None, persistent_workers=False,
                                  drop_last=False, **kwargs):
            self.dataloader = _SeededBatches(self.adapted_dataset, self.train_mb_size, generator)

    seed_everything(spec.seed)
    scenario = build_scenario(spec, None)
    model = scenario.model
    training = spec.training
    strategy = Ordered(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=training.lr, momentum=training.momentum),
        criterion=torch.nn.CrossEntropyLoss(),
        train_mb_size=training.batch_size,
        train_epochs=training.epochs,
        eval_mb_size=training.eval_batch_size,
        device="cpu",
        evaluator=None,
        **args,
    )
    matrix = []
    for _, experience in scheduled_experiences(scenario):
        # forgetbench's default `training.reset_optimizer: true`, as Avalanche's own argument
        strategy.train(experience, reset_optimizer_state=training.reset_optimizer)
        matrix.append([evaluate(model, task, 256, torch.device("cpu")) for task in scenario.tasks])
    return matrix


@pytest.mark.parametrize(("name", "setting"), [("GEM", "task-IL"), ("AGEM", "task-IL"), ("DER", "class-IL"),
                                               ("ER_ACE", "class-IL"), ("ER_ACE", "task-IL")])
def test_forgetbench_run_equals_avalanches_own_loop(name, setting):
    import avalanche.training as training

    args = ARGS[name]
    spec = RunSpec("equivalence", _scenario(setting), ComponentSpec(name=PREFIX + name, params=args), 0, TRAINING,
                   "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record = run(spec, data_root=None)
        reference = _avalanche_reference(spec, getattr(training, name), args)
    assert record.status == "ok", record.error
    assert torch.allclose(torch.tensor(record.accuracy_matrix), torch.tensor(reference), atol=1e-6), (
        record.accuracy_matrix, reference)


def test_samples_of_a_scenario_dataset_are_avalanches_x_y_t():
    spec = RunSpec("items", _scenario("task-IL"), ComponentSpec(name="naive"), 0, TRAINING, "cpu")
    scenario = build_scenario(spec, None)
    experience = scheduled_experiences(scenario)[1][1]
    x, y, t = experience.dataset[0]
    assert x.shape == (1, 8, 8) and isinstance(y, int) and t == 1


def test_a_one_head_network_answers_model_x_and_a_multi_head_one_gives_every_head():
    spec = RunSpec("heads", _scenario("class-IL"), ComponentSpec(name="naive"), 0, TRAINING, "cpu")
    one_head = build_scenario(spec, None).model
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(one_head(x), one_head(x, torch.tensor([0, 1, 2, 0])))
    multi = build_scenario(RunSpec("heads", _scenario("task-IL"), ComponentSpec(name="naive"), 0, TRAINING, "cpu"),
                           None).model
    multi.train()
    for experience in scheduled_experiences(build_scenario(
            RunSpec("heads", _scenario("task-IL"), ComponentSpec(name="naive"), 0, TRAINING, "cpu"), None)):
        multi.adaptation(experience[1])
    outputs = multi(x)  # Avalanche's convention without task labels: every known task's head
    assert isinstance(outputs, dict) and sorted(outputs) == [0, 1, 2]
    assert torch.equal(outputs[2], multi(x, 2))


def test_a_strategy_class_runs_without_checkpoints_and_says_so(tmp_path):
    from forgetbench.benchmark.front.cli import main
    import json

    suite = tiny_suite(scenarios=[{"name": "split", "params": {"dataset": "digits", "tasks": 2, "setting": "class-IL",
                                                               "mask_unseen_classes": False}}],
                       strategies=[{"name": "avalanche.DER", "params": {"mem_size": 50}}],
                       training={**tiny_suite()["training"], "checkpoint": True})
    path = tmp_path / "suite.yaml"
    import yaml

    path.write_text(yaml.safe_dump(suite))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    record = json.loads(next((tmp_path / "out" / "runs").rglob("result.json")).read_text())
    assert record["status"] == "ok"
    assert any("checkpointing off: FastDER keep state" in w for w in record["warnings"])
