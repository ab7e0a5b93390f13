"""Checkpoint resume: a run interrupted after an experience and rerun gives the uninterrupted record.

Every built-in strategy (taken from the registry), on a small split and on two_model. The crash is
injected right after a checkpoint is written (the state a SIGKILL at that moment leaves on disk);
the rerun builds everything afresh from the spec and must reproduce the uninterrupted run's
record exactly, apart from wall-clock fields and ``resumed_from_experience``. A real SIGKILL of a
worker process is exercised for the strategies whose state lives outside the model.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from forgetbench.benchmark.run import checkpoint as checkpoints
from forgetbench.benchmark.core import store
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
from forgetbench.benchmark.run.spec import RunSpec
from forgetbench.benchmark.run.runner import run
from conftest import read_json, tiny_suite
from helpers import TINY_SEARCH, TINY_TWO_MODEL, builtin_strategies, needs_traits, toy_text_scenario

BUILT_INS = [name for name in builtin_strategies() if not needs_traits(name)]  # the rest: on text, below
WALL_CLOCK = ("started_at", "finished_at", "resumed_from_experience", "warnings")
TIMING_WALL_CLOCK = ("train_seconds", "eval_seconds", "standalone_seconds", "attribution_seconds", "importance_seconds")
TRAINING = TrainingConfig(
    optimizer="sgd", lr=0.02, momentum=0.9, batch_size=32, epochs=1, eval_batch_size=256, eval_every=15, checkpoint=True
)
SCENARIOS = {
    "split": ComponentSpec(
        name="split", params={"dataset": "digits", "tasks": 4, "classes_per_task": 2, "widths": [16]}
    ),
    "two_model": ComponentSpec(name="two_model", params=TINY_TWO_MODEL),
    "supernet": ComponentSpec(
        name="supernet",
        params={
            "dataset": "digits",
            "layers": 2,
            "ops": 2,
            "width": 16,
            "architectures": 3,
            "rounds": 2,
            "steps_per_turn": 10,
            "standalone": True,
        },
    ),
}


class Killed(RuntimeError):
    """Stands for the SIGKILL: raised right after checkpoint ``at`` is on disk."""


def comparable(record: RunRecord) -> dict:
    raw = record.to_dict()
    out = {k: v for k, v in raw.items() if k not in WALL_CLOCK}
    out["timing"] = {k: v for k, v in raw["timing"].items() if k not in TIMING_WALL_CLOCK}
    return out


def interrupted_then_resumed(
    spec: RunSpec, path: Path, at: int, monkeypatch, data_root: Path = Path(".")
) -> tuple[dict, dict]:
    save = checkpoints.save

    def save_then_die(target, resolved, completed, *args, **kwargs):
        save(target, resolved, completed, *args, **kwargs)
        if completed == at:
            raise Killed(f"killed after experience {at}")

    with monkeypatch.context() as patch:
        patch.setattr(checkpoints, "save", save_then_die)
        crashed = run(spec, data_root, checkpoint=path)
    assert crashed.status == "failed" and "Killed" in crashed.error, crashed.traceback
    path.with_suffix(".interrupted").write_bytes(path.read_bytes())
    return crashed, run(spec, data_root, checkpoint=path)


RESUME_POINTS = [("split", 1), ("two_model", 0), ("two_model", 1)]


# the inner loop resumes each built-in at one of the three points (in turn: each point by a third of them), the full
# tier every built-in at every point
@pytest.mark.parametrize(
    "name, scenario, at",
    [
        pytest.param(name, *point, marks=[] if RESUME_POINTS.index(point) == i % 3 else [pytest.mark.slow])
        for i, name in enumerate(BUILT_INS)
        for point in RESUME_POINTS
    ],
    ids=lambda value: str(value),
)
def test_resumed_run_equals_the_uninterrupted_one(name, scenario, at, tmp_path, monkeypatch):
    spec = RunSpec("resume", SCENARIOS[scenario], ComponentSpec(name=name), 0, TRAINING, "cpu")
    reference = run(spec, Path("."), checkpoint=tmp_path / "reference.pt")
    assert reference.status == "ok", reference.traceback
    assert reference.resumed_from_experience is None

    _, resumed = interrupted_then_resumed(spec, tmp_path / "checkpoint.pt", at, monkeypatch)
    assert resumed.status == "ok", resumed.traceback
    assert resumed.resumed_from_experience == at + 1
    assert resumed.accuracy_matrix == reference.accuracy_matrix
    assert comparable(resumed) == comparable(reference)


# olora's and osf's adapters travel as the others' do (2-5 s a case): the full tier resumes them, the inner loop
# InfLoRA's input bases and the merge's DARE / TIES state
@pytest.mark.parametrize(
    "name",
    [pytest.param("olora", marks=pytest.mark.slow), "inflora", "merge", pytest.param("osf", marks=pytest.mark.slow)],
)
def test_resumed_adapter_methods_on_a_pretrained_encoder_equal_the_uninterrupted_run(name, tmp_path, monkeypatch):
    """One adapter per task on MiniLM's top layer: the finished adapters, InfLoRA's input bases, DARE / TIES' state
    and OSF's re-decomposed adapter (its sizes read from the checkpoint) travel in the checkpoint."""
    scenario = ComponentSpec(**toy_text_scenario(tmp_path))
    spec = RunSpec(
        "resume", scenario, ComponentSpec(name=name, params={} if name == "osf" else {"rank": 2}), 0, TRAINING, "cpu"
    )
    reference = run(spec, tmp_path / "data", checkpoint=tmp_path / "reference.pt")
    assert reference.status == "ok", reference.traceback
    _, resumed = interrupted_then_resumed(spec, tmp_path / "checkpoint.pt", 0, monkeypatch, tmp_path / "data")
    assert resumed.status == "ok", resumed.traceback
    assert resumed.resumed_from_experience == 1
    assert comparable(resumed) == comparable(reference)


