"""Reproductions of published figures: the comparison by hand, the config block, `forgetbench reproduce`."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from forgetbench.benchmark.core.config import ConfigError, resolve_config
from forgetbench.reports.reproduce import reproduction_rows
from conftest import tiny_suite

SUMMARY = pd.DataFrame(
    [
        # scenario, strategy, metric, mean, std, ci_low, ci_high, n_seeds (means as fractions)
        ("s", "naive", "ACC", 0.8650, 0.01, 0.80, 0.93, 2),
        ("s", "ewc", "ACC", 0.9700, 0.01, 0.95, 0.99, 2),
        ("s", "ewc", "forgetting", 0.0100, 0.01, 0.00, 0.02, 2),
    ],
    columns=["scenario", "strategy", "metric", "mean", "std", "ci_low", "ci_high", "n_seeds"],
)


def test_rows_compare_in_points_with_the_larger_of_tolerance_and_published_std():
    spec = {
        "metric": "ACC",
        "tolerance": 1.5,
        "targets": {
            "naive": {"mean": 87.19, "std": None},  # 86.50 - 87.19 = -0.69: within 1.5
            "ewc": {"mean": 98.64, "std": 2.0},  # 97.00 - 98.64 = -1.64: beyond 1.5, within the std 2.0
            "si": {"mean": 99.09},  # no run: fails
        },
    }
    rows = reproduction_rows(SUMMARY, spec, "s").set_index("strategy")
    assert rows.loc["naive", "obtained"] == pytest.approx(86.5) and rows.loc["naive", "diff"] == pytest.approx(-0.69)
    assert rows.loc["naive", "allowed"] == 1.5 and rows.loc["naive", "passed"]
    assert rows.loc["ewc", "allowed"] == 2.0 and rows.loc["ewc", "passed"]
    assert rows.loc["ewc", "ci_low"] == pytest.approx(95.0) and rows.loc["ewc", "n_seeds"] == 2
    assert not rows.loc["si", "passed"] and math.isnan(rows.loc["si", "obtained"]) and rows.loc["si", "n_seeds"] == 0
    strict = reproduction_rows(SUMMARY, {**spec, "targets": {"ewc": {"mean": 98.64}}}, "s")
    assert not strict.passed[0]  # -1.64 with no std: beyond 1.5
    other_metric = reproduction_rows(SUMMARY, {"metric": "forgetting", "targets": {"ewc": {"mean": 1.0}}}, "s")
    assert other_metric.obtained[0] == pytest.approx(1.0) and other_metric.passed[0]


def test_bounds_absolute_and_relative_to_another_strategy():
    """The WPL two-model row's form: naive forgets >= 5 points, WPL at most a quarter of naive's forgetting,
    WPL's B at least 97% of naive's."""
    summary = pd.DataFrame(
        [
            ("s", "naive", "forgetting", 0.0800, 0.01, 0.06, 0.10, 2),
            ("s", "naive", "last", 0.9500, 0.01, 0.94, 0.96, 2),
            ("s", "wpl", "forgetting", 0.0150, 0.01, 0.01, 0.02, 2),  # 1.5 <= 0.25 * 8.0 = 2.0: margin 0.5
            ("s", "wpl", "last", 0.9200, 0.01, 0.91, 0.93, 2),  # 92.0 < 0.97 * 95.0 = 92.15: fails by 0.15
        ],
        columns=SUMMARY.columns,
    )
    spec = {
        "metric": "forgetting",
        "targets": {
            "naive": {"at_least": 5.0},
            "wpl": [
                {"at_most": 0.25, "relative_to": "naive"},
                {"metric": "last", "at_least": 0.97, "relative_to": "naive"},
            ],
        },
    }
    rows = reproduction_rows(summary, spec, "s")
    assert list(rows.metric) == ["forgetting", "forgetting", "last"]
    assert rows.passed.tolist() == [True, True, False]
    assert rows["diff"].tolist() == pytest.approx([3.0, 0.5, -0.15])
    assert rows.criterion.tolist() == [">= 5.00", "<= 0.25 x naive (8.00)", ">= 0.97 x naive (95.00)"]
    from forgetbench.reports.reproduce import format_row

    line = format_row(rows.iloc[1].to_dict(), "wpl_row")
    assert (
        line
        == "wpl_row wpl: forgetting target <= 0.25 x naive (8.00), obtained 1.50 [1.00, 2.00] over 2 seed(s); margin +0.50  pass"
    )
    missing = reproduction_rows(summary[summary.strategy != "naive"], spec, "s")
    assert not missing.passed.any()  # no naive run: its own claim and every claim relative to it fail


def test_a_claim_is_a_figure_or_a_bound():
    from forgetbench.benchmark.core.config import PublishedResult

    for bad in (
        {},
        {"mean": 1.0, "at_least": 0.5},
        {"at_most": 1.0, "std": 0.1},
        {"mean": 1.0, "relative_to": "naive"},
    ):
        with pytest.raises(ValueError):
            PublishedResult(**bad)
    with pytest.raises(ConfigError, match=r"reproduce.targets.naive.relative_to: 'wpl' names no strategy"):
        resolve_config(_reproduction({"naive": {"at_most": 1.0, "relative_to": "wpl"}}))


def _reproduction(targets, **more):
    suite = tiny_suite(strategies=[{"name": "naive"}, {"name": "ewc", "params": {"ewc_lambda": 10}}])
    suite["reproduce"] = {"source": "a hand-made test row", "settings": "this test", "targets": targets} | more
    return suite


def test_reproduce_block_is_checked_against_the_suite():
    assert resolve_config(_reproduction({"naive": {"mean": 50.0}})).reproduce.tolerance == 1.5
    with pytest.raises(
        ConfigError, match=r"reproduce.targets: \['si'\] name no strategy of this suite; its strategies: naive, ewc"
    ):
        resolve_config(_reproduction({"si": {"mean": 50.0}}))
    with pytest.raises(ConfigError, match="reproduce.tolerance"):
        resolve_config(_reproduction({"naive": {"mean": 50.0}}, tolerance=0))
    two = _reproduction({"naive": {"mean": 50.0}})
    two["scenarios"] = two["scenarios"] * 2
    two["scenarios"][1] = {**two["scenarios"][1], "label": "other"}
    with pytest.raises(ConfigError, match="exactly one scenario"):
        resolve_config(two)


def test_reproduce_command_prints_each_row_and_exits_by_the_verdict(tmp_path, cli, capsys):
    folder = tmp_path / "reproduce"
    folder.mkdir()
    # naive's ACC is somewhere in 0..100: a 50 +- 50 target always passes; ewc's can never be -10
    (folder / "row_a.yaml").write_text(yaml.safe_dump(_reproduction({"naive": {"mean": 50.0}}, tolerance=50.0)))
    (folder / "row_b.yaml").write_text(yaml.safe_dump(_reproduction({"ewc": {"mean": -10.0}}) | {"name": "b"}))
    out = tmp_path / "out"
    status = cli("reproduce", "--dir", folder, "--out", out, "--seeds", 2, "--quiet", "--data-root", tmp_path / "data")
    printed = capsys.readouterr().out
    assert status == 1, printed
    lines = [line for line in printed.splitlines() if line.startswith("row_")]
    assert len(lines) == 2 and lines[0].endswith("pass") and lines[1].endswith("FAIL"), printed
    assert "over 2 seed(s)" in lines[0] and "1/2 reproduction row(s) pass" in printed
    html = (out / "row_b" / "report.html").read_text()
    assert "Reproductions" in html and "a hand-made test row" in html and "FAIL" in html
    assert (
        cli(
            "reproduce",
            "row_a",
            "--dir",
            folder,
            "--out",
            out,
            "--seeds",
            2,
            "--quiet",
            "--data-root",
            tmp_path / "data",
        )
        == 0
    )  # the complete runs are reused


def test_reproduce_bad_input_runs_nothing(tmp_path, cli, capsys):
    folder = tmp_path / "reproduce"
    folder.mkdir()
    plain = tiny_suite()
    (folder / "plain.yaml").write_text(yaml.safe_dump(plain))
    assert cli("reproduce", "--dir", folder, "--out", tmp_path / "out") == 2
    assert "reproduce: missing" in capsys.readouterr().err
    assert cli("reproduce", "nosuch", "--dir", folder, "--out", tmp_path / "out") == 2
    assert "unknown reproduction(s) ['nosuch']; available: plain" in capsys.readouterr().err
    assert cli("reproduce", "--dir", tmp_path / "empty", "--out", tmp_path / "out") == 2
    assert "no reproduction configs (*.yaml) in" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


VDV_SPLIT = {
    "task-IL": {"ewc": 1e7, "online_ewc": (1e8, 0.8), "si": 50.0},  # param_values.py @ f0b1461
    "class-IL": {"ewc": 1e8, "si": 0.5},
}


def test_shipped_van_de_ven_reproductions_map_the_authors_lambdas():
    """Their penalties are lambda/2 sum F d^2 (online: gamma lambda/2 F~ d^2) and c sum omega d^2; ours are
    ewc_lambda sum F d^2 and si_lambda/2 sum omega d^2, so each lambda must be converted, not copied."""
    folder = Path(__file__).resolve().parents[2] / "configs" / "reproduce"
    for setting, values in VDV_SPLIT.items():
        suite = resolve_config(yaml.safe_load((folder / f"split_mnist_{setting[:-3].lower()}_il.yaml").read_text()))
        assert suite.training.iterations_per_task == 2000 and suite.training.optimizer == "adam"
        assert suite.training.lr == 1e-3 and suite.training.batch_size == 128 and not suite.training.reset_optimizer
        assert suite.scenarios[0].params["setting"] == setting and suite.scenarios[0].params["dataset"] == "mnist_01"
        strategies = {s.display_name: s.params for s in suite.strategies}
        assert strategies["ewc"]["ewc_lambda"] == values["ewc"] / 2
        assert strategies["ewc"]["estimator"] == "predicted" and strategies["ewc"]["importance"] == "exact"
        if "online_ewc" in values:
            lam, gamma = values["online_ewc"]
            assert strategies["online_ewc"]["ewc_lambda"] == pytest.approx(gamma * lam / 2)
            assert strategies["online_ewc"]["decay_factor"] == gamma
        assert strategies["si"] == {"si_lambda": 2 * values["si"], "eps": 0.1, "clip": None}
        assert set(suite.reproduce.targets) == set(strategies)


@pytest.mark.slow  # the console script in a subprocess from another folder, 7 s: for the full tier, not the inner loop
def test_reproduce_and_the_default_demo_find_the_checkouts_configs_from_any_folder(tmp_path):
    # Run from another folder, `reproduce` and `run` without a config fall back on the checkout's configs/ (they
    # looked in benchmark/configs/, which does not exist, and said there were no reproductions).
    import subprocess
    import sys

    from forgetbench.benchmark.front import commands

    assert (commands.REPO_ROOT / "configs" / "demo.yaml").is_file() and commands.default_config_path().is_file()
    done = subprocess.run(
        [sys.executable, "-m", "forgetbench.benchmark.front.cli", "reproduce", "no_such_claim"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2 and "available: " in done.stderr and "permuted_mnist_domain_il" in done.stderr
