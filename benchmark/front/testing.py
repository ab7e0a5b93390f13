"""Contract tests any strategy must pass, as a reusable pytest helper.

    from forgetbench.benchmark.front.testing import check_strategy

    def test_my_strategy():
        check_strategy("my_strategy", {"strength": 2.0})

:func:`check_strategy` runs the strategy on a tiny offline scenario (by default ``split`` on
scikit-learn's digits: 3 tasks of 2 classes, an MLP with one hidden layer of 16 units, one epoch) and
raises ``AssertionError`` with a message naming the strategy and what broke, unless

1. the runner's result record has the schema: every key, status ``ok``, an accuracy matrix of one
   row per recorded turn and one column per task with values in [0, 1];
2. two runs with the same seed give identical accuracy matrices (and initial accuracies);
3. training changes the weights (``strategy.model.state_dict()`` after training != before);
4. evaluation does not change them (the harness's evaluation and Avalanche's ``eval`` leave
   ``state_dict()`` bit-identical).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from forgetbench.benchmark.core.config import ComponentSpec
from forgetbench.benchmark.data.datasets import default_data_root
from forgetbench.benchmark.train.harness import Harness, evaluate
from forgetbench.benchmark.core.record import RecordError, RunRecord
from forgetbench.benchmark.core.components import STRATEGIES
from forgetbench.benchmark.run.spec import RunSpec
from forgetbench.benchmark.run.assemble import build_run_strategy, seeded_scenario
from forgetbench.benchmark.run.runner import run
from forgetbench.benchmark.run.schedule import scheduled_experiences, train_schedule
from forgetbench.benchmark.core.training import TrainingConfig

DEFAULT_SCENARIO: dict[str, Any] = {
    "name": "split",
    "params": {"dataset": "digits", "tasks": 3, "classes_per_task": 2, "trunk": "mlp", "widths": [16]},
}
TRAINING = TrainingConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, epochs=1, eval_batch_size=256)
RESULT_KEYS = frozenset(
    {
        "schema_version",
        "run_id",
        "suite",
        "scenario",
        "strategy",
        "seed",
        "status",
        "error",
        "experiences",
        "accuracy_matrix",
        "init_accuracy",
        "timing",
        "environment",
        "config",
        "turn_accuracy",
    }
)


def check_strategy(name: str, params: dict[str, Any] | None = None, scenario: dict[str, Any] | None = None) -> None:
    """Run the contract checks on strategy ``name`` with ``params`` (raises AssertionError on failure).

    ``scenario`` = ``{"name": ..., "params": {...}}`` replaces the default tiny ``split`` scenario.
    Runs with one torch thread (restored afterwards): on models this small, thread hand-offs cost
    more than the arithmetic, more than tenfold on a busy machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_strategy(name, params, scenario)
    finally:
        torch.set_num_threads(threads)


def _check_strategy(name: str, params: dict[str, Any] | None, scenario: dict[str, Any] | None) -> None:
    who = f"check_strategy({name!r})"
    assert name in STRATEGIES, f"{who}: not registered; registered strategies: {', '.join(STRATEGIES.names())}"
    entry = STRATEGIES.get(name)
    try:
        entry.parse_params(params)
    except ValidationError as exc:
        raise AssertionError(f"{who}: invalid params {params!r}: {exc}") from None
    scenario = scenario or DEFAULT_SCENARIO
    requires = entry.extra.get("requires") or {}
    if requires:
        from forgetbench.benchmark.core.components import SCENARIOS

        traits = getattr(
            SCENARIOS.get(scenario["name"]).parse_params(scenario.get("params")), "model_traits", lambda: None
        )()
        lacking = sorted(set(requires) - set(traits)) if traits is not None else []
        assert not lacking, (
            f"{who}: the scenario {scenario['name']!r} lacks {', '.join(lacking)} "
            f"({'; '.join(requires[t] for t in lacking)}): pass scenario= one that has it"
        )
    spec = RunSpec(
        suite="check_strategy",
        scenario=ComponentSpec(**scenario),
        strategy=ComponentSpec(name=name, params=dict(params or {})),
        seed=0,
        training=TRAINING,
        device="cpu",
    )
    root = default_data_root()

    first = run(spec, root)
    if first.status == "collapsed":  # nothing learned: weights that never moved is the sharper diagnosis
        _check_weights(who, spec, root)
    _check_schema(who, first)
    second = run(spec, root)
    assert second.status == "ok", f"{who}: second run not ok: {second.error}"
    assert first.init_accuracy == second.init_accuracy, (
        f"{who}: same seed, different initial accuracies: {first.init_accuracy} vs {second.init_accuracy}"
    )
    assert first.accuracy_matrix == second.accuracy_matrix, (
        f"{who}: same seed, different accuracy matrices:\n{first.accuracy_matrix}\nvs\n{second.accuracy_matrix}"
    )
    _check_weights(who, spec, root)


