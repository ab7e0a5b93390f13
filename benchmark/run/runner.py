"""One run: (scenario, strategy, seed) -> a result record.

The runner seeds everything, builds the scenario (data + model family) and the strategy, measures
the untrained model on every task, then trains the schedule turn by turn
(:func:`forgetbench.benchmark.run.schedule.train_schedule`); after each recorded turn i it evaluates every task j
to fill the accuracy matrix ``R[i][j]``, and after every turn it records the accuracy of the model
just trained (``turn_accuracy``); the models a scenario asks to have trained alone (a search's ground truth, its
derived architecture) follow, and the scenario's :meth:`~forgetbench.benchmark.data.scenarios.Scenario.summarize` adds its
own keys (e.g. the supernet's ``err1``/``err2``). An adaptive scenario (a NAS search) decides its turns
while training: whenever the turns so far are trained the runner asks it for more
(:meth:`~forgetbench.benchmark.data.scenarios.Scenario.next_turns`, handing it the harness's evaluation) until it has none. A raised exception or a non-finite loss ends the
run with status ``failed`` or ``diverged``; a run that ends at chance level on every task it trained is
``collapsed``. The caller decides what to do next.

The run's parts live beside it: :mod:`~forgetbench.benchmark.run.spec` (the spec, seeding, the empty
record), :mod:`~forgetbench.benchmark.run.assemble` (scenario and strategy from the spec),
:mod:`~forgetbench.benchmark.run.trained_alone` (models trained alone) and
:mod:`~forgetbench.benchmark.run.checkpoint`; this module is the turn loop, resume and failure handling.

``run`` is a pure function of its spec (plus the data it reads), so executors may ship specs to
other processes or machines and send the records back; only the driver writes result files. The
one side effect is the optional checkpoint (``training.checkpoint``, :mod:`forgetbench.benchmark.run.checkpoint`),
written atomically after each experience to the path the caller gives and read back to resume.
"""

from __future__ import annotations

import functools
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from forgetbench.benchmark.core.record import AttributionEntry, CurvePoint, Memory, RunRecord, TurnAccuracy
from forgetbench.benchmark.data.datasets import recording_data_reads
from forgetbench.benchmark.data.scenarios import Scenario
from forgetbench.benchmark.data.scenarios.search_splits import search_data_reused
from forgetbench.benchmark.run import checkpoint as checkpoints
from forgetbench.benchmark.run.attribution import Attribution
from forgetbench.benchmark.run.assemble import build_run_strategy, seeded_scenario
from forgetbench.benchmark.run.pruning import InsideChecks, Pruned, check_after_experience, checks_apply
from forgetbench.benchmark.run.trained_alone import retrained_scores
from forgetbench.benchmark.run.schedule import scheduled_experiences, train_schedule
from forgetbench.benchmark.run.spec import RunSpec, new_record, now, resolve_device
from forgetbench.benchmark.train.template import FastSupervisedTemplate
from forgetbench.benchmark.train.harness import (
    ProgressHook,
    CurveRecorder,
    DivergedError,
    Harness,
    Scores,
    chance_message,
    collapse_message,
    evaluate,
    tasks_at_chance,
)
from forgetbench.strategies.passes import IMPORTANCE_SECONDS
from forgetbench.strategies.plugin import PluginProtocol, held_tensor_bytes

__all__ = ["run", "ProgressCallback", "regularizer_bytes", "strategy_extra_results"]

ProgressCallback = Callable[[str], None]


