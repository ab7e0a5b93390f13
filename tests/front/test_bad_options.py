"""Bad input, table-driven (the battery's rules: tests/bad_input.py). Command-line options and the report command, and
what new and hostile users typed (issue 34); the same contract through the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


from bad_input import (
    Case,
    battery,
    check_refused,
    RUN,
    _ALIAS_BOMB,
    _RECORD,
    _custom,
    _strategy,
    _suite,
)
from helpers import REPO

CASES: list[Case] = [
    # --- command-line options
    ("retries-negative", {"suite": _suite()}, (*RUN, "--retries", "-1"), "--retries"),
    ("workers-zero", {"suite": _suite()}, (*RUN, "--executor", "process", "--workers", "0"), "--workers"),
    ("executor-unknown", {"suite": _suite()}, (*RUN, "--executor", "slurm"), "--executor"),
    # --- the report command
    ("report-missing-folder", {}, ("report", "{dir}/no-results"), "no-results"),
    (
        "report-output-is-a-directory",
        {"results/runs/r/result.json": json.dumps(_RECORD)},
        ("report", "{dir}/results", "-o", "{out}"),
        "-o/--output",
    ),
    (
        "report-import-unknown-module",
        {"results/runs/r/result.json": json.dumps(_RECORD)},
        ("report", "{dir}/results", "--import", "no_such_metrics_module"),
        "--import no_such_metrics_module",
    ),
    # --- issue 34: found as new and as hostile users
    ("yaml-alias-bomb", {"suite": _ALIAS_BOMB}, RUN, "expands to more than 100,000 values"),
    ("yaml-deep-nesting", {"suite": "name: t\nseeds: " + "[" * 2000 + "]" * 2000 + "\n"}, RUN, "nests deeper than 64"),
    (
        "label-10000-characters",
        {"suite": _suite(strategies=[{"name": "naive", "label": "a" * 10_000}])},
        RUN,
        "strategies[0].label: Value error, label is 10000 characters long; at most 100",
    ),
    ("suite-name-too-long", {"suite": _suite(name="n" * 300)}, RUN, "name: String should have at most 100 characters"),
    (
        "out-is-a-file",
        {"suite": _suite(), "taken": "not a folder"},
        ("run", "{suite}", "--out", "{taken}"),
        "is a file, not a folder",
    ),
    (
        "out-under-a-file",
        {"suite": _suite(), "taken": "x"},
        ("run", "{suite}", "--out", "{taken}/sub"),
        "is a file, not a folder",
    ),
    (
        "report-output-under-a-file",
        {"results/runs/r/result.json": json.dumps(_RECORD), "taken": "x"},
        ("report", "{dir}/results", "-o", "{taken}/report.html"),
        "-o/--output",
    ),
    (
        "report-strategies-unknown",
        {"results/runs/r/result.json": json.dumps(_RECORD)},
        ("report", "{dir}/results", "--strategies", "ewc[ewc_lambda=1]"),
        "--strategies: no runs of ewc[ewc_lambda=1]",
    ),
    ("table-missing-folder", {}, ("table", "zoo", "{dir}/no-results"), "no-results"),
    (
        "table-kind-unknown",
        {"results/runs/r/result.json": json.dumps(_RECORD)},
        ("table", "zo", "{dir}/results"),
        "invalid choice: 'zo'",
    ),
    (
        "table-no-row",
        {"results/runs/r/result.json": json.dumps(_RECORD)},
        ("table", "frontier", "{dir}/results"),
        "no run the frontier table reads",
    ),
    (
        "report-figures-under-a-file",
        {"results/runs/r/result.json": json.dumps(_RECORD), "taken": "x"},
        ("report", "{dir}/results", "-o", "{dir}/r.html", "--figures", "{taken}/figures"),
        "--figures",
    ),
    (
        "validate-skip-data-factory-keyword",
        {"suite": _custom(benchmark_params={"n_tasks": 3})},
        ("validate", "{suite}", "--skip-data"),
        "unexpected keyword argument 'n_tasks'",
    ),
    (
        "validate-skip-data-no-task-labels",
        {"suite": _custom(benchmark_params={"task_labels": False})},
        ("validate", "{suite}", "--skip-data"),
        "has no task labels",
    ),
    (
        "unknown-key-lists-allowed",
        {"suite": _strategy("ewc", ewc_lamda=100)},
        RUN,
        "strategies[0].params.ewc_lamda: unknown key; did you mean 'ewc_lambda'? allowed: ewc_lambda",
    ),
    (
        "unknown-nested-key-lists-allowed",
        {"suite": _suite(training={"lrr": 0.1})},
        RUN,
        "training.lrr: unknown key; did you mean 'lr'? allowed: optimizer, lr",
    ),
    (
        "unknown-root-key-lists-allowed",
        {"suite": _suite(strategy=[{"name": "naive"}])},
        RUN,
        "strategy: unknown key; did you mean 'strategies'? allowed: name, seeds",
    ),
    (
        "unknown-strategy-suggests",
        {"suite": _suite(strategies=[{"name": "wlp"}])},
        RUN,
        "unknown strategy 'wlp'; did you mean 'wpl'?",
    ),
    # --- issue 80: a per-seed table to decide, and a folder's verdict settings read back
    ("decide-missing-table", {}, ("decide", "{dir}/none.csv"), "none.csv: no such file"),
    ("decide-missing-column", {"t.csv": "method,seed\na,0\n"}, ("decide", "{dir}/t.csv"), "missing column(s) value"),
    ("decide-seed-not-integer", {"t.csv": "method,seed,value\na,x,0.1\n"}, ("decide", "{dir}/t.csv"), "seed: 'x'"),
    ("decide-value-not-number", {"t.csv": "method,seed,value\na,0,lots\n"}, ("decide", "{dir}/t.csv"), "value: 'lots'"),
    (
        "decide-two-values-one-seed",
        {"t.csv": "method,seed,value\na,0,0.1\na,0,0.2\nb,0,0.3\n"},
        ("decide", "{dir}/t.csv"),
        "method 'a', seed 0 appears 2 times",
    ),
    (
        "decide-alpha-out-of-range",
        {"t.csv": "method,seed,value\na,0,0.1\n"},
        ("decide", "{dir}/t.csv", "--alpha", "0.9"),
        "alpha: 0.9",
    ),
    # --- issue 94: hostile tables, each refused before any work
    (
        "decide-empty-value",
        {"t.csv": "method,seed,value\na,0,0.1\na,1,\nb,0,0.3\nb,1,0.2\n"},
        ("decide", "{dir}/t.csv"),
        "value: empty (row 2) is not a finite number",
    ),
    (
        "decide-infinite-value",
        {"t.csv": "method,seed,value\na,0,inf\nb,0,0.3\n"},
        ("decide", "{dir}/t.csv"),
        "value: inf (row 1) is not a finite number",
    ),
    (
        "decide-empty-method",
        {"t.csv": "method,seed,value\na,0,0.1\n,1,0.2\nb,0,0.3\n"},
        ("decide", "{dir}/t.csv"),
        "method: empty (row 2)",
    ),
    (
        "decide-header-only",
        {"t.csv": "method,seed,value\n"},
        ("decide", "{dir}/t.csv"),
        "nothing to compare: the table has no rows",
    ),
    (
        "decide-one-method",
        {"t.csv": "method,seed,value\na,0,0.1\na,1,0.2\n"},
        ("decide", "{dir}/t.csv"),
        "nothing to compare: one method (a)",
    ),
    (
        "decide-one-method-per-scenario",
        {"t.csv": "scenario,method,seed,value\ns1,a,0,0.1\ns2,b,0,0.2\n"},
        ("decide", "{dir}/t.csv"),
        "nothing to compare: no scenario has two methods (s1: a; s2: b)",
    ),
    (
        "decide-float-seed",
        {"t.csv": "method,seed,value\na,0.5,0.1\nb,0.5,0.2\n"},
        ("decide", "{dir}/t.csv"),
        "seed: 0.5 (row 1) is not an integer",
    ),
    (
        "decide-unknown-baseline",
        {"t.csv": "method,seed,value\na,0,0.1\nb,0,0.2\n"},
        ("decide", "{dir}/t.csv", "--baseline", "nosuch"),
        "baseline: 'nosuch' is not a method of the table (its methods: a, b)",
    ),
    (
        "decide-out-is-the-table",
        {"t.csv": "method,seed,value\na,0,0.1\nb,0,0.2\n"},
        ("decide", "{dir}/t.csv", "--out", "{dir}/t.csv"),
        "is the table being decided",
    ),
    (
        "decide-out-under-a-file",
        {"t.csv": "method,seed,value\na,0,0.1\nb,0,0.2\n"},
        ("decide", "{dir}/t.csv", "--out", "{dir}/t.csv/d.csv"),
        "is a file",
    ),
    (
        "decide-out-a-directory",
        {"t.csv": "method,seed,value\na,0,0.1\nb,0,0.2\n"},
        ("decide", "{dir}/t.csv", "--out", "{dir}"),
        "is a directory; name a file",
    ),
    (
        "decide-max-seeds-below-the-table",
        {"t.csv": "method,seed,order,value\na,0,0,0.1\na,1,0,0.2\na,2,1,0.3\nb,0,0,0.3\nb,1,0,0.1\nb,2,1,0.2\n"},
        ("decide", "{dir}/t.csv", "--max-seeds", "2"),
        "max seeds: 2 is below the 3 seeds a method has in the table",
    ),
    (
        "decide-max-seeds-zero",
        {"t.csv": "method,seed,value\na,0,0.1\n"},
        ("decide", "{dir}/t.csv", "--max-seeds", "0"),
        "--max-seeds",
    ),
    (
        "report-folder-alpha-0.9",
        {"results/runs/r/result.json": json.dumps(_RECORD), "results/suite.yaml": "name: t\nverdict: {alpha: 0.9}\n"},
        ("report", "{dir}/results"),
        "verdict.alpha: Input should be less than 0.5 (got 0.9)",
    ),
    (
        "report-folder-alpha-not-a-number",
        {"results/runs/r/result.json": json.dumps(_RECORD), "results/suite.yaml": "name: t\nverdict: {alpha: abc}\n"},
        ("report", "{dir}/results"),
        "verdict.alpha: Input should be a valid number",
    ),
    (
        "report-folders-decided-differently",
        {
            "a/runs/r/result.json": json.dumps(_RECORD),
            "a/suite.yaml": "name: t\nverdict: {alpha: 0.05}\n",
            "b/runs/r2/result.json": json.dumps({**_RECORD, "run_id": "r2"}),
            "b/suite.yaml": "name: t\nverdict: {alpha: 0.1}\n",
        },
        ("report", "{dir}/a", "{dir}/b"),
        "decide under different settings",
    ),
    # --- issue 81: what a folder holds is read as strictly as the input it came from
    (
        "yaml-duplicate-key",
        {
            "suite": "name: t\nseeds: [0, 1]\nseeds: {start: 3, max: 8}\nscenarios: [{name: split}]\nstrategies: [{name: naive}]\n"
        },
        RUN,
        "key 'seeds' appears twice in one mapping (lines 2 and 3)",
    ),
    (
        "estimate-missing-data",
        {
            "suite": _suite(
                scenarios=[{"name": "split", "params": {"dataset": "mnist", "tasks": 2, "classes_per_task": 2}}]
            )
        },
        ("run", "{suite}", "--out", "{out}", "--estimate", "--data-root", "{dir}/no-data"),
        "dataset 'mnist' not found under data root",
    ),
    # --- issue 94 item 8: the estimate builds every pair before it times any (the raising one listed last, where the
    # timing's budget ran out before it: exit 0 and its runs priced at the others' cost)
    (
        "estimate-a-strategy-that-raises-when-built",
        {
            "suite": _suite(
                seeds=list(range(10)),
                imports=["estimate_raising_strategy"],
                strategies=[{"name": "naive"}, {"name": "ewc"}, {"name": "si"}, {"name": "estimate_raises"}],
            ),
            "estimate_raising_strategy.py": (
                "from forgetbench.strategies import StrategyParams, register_strategy\n"
                "@register_strategy('estimate_raises', params=StrategyParams)\n"
                "def build(ctx, params):\n"
                "    raise RuntimeError('the licence file is missing')\n"
            ),
        },
        ("run", "{suite}", "--out", "{out}", "--estimate"),
        "--estimate: split / estimate_raises cannot be built (RuntimeError: the licence file is missing)",
    ),
    (
        "estimate-a-model-factory-that-raises",
        {"suite": _custom(model="byo_fixtures:raising_model")},
        ("run", "{suite}", "--out", "{out}", "--estimate"),
        "model byo_fixtures:raising_model raised RuntimeError",
    ),
    (
        "report-folder-rounds-not-a-record",
        {"results/runs/r/result.json": json.dumps(_RECORD), "results/rounds.json": '{"rule": 5}'},
        ("report", "{dir}/results"),
        "rounds.json: not a record of rounds (rule:",
    ),
]


@battery(CASES)
def test_bad_input_exits_2_names_the_field_and_writes_nothing(files, argv, field, tmp_path, capsys):
    check_refused(files, argv, field, tmp_path, capsys)


@pytest.mark.slow  # the console script in a subprocess: 3 s: for the full tier, not the inner loop
def test_bad_input_through_the_installed_console_script(tmp_path):
    """The same contract end to end: the real `forgetbench` process, its stderr and exit status."""
    config = tmp_path / "suite.yaml"
    config.write_bytes(b"name: t\xff\n")
    script = Path(sys.executable).with_name("forgetbench")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "forgetbench.benchmark.front.cli"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [*command, "run", str(config), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "not UTF-8" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
