"""Result folders written before the layer folders (commit 89b8dee) load and report as they did then.

``tests/data/results_89b8dee`` is a 2-seed digits suite (naive, ewc) run by that commit's
``python -m benchmark.cli run`` (its ``summary.csv`` / ``comparisons.csv`` are that run's report's). The
terminal table and verdicts (``expected_terminal.txt``) are what main printed for the folder just before
the layer folders (ca5c294: ``load_results(folder).summary_text()`` and ``.verdicts()``), since the table
has shown points since 89b8dee, with one change since: the verdict prints each strategy's LA beside its forgetting
(issue 66); that commit's report wrote the same two CSV files as 89b8dee's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

import forgetbench

STORED = Path(__file__).resolve().parents[1] / "data" / "results_89b8dee"


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    shutil.copytree(STORED / "runs", folder / "runs")
    shutil.copy(STORED / "suite.yaml", folder / "suite.yaml")
    return folder


def test_old_folder_prints_the_same_table_and_verdicts(tmp_path):
    results = forgetbench.load_results(_copy(tmp_path))
    printed = results.summary_text() + "\n" + json.dumps(results.verdicts(), indent=1, sort_keys=True) + "\n"
    assert printed == (STORED / "expected_terminal.txt").read_text()


def test_old_folder_reports_the_same_tables(tmp_path):
    folder = _copy(tmp_path)
    report = forgetbench.load_results(folder).report()
    assert report.exists() and "<html" in report.read_text()[:200].lower()
    # the same numbers, but no interval and no p from 2 seeds any more (issue 80): those columns are empty now
    dropped = {"summary.csv": ["ci_low", "ci_high"], "comparisons.csv": ["ci_low", "ci_high", "p_value"]}
    for name, empty in dropped.items():
        stored = pd.read_csv(STORED / name)
        kept = [c for c in stored.columns if c not in empty]
        written = pd.read_csv(folder / name)
        pd.testing.assert_frame_equal(written[kept], stored[kept], rtol=1e-12)
        assert written[empty].isna().all().all()
    # comparisons.csv's adjusted p: not tested on 2 pairs, as the verdict says
    assert pd.read_csv(folder / "comparisons.csv").p_adjusted.isna().all()
