"""The Ray executor: same result files as local, a crashed Ray worker is reported, rerun completes."""

from __future__ import annotations

import pytest

from conftest import read_json, tiny_suite
from helpers import comparable

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'forgetbench[ray]')")

pytestmark = pytest.mark.slow  # starting Ray takes several seconds on a small machine


def test_ray_executor_gives_the_local_results_and_shuts_ray_down(write_suite, cli, tmp_path):
    suite = tiny_suite(seeds=[0, 1], strategies=[{"name": "ewc", "params": {"ewc_lambda": [1, 100]}}, {"name": "si"}])
    config = write_suite(suite)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert cli("run", config, "--out", local, "--quiet") == 0
    assert cli("run", config, "--out", on_ray, "--quiet", "--executor", "ray", "--workers", "2") == 0
    assert not ray.is_initialized()  # the executor started its own Ray and stopped it
    a, b = comparable(local), comparable(on_ray)
    assert len(a) == 6 and a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], key


@pytest.fixture
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_killed_ray_worker_is_reported_and_rerun_completes_only_missing(
    ray_instance, write_suite, cli, tmp_path, capsys
):
    out, marker = tmp_path / "out", tmp_path / "kill-once"
    suite = tiny_suite(strategies=[{"name": "naive"}, {"name": "test_sigkill_once", "params": {"marker": str(marker)}}])
    config = write_suite(suite)
    args = ("run", config, "--out", out, "--quiet", "--executor", "ray", "--workers", "2")
    assert cli(*args) == 1
    failed = read_json(out / "runs" / "split__test_sigkill_once__seed0" / "result.json")
    assert failed["status"] == "failed" and "worker died" in failed["error"]
    assert "Worker" in failed["error"] or "crash" in failed["error"].lower()
    ok = out / "runs" / "split__naive__seed0" / "result.json"
    stamp = ok.stat().st_mtime_ns
    assert ray.is_initialized()  # a Ray the caller started is left running
    capsys.readouterr()
    assert cli(*args) == 0
    assert "1 run(s) executed, 1 skipped" in capsys.readouterr().out
    assert ok.stat().st_mtime_ns == stamp


def test_a_suite_refused_before_it_starts_leaves_no_ray_running(write_suite, cli, tmp_path, capsys):
    # The CLI starts Ray before validating the config (to overlap start-up with its own imports):
    # an invalid config must still exit 2, write nothing and stop that Ray.
    config = write_suite(tiny_suite(strategies=[{"name": "no_such_strategy"}]))
    out = tmp_path / "out"
    assert cli("run", config, "--out", out, "--quiet", "--executor", "ray", "--workers", "1") == 2
    assert "no_such_strategy" in capsys.readouterr().err
    assert not ray.is_initialized()
    assert not out.exists()
