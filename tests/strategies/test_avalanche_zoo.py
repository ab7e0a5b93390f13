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
from forgetbench.benchmark.perf.measurements.avalanche_vs_own_loop import own_loop_strategy
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
    "EWC": {"ewc_lambda": 10_000.0},
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
    params = {
        "dataset": "digits",
        "tasks": 3,
        "classes_per_task": 2,
        "trunk": "mlp",
        "widths": [32],
        "setting": setting,
    }
    if setting == "class-IL":
        params["mask_unseen_classes"] = False
    return ComponentSpec(name="split", params=params)


def _setting_for(name: str) -> str:
    """task-IL unless the method needs what only class-IL has (one head, labels no two tasks share; then class-IL
    with every output unit live)."""
    return "class-IL" if set(REQUIRES.get(name, {})) - {"task_heads"} else "task-IL"


# Methods whose run equals naive's here, and why (every other method must change the matrix).
SAME_AS_NAIVE = {
    "Naive": "it is naive",
    "SynapticIntelligence": "Avalanche 0.6.0's SI stores `param.detach().cpu()`, a view of the live weights on CPU, "
    "so its path integral is 0 (docs/studies/zoo.md)",
}


def _runnable() -> list[str]:
    return [e.name[len(PREFIX) :] for e in STRATEGIES if e.name.startswith(PREFIX) and not e.extra.get("unavailable")]


def test_thirty_strategies_run_and_the_unavailable_say_why():
    listed = [e for e in STRATEGIES if not e.extra.get("unavailable")]
    assert len(listed) >= 30
    for name, reason in UNAVAILABLE.items():
        if PREFIX + name in STRATEGIES:
            assert STRATEGIES.get(PREFIX + name).extra["unavailable"] == reason


