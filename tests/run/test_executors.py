"""Executors, faults, resume, lock, checkpoints (issue 7); Ray lives in test_ray.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from forgetbench.benchmark.core import store
from forgetbench.benchmark.run.executors import threads_per_worker
from forgetbench.benchmark.core.lock import LOCK_FILE
from helpers import REPO, comparable, run_command
from conftest import read_json, tiny_suite


def test_threads_per_worker_never_oversubscribes():
    assert threads_per_worker(2, cores=2) == 1
    assert threads_per_worker(2, cores=8) == 4
    assert threads_per_worker(3, cores=8) == 2  # 3 x 2 <= 8
    assert threads_per_worker(4, cores=2) == 1  # at least one thread


@pytest.mark.slow  # a fork server importing torch and Avalanche (8 s here): for the full tier (make test), not the inner loop
def test_prestarted_fork_server_hands_workers_the_harness_already_imported():
    from forgetbench.benchmark.run.executors import prestart, worker_context

    prestart("process")
    # eval, a builtin, so that unpickling the call imports nothing in the worker
    check = "all(m in __import__('sys').modules for m in ('forgetbench.benchmark.run.runner', 'forgetbench.strategies', 'avalanche'))"
    with ProcessPoolExecutor(1, mp_context=worker_context()) as pool:
        assert pool.submit(eval, check).result() is True


def test_process_executor_gives_the_local_results(write_suite, cli, tmp_path):
    suite = tiny_suite(batch_seeds=False, seeds=[0, 1], strategies=[{"name": "ewc"}, {"name": "si"}])
    config = write_suite(suite)
    local, process = tmp_path / "local", tmp_path / "process"
    assert cli("run", "--no-report", config, "--out", local, "--quiet") == 0
    assert (
        cli("run", "--no-report", config, "--out", process, "--quiet", "--executor", "process", "--workers", "2") == 0
    )
    a, b = comparable(local), comparable(process)
    assert len(a) == 4 and a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], key


@pytest.mark.slow  # kills a process-pool worker: fresh interpreters, 5 s: for the full tier, not the inner loop
def test_killed_worker_is_reported_and_rerun_completes_only_missing(write_suite, cli, tmp_path, capsys):
    out, marker = tmp_path / "out", tmp_path / "kill-once"
    suite = tiny_suite(
        batch_seeds=False,  # one job per run: what this file tests (a batch of seeds is one job)
        seeds=[0, 1],
        strategies=[{"name": "naive"}, {"name": "test_sigkill_once", "params": {"marker": str(marker)}}],
    )
    config = write_suite(suite)
    args = ("run", config, "--out", out, "--quiet", "--executor", "process", "--workers", "2")
    assert cli(*args) == 1
    killed = [read_json(p) for p in (out / "runs").glob("split__test_sigkill_once__seed*/result.json")]
    failed = [r for r in killed if r["status"] == "failed"]
    assert (
        len(failed) == 1 and "SIGKILL" in failed[0]["error"]
    )  # the marker is claimed atomically: one seed fires, the other runs
    ok_paths = [p for p in out.rglob("result.json") if read_json(p)["status"] == "ok"]
    assert len(ok_paths) == 3
    stamps = {p: p.stat().st_mtime_ns for p in ok_paths}
    capsys.readouterr()
    assert cli(*args) == 0
    assert "1 run(s) executed, 3 skipped" in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns == stamps[p] for p in ok_paths)  # none ran twice
    assert all(read_json(p)["status"] == "ok" for p in out.rglob("result.json"))


@pytest.mark.slow  # kills a process-pool worker: fresh interpreters, 3 s: for the full tier, not the inner loop
def test_retries_rerun_a_killed_worker(write_suite, cli, tmp_path):
    out, marker = tmp_path / "out", tmp_path / "kill-once"
    suite = tiny_suite(strategies=[{"name": "test_sigkill_once", "params": {"marker": str(marker)}}])
    args = (
        "run",
        "--no-report",
        write_suite(suite),
        "--out",
        out,
        "--quiet",
        "--executor",
        "process",
        "--workers",
        "1",
    )
    assert cli(*args, "--retries", "1") == 0
    record = read_json(out / "runs" / "split__test_sigkill_once__seed0" / "result.json")
    assert record["status"] == "ok" and record["attempt"] == 2


def test_without_retries_a_failed_run_stays_failed(write_suite, cli, tmp_path):
    out = tmp_path / "out"
    suite = tiny_suite(strategies=[{"name": "test_failing"}])
    assert cli("run", "--no-report", write_suite(suite), "--out", out, "--quiet", "--retries", "2") == 1
    record = read_json(out / "runs" / "split__test_failing__seed0" / "result.json")
    assert record["status"] == "failed" and record["attempt"] == 3  # 1 try + 2 retries


def test_progress_bar_counts_failures(write_suite, cli, tmp_path, capsys):
    suite = tiny_suite(strategies=[{"name": "test_failing"}, {"name": "naive"}])
    assert cli("run", "--no-report", write_suite(suite), "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "2/2" in err and "failed=1" in err


def test_truncated_result_is_detected_and_rerun(write_suite, cli, tmp_path, capsys):
    out = tmp_path / "out"
    config = write_suite(tiny_suite(batch_seeds=False, seeds=[0, 1]))
    assert cli("run", "--no-report", config, "--out", out, "--quiet") == 0
    path = out / "runs" / "split__naive__seed1" / "result.json"
    good = comparable(out)
    path.write_text(path.read_text()[: len(path.read_text()) // 2])  # a torn write
    capsys.readouterr()
    assert cli("run", "--no-report", config, "--out", out, "--quiet") == 0
    assert "1 run(s) executed, 1 skipped" in capsys.readouterr().out
    assert comparable(out) == good
    assert (out / "set_aside" / "split__naive__seed1" / "result.json").read_text()  # the torn file kept, aside


def test_stale_temporary_files_are_removed(write_suite, cli, tmp_path):
    out = tmp_path / "out"
    stale = [
        out / "runs" / "split__naive__seed0" / f".result.json{store.TMP_MARK}abc123.tmp",
        out / f".suite.yaml{store.TMP_MARK}x1y2z3.tmp",
    ]
    stale[0].parent.mkdir(parents=True)
    for path in stale:
        path.write_text('{"half": ')  # what a SIGKILL between write and rename leaves
    assert cli("run", "--no-report", write_suite(tiny_suite()), "--out", out, "--quiet") == 0
    assert not list(out.rglob("*.tmp"))


def test_users_own_tmp_files_survive_out_dot(write_suite, cli, tmp_path, monkeypatch):
    """`--out .` in a project: only the tool's own temporaries, only where it writes, are removed."""
    project = tmp_path / "project"
    theirs = [
        project / "notes.tmp",
        project / ".cache.tmp",
        project / "src" / ".x.forgetbench-abc.tmp",
        project / "runs" / "mine.tmp",
        project / "runs" / "split__naive__seed0" / "draft.tmp",
    ]
    for path in theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("the user's")
    config = write_suite(tiny_suite())
    monkeypatch.chdir(project)
    assert cli("run", config, "--out", ".", "--quiet", "--no-report") == 0
    assert all(path.read_text() == "the user's" for path in theirs)
    assert (project / "runs" / "split__naive__seed0" / "result.json").exists()


