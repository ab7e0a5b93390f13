"""Config validation: every error names the field, exits 2 and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgetbench.benchmark.core.config import ConfigError, load_config, resolve_config
from conftest import tiny_suite


def _error(raw) -> str:
    with pytest.raises(ConfigError) as info:
        resolve_config(raw)
    return str(info.value)


def test_valid_suite_fills_defaults():
    suite = resolve_config(tiny_suite(strategies=[{"name": "ewc", "params": {"ewc_lambda": 5}}]))
    assert suite.strategies[0].params == {
        "ewc_lambda": 5.0,
        "mode": "separate",
        "decay_factor": None,
        "importance": "minibatch",
        "estimator": "empirical",
        "max_curvature": "auto",
        "importance_samples": None,
        "importance_norm": "none",
    }
    assert suite.scenarios[0].params["trunk"] == "mlp"


def test_unknown_top_level_key():
    assert "epochz: unknown key" in _error(tiny_suite(epochz=3))


def test_unknown_training_key_and_bad_literal():
    msg = _error(tiny_suite(training={"optimizer": "rmsprop", "batchsize": 3}))
    assert "training.optimizer" in msg and "'sgd' or 'adam'" in msg
    assert "training.batchsize: unknown key" in msg


def test_unknown_strategy_lists_allowed_names():
    msg = _error(tiny_suite(strategies=[{"name": "naive"}, {"name": "ewx"}]))
    assert "strategies[1].name: unknown strategy 'ewx'" in msg
    assert "naive" in msg and "ewc" in msg and "si" in msg


def test_negative_lambda_names_the_param():
    msg = _error(tiny_suite(strategies=[{"name": "ewc", "params": {"ewc_lambda": -1}}]))
    assert "strategies[0].params.ewc_lambda" in msg and "greater than or equal to 0" in msg


def test_unknown_strategy_param():
    msg = _error(tiny_suite(strategies=[{"name": "si", "params": {"lambda": 1}}]))
    assert "strategies[0].params.lambda: unknown key" in msg


def test_unknown_dataset_lists_allowed():
    msg = _error(tiny_suite(scenarios=[{"name": "split", "params": {"dataset": "imagenet"}}]))
    assert "scenarios[0].params.dataset" in msg and "digits" in msg and "mnist1d" in msg


def test_too_many_tasks_for_dataset():
    msg = _error(tiny_suite(scenarios=[{"name": "split", "params": {"dataset": "digits", "tasks": 6}}]))
    assert "exceeds the 10 classes" in msg


def test_duplicate_labels_rejected():
    msg = _error(tiny_suite(strategies=[{"name": "ewc"}, {"name": "ewc"}]))
    assert "label 'ewc' is used twice" in msg


def test_same_strategy_twice_with_labels_is_fine():
    suite = resolve_config(
        tiny_suite(strategies=[{"name": "ewc"}, {"name": "ewc", "label": "ewc-big", "params": {"ewc_lambda": 1e4}}])
    )
    assert [s.display_name for s in suite.strategies] == ["ewc", "ewc-big"]


def test_missing_data_message_says_where(write_suite, cli, tmp_path, capsys):
    config = write_suite(tiny_suite(scenarios=[{"name": "split", "params": {"dataset": "mnist"}}]))
    assert cli("validate", config, "--data-root", tmp_path) == 2
    err = capsys.readouterr().err
    assert "scenarios[0].params.dataset" in err
    assert str(tmp_path / "mnist") in err and "download: true" in err


def test_validate_ok(write_suite, cli, capsys):
    assert cli("validate", write_suite(tiny_suite(seeds=[0, 1]))) == 0
    assert "2 run(s)" in capsys.readouterr().out


def test_list_shows_descriptions(cli, capsys):
    assert cli("list", "strategies") == 0
    out = capsys.readouterr().out
    for name in ("naive", "ewc", "si"):
        assert name in out
    assert "Elastic Weight Consolidation" in out


@pytest.mark.parametrize(
    "path",
    sorted(
        p
        for p in (Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml")
        if not p.name.startswith("example_")
    ),
    ids=lambda p: p.name,
)
def test_every_shipped_config_is_valid(path):
    """Every suite in configs/ resolves (names, params, grids); data checks are the preflight's job.
    The example_* suites need their out-of-tree plug-ins installed: tests/scenarios/test_byo.py runs them. Read as
    the CLI reads them (load_config), so a `module:attr` reference finds the module beside the YAML
    whichever tests ran before."""
    suite = load_config(path)
    assert suite.scenarios and suite.strategies