def run(
    spec: RunSpec,
    data_root: Path,
    progress: ProgressCallback | None = None,
    checkpoint: Path | None = None,
    cache_dir: Path | None = None,
) -> RunRecord:
    """Execute one run and return its result record (never raises for a failing strategy).

    With ``spec.training.checkpoint`` and a ``checkpoint`` path, the state after each experience
    is saved there and a matching checkpoint found there is resumed from. ``cache_dir`` is the
    results folder whose ground-truth cache the standalone references use
    (see :func:`~forgetbench.benchmark.run.trained_alone.standalone_accuracy`).
    """
    device = resolve_device(spec.device)
    record = new_record(spec, device)
    if not spec.training.checkpoint:
        checkpoint = None
    try:
        _execute(spec, data_root, device, record, progress, checkpoint, cache_dir)
    except DivergedError as exc:
        record.status, record.error = "diverged", str(exc)
    except Pruned as exc:
        record.status, record.error = "pruned", str(exc)
        record.timing.steps += exc.steps  # the part of the experience it was stopped inside
        record.timing.train_seconds += exc.train_seconds
        record.timing.eval_seconds += exc.eval_seconds
    except Exception as exc:  # noqa: BLE001 - any strategy bug must be recorded, not fatal
        record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
        record.traceback = traceback.format_exc(limit=20)
    record.finished_at = now()
    return record


def build_problem(spec: RunSpec, data_root: Path) -> str | None:
    """What raises when the run's scenario, model, harness and strategy are built as :func:`run` builds them,
    nothing trained (None: they build): a check that costs a build, not a run."""
    device = resolve_device(spec.device)
    record = new_record(spec, device)
    try:
        scenario = scenario_of(spec, data_root, record)
        model = scenario.model.to(device)
        build_run_strategy(spec, scenario, model, device, harness_of(spec, scenario, record, device, None, None))
    except Exception as exc:  # noqa: BLE001 - whatever the user's code raises is the answer
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def _execute(
    spec: RunSpec,
    data_root: Path,
    device: torch.device,
    record: RunRecord,
    progress,
    checkpoint: Path | None,
    cache_dir: Path | None = None,
) -> None:
    """One run, in named steps: the scenario; the harness and the strategy; the untrained scores; a resume; the
    turns (a search's as it decides them); what the run adds after its turns."""
    scenario = scenario_of(spec, data_root, record)
    model = scenario.model.to(device)
    attribution = (
        Attribution(spec.training.attribution, seed=spec.seed, batch_size=spec.training.eval_batch_size)
        if spec.training.attribution
        else None
    )
    if attribution is not None:
        record.attribution = []
    harness = harness_of(spec, scenario, record, device, attribution, progress)
    strategy = build_run_strategy(spec, scenario, model, device, harness)
    t0 = time.perf_counter()
    batch = spec.training.eval_batch_size
    record.init_accuracy = [evaluate(strategy.model, task, batch, device) for task in scenario.tasks]
    record.timing.eval_seconds += time.perf_counter() - t0
    record.turn_accuracy = []
    if harness.recorder is not None:
        record.curves = []
    start = 0
    if checkpoint is not None and scenario.adaptive and scenario.state_dict() is None:
        _warn(
            record,
            f"checkpointing off: the scenario decides its turns while training (a search), and "
            f"{type(scenario).__name__} declares no state_dict()/load_state_dict()",
        )
        checkpoint = None
    if checkpoint is not None:
        start, checkpoint = _resume(checkpoint, spec, scenario, strategy, harness, record, attribution)
    if record.timing.importance_seconds is not None:  # the importance passes' running total goes on from there
        setattr(strategy, IMPORTANCE_SECONDS, record.timing.importance_seconds)
    turns = _train_every_turn(
        spec, scenario, strategy, harness, record, progress, checkpoint, attribution, start, device
    )
    after_the_turns(spec, data_root, device, scenario, strategy, harness, record, turns, cache_dir)


