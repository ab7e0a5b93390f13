"""Summary tables, CSV, HTML sections and the report CLI, on hand-built result folders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_suite
from helpers import make_record
from report_records import CURVES, ERR1, ERR2, basic_records, full_records, record, write_folder
from forgetbench.reports import frames as FR
from forgetbench.reports import summary as S
from forgetbench.reports.html import build_report, write_report


def _value(table: pd.DataFrame, strategy: str, metric: str, column: str = "mean", scenario: str = "pair"):
    row = table[(table.scenario == scenario) & (table.strategy == strategy) & (table.metric == metric)]
    assert len(row) == 1, (strategy, metric)
    return row[column].iloc[0]


def test_summary_uses_ok_runs_and_counts_seeds():
    long = S.runs_long(basic_records())
    table = S.summary_table(long)
    assert list(table.columns) == ["scenario", "strategy", "metric", "mean", "std", "ci_low", "ci_high", "n_seeds"]
    assert _value(table, "naive", "forgetting") == pytest.approx(0.25)
    assert _value(table, "naive", "forgetting", "std") == pytest.approx(math.sqrt(0.005))
    assert _value(table, "ewc", "forgetting") == pytest.approx(0.075)
    assert _value(table, "ewc", "forgetting", "n_seeds") == 2  # the failed seed 2 is left out
    # per seed 1 - F/F_naive: 1 - 0.1/0.3 and 1 - 0.05/0.2
    assert _value(table, "ewc", "forgetting_reduction") == pytest.approx(100 * (2 / 3 + 0.75) / 2)
    assert _value(table, "ewc", "ACC") == pytest.approx((0.85 + 0.875) / 2)  # final rows [.8 .9], [.85 .9]
    # accuracy CIs are clipped to [0, 1] (a 2-seed t interval is wide)
    assert 0 <= _value(table, "naive", "ACC", "ci_low") and _value(table, "naive", "ACC", "ci_high") <= 1
    assert "forgetting_reduction" not in set(table[table.strategy == "naive"].metric)
    assert table.strategy.iloc[0] == "naive"  # naive first


def test_paired_comparison_against_naive():
    comps = S.comparisons_table(S.runs_long(basic_records()))
    row = comps[(comps.strategy == "ewc") & (comps.metric == "forgetting")].iloc[0]
    assert row["diff"] == pytest.approx(-0.175) and row.n_pairs == 2  # d = -0.2, -0.15
    assert 0 < row.p_value < 0.1
    assert "naive" not in set(comps.strategy)


def test_single_and_two_experience_runs():
    one = S.run_metrics(record("s", "naive", 0, [[0.7]]))
    assert one["ACC"] == pytest.approx(0.7) and one["LA"] == pytest.approx(0.7)
    assert math.isnan(one["forgetting"]) and math.isnan(one["BWT"]) and math.isnan(one["FWT"])
    two = S.run_metrics(record("s", "naive", 0, [[0.9, 0.4], [0.6, 0.8]]))
    assert two["forgetting"] == pytest.approx(0.3) and two["FWT"] == pytest.approx(-0.1)
    assert two["steps_per_second"] == pytest.approx(50.0)
    assert "curve_max_drop" not in two and "regularizer_bytes" not in two and "kendall_tau" not in two
    # T = 1 everywhere: forgetting has no finite value, so no summary row claims a number for it
    table = S.summary_table(S.runs_long([record("s", "naive", 0, [[0.7]]), record("s", "naive", 1, [[0.8]])]))
    assert "forgetting" not in set(table.metric) and _value(table, "naive", "ACC", scenario="s") == pytest.approx(0.75)


def test_curve_metrics_by_hand():
    m = S.run_metrics(
        record(
            "c",
            "naive",
            0,
            [[0.9, 0.5, 0.5], [0.8, 0.9, 0.5], [0.7, 0.85, 0.9]],
            curves=__import__("report_records").CURVES,
        )
    )
    # (1,0): baseline R[0][0] = .9, drops .2 .1 -> max .2, area 1 + 1.5; (2,0): baseline .8 -> area .25 + .75;
    # (2,1): baseline R[1][1] = .9 -> area .25; the (1,1) point is the model being trained: ignored
    assert m["curve_max_drop"] == pytest.approx(0.2)
    assert m["curve_drop_area"] == pytest.approx((2.5 + 1.0 + 0.25) / 3)


def test_supernet_joint_and_memory_metrics():
    records = full_records()
    table = S.summary_table(S.runs_long(records))
    assert _value(table, "naive", "err_gap_mean", scenario="nas") == pytest.approx(0.025)
    assert _value(table, "naive", "err_gap_max", scenario="nas") == pytest.approx(0.1)
    assert _value(table, "wpl", "kendall_tau", scenario="nas") == pytest.approx(1.0)  # same ranking
    assert "forgetting" not in set(table[table.scenario == "nas"].metric)  # rows are rounds, not square
    # a* = joint's final row (one training stage): (0.99 - 0.9 + 0.96 - 0.9 + 0.94 - 0.9) / 3
    assert _value(table, "ewc", "intransigence", scenario="curvy") == pytest.approx(0.19 / 3)
    assert _value(table, "ewc", "regularizer_bytes", scenario="curvy") == 4096
    assert "intransigence" not in set(table[table.scenario == "pair"].metric)  # no reference there
    gaps = FR.err_gap_frame(records, "nas")  # 2 strategies x 2 seeds x 2 rounds x 3 architectures
    assert len(gaps) == 24 and gaps.gap.max() == pytest.approx(0.1)
    np.testing.assert_allclose(sorted(gaps.gap.unique()), sorted(set((np.subtract(ERR2, ERR1)).round(12).ravel())))


def test_html_sections_appear_only_with_their_data(tmp_path):
    plain = build_report([write_folder(tmp_path / "plain", basic_records())]).html
    assert "Stability and plasticity" in plain and "Cost" in plain
    for absent in ("Forgetting curves", "Supernet:", "Regularizer memory", "Intransigence", "Kendall"):
        assert absent not in plain, absent
    full = build_report([write_folder(tmp_path / "full", full_records())]).html
    for present in (
        "Forgetting curves",
        "Supernet:",
        "Regularizer memory",
        "Intransigence",
        "Kendall tau",
        "Accuracy matrices",
        "Final accuracy per experience",
        "(reference)",
    ):
        assert present in full, present
    # 2 seeds: no winner named, the intervals flagged; the joint reference (forgetting 0) is no contender
    assert "Too few seeds to name a winner" in full and "Lowest forgetting so far: ewc" in full
    assert "Forgets least" not in full and "intervals below are not informative" in full
    assert full.count("data:image/png;base64,") >= 8
    assert "<script" not in full and "http://" not in full and "https://" not in full  # offline


def test_labels_and_errors_are_escaped(tmp_path):
    folder = write_folder(tmp_path / "x", basic_records(label="<script>alert(1)</script>"))
    html = build_report([folder]).html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "RuntimeError: boom &lt;b&gt;bold&lt;/b&gt;" in html  # the failed run is listed with its error


def test_report_cli_writes_html_and_csv(cli, tmp_path, capsys):
    a = write_folder(tmp_path / "a", basic_records())
    b = write_folder(tmp_path / "b", [record("other", "naive", 0, [[0.8, 0.5], [0.7, 0.9]])])
    assert cli("report", a, b) == 0
    assert f"Report: {a / 'report.html'}" in capsys.readouterr().out
    csv = pd.read_csv(a / "summary.csv")
    assert list(csv.columns) == S.SUMMARY_COLUMNS and set(csv.scenario) == {"pair", "other"}
    assert "forgetbench report" in (a / "report.html").read_text()
    out = tmp_path / "elsewhere" / "r.html"
    assert cli("report", a, "-o", out) == 0
    assert out.exists() and (out.parent / "summary.csv").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_report_figures_writes_every_figure_of_the_report_as_the_png_it_embeds(cli, tmp_path, capsys):
    """``--figures DIR``: one PNG per figure, named after its scenario and figure, byte for byte the one in the
    report's HTML."""
    import base64

    from forgetbench.reports.html import build_report

    a = write_folder(tmp_path / "a", basic_records())
    assert cli("report", a, "--figures", tmp_path / "figs") == 0
    assert f"Figures: {tmp_path / 'figs'}" in capsys.readouterr().out
    written = {p.stem: p.read_bytes() for p in (tmp_path / "figs").glob("*.png")}
    figures = build_report([a]).figures
    assert set(written) == set(figures) and "s-pair-scatter" in written
    html = (a / "report.html").read_text()
    for stem, uri in figures.items():
        assert uri in html, stem
        assert written[stem] == base64.b64decode(uri.split(",", 1)[1]) and written[stem][:4] == b"\x89PNG"
    assert not list(tmp_path.rglob("*.tmp"))