@pytest.mark.parametrize("name", ["naive", "wpl"])
def test_resumed_supernet_record_keeps_err1_err2_and_standalone(name, tmp_path, monkeypatch):
    spec = RunSpec("resume", SCENARIOS["supernet"], ComponentSpec(name=name), 0, TRAINING, "cpu")
    reference = run(spec, Path("."), checkpoint=tmp_path / "reference.pt")
    assert reference.status == "ok", reference.traceback
    assert reference.err1 is not None and reference.err2 is not None and reference.search.ground_truth is not None
    _, resumed = interrupted_then_resumed(spec, tmp_path / "checkpoint.pt", 2, monkeypatch)
    assert resumed.resumed_from_experience == 3
    assert search_comparable(resumed) == search_comparable(reference)


@pytest.mark.parametrize("name", ["naive", "wpl"])
def test_resumed_attribution_equals_the_uninterrupted_one(name, tmp_path, monkeypatch):
    """The attribution's snapshots of the models trained before the interruption travel in the checkpoint."""
    training = TRAINING.model_copy(update={"attribution": 64})
    spec = RunSpec("resume", SCENARIOS["supernet"], ComponentSpec(name=name), 0, training, "cpu")
    reference = run(spec, Path("."), checkpoint=tmp_path / "reference.pt")
    assert reference.status == "ok", reference.traceback
    assert len(reference.attribution) >= 6  # 6 turns of 3 architectures: every earlier model after each turn
    _, resumed = interrupted_then_resumed(spec, tmp_path / "checkpoint.pt", 2, monkeypatch)
    assert resumed.resumed_from_experience == 3
    assert search_comparable(resumed) == search_comparable(reference)


def test_resumed_timing_adds_both_parts(tmp_path, monkeypatch):
    spec = RunSpec("resume", SCENARIOS["split"], ComponentSpec(name="ewc"), 0, TRAINING, "cpu")
    crashed, resumed = interrupted_then_resumed(spec, tmp_path / "checkpoint.pt", 1, monkeypatch)
    state = torch.load(tmp_path / "checkpoint.interrupted", weights_only=True)
    before = state["record"]["timing"]
    assert 0 < before["steps"] < resumed.timing.steps
    assert resumed.timing.train_seconds > before["train_seconds"]
    assert len(resumed.turn_accuracy) == 4 and len(state["record"]["turn_accuracy"]) == 2


