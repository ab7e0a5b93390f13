"""Bring your own network, data and benchmark: the Python API, the `custom` scenario (any nn.Module on
any Avalanche benchmark, by reference), shared-parameter detection on a user's model, and scenario
plug-ins from other distributions (tests/example_adapters, tests/example_multihead, pip-installed).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from forgetbench.benchmark.front.api import load_results, run_suite
from forgetbench.benchmark.core.config import ComponentSpec, ConfigError
from forgetbench.benchmark.core.components import SCENARIOS
from forgetbench.benchmark.run.spec import RunSpec
from forgetbench.benchmark.run.runner import run
from forgetbench.benchmark.run.assemble import seeded_scenario
from forgetbench.benchmark.front.testing import TRAINING, check_scenario
from conftest import tiny_suite
from helpers import REPO, comparable, mnist_root, pip_install_target, run_command, cli_command

HERE = Path(__file__).parents[1]  # tests/
CUSTOM = {"model": "byo_fixtures:multihead_mlp", "benchmark": "byo_fixtures:tensor_benchmark"}


# ------------------------------------------------------------------------------------ Python API
@pytest.mark.slow  # a script in a fresh interpreter: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
def test_run_suite_from_a_script_writes_the_same_result_files_as_the_cli(tmp_path):
    suite = tiny_suite(strategies=[{"name": "naive"}, {"name": "ewc"}])
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    script = (
        "import json, sys; from forgetbench.benchmark.front.api import run_suite\n"
        "r = run_suite(json.loads(sys.argv[1]), out=sys.argv[2], progress=False)\n"
        "print(r.summary_text()); sys.exit(r.exit_code)"
    )
    api = run_command(
        [sys.executable, "-c", script, json.dumps(suite), str(tmp_path / "api")],
        env=env,
    )
    cli_command("run", str(tmp_path / "suite.yaml"), "--out", str(tmp_path / "cli"), "--quiet", "--no-report", env=env)
    assert comparable(tmp_path / "api") == comparable(tmp_path / "cli") != {}
    assert "naive" in api.stdout and "ewc" in api.stdout


def test_results_views_and_load_results(tmp_path):
    results = run_suite(tiny_suite(seeds=[0, 1]), out=tmp_path / "out", progress=False)
    assert results.exit_code == 0 and len(results.ran) == 2
    frame = results.frame()
    assert set(frame.columns) >= {"scenario", "strategy", "seed", "metric", "value"}
    assert set(frame.seed) == {0, 1} and "forgetting" in set(frame.metric)
    summary = results.summary()
    assert list(summary.strategy) == ["naive"] and int(summary.ok.iloc[0]) == 2
    report = results.report()
    assert report == tmp_path / "out" / "report.html" and report.exists()
    again = load_results(tmp_path / "out")
    assert again.frame().equals(frame)
    assert list(results.verdicts()) == ["split"]


def test_run_suite_validates_like_the_cli(tmp_path):
    with pytest.raises(ConfigError, match=r"strategies\[0\].name"):
        run_suite(tiny_suite(strategies=[{"name": "nope"}]), out=tmp_path / "out", progress=False)
    with pytest.raises(ConfigError, match="seeds"):
        run_suite(tiny_suite(), out=tmp_path / "out", seeds=[-1], progress=False)
    with pytest.raises(ConfigError, match="do not exist"):
        load_results(tmp_path / "nowhere")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ custom scenario
def custom_spec(strategy: str = "naive", **params) -> RunSpec:
    return RunSpec(
        "byo", ComponentSpec(name="custom", params=CUSTOM | params), ComponentSpec(name=strategy), 0, TRAINING, "cpu"
    )


def test_a_repeated_task_label_is_a_later_round_of_its_task_not_a_new_task():
    # issue 53: labels 0, 1, 2, 0, 1, 2 made six tasks (a 6 x 6 matrix with duplicate columns, "never learned")
    spec = custom_spec(benchmark="byo_fixtures:rounds_benchmark")
    scenario = seeded_scenario(spec, None)
    assert [t.name for t in scenario.tasks] == ["experience0", "experience1", "experience2"]
    assert [(t.task, t.record) for t in scenario.schedule] == [
        (0, False),
        (1, False),
        (2, True),
        (0, False),
        (1, False),
        (2, True),
    ]
    record = run(spec, None)
    assert record.status == "ok", record.error
    assert len(record.experiences) == 3 and [len(r) for r in record.accuracy_matrix] == [3, 3]  # a row per round
    assert [t.task for t in record.turn_accuracy] == [0, 1, 2, 0, 1, 2]


def test_a_repeated_task_label_with_other_data_is_refused_naming_the_experience():
    with pytest.raises(ValueError, match="train experience 3 repeats task label 0 .* other data"):
        seeded_scenario(
            custom_spec(benchmark="byo_fixtures:rounds_benchmark", benchmark_params={"same_data": False}), None
        )


def test_custom_scenario_detects_trunk_as_shared_and_heads_as_private():
    scenario = seeded_scenario(custom_spec(), None)
    a, b = (t.used_params for t in scenario.tasks)
    assert a & b == {"net.trunk.0.weight", "net.trunk.0.bias"}
    assert a - b == {"net.classifier.classifiers.0.classifier.weight", "net.classifier.classifiers.0.classifier.bias"}
    check_scenario("custom", CUSTOM)


@pytest.mark.parametrize("model", ["byo_fixtures:multihead_mlp", "byo_fixtures:plain_mlp"])
def test_custom_scenario_runs_every_regularizer_that_needs_shared_params(model):
    for strategy in ("naive", "wpl", "l2", "spg"):
        record = run(custom_spec(strategy, model=model), None)
        assert record.status == "ok", (strategy, record.error)
        assert len(record.accuracy_matrix) == 2


def test_plain_module_is_one_model_for_every_experience():
    scenario = seeded_scenario(custom_spec(model="byo_fixtures:plain_mlp"), None)
    assert (
        scenario.tasks[0].used_params
        == scenario.tasks[1].used_params
        == {n for n, _ in scenario.model.named_parameters()}
    )


# ---------------------------------------------------------------- out-of-tree example packages
@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """``pip install`` both example packages (tests/example_*) into a private site folder."""
    site = tmp_path_factory.mktemp("site")
    for name in ("example_adapters", "example_multihead"):
        pip_install_target(HERE / name, site, tmp_path_factory.mktemp("src"))
    return site


def site_env(site: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))


@pytest.mark.slow  # runs pip
@pytest.mark.xdist_group("ray")  # starts a Ray cluster: with the other Ray tests, one at a time
def test_scenario_plugin_is_listed_and_runs_with_process_and_ray_executors(example_site, tmp_path):
    env = site_env(example_site)
    listed = cli_command("list", "scenarios", env=env).stdout
    assert "adapters" in listed and "example plug-in" in listed
    datasets = cli_command("list", "datasets", env=env).stdout
    assert "blobs" in datasets and "Gaussian blobs" in datasets
    suite = tiny_suite(
        scenarios=[
            {"name": "adapters", "params": {"tasks": 2, "width": 16, "bottleneck": 4}},
            {"name": "split", "params": {"dataset": "blobs", "tasks": 2, "widths": [16]}},
        ],
        strategies=[{"name": "naive"}, {"name": "wpl"}],
    )
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    for executor in ("process", "ray"):
        out = tmp_path / executor
        suite_file, workers = str(tmp_path / "suite.yaml"), ("--executor", executor, "--workers", "2")
        cli_command("run", suite_file, "--out", str(out), "--quiet", "--no-report", *workers, env=env)
        records = [json.loads(p.read_text()) for p in out.glob("runs/*/result.json")]
        assert len(records) == 4 and all(r["status"] == "ok" for r in records), executor


@pytest.mark.slow  # runs pip
def test_adapters_plugin_passes_the_scenario_contract(example_site, monkeypatch):
    monkeypatch.syspath_prepend(str(example_site))
    monkeypatch.setattr(SCENARIOS, "_entry_points_loaded", False)  # read entry points again, plug-in visible
    assert "adapters" in SCENARIOS.names()
    for frozen in (False, True):
        check_scenario("adapters", {"tasks": 3, "width": 16, "bottleneck": 4, "train_backbone": not frozen})


@pytest.mark.slow  # runs pip, real MNIST
def test_multihead_example_on_splitmnist_wpl_covers_exactly_the_trunk(example_site, monkeypatch):
    """Example (a) of docs/howto/own-model.md: the user's multi-head CNN on Avalanche's SplitMNIST from the local files."""
    root = mnist_root()
    monkeypatch.syspath_prepend(str(example_site))
    suite = yaml.safe_load((REPO / "configs" / "example_multihead.yaml").read_text())
    params = suite["scenarios"][0]["params"] | {"max_train": 200, "max_test": 200}
    training = TRAINING.model_copy(update={"batch_size": 32})

    def spec(strategy, **extra):
        return RunSpec(
            "ex", ComponentSpec(name="custom", params=params | extra), ComponentSpec(name=strategy), 0, training, "cpu"
        )

    scenario = seeded_scenario(spec("wpl"), root)
    trunk = {n for n, _ in scenario.model.named_parameters() if n.startswith("net.trunk.")}
    assert trunk and all(scenario.tasks[t].used_params & scenario.tasks[0].used_params == trunk for t in range(1, 5))
    from forgetbench.strategies.wpl import WPLPlugin

    seen = []
    original = WPLPlugin.before_training_exp

    def spy(self, strategy, **kwargs):
        original(self, strategy, **kwargs)
        seen.append(set(self.penalised_names))

    monkeypatch.setattr(WPLPlugin, "before_training_exp", spy)
    auto = run(spec("wpl"), root)
    assert auto.status == "ok", auto.error
    assert seen[0] == set() and all(names == trunk for names in seen[1:])  # the trunk, exactly
    declared = run(spec("wpl", used_params="declared"), root)
    assert declared.accuracy_matrix == auto.accuracy_matrix  # the same numbers as declaring by hand
    for strategy in ("naive", "ewc"):
        assert run(spec(strategy), root).status == "ok"
