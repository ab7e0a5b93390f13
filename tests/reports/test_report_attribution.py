"""The report's forgetting-attribution section: its numbers against a hand computation, its sentence, its figures."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from forgetbench.benchmark.core.metrics import quadratic_explained
from forgetbench.reports.attribution import attribution_sentence, attribution_summary
from forgetbench.reports.frames import attribution_frame, attribution_layers_frame
from forgetbench.reports.html import build_report
from report_records import basic_records, write_folder


def test_quadratic_explained_by_hand():
    assert quadratic_explained([1.0, 2.0], [2.0, 4.0]) == 0.5
    assert math.isnan(quadratic_explained([1.0], [-0.5]))  # nothing forgotten: nothing to explain


def _frame(first_order: float) -> pd.DataFrame:
    rows = [
        ("naive", 0.2, 0.1),
        ("naive", 0.4, 0.3),
        ("naive", 0.8, 0.4),
        ("wpl", 0.1, 0.1),
        ("wpl", 0.05, 0.0),
        ("wpl", 0.15, 0.05),
    ]
    return pd.DataFrame(
        [
            {
                "strategy": s,
                "seed": 0,
                "turn": 1,
                "iteration": float("nan"),
                "model": 0,
                "observed": o,
                "predicted": p,
                "first_order": first_order,
            }
            for s, o, p in rows
        ]
    )


def test_summary_per_strategy_and_pooled_by_hand():
    table = attribution_summary(_frame(0.0), ["naive", "wpl"]).set_index("strategy")
    assert list(table.index) == ["naive", "wpl", "all"]
    assert table.loc["naive", "points"] == 3
    assert table.loc["naive", "explained"] == pytest.approx(100 * 0.8 / 1.4)
    assert table.loc["naive", "rho"] == pytest.approx(1.0)  # predicted ranks the three exactly as observed
    assert table.loc["wpl", "explained"] == pytest.approx(100 * 0.15 / 0.3)
    assert table.loc["all", "observed"] == pytest.approx(1.7 / 6)


def test_sentence_says_how_much_is_explained_and_whether_the_first_order_term_matters():
    negligible = attribution_sentence(_frame(0.001))
    assert "explains 56% of the observed loss increase" in negligible and "6 points" in negligible
    assert "is negligible" in negligible
    assert "not negligible" in attribution_sentence(_frame(-0.1))  # -6 x 0.1 = -35% of 1.7


def _with_attribution(records: list[dict]) -> list[dict]:
    for r in records:
        if r["status"] == "ok":
            scale = 1.0 if r["strategy"]["label"] == "naive" else 0.2
            r["attribution"] = [
                {
                    "turn": 1,
                    "iteration": 50,
                    "model": 0,
                    "observed": 0.3 * scale,
                    "predicted": 0.1 * scale,
                    "first_order": 0.0,
                    "layers": [{"layer": "trunk.0", "drift": 1.0, "predicted": 0.1 * scale, "first_order": 0.0}],
                },
                {
                    "turn": 1,
                    "iteration": None,
                    "model": 0,
                    "observed": 0.5 * scale,
                    "predicted": 0.2 * scale,
                    "first_order": 0.01,
                    "layers": [
                        {"layer": "trunk.0", "drift": 2.0, "predicted": 0.15 * scale, "first_order": 0.01},
                        {"layer": "trunk.1", "drift": 1.0, "predicted": 0.05 * scale, "first_order": 0.0},
                    ],
                },
            ]
    return records


def test_frames_and_report_section(tmp_path):
    records = _with_attribution(basic_records())
    frame = attribution_frame(records, "pair")
    assert len(frame) == 2 * 4  # 2 points in each of the 4 ok runs
    layers = attribution_layers_frame(records, "pair")  # after-turn points only
    naive = layers[(layers.strategy == "naive") & (layers.seed == 0)].set_index("layer")
    assert naive.predicted.to_dict() == pytest.approx({"trunk.0": 0.15, "trunk.1": 0.05})
    html = build_report([write_folder(tmp_path / "results", records)]).html
    assert "Why did it forget? Forgetting attribution" in html
    assert "explains 38% of the observed loss increase" in html  # (0.1 + 0.2) / (0.3 + 0.5), same for both
    assert html.count('alt="predicted loss increase per layer') == 1
    assert html.count('alt="predicted against observed loss increase') == 1


def test_report_without_attribution_has_no_section(tmp_path):
    html = build_report([write_folder(tmp_path / "results", basic_records())]).html
    assert "Why did it forget?" not in html


# ------------------------------------------------------------------ adapters and inert penalties (issue 35)
def _with_adapters(records):
    rows = {
        0: [
            {"task": 0, "norm": 1.0, "overlap": None, "trainable_params": 10, "total_params": 10},
            {"task": 1, "norm": 3.0, "overlap": 0.2, "trainable_params": 10, "total_params": 20},
        ],
        1: [
            {"task": 0, "norm": 2.0, "overlap": None, "trainable_params": 10, "total_params": 10},
            {"task": 1, "norm": 5.0, "overlap": 0.4, "trainable_params": 10, "total_params": 20},
        ],
    }
    for r in records:
        if r["status"] == "ok" and r["strategy"]["label"] == "ewc":
            r["adapters"] = {"per_task": rows[r["seed"]], "needs_task_identity": False}
        if r["status"] == "ok" and r["strategy"]["label"] == "naive" and r["seed"] == 0:
            r["ewc_penalty_inert"] = [1]  # stands for a regularizer whose penalty did not act on one experience
            r["ewc_penalty_to_data_gradient"] = [None, 0.01, 1.2]  # of the two that had a penalty
    return records


def test_adapter_summary_by_hand_and_report_section(tmp_path):
    from forgetbench.reports.frames import adapter_summary, adapters_frame, inert_penalties

    records = _with_adapters(basic_records())
    table = adapter_summary(adapters_frame(records, "pair"), ["naive", "ewc"]).set_index("task")
    assert table.loc[0, "norm"] == 1.5 and math.isnan(table.loc[0, "overlap"])
    assert table.loc[1, "norm"] == 4.0 and table.loc[1, "overlap"] == pytest.approx(0.3)
    assert table.loc[1, "total_params"] == 20 and set(table.seeds) == {2}
    # naive's seed 1 records no penalty: only the run that had one counts; inert in half of its experiences with a
    # penalty, the method is flagged (less than half would tell the reader nothing)
    assert inert_penalties(records, "pair") == {
        "naive": {"runs": 1, "of_runs": 1, "experiences": 1, "of_experiences": 2}
    }
    html = build_report([write_folder(tmp_path / "results", records)]).html
    assert "<h3>Adapters</h3>" in html and "<td>4.000</td><td>0.300</td><td>10</td><td>20</td>" in html
    # on how many experiences and runs, and no claim that the result is the unregularised one
    assert "per method over its strengths: naive (on 1 of 2 experiences with a penalty, in 1 of 1 run)" in html
    assert "result is the unregularised one" not in html
    plain = build_report([write_folder(tmp_path / "plain", basic_records())]).html
    assert "<h3>Adapters</h3>" not in plain and "Penalty too small to act" not in plain