@pytest.mark.parametrize("name", _runnable())
def test_every_listed_avalanche_method_runs(name):
    spec = RunSpec(
        "zoo",
        _scenario(_setting_for(name)),
        ComponentSpec(name=PREFIX + name, params=ARGS.get(name, {})),
        0,
        TRAINING,
        "cpu",
    )
    resolve_config(
        {**tiny_suite(), "scenarios": [spec.scenario.model_dump()], "strategies": [spec.strategy.model_dump()]}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Avalanche's own deprecation chatter
        record = run(spec, data_root=None)
    assert record.status == "ok", (name, record.error)
    assert len(record.accuracy_matrix) == 3 and all(len(row) == 3 for row in record.accuracy_matrix)
    naive = run(RunSpec("zoo", spec.scenario, ComponentSpec(name="naive"), 0, TRAINING, "cpu"), data_root=None)
    # the method acts on this scenario (a replay that never replays, a penalty that is 0, would equal naive)
    assert (record.accuracy_matrix == naive.accuracy_matrix) == (name in SAME_AS_NAIVE), (name, SAME_AS_NAIVE.get(name))


def _avalanche_reference(spec: RunSpec, cls: type, args: dict) -> list[list[float]]:
    """Avalanche's own ``cls`` and training loop on the run's scenario, model and seed; only the order in which the
    training batches are drawn is pinned to forgetbench's (:class:`SeededBatches`, the same generator and seed)."""
    seed_everything(spec.seed)
    scenario = build_scenario(spec, None)
    strategy = own_loop_strategy(cls, scenario, args, spec.training, spec.seed, torch.device("cpu"))
    matrix = []
    for _, experience in scheduled_experiences(scenario):
        # forgetbench's default `training.reset_optimizer: true`, as Avalanche's own argument
        strategy.train(experience, reset_optimizer_state=spec.training.reset_optimizer)
        matrix.append([evaluate(strategy.model, task, 256, torch.device("cpu")) for task in scenario.tasks])
    return matrix


@pytest.mark.parametrize(
    ("name", "setting"),
    [("GEM", "task-IL"), ("AGEM", "task-IL"), ("DER", "class-IL"), ("ER_ACE", "class-IL"), ("ER_ACE", "task-IL")],
)
def test_forgetbench_run_equals_avalanches_own_loop(name, setting):
    import avalanche.training as training

    args = ARGS[name]
    spec = RunSpec(
        "equivalence", _scenario(setting), ComponentSpec(name=PREFIX + name, params=args), 0, TRAINING, "cpu"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record = run(spec, data_root=None)
        reference = _avalanche_reference(spec, getattr(training, name), args)
    assert record.status == "ok", record.error
    assert torch.allclose(torch.tensor(record.accuracy_matrix), torch.tensor(reference), atol=1e-6), (
        record.accuracy_matrix,
        reference,
    )


def test_samples_of_a_scenario_dataset_are_avalanches_x_y_t():
    spec = RunSpec("items", _scenario("task-IL"), ComponentSpec(name="naive"), 0, TRAINING, "cpu")
    scenario = build_scenario(spec, None)
    experience = scheduled_experiences(scenario)[1][1]
    x, y, t = experience.dataset[0]
    assert x.shape == (1, 8, 8) and isinstance(y, int) and t == 1


def _trained_on_every_task(setting: str) -> torch.nn.Module:
    scenario = build_scenario(
        RunSpec("heads", _scenario(setting), ComponentSpec(name="naive"), 0, TRAINING, "cpu"), None
    )
    model = scenario.model.train()
    for _, experience in scheduled_experiences(scenario):
        model.adaptation(experience)  # Avalanche's bookkeeping of the tasks seen
    return model


def test_model_x_is_the_one_heads_logits_and_model_x_none_every_tasks_output():
    """`model(x)` (a plain module: DER, GSS, MIR) and `model(x, None)` (a MultiTaskModule: Avalanche's LwF) are both
    Avalanche's conventions; a one-head network answers each as its caller expects."""
    x = torch.randn(4, 1, 8, 8)
    one_head = _trained_on_every_task("class-IL")
    assert torch.equal(one_head(x), one_head(x, torch.tensor([0, 1, 2, 0])))
    every = one_head(x, None)
    assert isinstance(every, dict) and sorted(every) == [0, 1, 2] and torch.equal(every[1], one_head(x))
    multi = _trained_on_every_task("task-IL")
    outputs = multi(x, None)
    assert isinstance(outputs, dict) and sorted(outputs) == [0, 1, 2]
    assert torch.equal(outputs[2], multi(x, 2))
    with pytest.raises(ValueError, match="without task labels, but its tasks have heads of their own"):
        multi(x)


def test_a_strategy_class_runs_without_checkpoints_and_says_so(tmp_path):
    from forgetbench.benchmark.front.cli import main
    import json

    suite = tiny_suite(
        scenarios=[
            {
                "name": "split",
                "params": {"dataset": "digits", "tasks": 2, "setting": "class-IL", "mask_unseen_classes": False},
            }
        ],
        strategies=[{"name": "avalanche.DER", "params": {"mem_size": 50}}],
        training={**tiny_suite()["training"], "checkpoint": True},
    )
    path = tmp_path / "suite.yaml"
    import yaml

    path.write_text(yaml.safe_dump(suite))
    assert main(["run", "--no-report", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    record = json.loads(next((tmp_path / "out" / "runs").rglob("result.json")).read_text())
    assert record["status"] == "ok"
    assert any("checkpointing off: FastDER keep state" in w for w in record["warnings"])


def test_the_memory_of_avalanches_buffers_is_counted():
    """An Avalanche plugin's memories and a strategy class's buffers are outside the plugin protocol; the record's
    regularizer memory counts the samples they hold (GEM: patterns_per_exp images per task; DER: mem_size images with
    their logits) and the scratch they keep, not the training data they index into (~300 images per task here)."""
    image = 8 * 8 * 4
    gem = run(
        RunSpec(
            "memory", _scenario("task-IL"), ComponentSpec(name="avalanche.GEM", params=ARGS["GEM"]), 0, TRAINING, "cpu"
        ),
        data_root=None,
    )
    stored = 3 * 64 * image  # 3 experiences x 64 patterns
    assert stored <= gem.memory.regularizer_bytes <= 2 * stored
    der = run(
        RunSpec(
            "memory",
            _scenario("class-IL"),
            ComponentSpec(name="avalanche.DER", params={"mem_size": 100}),
            0,
            TRAINING,
            "cpu",
        ),
        data_root=None,
    )
    stored = 100 * (image + 6 * 4)  # 100 samples, each an 8x8 image and its 6 logits
    assert stored <= der.memory.regularizer_bytes <= 2 * stored


def test_the_zoo_table_lists_each_pair_in_suite_order_with_memory(tmp_path, capsys):
    """``forgetbench table zoo`` renders a results folder: one row per (scenario, strategy) that ran, in the suite's order;
    the pair refused at config time (DER on task-IL) has no row."""
    import yaml

    from forgetbench.benchmark.front.cli import main

    suite = tiny_suite(
        scenarios=[
            {"name": "split", "label": "til", "params": {"dataset": "digits", "tasks": 2}},
            {
                "name": "split",
                "label": "cil",
                "params": {"dataset": "digits", "tasks": 2, "setting": "class-IL", "mask_unseen_classes": False},
            },
        ],
        strategies=[
            {"name": "avalanche.GEM", "params": ARGS["GEM"]},
            {"name": "naive"},
            {"name": "avalanche.DER", "params": {"mem_size": 50}},
        ],
    )
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--no-report"]) == 0
    capsys.readouterr()
    assert main(["table", "zoo", str(tmp_path / "out")]) == 0
    table = capsys.readouterr().out
    rows = [line.split(" | ")[:2] for line in table.splitlines()[2:]]
    assert rows == [
        ["| til", "avalanche.GEM"],
        ["| til", "naive"],
        ["| cil", "avalanche.GEM"],
        ["| cil", "naive"],
        ["| cil", "avalanche.DER"],
    ]
    assert "| memory |" in table.splitlines()[0] and "| 0 B |" in table  # naive keeps nothing