def scenario_of(spec: RunSpec, data_root: Path, record: RunRecord) -> Scenario:
    """The run's scenario, and what the record says of it before training: the data read, the experiences, the
    split the accuracies are on and its sizes, the rows a complete run has, the scenario type."""
    with recording_data_reads() as reads:
        scenario = seeded_scenario(spec, data_root)
    if reads:  # the registered datasets and corpora it read (a custom benchmark's own data is not digested)
        record.environment["data"] = ", ".join(f"{name}={digest}" for name, digest in sorted(reads.items()))
    record.experiences = [task.name for task in scenario.tasks]
    if record.evaluated_on is not None:  # a trial's or probe's split: its size is how finely it can tell points apart
        record.evaluated_on.samples = [len(task.test_y) for task in scenario.tasks]
    if not scenario.adaptive:  # a search decides its turns, and so its rows, while it runs
        record.rows_planned = sum(1 for turn in scenario.schedule if turn.record)
    if scenario.meta.get("scenario_type"):
        record.scenario_type = str(scenario.meta["scenario_type"])
    return scenario


def harness_of(
    spec: RunSpec,
    scenario: Scenario,
    record: RunRecord,
    device: torch.device,
    attribution: Attribution | None,
    progress,
) -> Harness:
    """The run's harness plugins: forgetting curves (and their attribution points), progress, a trial's checks
    inside its experiences."""
    batch = spec.training.eval_batch_size
    harness = Harness()
    if spec.training.eval_every:
        harness.recorder = CurveRecorder(
            spec.training.eval_every,
            lambda net, j: evaluate(net, scenario.tasks[j], batch, device),
            on_point=None
            if attribution is None
            else lambda net, turn, iteration: _attribution_of(record).extend(
                attribution.measure(net, turn, scenario.schedule[turn].task, scenario.tasks, device, iteration)
            ),
        )
    if progress is not None:
        harness.progress = ProgressHook(progress, spec.run_id, len(scenario.schedule), harness.budget)
    if spec.prune is not None and spec.prune.points and checks_apply(scenario):
        harness.pruner = InsideChecks(spec.prune, record, scenario, harness, batch, device)
    return harness


def _train_every_turn(
    spec: RunSpec,
    scenario: Scenario,
    strategy,
    harness: Harness,
    record: RunRecord,
    progress,
    checkpoint: Path | None,
    attribution: Attribution | None,
    start: int,
    device: torch.device,
) -> list:
    """Train the schedule from turn ``start``; a search (adaptive) then asks for its next turns until it has none.
    Returns every turn trained."""
    timing = record.timing  # after a resume: the interrupted part's, which this part adds to
    turns = scheduled_experiences(scenario)
    before = [turn.task for turn, _ in turns[:start]]
    scores = Scores(strategy, spec.training.eval_batch_size, device)  # after a resume: nothing scored with its weights
    while True:
        _train_turns(
            spec, scenario, strategy, harness, turns, start, before, record, progress, checkpoint, scores, attribution
        )
        if not scenario.adaptive:
            return turns
        t0 = time.perf_counter()  # the search's own work (e.g. its controller's updates), apart from training
        more = scenario.next_turns(scores)  # the weights the last turn's scores were read from
        timing.search_seconds = (timing.search_seconds or 0.0) + time.perf_counter() - t0
        if not more:
            return turns
        start, before = len(turns), [turn.task for turn, _ in turns]
        scenario.schedule.extend(more)
        turns = turns + scheduled_experiences(scenario, start)


def after_the_turns(
    spec: RunSpec,
    data_root: Path,
    device: torch.device,
    scenario: Scenario,
    strategy,
    harness: Harness,
    record: RunRecord,
    turns: list,
    cache_dir: Path | None,
) -> None:
    """What the record gains after the turns: a search's tasks, its retrainings, the scenario's and the strategy's
    own results, the regularizer's memory, and whether the run collapsed."""
    if scenario.adaptive:  # a search may add tasks while it runs (each newly sampled architecture)
        record.experiences = [task.name for task in scenario.tasks]
    retrainings = scenario.retrainings()
    if retrainings:
        t0 = time.perf_counter()
        with search_data_reused():  # each retraining rebuilds the scenario: its data split once
            for retraining in retrainings:
                retraining.report(retrained_scores(spec, data_root, device, retraining, cache_dir))
        record.timing.retrain_seconds = time.perf_counter() - t0
    record.add_results(scenario.summarize(record), source=f"scenario {spec.scenario.name}.summarize()")
    record.memory = Memory(regularizer_bytes=regularizer_bytes(strategy, harness))
    record.add_results(strategy_extra_results(strategy), source=f"strategy {spec.strategy.name}'s extra_results()")
    _judge_chance(record, scenario, sorted({turn.task for turn, _ in turns}))