def test_a_resumed_tuning_trial_keeps_the_values_of_its_checks_inside_experiences(tmp_path, monkeypatch):
    # pruning_points: the values recorded inside the experiences before the kill are the later trials' bounds, so
    # the resumed record must hold them as the uninterrupted one does
    from forgetbench.benchmark.run.spec import PruneRule

    rule = PruneRule("ACC", True, (), points=2)  # no bound: records only
    spec = RunSpec("resume", SCENARIOS["split"], ComponentSpec(name="ewc"), 0, TRAINING, "cpu", prune=rule)
    reference = run(spec, Path("."), checkpoint=tmp_path / "reference.pt")
    assert reference.status == "ok" and len(reference.prune_points) == 8  # 4 experiences x 2 points
    _, resumed = interrupted_then_resumed(spec, tmp_path / "checkpoint.pt", 1, monkeypatch)
    assert resumed.resumed_from_experience == 2
    assert comparable(resumed) == comparable(reference)


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))

    def __init__(self, marker: Path):
        self.marker = str(marker)


def test_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": checkpoints.FORMAT, "payload": _Exploit(marker)}, path)
    pickle.loads(pickle.dumps(_Exploit(tmp_path / "probe")))  # under a plain unpickle it runs code
    assert (tmp_path / "probe").exists()
    spec = RunSpec("resume", SCENARIOS["split"], ComponentSpec(name="ewc"), 0, TRAINING, "cpu")
    record = run(spec, Path("."), checkpoint=path)
    assert not marker.exists()
    assert record.status == "ok" and record.resumed_from_experience is None
    assert any("discarded" in w and "not a loadable checkpoint" in w for w in record.warnings)
    assert torch.load(path, weights_only=True)["completed"] == 3  # replaced by the fresh run's own


@pytest.mark.parametrize("content", [b"garbage bytes", None])
def test_unreadable_checkpoint_is_discarded_and_the_run_starts_over(content, tmp_path):
    path = tmp_path / "checkpoint.pt"
    if content is None:
        torch.save([1, 2, 3], path)  # loads, but is not a checkpoint
    else:
        path.write_bytes(content)
    spec = RunSpec("resume", SCENARIOS["split"], ComponentSpec(name="si"), 0, TRAINING, "cpu")
    record = run(spec, Path("."), checkpoint=path)
    assert record.status == "ok" and record.resumed_from_experience is None
    assert any("discarded" in w for w in record.warnings)


def killed_then_resumed(cli, config: Path, marker: Path, run_dir: str, tmp_path: Path) -> tuple[RunRecord, RunRecord]:
    """``(uninterrupted, resumed)`` records of ``run_dir``: the suite run once with the kill marker already
    claimed (no kill), then in a worker process that SIGKILLs itself once (the run is recorded failed, its
    checkpoint stays), then rerun from that checkpoint."""
    marker.touch()
    assert cli("run", "--no-report", config, "--out", tmp_path / "reference", "--quiet") == 0
    expected = RunRecord.from_dict(read_json(tmp_path / "reference" / run_dir / "result.json"))

    marker.unlink()
    out = tmp_path / "out"
    assert cli("run", "--no-report", config, "--out", out, "--quiet", "--executor", "process", "--workers", "1") == 1
    assert "SIGKILL" in read_json(out / run_dir / "result.json")["error"]
    assert (out / run_dir / store.CHECKPOINT_FILE).exists()
    assert cli("run", "--no-report", config, "--out", out, "--quiet") == 0
    return expected, RunRecord.from_dict(read_json(out / run_dir / "result.json"))


@pytest.mark.slow  # kills and resumes in subprocesses: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
@pytest.mark.parametrize("name", ["supsup", "standalone"])
def test_sigkilled_worker_resumes_to_the_uninterrupted_record(name, write_suite, cli, tmp_path):
    """A real SIGKILL of the worker process at the start of experience 2 (after checkpoint 1)."""
    marker = tmp_path / "killed-once"
    strategy = {
        "name": "test_kill_after",
        "label": "victim",
        "params": {"strategy": name, "marker": str(marker), "at_experience": 2},
    }
    suite = tiny_suite(strategies=[strategy])
    suite["scenarios"][0]["params"].update(tasks=4, widths=[16])
    suite["training"].update(checkpoint=True, epochs=2)
    expected, resumed = killed_then_resumed(cli, write_suite(suite), marker, "runs/split__victim__seed0", tmp_path)
    assert resumed.resumed_from_experience == 2
    assert resumed.accuracy_matrix == expected.accuracy_matrix
    assert comparable(resumed) == comparable(expected)


