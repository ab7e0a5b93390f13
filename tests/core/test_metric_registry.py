"""A metric is declared once (``forgetbench.register_metric``) and reaches every view of the results:
the per-run frame, the terminal table, ``Results.summary``, ``summary.csv``, the paired comparisons and
the HTML report all aggregate through one path (``runs_long`` -> ``summary_table``)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from helpers import run_command

import forgetbench
from forgetbench.benchmark.core import metric_registry
from forgetbench.benchmark.core.metrics import run_metrics
from forgetbench.reports.tables import format_overview, overview

from conftest import tiny_suite

KEY = "first_task_final_test"


def first_task_final(record):
    "accuracy on the first experience after the last one (test metric)"
    return record.accuracy_matrix[-1][0]


@pytest.fixture
def registered():
    forgetbench.register_metric(
        KEY, better="higher", unit="accuracy", label="First task (final)", bounds=(0, 1), terminal="first (pts)"
    )(first_task_final)
    yield metric_registry.METRICS[KEY]
    del metric_registry.METRICS[KEY]


def record(seed: int, matrix: list[list[float]], strategy: str = "naive", status: str = "ok") -> dict:
    return {
        "run_id": f"s__{strategy}__{seed}",
        "suite": "t",
        "scenario": {"label": "s", "name": "split"},
        "strategy": {"label": strategy, "name": strategy},
        "seed": seed,
        "status": status,
        "accuracy_matrix": matrix,
        "timing": {"train_seconds": 1.0, "steps": 10},
    }


def test_registered_metric_is_computed_per_run_and_aggregated_like_the_built_ins(registered):
    records = [
        record(0, [[0.9, 0.1], [0.6, 0.95]]),
        record(1, [[0.8, 0.2], [0.7, 0.9]]),
        record(2, [[0.5]], status="failed"),
    ]
    assert run_metrics(records[0])[KEY] == pytest.approx(0.6)
    assert math.isnan(run_metrics(records[2])[KEY])  # not ok: NaN, like every accuracy metric
    table = overview(records)
    row = table.iloc[0]
    assert (row.ok, row.not_ok) == (2, 1)
    assert row[f"{KEY}_mean"] == pytest.approx(0.65) and row[f"{KEY}_std"] == pytest.approx(np.std([0.6, 0.7], ddof=1))
    # the terminal shows it in points, after the built-in columns (rank inf)
    text = format_overview(table)
    header = text.splitlines()[0]
    assert header.index("train s") < header.index("first (pts)")
    assert "65.0 ± 7.1" in text


def test_registered_metric_reaches_the_terminal_table_summary_csv_comparisons_and_report(registered, tmp_path):
    suite = tiny_suite(seeds=[0, 1], strategies=[{"name": "naive"}, {"name": "ewc", "params": {"ewc_lambda": 50.0}}])
    results = forgetbench.run_suite(suite, out=tmp_path / "out", progress=False)
    assert results.exit_code == 0
    expected = {}
    for rec in results.records:
        expected.setdefault(rec.strategy.label, []).append(rec.accuracy_matrix[-1][0])

    assert "first (pts)" in results.summary_text().splitlines()[0]
    summary = results.summary().set_index("strategy")
    for strategy, values in expected.items():
        assert summary.loc[strategy, f"{KEY}_mean"] == pytest.approx(np.mean(values))

    report = results.report()
    csv = pd.read_csv(report.parent / "summary.csv")
    rows = csv[csv.metric == KEY].set_index("strategy")
    assert set(rows.index) == {"naive", "ewc"} and rows.loc["ewc", "mean"] == pytest.approx(np.mean(expected["ewc"]))
    comparisons = pd.read_csv(report.parent / "comparisons.csv")
    diff = comparisons[(comparisons.metric == KEY) & (comparisons.strategy == "ewc")]["diff"]
    assert diff.iloc[0] == pytest.approx(np.mean(expected["ewc"]) - np.mean(expected["naive"]))
    html = report.read_text()
    assert "First task (final)" in html and first_task_final.__doc__ in html  # column and glossary


def test_registering_twice_or_a_failing_metric_is_a_clear_error(registered):
    with pytest.raises(ValueError, match=f"metric '{KEY}' is already registered"):
        forgetbench.register_metric(KEY, better="lower")(lambda record: 0.0)
    forgetbench.register_metric("broken_test", better="lower")(lambda record: record.no_such_key)
    try:
        with pytest.raises(ValueError, match="metric 'broken_test' failed on run s__naive__0: AttributeError"):
            run_metrics(record(0, [[0.9]]))
    finally:
        del metric_registry.METRICS["broken_test"]


def test_a_reproduction_can_name_a_registered_accuracy_metric(registered):
    from forgetbench.benchmark.core.config import ReproduceSpec
    from forgetbench.reports.reproduce import reproduction_rows
    from forgetbench.reports.summary import runs_long, summary_table

    spec = ReproduceSpec(source="a paper", settings="its table", metric=KEY, targets={"naive": {"mean": 65.0}})
    records = [record(0, [[0.9, 0.1], [0.6, 0.95]]), record(1, [[0.8, 0.2], [0.7, 0.9]])]
    rows = reproduction_rows(summary_table(runs_long(records)), spec.model_dump(), "s")
    assert rows.metric.tolist() == [KEY] and rows.obtained.iloc[0] == pytest.approx(65.0) and rows.passed.iloc[0]


@pytest.mark.slow  # fresh interpreters: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
def test_a_report_without_the_registering_module_names_it_and_import_brings_the_column_back(tmp_path):
    # A metric registered in the user's script vanished from a later `forgetbench report DIR` without a word
    # (issue 53): the run folder now records which module registered it, the report says so, --import fixes it.
    import json
    import subprocess
    import sys

    from conftest import tiny_suite

    (tmp_path / "my_metrics.py").write_text(
        "import forgetbench\n"
        "@forgetbench.register_metric('my_final_first', better='higher', unit='accuracy', bounds=(0, 1))\n"
        "def my_final_first(record):\n"
        "    'Accuracy on the first task at the end.'\n"
        "    return record.accuracy_matrix[-1][0]\n"
    )
    (tmp_path / "suite.json").write_text(json.dumps(tiny_suite()))
    run_command(
        [
            sys.executable,
            "-c",
            "import json, my_metrics, forgetbench; "
            "forgetbench.run_suite(json.load(open('suite.json')), out='out', progress=False)",
        ],
        cwd=tmp_path,
    )

    def report(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "forgetbench.benchmark.front.cli", "report", "out", *extra],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )

    plain = report()
    assert plain.returncode == 0, plain.stderr
    assert (
        "'my_final_first' was registered (by module my_metrics)" in plain.stderr
        and "--import my_metrics" in plain.stderr
    )
    assert "my_final_first" not in (tmp_path / "out" / "summary.csv").read_text()
    assert "metrics-missing" in (tmp_path / "out" / "report.html").read_text()
    imported = report("--import", "my_metrics")
    assert imported.returncode == 0 and "was registered" not in imported.stderr, imported.stderr
    assert "my_final_first" in (tmp_path / "out" / "summary.csv").read_text()
    assert report("--import", "no_such_module").returncode == 2