def _warn(record: RunRecord, message: str) -> None:
    record.warnings = [*(record.warnings or []), message]


def _judge_chance(record: RunRecord, scenario: Scenario, seen: list[int]) -> None:
    """``collapsed`` when every task trained ends at chance (a finite loss, but nothing learned: its metrics
    would mislead); some tasks at chance while others are fine: kept and averaged, but never silently."""
    if not record.accuracy_matrix:
        return
    collapsed = collapse_message(record.accuracy_matrix[-1], scenario.tasks, seen)
    if collapsed is not None:
        record.status, record.error = "collapsed", collapsed
        return
    at = tasks_at_chance(record.accuracy_matrix[-1], scenario.tasks, seen)
    if at:
        record.tasks_at_chance = at
        _warn(record, chance_message(record.accuracy_matrix, scenario.tasks, seen, at))


def _attribution_of(record: RunRecord) -> list[AttributionEntry]:
    if record.attribution is None:
        record.attribution = []
    return record.attribution


def _train_turns(
    spec: RunSpec,
    scenario: Scenario,
    strategy,
    harness: Harness,
    turns,
    start: int,
    before: list[int],
    record: RunRecord,
    progress,
    checkpoint: Path | None,
    scores: Scores,
    attribution: Attribution | None = None,
) -> None:
    """Train ``turns[start:]``, filling the record's accuracy rows, turn accuracies, timing and curves."""
    timing, device = record.timing, scores.device
    seen_seconds = attribution.seconds if attribution is not None else 0.0
    for done in train_schedule(strategy, harness, turns, spec.training, start=start, tasks_before=before):
        turn = done.turn
        record_turn(scenario, strategy, harness, record, done, scores)
        if attribution is not None:
            entries = _attribution_of(record)  # looked up here: a resume replaces the record's list
            if harness.recorder is not None:  # a curve point on the turn's last iteration is the after-turn one
                last = harness.recorder.steps
                while entries and (entries[-1].turn, entries[-1].iteration) == (done.index, last):
                    entries.pop()
            entries.extend(attribution.after_turn(strategy.model, done.index, turn.task, scenario.tasks, device))
            # this turn's attribution: its points inside the turn (also in eval_seconds) and the one after it
            timing.attribution_seconds = (timing.attribution_seconds or 0.0) + attribution.seconds - seen_seconds
            seen_seconds = attribution.seconds
        if checkpoint is not None:
            checkpoints.save(
                checkpoint,
                spec.resolved(),
                done.index,
                strategy,
                harness,
                record,
                scenario.state_dict(),
                attribution.state_dict() if attribution is not None else None,
            )
        if turn.record:
            check_after_experience(spec.prune, scenario, record, turn.task)


def record_turn(scenario: Scenario, strategy, harness: Harness, record: RunRecord, done, scores: Scores) -> None:
    """What a trained turn adds to the record: its seconds and steps, the curves so far, the accuracy row (a recorded
    turn) and the accuracy of the model just trained. Every path that trains turns (one run, a batch of seeds) fills
    the record through here."""
    timing, turn = record.timing, done.turn
    timing.train_seconds += done.train_seconds
    timing.eval_seconds += done.curve_seconds
    # a regularizer's importance passes (EWC, WPL, MAS: strategies/importance.py), inside train_seconds
    if hasattr(strategy, IMPORTANCE_SECONDS):
        timing.importance_seconds = getattr(strategy, IMPORTANCE_SECONDS)
    timing.steps += done.steps
    if harness.recorder is not None:
        record.curves = [CurvePoint(**point) for point in harness.recorder.curves]
    t0 = time.perf_counter()
    scores.weights_changed()
    if turn.record:
        row = [scores(task) for task in scenario.tasks]
        record.accuracy_matrix.append(row)
        just_trained = row[turn.task]
    else:
        just_trained = scores(scenario.tasks[turn.task])
    # Accuracy of the model trained in this turn, right after it (the supernet's err1).
    if record.turn_accuracy is None:
        record.turn_accuracy = []
    record.turn_accuracy.append(TurnAccuracy(turn=done.index, task=turn.task, accuracy=just_trained))
    timing.eval_seconds += time.perf_counter() - t0