def test_plugin_without_state_protocol_runs_without_checkpoints(tmp_path):
    """A plugin that declares no state_dict() could not be resumed: no checkpoint, and the record says why."""
    path = tmp_path / "checkpoint.pt"
    spec = RunSpec(
        "resume",
        SCENARIOS["split"],
        ComponentSpec(name="test_slow", params={"seconds_per_step": 0.0}),
        0,
        TRAINING,
        "cpu",
    )
    record = run(spec, Path("."), checkpoint=path)
    assert record.status == "ok"
    assert not path.exists()
    assert any("checkpointing off" in w and "_Slow" in w for w in record.warnings)


# ------------------------------------------------------------------ searches (adaptive scenarios)
LM_CORPUS = Path(__file__).parents[1] / "data" / "lm_corpus"
SEARCH_TRAINING = TRAINING.model_copy(update={"eval_every": None, "grad_clip_norm": 0.25, "lr": 0.5, "momentum": 0.0})
SEARCH = TINY_SEARCH | {"steps_per_turn": 5, "ground_truth_steps": 10}
SEARCHES = {
    "random": ComponentSpec(name="supernet_search", params=SEARCH),
    "controller": ComponentSpec(
        name="supernet_search", params=SEARCH | {"search": "controller", "controller": {"steps_per_epoch": 5}}
    ),
    "enas_rnn": ComponentSpec(
        name="enas_rnn",
        params={
            "corpus": f"folder:{LM_CORPUS}",
            "vocabulary": 30,
            "nodes": 3,
            "embedding": 8,
            "hidden": 8,
            "bptt": 6,
            "epochs": 3,
            "turns_per_epoch": 3,
            "steps_per_turn": 2,
            "derive_samples": 4,
            "search": "controller",
            "controller": {"steps_per_epoch": 3, "reward_windows": 4},
        },
    ),
    "enas_cnn": ComponentSpec(
        name="enas_cnn",
        params={
            "dataset": "digits",
            "nodes": 2,
            "channels": 4,
            "cells_per_stage": 1,
            "reductions": 1,
            "sep_conv_stack": 1,
            "validation_size": 100,
            "eval_size": 50,
            "max_train": 200,
            "epochs": 3,
            "turns_per_epoch": 3,
            "steps_per_turn": 2,
            "derive_samples": 4,
            "search": "controller",
            "controller": {"steps_per_epoch": 3, "reward_samples": 16},
        },
    ),
    # a user's supernet by reference, its space's own sampler (random search) and a ground truth of 2
    "custom_supernet": ComponentSpec(
        name="custom_supernet",
        params={
            "model": "byo_fixtures:tiny_supernet",
            "space": "byo_fixtures:NoZeroFirst",
            "data": "byo_fixtures:point_splits",
            "search": "random",
            "epochs": 3,
            "turns_per_epoch": 3,
            "steps_per_turn": 2,
            "derive_samples": 3,
            "ground_truth": {"architectures": 2, "steps": 3},
        },
    ),
}
SEARCH_STRATEGIES = {
    "naive": ComponentSpec(name="naive"),
    "wpl_online": ComponentSpec(
        name="wpl_online",
        params={
            "alpha": 60,
            "accumulate": "momentum",
            "clip_norm": 10.0,
            "reset_every": 2,
            "start_after": 1,
        },
    ),
    "ewc": ComponentSpec(name="ewc", params={"ewc_lambda": 10, "mode": "online", "decay_factor": 0.9}),
}


def search_comparable(record: RunRecord) -> dict:
    out = comparable(record)
    out["timing"].pop("search_seconds", None)
    out["timing"].pop("retrain_seconds", None)  # a ground truth computed once in the process is free the second time
    return out


