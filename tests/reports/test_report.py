"""Summary tables, CSV, HTML sections and the report CLI, on hand-built result folders."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_suite
from report_records import write_plan
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
    # no interval from fewer than 3 seeds: these have 2
    assert math.isnan(_value(table, "naive", "ACC", "ci_low")) and math.isnan(_value(table, "naive", "ACC", "ci_high"))
    assert "forgetting_reduction" not in set(table[table.strategy == "naive"].metric)
    assert table.strategy.iloc[0] == "naive"  # naive first


def test_paired_comparison_against_naive():
    comps = S.comparisons_table(S.runs_long(basic_records()))
    row = comps[(comps.strategy == "ewc") & (comps.metric == "forgetting")].iloc[0]
    assert row["diff"] == pytest.approx(-0.175) and row.n_pairs == 2  # d = -0.2, -0.15
    # two pairs are not tested: no interval, no p, no claim
    assert math.isnan(row.ci_low) and row.outcome == "undecided" and math.isnan(row.p_value)
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
    # rows are rounds, not square: LA and forgetting are read off the turns: 1 - mean(.5 .4 .3 .4 .2 .3); the gaps
    # but each round's last (0 by definition there): .1 0 .1 0
    assert _value(table, "naive", "LA", scenario="nas") == pytest.approx(0.65)
    assert _value(table, "naive", "forgetting", scenario="nas") == pytest.approx(0.05)
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
    assert out.exists() and sorted(p.name for p in out.parent.iterdir()) == ["r.html"]  # the one path named
    assert not list(tmp_path.rglob("*.tmp"))
    # -o into another results folder: its tables stay its own; this report's go into this report's folder
    assert cli("report", b) == 0
    tables = ("summary.csv", "comparisons.csv", "decisions.csv")
    before = {name: (b / name).read_bytes() for name in tables}
    assert cli("report", a, "-o", b / "a.html") == 0
    assert {name: (b / name).read_bytes() for name in tables} == before and (b / "a.html").is_file()
    assert set(pd.read_csv(a / "summary.csv").scenario) == {"pair"}


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
    summary = pd.read_csv(a / "summary.csv")  # the tables go into the results folder, whatever -o names
    assert set(summary.strategy) == {"naive"}
    everything = {p.stem for p in (tmp_path / "figs").glob("*.png")}
    assert cli("report", a, "-o", tmp_path / "all.html") == 0
    assert set(pd.read_csv(a / "summary.csv").strategy) == {"naive", "ewc"} and everything


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


def test_a_stop_an_import_mangles_is_still_the_stop_it_was(cli, tmp_path, capsys, monkeypatch):
    """A SIGTERM landing inside numpy's import surfaced as 'TypeError: expected a message argument' with a
    traceback and exit 1 (seen once in CI): an error after a stop signal arrived is that stop."""
    import signal

    from forgetbench.benchmark.front import commands
    from forgetbench.reports import html

    folder = write_folder(tmp_path / "r", basic_records())
    assert cli("report", folder) == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}

    def mangled(*args, **kwargs):
        commands._STOPS_RECEIVED.append(signal.SIGTERM)  # the handler ran; the import turned its raise into this
        raise TypeError("expected a message argument")

    monkeypatch.setattr(html, "write_report", mangled)
    capsys.readouterr()
    assert cli("report", folder) == 130
    err = capsys.readouterr().err
    assert "stopped by SIGTERM" in err and "intact (nothing was written)" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    monkeypatch.setattr(html, "write_report", lambda *a, **k: (_ for _ in ()).throw(TypeError("a bug")))
    with pytest.raises(TypeError, match="a bug"):  # with no stop received, an error is the error it is
        cli("report", folder)


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
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and report.poll() is None:
        status = dict(line.split(":", 1) for line in open(f"/proc/{report.pid}/status").read().splitlines())
        if int(status["SigCgt"].strip(), 16) & caught:
            break
        time.sleep(0.005)
    report.send_signal(signal.SIGTERM)  # the report is still importing what it draws with
    _, err = report.communicate(timeout=300)
    assert report.returncode == 130, err  # as for Ctrl-C (docs/reference/cli.md)
    assert "stopped by SIGTERM" in err and "intact (nothing was written)" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before  # no temp file either


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
    write_plan(folder)  # as the suite that wrote them: a folder without a plan is read whole


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