def _resume(
    path: Path,
    spec: RunSpec,
    scenario: Scenario,
    strategy,
    harness: Harness,
    record: RunRecord,
    attribution: Attribution | None = None,
) -> tuple[int, Path | None]:
    """Restore a matching checkpoint; returns (experience to start at, where to keep checkpointing).

    A strategy with a plugin that declares no state cannot be checkpointed: the run goes on
    without checkpoints and says so. An unusable checkpoint is discarded and the run starts over.
    """
    missing = checkpoints.unsupported_plugins(strategy, harness)
    if missing:
        _warn(
            record,
            f"checkpointing off: {', '.join(missing)} keep state without declaring state_dict()/load_state_dict()",
        )
        return 0, None
    try:
        state = checkpoints.load(path, spec.resolved(), strategy, harness)
    except checkpoints.CheckpointError as exc:
        _warn(record, checkpoints.discard(path, str(exc)))
        return 0, path
    if state is None:
        return 0, path
    return checkpoints.restore(state, strategy, harness, record, scenario, attribution), path


def strategy_extra_results(strategy) -> dict:
    """Extra result keys the template and its plugins report through ``extra_results()`` (merged into the
    record by :meth:`~forgetbench.benchmark.core.record.RunRecord.add_results`, which refuses a clash)."""
    extras: dict = {}
    for source in (strategy, *strategy.plugins):
        if isinstance(source, PluginProtocol) or callable(getattr(source, "extra_results", None)):
            reported = source.extra_results()
            clash = sorted(set(reported) & set(extras))
            if clash:
                raise ValueError(f"extra_results() of {type(source).__name__} repeats result keys {clash}")
            extras.update(reported)
    return extras


def regularizer_bytes(strategy, harness: Harness | None = None) -> int:
    """Bytes the strategy's plugins must keep between experiences: their ``state_bytes()``; for a plugin outside the
    protocol (an Avalanche plugin) and a template that keeps state of its own (``undeclared_state``: an Avalanche
    strategy class's buffers), the bytes of the tensors they hold (:func:`held_tensor_bytes`)."""
    # without the run's harness (a test's bare strategy) its plugins are not told apart: they hold a scalar or two
    own = checkpoints.strategy_plugins(strategy, harness or Harness())
    skip = (
        strategy.model,
        strategy.optimizer,
        getattr(strategy, "experience", None),
        getattr(strategy, "adapted_dataset", None),
        getattr(strategy, "dataloader", None),
    )
    total = sum(int(p.state_bytes()) if isinstance(p, PluginProtocol) else held_tensor_bytes(p, skip) for p in own)
    if getattr(strategy, "undeclared_state", False):
        template_keys = _plain_template_attributes()
        total += held_tensor_bytes({k: v for k, v in vars(strategy).items() if k not in template_keys}, skip)
    return total


@functools.cache
def _plain_template_attributes() -> frozenset[str]:
    """Attribute names every forgetbench template has (a strategy class's own state is what it adds to these)."""
    model = torch.nn.Linear(1, 1)
    plain = FastSupervisedTemplate(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), evaluator=None)
    return frozenset(vars(plain)) | {"plugins", "mbatch", "mb_output", "loss"}