# the CNN search with a regularizer costs 3-4 s a case: the full tier (make test) resumes it, the inner loop resumes its
# naive runs at every kill point, and every other search with every strategy at one kill point a strategy (each
# search is killed at all three; the resume paths are the same code): 15 cases of the full tier's 45
FULL_TIER_ONLY = {("enas_cnn", "ewc"), ("enas_cnn", "wpl_online")}
KILLED_AT = [1, 2, 4]  # mid-epoch, the end of epoch 0 (before the controller trains), epoch 1
INNER_LOOP_KILL = dict(zip(SEARCH_STRATEGIES, KILLED_AT))


def _in_full_tier_only(search: str, strategy: str, at: int) -> bool:
    if (search, strategy) in FULL_TIER_ONLY:
        return True
    return search != "enas_cnn" and at != INNER_LOOP_KILL[strategy]


@pytest.mark.parametrize(
    "search, strategy, at",
    [
        pytest.param(search, strategy, at, marks=[pytest.mark.slow] if _in_full_tier_only(search, strategy, at) else [])
        for at in KILLED_AT
        for search in SEARCHES
        for strategy in SEARCH_STRATEGIES
    ],
    ids=lambda value: str(value),
)
def test_a_resumed_search_equals_the_uninterrupted_one(search, strategy, at, tmp_path, monkeypatch):
    spec = RunSpec("resume", SEARCHES[search], SEARCH_STRATEGIES[strategy], 0, SEARCH_TRAINING, "cpu")
    reference = run(spec, Path("."), checkpoint=tmp_path / "reference.pt")
    assert reference.status == "ok", reference.traceback or reference.error
    assert not any("checkpointing off" in w for w in reference.warnings or [])
    _, resumed = interrupted_then_resumed(spec, tmp_path / "checkpoint.pt", at, monkeypatch)
    assert resumed.status == "ok", resumed.traceback
    assert resumed.resumed_from_experience == at + 1
    assert search_comparable(resumed) == search_comparable(reference)
    state = torch.load(tmp_path / "checkpoint.interrupted", weights_only=True)
    assert state["scenario"]["schedule"] and state["scenario"]["generator"].dtype == torch.uint8


def test_a_scenario_that_declares_no_state_runs_a_search_without_checkpoints(tmp_path, monkeypatch):
    from forgetbench.benchmark.data.scenarios.custom_supernet import CustomSupernetSearch

    monkeypatch.setattr(CustomSupernetSearch, "state_dict", lambda self: None)
    spec = RunSpec("resume", SEARCHES["random"], ComponentSpec(name="naive"), 0, SEARCH_TRAINING, "cpu")
    record = run(spec, Path("."), checkpoint=tmp_path / "checkpoint.pt")
    assert record.status == "ok" and not (tmp_path / "checkpoint.pt").exists()
    assert any("CustomSupernetSearch declares no state_dict()" in w for w in record.warnings)


@pytest.mark.slow  # kills and resumes in subprocesses: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
def test_sigkilled_search_worker_resumes_to_the_uninterrupted_record(write_suite, cli, tmp_path):
    """A real SIGKILL of the worker process at the start of turn 5 (the second search epoch, after the
    controller's first update and checkpoint 4), rerun: the same record as a run never killed."""
    marker = tmp_path / "killed-once"
    strategy = {
        "name": "test_kill_after",
        "label": "victim",
        "params": {
            "strategy": "wpl_online",
            "marker": str(marker),
            "at_experience": 5,
            "strategy_params": {"alpha": 60, "accumulate": "momentum"},
        },
    }
    suite = tiny_suite(strategies=[strategy], scenarios=[{"name": "enas_rnn", "params": SEARCHES["enas_rnn"].params}])
    suite["training"].update(checkpoint=True, lr=0.5, momentum=0.0, grad_clip_norm=0.25)
    expected, resumed = killed_then_resumed(cli, write_suite(suite), marker, "runs/enas_rnn__victim__seed0", tmp_path)
    assert resumed.resumed_from_experience == 5
    assert search_comparable(resumed) == search_comparable(expected)
    assert resumed.search.derived == expected.search.derived
