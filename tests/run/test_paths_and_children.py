"""Issue 74, the environment's side: output paths that cannot be written, children that outlive their driver,
factories that exit or hang, signals. Each case ends with one line naming the path or the factory, an exit status of 1
(the environment) or 2 (the input), no traceback, no file of the set changed, no temporary file, no child left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import tiny_suite
from helpers import REPO
from report_records import basic_records, write_folder

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO)]))
CLI = [sys.executable, "-m", "forgetbench.benchmark.front.cli"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("forgetbench: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- output paths ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["runs", "set_aside", "runs/split__naive__seed0"])
def test_a_folder_entry_linked_outside_the_folder_is_refused_before_any_work(link, cli, tmp_path, capsys):
    """Issue 81: a runs/ that was a symbolic link to another results folder had that folder's records moved into
    this one's set_aside/ and replaced."""
    other = tmp_path / "other"
    (other / "runs" / "split__naive__seed0").mkdir(parents=True)
    (other / "runs" / "split__naive__seed0" / "result.json").write_text("{}")
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    target = {
        "runs": other / "runs",
        "set_aside": other,
        "runs/split__naive__seed0": other / "runs" / "split__naive__seed0",
    }
    if link == "runs":
        (out / "runs").rmdir()
    (out / link).symlink_to(target[link])
    before = _files(other)
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(tiny_suite()))
    assert cli("run", suite, "--out", out, "--quiet") == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{out / link} is a symbolic link to" in line and "outside the folder" in line
    assert _files(other) == before