def _check_schema(who: str, record: RunRecord) -> None:
    assert record.status == "ok", f"{who}: run status {record.status!r}: {record.error}\n{record.traceback or ''}"
    raw = record.to_dict()
    missing = RESULT_KEYS - raw.keys()
    assert not missing, f"{who}: result record lacks keys {sorted(missing)}"
    try:
        RunRecord.from_dict(raw)  # what a reader of result.json gets back
    except RecordError as exc:
        raise AssertionError(f"{who}: not a valid run record: {exc}") from None
    tasks = len(record.experiences)
    R = np.asarray(record.accuracy_matrix, dtype=float)
    assert R.ndim == 2 and R.shape[0] >= 1 and R.shape[1] == tasks, (
        f"{who}: accuracy_matrix has shape {R.shape}, expected (recorded turns, {tasks} tasks)"
    )
    assert np.isfinite(R).all() and ((R >= 0) & (R <= 1)).all(), f"{who}: accuracies outside [0, 1]: {R}"
    assert len(record.init_accuracy) == tasks, f"{who}: init_accuracy needs one entry per task"
    assert record.timing.steps > 0, f"{who}: no training step was taken"


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    keys = before.keys() | after.keys()
    return sorted(k for k in keys if k not in before or k not in after or not torch.equal(before[k], after[k]))


def _check_weights(who: str, spec: RunSpec, root: Path) -> None:
    """Train every turn as the runner does; weights must move in training and stay put in evaluation."""
    scenario = seeded_scenario(spec, root)
    device = torch.device(spec.device)
    harness = Harness()
    strategy = build_run_strategy(spec, scenario, scenario.model.to(device), device, harness)
    turns = scheduled_experiences(scenario)

    initial = _state(strategy.model)
    for _ in train_schedule(strategy, harness, turns, spec.training):
        pass
    trained = _state(strategy.model)
    assert _changed(initial, trained), f"{who}: training left every weight of strategy.model unchanged"

    for task in scenario.tasks:
        evaluate(strategy.model, task, spec.training.eval_batch_size, device)
    moved = _changed(trained, _state(strategy.model))
    assert not moved, f"{who}: the harness's evaluation changed {moved}"
    strategy.eval(scenario.avalanche_benchmark().test_stream)
    moved = _changed(trained, _state(strategy.model))
    assert not moved, f"{who}: Avalanche's strategy.eval changed {moved}"


def check_scenario(
    name: str, params: dict[str, Any] | None = None, data_root: Path | None = None, seed: int = 0
) -> None:
    """The scenario contract (raises AssertionError naming the scenario and what broke), for
    built-in and plug-in scenarios alike:

    1. ``params`` validate and the scenario builds under ``seed``, with at least one task and one turn;
    2. every turn records a non-empty ``used_params`` set of the model's own parameter names, and
       each task's set is exactly what gradient reachability finds on its data among the parameters
       training can move (:func:`forgetbench.benchmark.data.detect.used_parameters`; frozen ones are left out): a
       declared set that misses or invents a shared parameter would mislead every regularizer;
    3. the tasks' data fit the model: the model maps a batch of each task's train and test inputs
       to ``(batch, classes)`` logits that cover the task's labels;
    4. it is deterministic: a second build under the same seed gives identical data, schedule,
       ``used_params`` and initial weights.
    """
    from forgetbench.benchmark.data.detect import used_parameters
    from forgetbench.benchmark.core.components import SCENARIOS

    entry = SCENARIOS.get(name)
    try:
        parsed = entry.parse_params(params or {})
    except ValidationError as exc:
        raise AssertionError(f"scenario {name!r}: invalid params: {exc}") from None
    root = data_root if data_root is not None else default_data_root()
    spec = RunSpec(
        "check_scenario",
        ComponentSpec(name=name, params=parsed.model_dump()),
        ComponentSpec(name="naive"),
        seed,
        TRAINING,
        "cpu",
    )
    first, second = seeded_scenario(spec, root), seeded_scenario(spec, root)
    assert first.tasks and first.schedule, f"scenario {name!r}: no tasks or no training turns"
    assert len(first.tasks) == len(second.tasks) and first.schedule == second.schedule, (
        f"scenario {name!r}: tasks or schedule differ between two builds with seed {seed}"
    )
    for a, b in zip(first.tasks, second.tasks):
        same = all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("train_x", "train_y", "test_x", "test_y"))
        assert same and a.used_params == b.used_params and a.model_key == b.model_key, (
            f"scenario {name!r}: task {a.name} differs between two builds with seed {seed}"
        )
    sa, sb = first.model.state_dict(), second.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), (
        f"scenario {name!r}: initial weights differ between two builds with seed {seed}"
    )
    names = {n for n, _ in first.model.named_parameters()}
    for k, used in enumerate(first.turn_used_params):
        assert used, f"scenario {name!r}: turn {k} uses no parameters"
        assert used <= names, f"scenario {name!r}: turn {k} names unknown parameters {sorted(used - names)[:5]}"
    for task in first.tasks:
        probe = task.train_x[:8]
        found = used_parameters(first.model, probe, task.model_key)
        assert found == task.used_params, (
            f"scenario {name!r}: task {task.name}'s used_params differ from what its forward pass reaches: "
            f"declared but unused {sorted(task.used_params - found)[:5]}, used but undeclared {sorted(found - task.used_params)[:5]}"
        )
        for split, x, y in (("train", task.train_x, task.train_y), ("test", task.test_x, task.test_y)):
            assert len(x) == len(y) and len(y) > 0, f"scenario {name!r}: task {task.name} has no {split} data"
            with torch.no_grad():
                out = second.model.eval().forward_single_task(x[:8], task.model_key)
            assert out.dim() == 2 and out.shape[0] == min(8, len(x)), (
                f"scenario {name!r}: task {task.name}'s {split} inputs {tuple(x.shape[1:])} give output "
                f"{tuple(out.shape)}, expected (batch, classes)"
            )
            assert int(y.max()) < out.shape[1], (
                f"scenario {name!r}: task {task.name}'s {split} labels reach {int(y.max())} but the model "
                f"gives {out.shape[1]} logits"
            )