def test_report_strategies_keeps_only_those_runs_in_tables_and_figures(cli, tmp_path):
    """``--strategies naive``: the report of naive's runs alone (the ewc runs are in the folder, not in the report)."""
    a = write_folder(tmp_path / "a", basic_records())
    assert cli("report", a, "--strategies", "naive", "-o", tmp_path / "r.html", "--figures", tmp_path / "figs") == 0
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert set(summary.strategy) == {"naive"}
    everything = {p.stem for p in (tmp_path / "figs").glob("*.png")}
    assert cli("report", a, "-o", tmp_path / "all.html") == 0
    assert set(pd.read_csv(tmp_path / "summary.csv").strategy) == {"naive", "ewc"} and everything


def test_report_cli_bad_input(cli, tmp_path, capsys):
    assert cli("report", tmp_path / "missing") == 2
    assert "missing does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli("report", tmp_path / "empty") == 2
    assert "no result files" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "report.html").exists()


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_a_report_workers_setting_that_is_not_a_count_exits_2_naming_it(value, cli, tmp_path, capsys, monkeypatch):
    folder = write_folder(tmp_path / "r", basic_records())
    monkeypatch.setenv("FORGETBENCH_REPORT_WORKERS", value)
    assert cli("report", folder) == 2
    err = capsys.readouterr().err
    assert "FORGETBENCH_REPORT_WORKERS" in err and repr(value) in err and "Traceback" not in err
    assert not (folder / "report.html").exists()