@pytest.mark.parametrize("which", ["comparisons.csv", "summary.csv", "report.html"])
def test_a_report_file_whose_path_is_a_directory_changes_nothing(which, cli, tmp_path, capsys):
    folder = write_folder(tmp_path / "r", basic_records())
    assert cli("report", folder) == 0
    (folder / which).unlink()
    (folder / which / "inner").mkdir(parents=True)
    before = _files(folder)
    capsys.readouterr()
    assert cli("report", folder) in (1, 2)  # 2: `-o` names a directory (the input); 1: a table's path (the folder)
    line = _one_line(capsys.readouterr().err)
    assert str(folder / which) in line and "directory" in line
    assert _files(folder) == before and not list(folder.rglob("*.tmp"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway (no permission check)")
def test_a_read_only_out_folder_is_named_before_any_run(cli, tmp_path, capsys, write_suite):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert cli("run", write_suite(tiny_suite()), "--out", out, "--quiet") == 2
    finally:
        out.chmod(0o755)
    assert "cannot be written" in _one_line(capsys.readouterr().err) and not list(out.iterdir())


def test_a_read_only_file_system_under_the_report_changes_nothing(cli, tmp_path, capsys, monkeypatch):
    """As a read-only mount answers (EROFS; root is not exempt, unlike a folder's permissions)."""
    import errno
    import tempfile

    folder = write_folder(tmp_path / "r", basic_records())
    assert cli("report", folder) == 0
    before = _files(folder)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    capsys.readouterr()
    assert cli("report", folder) == 1
    line = _one_line(capsys.readouterr().err)
    assert "Read-only file system" in line and str(folder) in line
    assert _files(folder) == before


def test_a_read_only_out_folder_is_refused_before_any_run_whoever_runs_it(
    cli, tmp_path, capsys, write_suite, monkeypatch
):
    out = tmp_path / "out"
    out.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == out else real(path, mode))
    assert cli("run", write_suite(tiny_suite()), "--out", out, "--quiet") == 2
    assert f"--out {out}: {out} cannot be written" in _one_line(capsys.readouterr().err)
    assert not list(out.iterdir())


def test_a_lock_path_that_is_a_directory_is_named(cli, tmp_path, capsys, write_suite):
    out = tmp_path / "out"
    (out / ".forgetbench.lock").mkdir(parents=True)
    assert cli("run", write_suite(tiny_suite()), "--out", out, "--quiet") == 2
    line = _one_line(capsys.readouterr().err)
    assert ".forgetbench.lock" in line and "cannot open its lock file" in line
    assert [p.name for p in out.iterdir()] == [".forgetbench.lock"]


@pytest.mark.slow  # a report in a subprocess under a file-size limit: 5-10 s, for the full tier
def test_a_file_size_limit_leaves_the_report_and_its_tables_as_they_were(tmp_path):
    folder = write_folder(tmp_path / "r", basic_records())
    assert subprocess.run([*CLI, "report", str(folder)], env=ENV, capture_output=True).returncode == 0
    before = _files(folder)

    def limit() -> None:  # 4 KiB: the summary fits, the report does not
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    proc = subprocess.run(
        [*CLI, "report", str(folder)], env=ENV, capture_output=True, text=True, preexec_fn=limit, timeout=300
    )
    assert proc.returncode == 1, proc.stderr
    line = _one_line(proc.stderr)
    assert "file-size limit" in line and "as they were" in line
    assert _files(folder) == before and not list(folder.rglob("*.tmp"))


# --- factories ------------------------------------------------------------------------------------------------


def _custom_suite(benchmark: str) -> dict:
    base = {"model": "byo_fixtures:multihead_mlp", "benchmark": benchmark}
    return tiny_suite(scenarios=[{"name": "custom", "params": base}])


@pytest.mark.slow  # a console command that waits on a factory: 5-10 s, for the full tier
def test_a_factory_that_sleeps_past_the_timeout_is_named_with_exit_2(tmp_path):
    """The factory sleeps an hour; the command gives up on it after 2 s. What is asserted is that it gave up (its
    exit and its line, well within the hour), not how fast a loaded machine starts and stops a Python process."""
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(_custom_suite("byo_fixtures:sleeping_benchmark")))
    env = dict(ENV, FORGETBENCH_FACTORY_TIMEOUT="2")
    proc = subprocess.run(
        [*CLI, "run", str(config), "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 2, proc.stderr
    line = _one_line(proc.stderr)
    assert "did not return within 2 s" in line and "FORGETBENCH_FACTORY_TIMEOUT" in line
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.slow  # a signal to a console command in a subprocess: 5-10 s, for the full tier
def test_sigterm_while_a_factory_builds_exits_130_as_the_docs_say(tmp_path):
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(_custom_suite("byo_fixtures:sleeping_benchmark")))
    mark = tmp_path / "in_the_factory"
    env = dict(ENV, FORGETBENCH_FACTORY_TIMEOUT="0", SLEEPING_BENCHMARK_MARK=str(mark))  # no limit: it waits
    proc = subprocess.Popen(
        [*CLI, "validate", str(config)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 600
    while not mark.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert mark.exists(), proc.communicate()[1]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)  # the factory sleeps an hour: a SIGTERM not obeyed waits far longer
    assert proc.returncode == 130, err
    assert "Traceback" not in err


# --- children die with their parent ---------------------------------------------------------------------------

_EASEL = """
import sys, time
from forgetbench.reports.drawing import easel

with easel(2) as pool:
    futures = [pool.submit(time.sleep, 600) for _ in range(2)]
    time.sleep(1.0)
    print(" ".join(str(p) for p in pool._processes), flush=True)
    time.sleep(600)
"""


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _gone_within(processes: list[psutil.Process], seconds: float) -> list[int]:
    """The pids among ``processes`` still alive after ``seconds`` (zombies count as gone)."""
    _, alive = psutil.wait_procs(processes, timeout=seconds)
    return [p.pid for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.slow  # forks, SIGKILL and waits: about 5 s, for the full tier
def test_the_reports_figure_workers_die_with_the_report(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _EASEL], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()
    workers = [psutil.Process(int(pid)) for pid in line.split()]
    assert len(workers) == 2, proc.stderr.read() if not line else line
    proc.kill()  # SIGKILL: no handler runs, no pool shutdown
    proc.wait()
    assert _gone_within(workers, 30.0) == []


@pytest.mark.slow  # a suite on worker processes, SIGKILLed: 10-20 s, for the full tier
def test_the_process_executors_workers_die_with_the_driver(write_suite, tmp_path):
    out = tmp_path / "out"
    config = write_suite(
        tiny_suite(seeds=[0, 1, 2, 3], strategies=[{"name": "test_slow", "params": {"seconds_per_step": 0.2}}])
    )
    code = (
        "import fault_strategies, sys; from forgetbench.benchmark.front.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "run", "--no-report", str(config), "--out", str(out), "--quiet"]
        + ["--executor", "process", "--workers", "2"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    children: list[psutil.Process] = []
    while time.monotonic() < deadline and len(children) < 3:  # the fork server and its two workers
        assert proc.poll() is None, proc.stderr.read()
        children = _descendants(proc.pid)
        time.sleep(0.2)
    assert len(children) >= 3, children
    time.sleep(1.0)  # the workers are inside their runs
    children = _descendants(proc.pid)
    described = {c.pid: " ".join(c.cmdline())[-80:] for c in children}
    proc.kill()
    proc.wait()
    assert [described[pid] for pid in _gone_within(children, 30.0)] == []


def test_die_with_parent_ends_a_child_whose_parent_is_killed(tmp_path):
    code = textwrap.dedent(
        """
        import os, sys, time
        pid = os.fork()
        if pid == 0:
            from forgetbench.benchmark.core.children import die_with_parent
            die_with_parent()
            time.sleep(600)
            os._exit(0)
        print(pid, flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(proc.stdout.readline()))
    time.sleep(0.5)  # the child has set its watch
    proc.kill()
    proc.wait()
    assert _gone_within([child], 30.0) == []


def test_a_process_knows_how_long_it_has_run():
    """process_age reads the kernel's start time of the process (``run --estimate`` counts its budget from it): a
    process that slept half a second first is at least that old, and never older than its parent saw it run (the
    kernel counts in ticks of 10 ms)."""
    code = "import time; time.sleep(0.5); from forgetbench.benchmark.core.children import process_age; print(process_age())"
    begun = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - begun
    assert 0.5 <= float(done.stdout) <= wall + 0.02, (done.stdout, wall)