# ----------------------------------------------------------------------------- interrupts


def _spawn_suite(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO)]))
    code = (
        "import fault_strategies, sys; from forgetbench.benchmark.front.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, "run", "--no-report", str(config), "--out", str(out), "--quiet", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so that a test can signal the group as `timeout` does
    )


def _wait_for_first_result(proc: subprocess.Popen, out: Path, timeout: float = 600.0) -> None:
    """Until one run is complete; generous timeout: the CI box may be shared and busy."""
    deadline = time.monotonic() + timeout
    while not list(out.glob("runs/*/result.json")):
        if proc.poll() is not None:
            raise AssertionError(f"suite exited early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the first result")
        time.sleep(0.05)


def _assert_no_partial_files(out: Path) -> None:
    assert not list(out.rglob("*.tmp"))
    for path in out.rglob("result.json"):
        assert store.read_result(path) is not None, f"partial {path}"


@pytest.mark.slow  # stops suites with signals in subprocesses: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
@pytest.mark.parametrize(
    ("sig", "executor", "whole_group"),
    [
        (signal.SIGTERM, "local", False),
        (signal.SIGINT, "local", False),
        (signal.SIGTERM, "process", False),
        # `timeout` and batch schedulers signal every process of the group, the workers and the fork server too:
        # found on a GPU, where the run a dying worker held was recorded as failed ("worker process exited with
        # status 255") instead of left for the rerun (workers ignore SIGINT, so a terminal's Ctrl-C never did this)
        (signal.SIGTERM, "process", True),
    ],
)
def test_interrupt_mid_suite_leaves_no_partial_files_and_resumes(
    write_suite, cli, tmp_path, capsys, sig, executor, whole_group
):
    out = tmp_path / "out"
    suite = tiny_suite(
        batch_seeds=False,  # one job per run: what this file tests (a batch of seeds is one job)
        seeds=[0, 1, 2, 3],
        strategies=[{"name": "test_slow", "params": {"seconds_per_step": 0.02}}],
    )
    config = write_suite(suite)
    extra = ("--executor", executor, "--workers", "2" if whole_group else "1")
    proc = _spawn_suite(config, out, *extra)
    _wait_for_first_result(proc, out)
    if whole_group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert "failed" not in err
    _assert_no_partial_files(out)
    records = [store.read_result(path) for path in out.glob("runs/*/result.json")]
    assert all(record is not None and record.status == "ok" for record in records), [r and r.error for r in records]
    done = len(records)
    assert 1 <= done < 4
    capsys.readouterr()
    assert cli("run", "--no-report", config, "--out", out, "--quiet", *extra) == 0
    assert f"{4 - done} run(s) executed, {done} skipped" in capsys.readouterr().out


