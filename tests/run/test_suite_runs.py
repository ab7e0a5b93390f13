"""Running suites: result files, resume, failures, divergence, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from forgetbench.benchmark.core import store
from forgetbench.benchmark.front.testing import RESULT_KEYS  # one source: what check_strategy asks of a record
from conftest import read_json, tiny_suite


def test_result_file_schema(write_suite, cli, tmp_path):
    out = tmp_path / "out"
    assert cli("run", "--no-report", write_suite(tiny_suite()), "--out", out, "--quiet") == 0
    record = read_json(out / "runs" / "split__naive__seed0" / "result.json")
    assert RESULT_KEYS <= record.keys()
    assert record["status"] == "ok" and record["error"] is None
    R = np.array(record["accuracy_matrix"])
    assert R.shape == (2, 2) and ((R >= 0) & (R <= 1)).all()
    assert len(record["init_accuracy"]) == 2 and len(record["experiences"]) == 2
    assert record["timing"]["steps"] > 0 and record["timing"]["train_seconds"] > 0
    assert {"python", "torch", "avalanche", "device"} <= record["environment"].keys()
    assert record["config"]["training"]["batch_size"] == 32
    assert (out / "suite.yaml").exists()
    assert not list(out.rglob("*.tmp"))


@pytest.mark.effect
def test_training_learns(write_suite, cli, tmp_path):
    out = tmp_path / "out"
    cli("run", "--no-report", write_suite(tiny_suite()), "--out", out, "--quiet")
    record = read_json(out / "runs" / "split__naive__seed0" / "result.json")
    R = np.array(record["accuracy_matrix"])
    assert R[0, 0] > 0.9 and R[1, 1] > 0.9  # digits pairs are easy; untrained heads are near 0.5
    assert np.mean(record["init_accuracy"]) < 0.8


def test_same_seed_same_matrix(write_suite, cli, tmp_path):
    suite = tiny_suite(strategies=[{"name": "ewc"}, {"name": "si"}])
    a, b = tmp_path / "a", tmp_path / "b"
    config = write_suite(suite)
    assert cli("run", "--no-report", config, "--out", a, "--quiet") == 0
    assert cli("run", "--no-report", config, "--out", b, "--quiet") == 0
    for run_id in ("split__ewc__seed0", "split__si__seed0"):
        ra = read_json(a / "runs" / run_id / "result.json")
        rb = read_json(b / "runs" / run_id / "result.json")
        assert ra["accuracy_matrix"] == rb["accuracy_matrix"]
        assert ra["init_accuracy"] == rb["init_accuracy"]


def test_different_seeds_differ(write_suite, cli, tmp_path):
    out = tmp_path / "out"
    cli("run", "--no-report", write_suite(tiny_suite(seeds=[0, 1])), "--out", out, "--quiet")
    r0 = read_json(out / "runs" / "split__naive__seed0" / "result.json")
    r1 = read_json(out / "runs" / "split__naive__seed1" / "result.json")
    assert r0["experiences"] != r1["experiences"]  # class order comes from the seed


def test_resume_skips_complete_runs(write_suite, cli, tmp_path, capsys):
    out = tmp_path / "out"
    config = write_suite(tiny_suite(seeds=[0, 1]))
    assert cli("run", "--no-report", config, "--out", out, "--quiet") == 0
    path = out / "runs" / "split__naive__seed0" / "result.json"
    first = path.stat().st_mtime_ns
    capsys.readouterr()
    assert cli("run", "--no-report", config, "--out", out, "--quiet") == 0
    assert "0 run(s) executed, 2 skipped" in capsys.readouterr().out
    assert path.stat().st_mtime_ns == first
    # --fresh reruns everything
    assert cli("run", "--no-report", config, "--out", out, "--quiet", "--fresh") == 0
    assert "2 run(s) executed" in capsys.readouterr().out


def test_resume_reruns_when_config_changed_or_file_corrupt(write_suite, cli, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli("run", "--no-report", write_suite(tiny_suite(seeds=[0, 1])), "--out", out, "--quiet") == 0
    (out / "runs" / "split__naive__seed1" / "result.json").write_text('{"schema_version": 1, "run_')
    capsys.readouterr()
    assert cli("run", "--no-report", write_suite(tiny_suite(seeds=[0, 1])), "--out", out, "--quiet") == 0
    assert "1 run(s) executed, 1 skipped" in capsys.readouterr().out
    changed = tiny_suite(seeds=[0, 1])
    changed["training"]["lr"] = 0.01
    assert cli("run", "--no-report", write_suite(changed), "--out", out, "--quiet") == 0
    assert "2 run(s) executed, 0 skipped" in capsys.readouterr().out


def test_failing_strategy_does_not_stop_the_suite(write_suite, cli, tmp_path):
    out = tmp_path / "out"
    suite = tiny_suite(strategies=[{"name": "test_failing"}, {"name": "naive"}])
    assert cli("run", "--no-report", write_suite(suite), "--out", out, "--quiet") == 1
    failed = read_json(out / "runs" / "split__test_failing__seed0" / "result.json")
    assert failed["status"] == "failed"
    assert "this strategy always fails" in failed["error"]
    ok = read_json(out / "runs" / "split__naive__seed0" / "result.json")
    assert ok["status"] == "ok"


@pytest.mark.parametrize(
    "strategy, status, error, rows",
    [
        ("test_nan_loss", "diverged", "non-finite loss in experience 1", 1),  # the first experience's row is kept
        ("test_unserialisable", "failed", "could not be written as JSON", None),  # a record JSON cannot hold
    ],
)
def test_a_run_that_diverges_or_cannot_be_written_is_recorded_so_and_the_suite_goes_on(
    strategy, status, error, rows, write_suite, cli, tmp_path
):
    out = tmp_path / "out"
    suite = tiny_suite(strategies=[{"name": strategy}, {"name": "naive"}])
    assert cli("run", "--no-report", write_suite(suite), "--out", out, "--quiet") == 1
    record = read_json(out / "runs" / f"split__{strategy}__seed0" / "result.json")
    assert record["status"] == status and error in record["error"]
    assert rows is None or len(record["accuracy_matrix"]) == rows
    assert read_json(out / "runs" / "split__naive__seed0" / "result.json")["status"] == "ok"


def test_collapse_to_chance_is_its_own_status(write_suite, cli, tmp_path, capsys):
    """lr 1e6 with SGD: the loss stays finite (not diverged) but every task ends at chance level."""
    out = tmp_path / "out"
    suite = tiny_suite(training={"optimizer": "sgd", "lr": 1e6, "batch_size": 32, "epochs": 1})
    assert cli("run", write_suite(suite), "--out", out, "--quiet") == 1
    record = read_json(out / "runs" / "split__naive__seed0" / "result.json")
    assert record["status"] == "collapsed" and "at chance on every task" in record["error"]
    assert "1 not ok" in capsys.readouterr().out
    html = (out / "report.html").read_text()
    assert "collapsed" in html and "0/1 runs ok" in html
    assert cli("run", write_suite(suite), "--out", out, "--quiet") == 1  # deterministic: not rerun
    assert "0 run(s) executed, 1 skipped" in capsys.readouterr().out


def test_chance_level_by_hand():
    import torch

    from forgetbench.benchmark.train.harness import at_chance, majority_rate

    labels = torch.tensor([0] * 60 + [1] * 40)  # majority 0.6; margin 2 sqrt(0.6 * 0.4 / 100) = 0.098
    assert majority_rate(labels) == pytest.approx(0.6)
    assert at_chance(0.6, labels) and at_chance(0.69, labels)
    assert not at_chance(0.70, labels)
    assert at_chance(0.2, labels)  # worse than chance is still nothing learned
    assert not at_chance(1.0, torch.tensor([0, 1] * 50))  # 0.5 + 0.1 margin


def test_seeds_flag_overrides_suite(write_suite, cli, tmp_path):
    out = tmp_path / "out"
    assert cli("run", "--no-report", write_suite(tiny_suite()), "--out", out, "--seeds", "3,4", "--quiet") == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["split__naive__seed3", "split__naive__seed4"]


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "r.json"
    store.atomic_write_json(path, {"a": 1})
    try:
        store.atomic_write_json(path, {"a": float("nan")})  # allow_nan=False -> raises mid-write
    except ValueError:
        pass
    assert json.loads(path.read_text()) == {"a": 1}
    assert not list(tmp_path.glob("*.tmp"))


def test_read_result_rejects_incomplete(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"schema_version": 1, "run_id": "x"}))
    assert store.read_result(path) is None
    assert store.read_result(tmp_path / "missing.json") is None


def test_collapse_in_class_il_is_judged_on_the_pooled_tasks():
    """Disjoint labels (class-IL): 0.3 on each of five 2-class tasks is far above what one constant class
    scores over them (0.1 pooled), so not collapsed, although each task alone is below its majority 0.5;
    one constant class (0.5 on one task, 0 elsewhere) is collapsed. Shared labels keep the per-task test."""
    import torch

    from forgetbench.benchmark.train.harness import collapse_message
    from forgetbench.benchmark.data.scenarios.base import Task

    def task(t, labels):
        y = torch.tensor(labels)
        return Task(f"task{t}", t, y[:, None].float(), y, y[:, None].float(), y, frozenset(), 10)

    class_il = [task(t, [2 * t] * 50 + [2 * t + 1] * 50) for t in range(5)]
    assert collapse_message([0.3] * 5, class_il, list(range(5))) is None
    message = collapse_message([0.5, 0.0, 0.0, 0.0, 0.0], class_il, list(range(5)))
    assert message.startswith("collapsed: at chance over the tasks seen")
    assert "pooled accuracy 0.100" in message
    task_il = [task(t, [0] * 50 + [1] * 50) for t in range(5)]
    assert collapse_message([0.3] * 5, task_il, list(range(5))).startswith("collapsed: at chance on every task")
    assert collapse_message([0.3] * 5 + [0.9], task_il + [task(5, [0] * 50 + [1] * 50)], list(range(6))) is None
    # issue 81: one rule for a run at chance. On a 20-image test set 0.70 and 0.65 are within two binomial sds of 0.5:
    # flagged at chance on each task, so a run at chance on every task is collapsed (it used to be kept, "2 of 2
    # tasks at chance", while a method a point lower was dropped); 0.75 on one of them is learned: kept
    small = [task(t, [0] * 10 + [1] * 10) for t in range(2)]
    assert "on 20" in collapse_message([0.70, 0.65], small, [0, 1])
    assert collapse_message([0.75, 0.65], small, [0, 1]) is None