@pytest.mark.parametrize(
    "damage",
    [
        {"accuracy_matrix": "abc"},
        {"seed": "x"},
        {"accuracy_matrix": [[0.9, 0.1], [0.8]]},
        None,
        {"accuracy_matrix": [[2.0, 0.1], [0.8, 0.9]]},
        {"init_accuracy": [float("inf"), 0.5]},
        {"accuracy_matrix": [[float("-inf"), 0.1], [0.8, 0.9]]},
    ],
    ids=[
        "matrix-string",
        "seed-string",
        "ragged-matrix",
        "truncated",
        "accuracy-above-one",
        "infinite-init",
        "infinite-matrix",
    ],
)
def test_report_skips_a_bad_result_file_and_lists_it(damage, cli, tmp_path, caplog, capsys):
    import json

    folder = write_folder(tmp_path / "r", basic_records())
    victim = sorted(folder.glob("runs/*/result.json"))[0]
    if damage is None:
        victim.write_text(victim.read_text()[:40])
    else:
        victim.write_text(json.dumps(json.loads(victim.read_text()) | damage))
    assert cli("report", folder) == 0
    assert f"skipping {victim}" in caplog.text  # the CLI's stderr, through logging
    assert "Skipped 1 result file(s)" in capsys.readouterr().out
    html = (folder / "report.html").read_text()
    assert "1 result file(s) skipped" in html and str(victim) in html