_SIGTERM_IN_GC_CALLBACK = """
import gc, os, signal, sys
from forgetbench.benchmark.run import suite
from forgetbench.benchmark.front.cli import main

armed = []

def callback(phase, info):
    if phase == "start" and armed == ["armed"]:
        armed.append("fired")
        os.kill(os.getpid(), signal.SIGTERM)  # the Python handler runs here, inside the gc callback

gc.callbacks.append(callback)
finish = suite._Driver._finish

def finish_then_collect(self, *args, **kwargs):
    finish(self, *args, **kwargs)
    if not armed:  # after the first result: a collection whose callback receives the SIGTERM
        armed.append("armed")
        gc.collect()

suite._Driver._finish = finish_then_collect
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # a signal in a subprocess: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
def test_sigterm_during_a_gc_callback_still_stops_the_suite(write_suite, tmp_path):
    """A handler that raises would see its exception discarded by the gc ("Exception ignored")
    and the suite would run to the end with status 0; the stop request must survive it."""
    out = tmp_path / "out"
    config = write_suite(tiny_suite(batch_seeds=False, seeds=[0, 1, 2, 3]))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO)]))
    proc = run_command(
        [
            sys.executable,
            "-c",
            _SIGTERM_IN_GC_CALLBACK,
            "run",
            "--no-report",
            str(config),
            "--out",
            str(out),
            "--quiet",
        ],
        env=env,
        expect=130,
    )
    assert "Exception ignored" not in proc.stderr
    assert len(list(out.glob("runs/*/result.json"))) == 1
    _assert_no_partial_files(out)


def test_first_stop_signal_sets_a_flag_the_second_raises():
    from forgetbench.benchmark.core import stop

    with stop.stop_on_signals():
        assert stop.requested() is None
        stop._handle(signal.SIGTERM, None)  # what the interpreter calls on delivery
        assert stop.requested() == signal.SIGTERM
        with pytest.raises(stop.StopRequested):
            stop.check()
        with pytest.raises(stop.StopRequested):
            stop._handle(signal.SIGINT, None)
        assert signal.getsignal(signal.SIGTERM) is stop._handle  # still installed: never ignored
        stop._received.clear()
    assert stop.requested() is None
    assert signal.getsignal(signal.SIGTERM) is not stop._handle


@pytest.mark.slow  # kills and resumes in subprocesses: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
def test_sigkill_of_the_driver_is_resumed(write_suite, cli, tmp_path, capsys):
    """Machine loss: nothing runs cleanup; the rerun still resumes and leaves no stray file."""
    out = tmp_path / "out"
    config = write_suite(
        tiny_suite(
            batch_seeds=False, seeds=[0, 1, 2], strategies=[{"name": "test_slow", "params": {"seconds_per_step": 0.02}}]
        )
    )
    proc = _spawn_suite(config, out)
    _wait_for_first_result(proc, out)
    proc.kill()
    proc.wait(timeout=30)
    for path in out.rglob("result.json"):
        assert store.read_result(path) is not None  # atomic rename: whole files only
    capsys.readouterr()
    assert cli("run", "--no-report", config, "--out", out, "--quiet") == 0
    assert "skipped" in capsys.readouterr().out
    assert len(list(out.glob("runs/*/result.json"))) == 3
    _assert_no_partial_files(out)


# ----------------------------------------------------------------------------- lock


def test_second_suite_on_the_same_out_is_refused(write_suite, cli, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from forgetbench.benchmark.core.lock import output_lock\n"
            "with output_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(120)",
            str(out),
        ],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert cli("run", "--no-report", write_suite(tiny_suite()), "--out", out, "--quiet") == 2
        err = capsys.readouterr().err
        assert str(out / LOCK_FILE) in err and f"pid {holder.pid}" in err
        assert not (out / "runs").exists() and not (out / "suite.yaml").exists()  # nothing written
        # with Ray or worker processes, refused before either starts (a second driver joined the cluster first)
        from forgetbench.benchmark.run import executors

        def no_start(*args, **kwargs):
            raise AssertionError("the executor started before the lock was checked")

        monkeypatch.setattr(executors, "prestart", no_start)
        for executor in ("ray", "process"):
            assert (
                cli("run", "--no-report", write_suite(tiny_suite()), "--out", out, "--quiet", "--executor", executor)
                == 2
            )
            assert f"pid {holder.pid}" in capsys.readouterr().err
        monkeypatch.undo()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without cleaning up: its lock file is stale and is taken over
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == holder.pid
    assert cli("run", "--no-report", write_suite(tiny_suite()), "--out", out, "--quiet") == 0


def test_stale_lock_file_from_dead_pid_is_taken_over(write_suite, cli, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text(json.dumps({"pid": 2**22 + 12345, "host": "gone", "since": "earlier"}))
    assert cli("run", "--no-report", write_suite(tiny_suite()), "--out", out, "--quiet") == 0


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_resume_gives_the_uninterrupted_matrix(write_suite, cli, tmp_path):
    marker = tmp_path / "crash-once"
    strategy = {"name": "test_ewc_crash_once", "params": {"marker": str(marker), "at_experience": 2}}
    suite = tiny_suite(strategies=[strategy])
    suite["scenarios"][0]["params"]["tasks"] = 3
    suite["training"]["checkpoint"] = True
    config = write_suite(suite)
    run_dir = "runs/split__test_ewc_crash_once__seed0"

    marker.touch()  # no crash: the reference, uninterrupted
    reference = tmp_path / "reference"
    assert cli("run", "--no-report", config, "--out", reference, "--quiet") == 0
    expected = read_json(reference / run_dir / "result.json")
    assert "resumed_from_experience" not in expected
    assert not (reference / run_dir / store.CHECKPOINT_FILE).exists()  # removed once complete

    marker.unlink()
    out = tmp_path / "out"
    assert cli("run", "--no-report", config, "--out", out, "--quiet") == 1  # crashes in experience 2
    crashed = read_json(out / run_dir / "result.json")
    assert crashed["status"] == "failed" and "injected crash" in crashed["error"]
    assert (out / run_dir / store.CHECKPOINT_FILE).exists()
    assert cli("run", "--no-report", config, "--out", out, "--quiet") == 0
    resumed = read_json(out / run_dir / "result.json")
    assert resumed["resumed_from_experience"] == 2  # experiences 0 and 1 came from the checkpoint
    assert resumed["accuracy_matrix"] == expected["accuracy_matrix"]
    assert len(resumed["accuracy_matrix"]) == 3


def test_checkpoint_of_another_config_is_ignored(write_suite, cli, tmp_path):
    marker = tmp_path / "crash-once"
    suite = tiny_suite(strategies=[{"name": "test_ewc_crash_once", "params": {"marker": str(marker)}}])
    suite["training"]["checkpoint"] = True
    out = tmp_path / "out"
    assert cli("run", "--no-report", write_suite(suite), "--out", out, "--quiet") == 1
    suite["training"]["lr"] = 0.01  # changed config: the old checkpoint must not be resumed
    assert cli("run", "--no-report", write_suite(suite), "--out", out, "--quiet") == 0
    record = read_json(out / "runs" / "split__test_ewc_crash_once__seed0" / "result.json")
    assert "resumed_from_experience" not in record


def test_execution_keys_do_not_invalidate_completed_runs(write_suite, cli, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli("run", "--no-report", write_suite(tiny_suite()), "--out", out, "--quiet") == 0
    suite = tiny_suite()
    suite["training"].update(checkpoint=True, num_cpus=2)
    capsys.readouterr()
    assert cli("run", "--no-report", write_suite(suite), "--out", out, "--quiet") == 0
    assert "0 run(s) executed, 1 skipped" in capsys.readouterr().out


def test_bad_executor_flags_exit_2(write_suite, cli, tmp_path, capsys):
    config = write_suite(tiny_suite())
    assert cli("run", config, "--out", tmp_path / "o", "--executor", "dask") == 2
    assert cli("run", config, "--out", tmp_path / "o", "--retries", "-1") == 2
    assert "--retries" in capsys.readouterr().err
    assert cli("run", config, "--out", tmp_path / "o", "--executor", "process", "--workers", "0") == 2
    assert "--workers" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
