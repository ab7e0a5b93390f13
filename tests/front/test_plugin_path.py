"""A plug-in author's path, from a folder outside the checkout and with forgetbench's environment unchanged: a module
beside the suite, named in ``imports:`` (or ``forgetbench --import``), registers a regularizer built from the
quadratic core's parts; it is listed, validated, run in worker processes, and reported beside the built-ins without
a false "not comparable"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import tiny_suite

PLUGIN = '''"""A user's regularizer: RWalk-like, EWC's minibatch Fisher anchored online with a decay."""

from pydantic import NonNegativeFloat

import forgetbench
from forgetbench.strategies.parts import FisherEstimate, OnlineQuadratic
from forgetbench.strategies.quadratic import QuadraticRegularizer


class WalkParams(forgetbench.StrategyParams):
    walk_lambda: NonNegativeFloat = forgetbench.strength(20.0)


@forgetbench.register_strategy("walk", params=WalkParams)
def build(ctx, params):
    """A user's online-Fisher pull (the plug-in path's example)."""
    regularizer = QuadraticRegularizer.from_context(
        ctx, "walk", params.walk_lambda, FisherEstimate("minibatch"), OnlineQuadratic(0.9), max_curvature="auto",
        reports=("capped", "skipped"),
    )
    return ctx.build(plugins=[regularizer])
'''


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the user's on the path
    command = [sys.executable, "-m", "forgetbench.benchmark.front.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def user_folder(tmp_path) -> Path:
    folder = tmp_path / "my_project"
    folder.mkdir()
    (folder / "my_strategies.py").write_text(PLUGIN)
    return folder


@pytest.mark.slow  # fresh interpreters importing torch and Avalanche (20 s here): for the full tier (make test), not the inner loop (make test-fast)
def test_an_imports_key_names_a_module_beside_the_suite(user_folder, tmp_path):
    suite = tiny_suite(
        strategies=[{"name": "naive"}, {"name": "walk", "params": {"walk_lambda": 50.0}}], imports=["my_strategies"]
    )
    (user_folder / "suite.yaml").write_text(yaml.safe_dump(suite))
    elsewhere = tmp_path / "elsewhere"  # run from another folder: the suite's own folder is searched
    elsewhere.mkdir()
    assert _cli(elsewhere, "validate", str(user_folder / "suite.yaml")).returncode == 0
    out = tmp_path / "out"
    ran = _cli(elsewhere, "run", str(user_folder / "suite.yaml"), "--out", str(out), "--executor", "process")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "not comparable" not in ran.stdout + ran.stderr
    record = json.loads(next((out / "runs").glob("*walk*/result.json")).read_text())
    assert record["status"] == "ok" and record["walk_penalty_to_data_gradient"][1] is not None
    assert record["timing"]["importance_seconds"] > 0  # the core times a plug-in's importance pass
    assert record["memory"]["regularizer_bytes"] > 0


def test_a_module_that_cannot_be_imported_is_a_config_error_naming_it(user_folder):
    suite = tiny_suite(imports=["no_such_module"])
    (user_folder / "suite.yaml").write_text(yaml.safe_dump(suite))
    refused = _cli(user_folder, "validate", "suite.yaml")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "imports: cannot import 'no_such_module'" in refused.stderr
    (user_folder / "suite.yaml").write_text(yaml.safe_dump(tiny_suite(imports="my_strategies")))
    refused = _cli(user_folder, "validate", "suite.yaml")
    assert refused.returncode == 2 and "imports: a list of module names" in refused.stderr


@pytest.mark.slow  # fresh interpreters importing torch and Avalanche (20 s here): for the full tier (make test), not the inner loop (make test-fast)
def test_the_import_option_lists_a_plug_in_and_perf_measures_it_at_its_params(user_folder):
    listed = _cli(user_folder, "--import", "my_strategies", "list", "strategies")
    assert listed.returncode == 0 and "walk" in listed.stdout and "online-Fisher pull" in listed.stdout
    missing = _cli(user_folder, "--import", "nope", "list", "strategies")
    assert missing.returncode == 2 and "--import: cannot import 'nope'" in missing.stderr
    perf = _cli(
        user_folder, "--import", "my_strategies", "perf", "--only", "step_costs", "--repeats", "1", "--dataset",
        "digits", "--set", "strategies=[naive, {name: walk, params: {walk_lambda: 5.0}}]",
    )  # fmt: skip
    assert perf.returncode == 0, perf.stderr[-3000:]
    assert "walk[walk_lambda=5.0]" in perf.stdout
    wrong = _cli(
        user_folder, "--import", "my_strategies", "perf", "--only", "step_costs", "--set",
        "strategies=[{name: walk, params: {walk_lamda: 5.0}}]",
    )  # fmt: skip
    assert wrong.returncode == 2 and "walk_lamda" in wrong.stderr


@pytest.mark.slow  # four runs and a second suite run: about 20 s here
def test_a_plugin_edited_between_two_runs_reruns_its_runs_and_sets_the_old_aside(user_folder, tmp_path):
    """Issue 94: a module named in ``imports:`` edited between two runs into one folder kept its stale numbers (0
    executed, 2 skipped, ``plugins: none``). The module's source is in each run's config now: the second run reruns
    the plug-in's runs (naive's stay), their records equal a fresh run's on the edited module, and the first run's
    records are moved aside, never deleted."""
    suite = tiny_suite(
        strategies=[{"name": "naive"}, {"name": "walk", "params": {"walk_lambda": 50.0}}], imports=["my_strategies"]
    )
    (user_folder / "suite.yaml").write_text(yaml.safe_dump(suite))
    out = tmp_path / "out"
    first = _cli(user_folder, "run", "suite.yaml", "--out", str(out), "--no-report")
    assert first.returncode == 0, first.stderr[-3000:]
    walk = sorted((out / "runs").glob("*walk*/result.json"))
    before = {p.parent.name: json.loads(p.read_text()) for p in walk}
    assert all(set(r["config"]["sources"]) == {"my_strategies"} for r in before.values())
    (user_folder / "my_strategies.py").write_text(PLUGIN.replace("OnlineQuadratic(0.9)", "OnlineQuadratic(0.1)"))
    second = _cli(user_folder, "run", "suite.yaml", "--out", str(out), "--no-report")
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"{len(walk)} run(s) executed, {len(walk)} skipped" in second.stdout, second.stdout[-2000:]
    fresh = tmp_path / "fresh"
    assert _cli(user_folder, "run", "suite.yaml", "--out", str(fresh), "--no-report").returncode == 0
    for name, old in before.items():
        now = json.loads((out / "runs" / name / "result.json").read_text())
        again = json.loads((fresh / "runs" / name / "result.json").read_text())
        assert now["config"]["sources"] != old["config"]["sources"] and now["config"] == again["config"]
        assert now["accuracy_matrix"] == again["accuracy_matrix"]
        assert (out / "set_aside" / name / "result.json").is_file()
