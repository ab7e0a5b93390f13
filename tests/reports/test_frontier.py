"""Frontiers and matched plasticity on constructed points, by hand: the Pareto front, interpolation along it, the
per-seed matching against naive's LA, the paired comparison and the verdict sentence."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from forgetbench.benchmark.core.frontier import forgetting_at, matched_forgetting, pareto_front
from forgetbench.reports.frontier import (
    frontier_frame,
    has_frontier,
    matched_decisions,
    matched_plasticity,
    matched_verdicts,
)
from helpers import make_record
from report_records import record, write_folder


def test_pareto_front_keeps_the_points_nothing_beats_on_both_axes():
    la = [90, 85, 80, 88, 70, 85]
    forgetting = [10, 5, 1, 9, 1, 6]  # (88, 9) is beaten by nothing; (70, 1) by (80, 1); (85, 6) by (85, 5)
    assert pareto_front(la, forgetting).tolist() == [2, 1, 3, 0]  # by plasticity: 80, 85, 88, 90
    assert pareto_front([1, 1], [2, 2]).tolist() == [0]  # identical points: the first
    assert pareto_front([np.nan, 1], [0, 2]).tolist() == [1]
    assert pareto_front([], []).tolist() == []
    with pytest.raises(ValueError):
        pareto_front([1, 2], [1])


def test_forgetting_is_interpolated_along_the_front_and_never_extrapolated():
    la, forgetting = [80, 85, 90], [1, 5, 10]
    assert forgetting_at(82.5, la, forgetting) == pytest.approx(3.0)
    assert forgetting_at(90, la, forgetting) == 10.0 and forgetting_at(80, la, forgetting) == 1.0
    assert forgetting_at(60, la, forgetting) == 1.0  # more plastic than asked everywhere: its best point
    assert math.isnan(forgetting_at(90.1, la, forgetting))  # no point that plastic: no value
    assert math.isnan(forgetting_at(85, [], []))


def test_each_seed_is_matched_on_its_own_front_at_its_own_target():
    points = {0: ([80, 90, 85], [2, 12, 20]), 1: ([70, 75], [0, 4])}  # seed 0's (85, 20) is off its front
    assert matched_forgetting(points, {0: 85.0, 1: 74.0, 2: 80.0}) == pytest.approx({0: 7.0, 1: 3.2})
    assert matched_forgetting(points, {0: 95.0, 1: 60.0}) == pytest.approx({0: float("nan"), 1: 0.0}, nan_ok=True)


def _raw(label: str, seed: int, la: float, forgetting: float, params: dict | None = None) -> dict:
    """Two tasks, each learnt to ``la``; the first then drops by ``forgetting``: LA = la, forgetting = forgetting."""
    raw = record("s", label, seed, [[la, 0.1], [la - forgetting, la]], name=label.partition("[")[0])
    raw["strategy"]["params"] = params or {}
    return raw


def _rec(label: str, seed: int, la: float, forgetting: float, params: dict | None = None):
    return make_record(_raw(label, seed, la, forgetting, params))


def _records(make=None) -> list:
    """Two seeds; naive LA 90 / 92; method a's front is stronger than b's at every plasticity."""
    make = make or _rec
    out = []
    for seed, naive_la in ((0, 0.90), (1, 0.92)):
        out.append(make("naive", seed, naive_la, 0.20))
        for value, la, f_a, f_b in (
            (1, naive_la, 0.15, 0.18),
            (10, naive_la - 0.02, 0.05, 0.12),
            (100, naive_la - 0.06, 0.01, 0.04),
        ):
            out.append(make(f"a[lam={value}]", seed, la, f_a, {"lam": value}))
            out.append(make(f"b[beta={value}]", seed, la, f_b, {"beta": value}))
    return out


@pytest.fixture
def frame() -> pd.DataFrame:
    return frontier_frame(_records())


def test_frontier_frame_groups_a_sweep_into_one_method_with_its_strength(frame):
    assert set(frame.method) == {"naive", "a", "b"} and has_frontier(frame, "s")
    a = frame[(frame.method == "a") & (frame.seed == 0)].sort_values("value")
    assert a.value.tolist() == [1, 10, 100] and a.plasticity.tolist() == pytest.approx([90, 88, 84])
    assert a.forgetting.tolist() == pytest.approx([15, 5, 1]) and a.on_front.all()


def test_matched_plasticity_pairs_the_methods_seed_by_seed(frame):
    matched = matched_plasticity(frame, "s", drops=(2.0, 4.0))
    a2 = matched[(matched.method == "a") & (matched["drop"] == 2.0)].iloc[0]
    assert a2.per_seed == pytest.approx({0: 5.0, 1: 5.0}) and a2["mean"] == pytest.approx(5.0)
    b4 = matched[(matched.method == "b") & (matched["drop"] == 4.0)].iloc[0]
    assert b4.per_seed == pytest.approx({0: 8.0, 1: 8.0})  # halfway from (LA-2, 12) to (LA-6, 4)
    (_, _, at4), *_ = [d for d in matched_decisions(frame, "s", drops=(4.0,))]
    pairs = {(p.first, p.second): p for p in at4}
    assert set(pairs) == {("a", "b"), ("a", "naive"), ("b", "naive")}  # naive is a participant: its own forgetting
    assert 100 * pairs["a", "b"].diff == pytest.approx(3.0 - 8.0)
    assert 100 * pairs["a", "naive"].diff == pytest.approx(3.0 - 20.0)
    lines = matched_verdicts(matched)
    assert lines[0].startswith(
        "At naive's LA - 2 points, forgetting (points, mean [95% t interval, descriptive]): a 5.0 (2 seeds: too few"
    )
    # a constant shift over 2 seeds: no interval, and no decision, on fewer than 3
    assert "3 pairs not tested, on fewer than 3 paired seeds: a vs b (2)" in lines[0]


def test_a_target_no_front_reaches_is_said_not_extrapolated(frame):
    matched = matched_plasticity(frame, "s", drops=(-1.0,))  # more plastic than naive: no sweep point gets there
    assert matched.n.tolist() == [0, 0, 0]  # naive's own point is less plastic than that too
    assert "no method's front reaches that plasticity" in matched_verdicts(matched)[0]


def test_the_report_draws_the_frontiers_and_writes_every_point(tmp_path):
    from forgetbench.reports.html import write_report

    out = write_folder(tmp_path / "results", _records(_raw))
    report = write_report([out])
    html = report.read_text()
    section = html[html.index('<h2 id="frontier-s">') :]
    assert "Frontiers: s, methods at matched plasticity" in section and 'src="data:image/png;base64,' in section
    assert (
        "At naive&#39;s LA - 2 points" in section and "not tested, on fewer than 3 paired seeds: a vs b (2)" in section
    )
    points = pd.read_csv(out / "frontier.csv")
    assert len(points) == 14 and set(points.method) == {"naive", "a", "b"} and points.on_front.any()


def test_results_frontier_equals_frontier_csv_and_matched_equals_the_reports_table(tmp_path):
    from forgetbench.benchmark.front.api import load_results
    from forgetbench.reports.html import write_report

    out = write_folder(tmp_path / "results", _records(_raw))
    write_report([out])
    results = load_results(out)
    on_disk = pd.read_csv(out / "frontier.csv").fillna({"setting": ""})  # naive's setting is "" (CSV: empty)
    mine = results.frontier()
    pd.testing.assert_frame_equal(
        mine.sort_values(["method", "seed", "plasticity"]).reset_index(drop=True),
        on_disk.sort_values(["method", "seed", "plasticity"]).reset_index(drop=True),
        check_dtype=False,
    )
    matched = results.matched(2.0)
    assert set(matched["drop"]) == {2.0} and set(matched.method) == {"naive", "a", "b"}
    a = matched[matched.method == "a"].iloc[0]
    assert a["mean"] == pytest.approx(5.0) and a.per_seed == pytest.approx({0: 5.0, 1: 5.0})
    assert set(results.matched()["drop"]) == {1.0, 2.0, 5.0}
    headline = results.verdicts()["s"][0]  # a method at several strengths: the headline is matched plasticity
    assert headline.startswith("At matched plasticity (the suite's runs, 2 seed(s)") and "a 5.0" not in headline[:60]


def test_a_report_without_a_sweep_has_no_frontier_section(tmp_path):
    from forgetbench.reports.html import write_report

    kept = [r for r in _records(_raw) if "[lam=10]" in r["strategy"]["label"] or "[" not in r["strategy"]["label"]]
    out = write_folder(tmp_path / "results", kept)  # naive and one setting of a: nothing to draw a front from
    html = write_report([out]).read_text()
    assert 'id="frontier-' not in html and not (out / "frontier.csv").exists()


def _search_records(retrained: str = "all") -> tuple[list, dict]:
    """A language-model search swept on two seeds: (records, run id -> metrics). naive: perplexity 70 / 72,
    err2 - err1 0.10 nats; wpl at alpha 1, 10, 100 trades perplexity (+0, +2, +6) for forgetting (0.09, 0.05, 0.01);
    wpl at alpha 1000 is dominated (perplexity +8, forgetting 0.03). Those are the retrained perplexities (every
    run's with ``retrained="all"``, all but naive's seed-1 run's with ``"all but one"``, none with ``"none"``);
    the derived ones, on the shared weights, are 5 higher and every run has them."""
    records, metrics = [], {}
    for seed, ppl in ((0, 70.0), (1, 72.0)):
        points = [("naive", None, ppl, 0.10)] + [
            (f"wpl[alpha={a}]", a, ppl + d, f)
            for a, d, f in ((1, 0, 0.09), (10, 2, 0.05), (100, 6, 0.01), (1000, 8, 0.03))
        ]
        for label, alpha, p, f in points:
            rec = make_record(record("lm", label, seed, [], name=label.partition("[")[0]))
            rec.strategy.params = {} if alpha is None else {"alpha": alpha}
            records.append(rec)
            metrics[rec.run_id] = {
                "LA": float("nan"),
                "forgetting": float("nan"),
                "derived_valid_ppl": p + 5,
                "lm_forgetting_mean": f,
            }
            if retrained == "all" or (retrained == "all but one" and (label, seed) != ("naive", 1)):
                metrics[rec.run_id]["retrained_valid_ppl"] = p
    return records, metrics


def test_a_language_model_search_is_a_frontier_of_perplexity_against_err_gap():
    from forgetbench.reports.frontier import LANGUAGE_SEARCH, scenario_axes

    records, metrics = _search_records()
    frame = frontier_frame(records, metrics)
    assert scenario_axes(frame, "lm") is LANGUAGE_SEARCH and (frame["axes"] == "language-model search").all()
    assert set(frame.plasticity_metric) == {"retrained_valid_ppl"}
    wpl = frame[(frame.method == "wpl") & (frame.seed == 0)].sort_values("value")
    assert wpl.plasticity.tolist() == [70, 72, 76, 78]
    assert wpl.forgetting.tolist() == pytest.approx([0.09, 0.05, 0.01, 0.03])
    # lower perplexity is better: alpha 1000 (78, 0.03) is beaten by alpha 100 (76, 0.01) and is off the front
    assert wpl.on_front.tolist() == [True, True, True, False]
    matched = matched_plasticity(frame, "lm", drops=(2.0, 4.0))
    at2 = matched[(matched["drop"] == 2.0) & (matched.method == "wpl")].iloc[0]
    at4 = matched[(matched["drop"] == 4.0) & (matched.method == "wpl")].iloc[0]
    assert at2.per_seed == pytest.approx({0: 0.05, 1: 0.05})  # naive's perplexity + 2: the alpha-10 point
    assert at4.per_seed == pytest.approx({0: 0.03, 1: 0.03})  # halfway from (+2, 0.05) to (+6, 0.01)
    line = matched_verdicts(matched, LANGUAGE_SEARCH)[0]
    assert line.startswith(
        "At naive's perplexity + 2 perplexity, forgetting (nats, mean [95% t interval, descriptive]): wpl 0.050"
    )


@pytest.mark.parametrize("retrained", ["all but one", "none"])
def test_a_search_frontier_never_mixes_retrained_and_shared_weight_perplexities(retrained):
    # one run not retrained: the whole scenario falls back on the derived perplexity every run has
    frame = frontier_frame(*_search_records(retrained))
    assert set(frame.plasticity_metric) == {"derived_valid_ppl"} and len(frame) == 10
    wpl = frame[(frame.method == "wpl") & (frame.seed == 0)].sort_values("value")
    assert wpl.plasticity.tolist() == [75, 77, 81, 83]


def test_the_report_draws_a_search_frontier_in_its_own_units(tmp_path):
    from forgetbench.reports.figure_views import frontier_views as _frontier_views

    records, metrics = _search_records()
    views, points = _frontier_views(records, computed=metrics)
    (view,) = views
    assert view.target == "naive perplexity +" and view.forgetting_unit == "nats" and view.figure
    assert view.verdicts[0].startswith("At naive's perplexity + 1 perplexity, forgetting (nats")