def test_a_stop_signal_during_report_says_the_previous_report_is_intact(cli, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    folder = write_folder(tmp_path / "r", basic_records())
    assert cli("report", folder) == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    report = subprocess.Popen(
        [sys.executable, "-m", "forgetbench.benchmark.front.cli", "report", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    caught = 1 << (signal.SIGTERM - 1)  # /proc's SigCgt: the signals the process has a handler for
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and report.poll() is None:
        status = dict(line.split(":", 1) for line in open(f"/proc/{report.pid}/status").read().splitlines())
        if int(status["SigCgt"].strip(), 16) & caught:
            break
        time.sleep(0.005)
    report.send_signal(signal.SIGTERM)  # the report is still importing what it draws with
    _, err = report.communicate(timeout=120)
    assert report.returncode == 130, err  # as for Ctrl-C (docs/reference/cli.md)
    assert "stopped by SIGTERM" in err and "intact (nothing was written)" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before  # no temp file either


@pytest.mark.slow  # a fuzzer over many mutated folders: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
def test_fuzzed_result_files_never_give_a_traceback(tmp_path):
    # Result files mutated every way a crash, an edit or another version can leave them: the report and
    # load_results skip what they cannot read, with the reason, and never raise. (A long run of this fuzzer:
    # FORGETBENCH_FUZZ_EXAMPLES=2000.)
    import contextlib
    import io
    import json
    import os

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from forgetbench import load_results
    from forgetbench.benchmark.front.cli import main

    records = [dict(r, curves=CURVES) for r in basic_records()]  # curves: what a lean read validates on its own
    junk = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-10, 10**12),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=5),
        st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=3),
        st.lists(st.lists(st.floats(-1, 2), min_size=1, max_size=3), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
    mutation = st.tuples(
        st.sampled_from(["drop", "replace", "nested", "truncate", "huge", "schema", "keep"]),
        st.sampled_from(sorted(records[0])),
        junk,
        st.floats(0, 1),
    )

    @settings(
        max_examples=int(os.environ.get("FORGETBENCH_FUZZ_EXAMPLES", 60)),
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(mutation, min_size=len(records), max_size=len(records)))
    def check(mutations):
        folder = tmp_path / "fuzz"
        for path in folder.glob("runs/*/result.json"):
            path.unlink()
        for record_, (how, key, value, where) in zip(records, mutations):
            data = json.loads(json.dumps(record_))
            if how == "drop":
                data.pop(key, None)
            elif how == "replace":
                data[key] = value
            elif how == "nested" and isinstance(data.get(key), dict) and data[key]:
                data[key][sorted(data[key])[0]] = value
            elif how == "huge":
                data["accuracy_matrix"] = [[0.5] * 400] * 400
            elif how == "schema":
                data["schema_version"] = value
            text = json.dumps(data, allow_nan=True)
            if how == "truncate":
                text = text[: int(where * len(text))]
            path = folder / "runs" / record_["run_id"] / "result.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        loop = folder / "runs" / "loop"
        if not loop.is_symlink():
            loop.symlink_to(loop)  # a symlink loop among the run folders
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            status = main(["report", str(folder)])
            load_results(folder)
            S.load_records(folder, figure_runs=0)  # every record read lean, as beyond a report's figure sample
        assert status in (0, 2) and "Traceback" not in printed.getvalue()

    check()


def _integrity_mutation(run: Path, how: str) -> bool:
    """Damage run folder ``run`` as ``how`` says; True when the run's own record must still count (a stray copy
    elsewhere is refused and leaves it be), False when the run must be refused."""
    import os

    path = run / "result.json"
    data = json.loads(path.read_text())
    other = dict(data, accuracy_matrix=[[0.11, 0.12], [0.13, 0.14]], experiences=["task0", "task1"])
    if how == "stray":
        (run.parent / f"zz_{run.name}").mkdir()
        (run.parent / f"zz_{run.name}" / "result.json").write_text(json.dumps(other))
        return True
    if how == "twin":
        twin = dict(other, run_id=data["run_id"] + "_twin")
        (run.parent / twin["run_id"]).mkdir()
        (run.parent / twin["run_id"] / "result.json").write_text(json.dumps(twin))
        return False
    if how in ("dir", "dangling", "loop", "fifo", "missing"):
        path.unlink()
        {
            "dir": path.mkdir,
            "dangling": lambda: path.symlink_to(run / "gone.json"),
            "loop": lambda: path.symlink_to(path),
            "fifo": lambda: os.mkfifo(path),
            "missing": lambda: None,
        }[how]()
        return False
    text = {
        "nan": lambda: json.dumps(dict(data, accuracy_matrix=[[0.123456789, 0.5], [0.5, 0.5]])).replace(
            "0.123456789", "NaN"
        ),
        "inf_timing": lambda: json.dumps(dict(data, timing={**data["timing"], "train_seconds": 1e999})),
        "wide": lambda: json.dumps(dict(data, accuracy_matrix=[[0.5] * 7] * 7)),
        "runid": lambda: json.dumps(dict(data, run_id=data["run_id"] + "_elsewhere")),
        "bom": lambda: "\ufeff" + json.dumps(data),
    }[how]()
    path.write_text(text)
    return False


INTEGRITY_MUTATIONS = ["stray", "twin", "dir", "dangling", "loop", "fifo", "missing", "nan", "inf_timing", "wide"]
INTEGRITY_MUTATIONS += ["runid", "bom"]


@pytest.mark.slow  # a fuzzer over many mutated folders: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
@pytest.mark.timeout(600)  # 2,000 folders (FORGETBENCH_FUZZ_EXAMPLES) take far longer: that long run is by hand
def test_fuzzed_integrity_mutations_never_give_a_wrong_summary(tmp_path):
    """Duplicates, stray copies, shape mismatches, NaN and Infinity, special files and links, on several runs at
    once: the report and load_results never raise, never change an original file, and the summary over what they
    keep equals the summary of a clean folder without the runs that had to be refused (issue 67: a stray copy
    moved naive's ACC from 87.1 to 47.1 with no word). Long run: FORGETBENCH_FUZZ_EXAMPLES=2000."""
    import contextlib
    import io
    import os
    import shutil

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from forgetbench import load_results
    from forgetbench.benchmark.front.cli import main

    records = basic_records()
    clean = write_folder(tmp_path / "clean", records)
    ids = sorted(p.name for p in (clean / "runs").iterdir())

    @settings(
        max_examples=int(os.environ.get("FORGETBENCH_FUZZ_EXAMPLES", 25)),
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.dictionaries(st.sampled_from(ids), st.sampled_from(INTEGRITY_MUTATIONS), min_size=1, max_size=3))
    def check(mutations):
        folder, expected = tmp_path / "fuzz", tmp_path / "expected"
        for f in (folder, expected):
            shutil.rmtree(f, ignore_errors=True)
        shutil.copytree(clean, folder)
        shutil.copytree(clean, expected)
        for run_id, how in mutations.items():
            if not _integrity_mutation(folder / "runs" / run_id, how):
                shutil.rmtree(expected / "runs" / run_id)
        originals = {p: p.read_bytes() for p in folder.glob("runs/*/*") if p.is_file() and not p.is_symlink()}
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            status = main(["report", str(folder)])
            kept = load_results(folder)
            summary = kept.summary() if kept.records else None
        assert status in (0, 2) and "Traceback" not in printed.getvalue(), printed.getvalue()
        assert {p: p.read_bytes() for p in originals} == originals
        wanted = load_results(expected)
        if not wanted.records:
            assert summary is None
        else:
            pd.testing.assert_frame_equal(summary, wanted.summary())

    check()


def test_run_writes_the_report_with_a_failed_run(write_suite, cli, tmp_path, capsys):
    out = tmp_path / "out"
    suite = tiny_suite(strategies=[{"name": "naive"}, {"name": "test_failing"}])
    assert cli("run", write_suite(suite), "--out", out, "--quiet") == 1
    assert f"Report: {(out / 'report.html').resolve().as_uri()}" in capsys.readouterr().out
    html = (out / "report.html").read_text()
    assert "this strategy always fails" in html and "1/2 runs ok" in html
    csv = pd.read_csv(out / "summary.csv")
    assert set(csv.strategy) == {"naive"} and (csv.n_seeds == 1).all()


def test_run_no_report(write_suite, cli, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli("run", write_suite(tiny_suite()), "--out", out, "--quiet", "--no-report") == 0
    assert "Report:" not in capsys.readouterr().out
    assert not (out / "report.html").exists()


def test_report_is_reproducible(tmp_path):
    folder = write_folder(tmp_path / "r", full_records())
    a, b = build_report([folder]), build_report([folder])
    pd.testing.assert_frame_equal(a.summary, b.summary)
    assert _drop_times(a.html) == _drop_times(b.html)


def test_figures_drawn_in_worker_processes_are_the_bytes_drawn_in_this_one(tmp_path):
    """The figures of a report drawn by two forked workers (the default on a machine with more cores) and in this
    process: every PNG byte for byte, and the same page."""
    from forgetbench.reports import drawing

    if "fork" not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip("this platform cannot fork: reports draw in-process here, the only path there is")
    folder = write_folder(tmp_path / "r", full_records())
    with drawing.easel(2) as pool:
        assert not isinstance(pool, drawing.InProcess)  # the comparison below is between two paths
    here, workers = build_report([folder], workers=1), build_report([folder], workers=2)
    assert len(here.figures) >= 5 and here.figures == workers.figures
    assert _drop_times(here.html) == _drop_times(workers.html)


def _failing_figure(frame: pd.DataFrame) -> str:
    raise ValueError(f"cannot draw {len(frame)} rows")


def _slow_figure(seconds: float) -> str:
    import time

    time.sleep(seconds)
    return "data:image/png;base64,"


def test_leaving_the_easel_on_an_error_drops_the_figures_not_yet_started():
    """A stop signal or an error inside the report: the workers finish the figure in hand, the rest are cancelled
    (not drawn before the report can stop)."""
    from forgetbench.reports import drawing

    if "fork" not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip("this platform cannot fork: figures are drawn when submitted there")
    with pytest.raises(KeyboardInterrupt):
        with drawing.easel(2) as pool:
            figures = [pool.submit(_slow_figure, 0.1 if i == 0 else 1.0) for i in range(12)]
            figures[0].result()
            raise KeyboardInterrupt  # while the second worker is still on its first, 1 s, figure
    assert figures[0].done() and not figures[0].cancelled()
    # not cancelled: the one drawn, the two in hand, and the pool's call queue (workers + 1) handed out already
    assert sum(f.cancelled() for f in figures) >= 12 - 6


@pytest.mark.parametrize("workers", [1, 2])
def test_a_figure_that_fails_in_a_worker_raises_its_error_where_it_is_read(workers):
    """A figure's exception is the caller's, from whichever process drew it."""
    from forgetbench.reports import drawing

    with drawing.easel(workers) as pool:
        figure = pool.submit(_failing_figure, pd.DataFrame({"x": [1, 2]}))
        with pytest.raises(ValueError, match="cannot draw 2 rows"):
            drawing.drawn(figure)


def _drop_times(html: str) -> str:
    import re

    return re.sub(r"generated [^·<]*", "", html)


@pytest.mark.parametrize("count", [3, 22])
def test_the_stability_figure_keeps_its_axes_for_a_sweeps_many_strategies(count):
    """22 strategies (a sweep) staggered their labels 240 points down: constrained layout squeezed the axes to
    nothing (matplotlib's 'axes sizes collapsed to zero'). Beyond CROWDED the legend names them beside the axes."""
    import warnings

    from forgetbench.reports import figures as F

    names = [f"s{k}" for k in range(count)]
    rows = [
        {"strategy": name, "metric": metric, "mean": 0.5 + 0.01 * k, "ci_low": 0.4, "ci_high": 0.6}
        for k, name in enumerate(names)
        for metric in ("LA", "forgetting")
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the collapse is only a warning
        uri = F.stability_plasticity(pd.DataFrame(rows), F.palette(names))
    assert uri is not None and uri.startswith("data:image/png;base64,")


def _many_runs(folder, seeds: int, strategies=("naive", "ewc")) -> None:
    """``seeds`` runs of each strategy on one scenario, with forgetting curves, attribution and distinct matrices."""
    from forgetbench.benchmark.core.record import RunRecord
    from forgetbench.benchmark.core.store import write_result

    attribution = [
        {
            "turn": 1,
            "model": 0,
            "observed": 0.2,
            "predicted": 0.1,
            "first_order": 0.01,
            "layers": [{"layer": "trunk.0", "drift": 0.5, "predicted": 0.1, "first_order": 0.01}],
        }
    ]
    for strategy in strategies:
        for seed in range(seeds):
            R = [[0.9, 0.5, 0.5], [0.8 - seed / 1000, 0.9, 0.5], [0.7 - seed / 500, 0.85, 0.9]]
            curves = [dict(p, accuracy=p["accuracy"] - seed / 2000) for p in CURVES]
            write_result(
                folder, RunRecord.from_dict(record("many", strategy, seed, R, curves=curves, attribution=attribution))
            )


@pytest.mark.parametrize("parallel", [False, True], ids=["one-process", "worker-processes"])
def test_lean_reading_gives_every_table_exactly_and_keeps_the_figures_detail_for_the_first_runs(
    tmp_path, monkeypatch, parallel
):
    # Beyond the first N runs of a strategy the report reads records lean (no curves, attribution, config): its
    # tables must be the tables of reading every record whole, to the bit (the same computation, once).
    _many_runs(tmp_path, seeds=12)
    monkeypatch.setattr(S, "PARALLEL_FROM", 5 if parallel else 10**9)
    monkeypatch.setattr(S, "_CHUNK", 4)
    whole = S.load_records(tmp_path)
    lean = S.load_records(tmp_path, figure_runs=3)
    long_whole = S.runs_long(whole.records)
    long_lean = S.runs_long(lean.records, lean.metrics)
    key = ["scenario", "strategy", "seed", "metric"]
    pd.testing.assert_frame_equal(
        long_whole.sort_values(key).reset_index(drop=True), long_lean.sort_values(key).reset_index(drop=True)
    )
    assert {"curve_max_drop", "curve_drop_area", "forgetting_reduction"} <= set(long_lean.metric)
    by_id = {r.run_id: r for r in lean.records}
    detailed = sorted(r.run_id for r in lean.records if r.curves is not None)
    # the figures' sample is the first 3 seeds of each strategy in numeric order (seed 10 sorts after 9, not 1)
    assert detailed == sorted(f"many__{s}__seed{k}" for s in ("naive", "ewc") for k in range(3))
    assert lean.lean == set(by_id) - set(detailed)
    assert all(by_id[i].attribution is None and by_id[i].config == {} for i in lean.lean)
    assert all(by_id[i].attribution for i in detailed)


def test_a_lean_read_skips_a_record_whose_curves_are_broken_as_a_whole_read_does(tmp_path):
    _many_runs(tmp_path, seeds=2, strategies=("naive",))
    path = tmp_path / "runs" / "many__naive__seed1" / "result.json"
    data = json.loads(path.read_text())
    data["curves"][2]["accuracy"] = "high"
    path.write_text(json.dumps(data))
    for figure_runs in (None, 0):
        scan = S.load_records(tmp_path, figure_runs=figure_runs)
        assert [r.seed for r in scan.records] == [0]
        assert len(scan.skipped) == 1 and "curves.2.accuracy" in scan.skipped[0][1]


def test_a_report_over_many_runs_says_which_runs_its_curves_are_drawn_from(tmp_path, monkeypatch):
    _many_runs(tmp_path, seeds=6)
    monkeypatch.setattr(S, "FIGURE_RUNS", 2)
    html = (write_report([tmp_path])).read_text()
    assert "drawn from the first 2 runs of each strategy (in seed order): 4 of the 12 runs" in html
    table = pd.read_csv(tmp_path / "summary.csv")
    assert (table[table.metric == "forgetting"].n_seeds == 6).all()  # every table still counts every run


def test_a_scenario_header_lists_few_seeds_and_summarises_many():
    from forgetbench.reports.views import seeds_text

    assert seeds_text([0, 1, 2]) == "seeds 0, 1, 2"
    assert seeds_text(list(range(1250))) == "1,250 seeds (0–1249)"
    assert seeds_text([*range(20), 99]) == "21 seeds (0, 1, 2, 3, 4, 5, 6, 7, 8, …, 19, 99)"


def test_a_figure_of_thousands_of_points_draws_a_fixed_sample_of_them():
    from forgetbench.reports.figures import sample_points

    data = pd.DataFrame({"strategy": ["a"] * 3000 + ["b"] * 10, "gap": np.arange(3010.0)})
    drawn = sample_points(data, limit=500)
    assert drawn.groupby("strategy").size().to_dict() == {"a": 500, "b": 10}
    assert drawn.gap.is_unique and set(drawn.gap) <= set(data.gap)
    pd.testing.assert_frame_equal(drawn, sample_points(data, limit=500))  # the same results draw the same picture
    assert sample_points(data, limit=5000) is data


def _study_records() -> list:
    """naive forgets 0.1, 0.2, 0.3 of task 0 on seeds 0-2, wpl 0.0, 0.15, 0.15 (paired: -0.1, -0.05, -0.15); both end
    at 0.9 on task 1; naive trains 10, 12, 14 s, wpl 20, 24, 28 s; wpl's pass after experience 1 was skipped."""
    records = []
    for strategy, forgets, seconds in [
        ("naive", (0.1, 0.2, 0.3), (10, 12, 14)),
        ("wpl", (0.0, 0.15, 0.15), (20, 24, 28)),
    ]:
        for seed, (f, t) in enumerate(zip(forgets, seconds)):
            extra = {"wpl_importance_skipped": [1]} if strategy == "wpl" else {}
            records.append(
                make_record(
                    {
                        "status": "ok",
                        "seed": seed,
                        "strategy": {"label": strategy},
                        "accuracy_matrix": [[0.9, 0.1], [0.9 - f, 0.9]],
                        "timing": {"train_seconds": t, "eval_seconds": 1.0},
                        "config": {},
                        "experiences": ["task0", "task1"],
                        **extra,
                    }
                )
            )
    return records


def test_the_interval_table_writes_each_metric_in_its_unit_with_the_paired_difference_by_hand():
    """forgetting in points: naive 20.0 +- t(0.975, 2) 4.303 x 0.1 / sqrt 3 = 24.8, wpl 10.0 +- 4.303 x 0.0866 /
    sqrt 3 = 21.5; wpl's paired difference -10.0 +- 4.303 x 0.05 / sqrt 3 = 12.4, t = -0.1 / (0.05 / sqrt 3) = -3.46
    on 2 df, p = 0.074; seconds as seconds (12.0 +- 4.303 x 2 / sqrt 3 = 5.0)."""
    from forgetbench.reports.study_tables import interval_frame, markdown

    table = markdown(interval_frame(_study_records(), (), ("forgetting", "train_seconds"), "forgetting")).splitlines()
    assert table[0] == "| scenario | strategy | forgetting | train_seconds | forgetting vs naive (p) |"
    assert table[2] == "| s | naive | 20.0 [-4.8, 44.8] | 12.0 [7.0, 17.0] | - |"
    assert table[3] == "| s | wpl | 10.0 [-11.5, 31.5] | 24.0 [14.1, 33.9] | -10.0 [-22.4, 2.4] (0.074) |"


def test_the_cost_table_puts_each_strategys_seconds_against_naives_by_hand():
    from forgetbench.reports.study_tables import cost_frame

    rows = cost_frame(_study_records()).set_index("strategy")
    assert rows.loc["naive", ["train s", "seeds", "/ naive", "passes skipped"]].tolist() == [
        "12.0",
        "10.0, 12.0, 14.0",
        "1.00",
        "-",
    ]
    assert rows.loc["wpl", ["train s", "/ naive", "forgetting", "passes skipped"]].tolist() == [
        "24.0",
        "2.00",
        "10.0 [-11.5, 31.5]",
        "[1]",
    ]


def test_the_table_command_prints_markdown_and_refuses_an_unknown_metric(tmp_path, cli, capsys):
    from forgetbench.benchmark.core.store import atomic_write_json

    for run in _study_records():
        atomic_write_json(tmp_path / "runs" / run.run_id / "result.json", run.to_dict())
    assert cli("table", "interval", tmp_path, "--metrics", "forgetting") == 0
    assert "| s | wpl | 10.0 [-11.5, 31.5] | -10.0 [-22.4, 2.4] (0.074) |" in capsys.readouterr().out
    assert cli("table", "interval", tmp_path, "--compare", "forgeting") == 2
    assert "--compare: unknown metric(s) forgeting; allowed: ACC" in capsys.readouterr().err


def _two_task_run(strategy: str, seed: int, a_after_b: float, **extra) -> object:
    """A two-task run: A learnt to 90%, B to 80%; A at ``a_after_b`` after B (forgetting 0.9 - a_after_b)."""
    return make_record(
        scenario={"label": "t"},
        strategy={"label": strategy},
        seed=seed,
        status="ok",
        accuracy_matrix=[[0.9, 0.1], [a_after_b, 0.8]],
        **extra,
    )


def test_the_plm_table_by_hand():
    """``forgetbench table plm``: naive forgets 30 and 40 points on seeds 0 / 1, olora 10 and 10: paired -20 and -30,
    mean -25, t = -25 / 5 = -5 with one degree of freedom, where t is Cauchy: p = 1 - 2 atan(5) / pi = 0.126.
    olora's adapters train 100 then 300 entries (mean 200); the later adapter overlaps 0.25 and 0.75 (mean 0.5)."""
    import math

    from forgetbench.reports.table_kinds import study_table

    def adapters(overlap: float) -> dict:
        return {"per_task": [{"trainable_params": 100, "overlap": None}, {"trainable_params": 300, "overlap": overlap}]}

    records = [
        _two_task_run("naive", 0, 0.6),
        _two_task_run("naive", 1, 0.5),
        _two_task_run("olora", 0, 0.8, adapters=adapters(0.25)),
        _two_task_run("olora", 1, 0.8, adapters=adapters(0.75)),
    ]
    lines = study_table("plm", records).splitlines()
    assert lines[0] == (
        "| scenario | strategy | runs ok | ACC (pts) | forgetting (pts) | LA (pts) | train s | forgetting vs naive (p) | "
        "adapter params / task | max overlap |"
    )
    p = 1 - 2 * math.atan(5) / math.pi
    assert lines[2] == "| t | naive | 2/2 | 67.5 ± 3.5 | 35.0 ± 7.1 | 85.0 ± 0.0 | 0.0 | - | - | - |"
    assert (
        lines[3]
        == f"| t | olora | 2/2 | 80.0 ± 0.0 | 10.0 ± 0.0 | 85.0 ± 0.0 | 0.0 | -25.0 (p = {p:.3f}) | 200 | 0.500 |"
    )


def test_the_attribution_table_by_hand():
    """``forgetbench table attribution``: naive's points observe 0.2 and 0.4 nats, predict 0.1 and 0.3 (explained
    0.4 / 0.6 = 66.7%), first-order 0.02 and 0.04 (10% of the observed); wpl's observe 0.1, predict 0.1. A after its
    training 90% on both of naive's seeds; forgetting: naive 35, wpl 10 points, a cut of 71%."""
    from forgetbench.reports.table_kinds import study_table

    def points(*rows):
        return [
            {"turn": 1, "iteration": None, "model": 0, "observed": o, "predicted": p, "first_order": f, "layers": []}
            for o, p, f in rows
        ]

    records = [
        _two_task_run("naive", 0, 0.6, attribution=points((0.2, 0.1, 0.02))),
        _two_task_run("naive", 1, 0.5, attribution=points((0.4, 0.3, 0.04))),
        _two_task_run("wpl", 0, 0.8, attribution=points((0.1, 0.1, 0.0))),
        _two_task_run("wpl", 1, 0.8, attribution=points((0.1, 0.1, 0.0))),
    ]
    lines = study_table("attribution", records).splitlines()
    assert lines[0] == "## t: model A's accuracy after its training 90.0% (seeds 90.0, 90.0)"
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in lines if line.startswith("| ")}
    assert rows["naive"][1:7] == ["2", "0.3000", "0.2000", "0.0300", "66.7", "nan"]  # two points: no rank correlation
    assert rows["naive"][7] == "10 |"
    assert rows["wpl"][1:6] == ["2", "0.1000", "0.1000", "0.0000", "100.0"]
    assert "forgetting: naive 35.0, wpl 10.0 points: cut 71%" in lines


def test_the_frontier_table_reads_forgetting_off_each_front_by_hand(tmp_path):
    """The frontier table (``forgetbench table frontier``) on frontier points written here, two identical seeds: naive at LA 96 forgets 10;
    ewc's front (95, 4), (90, 1) gives 4 at LA 95, 3.4 at 94 (linear between its points), 1.6 at 91; l2's front
    ends at LA 93, so LA 95 and 94 are not reached and 91 gives 0.2 + 11/13 * 0.3 = 0.45; si's reaches 95 on seed 0
    only."""
    import io

    import pandas as pd

    from forgetbench.reports.study_tables import matched_sections, render

    rows = ["scenario,method,setting,value,seed,plasticity,forgetting,on_front,axes,plasticity_metric"]
    for seed in (0, 1):
        for method, setting, la, forgetting in [
            ("naive", "", 96, 10),
            ("ewc", "ewc_lambda=10", 95, 4),
            ("ewc", "ewc_lambda=100", 90, 1),
            ("l2", "l2_lambda=1", 93, 0.5),
            ("l2", "l2_lambda=10", 80, 0.2),
            *([("si", "si_lambda=1", 95.5, 2), ("si", "si_lambda=10", 90, 1)] if seed == 0 else []),
            *([("si", "si_lambda=1", 93, 1), ("si", "si_lambda=10", 85, 0.5)] if seed == 1 else []),
        ]:
            rows.append(f"s,{method},{setting},,{seed},{la},{forgetting},True,tasks,LA")
    lines = render(matched_sections(pd.read_csv(io.StringIO("\n".join(rows) + "\n")))).splitlines()
    assert lines[0] == "## s (naive forgets 10.0)"
    assert lines[2] == "| method | naive LA - 1 | naive LA - 2 | naive LA - 5 |"
    assert lines[4] == "| ewc | 4.0 [4.0, 4.0] (2/2) | 3.4 [3.4, 3.4] (2/2) | 1.6 [1.6, 1.6] (2/2) |"
    assert lines[5] == "| l2 | not reached | not reached | 0.5 [0.5, 0.5] (2/2) |"
    # si reaches LA 95 and 94 on seed 0 only (1 + 5 / 5.5 and 1 + 4 / 5.5): a mean of one seed, no interval
    assert lines[6].startswith("| si | 1.9 (1/2) | 1.7 (1/2) | ")
    assert any(line.startswith("At naive's LA - 5 points") for line in lines)
