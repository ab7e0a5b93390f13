"""A lab's first week on its own supernet (issue 95's user: a custom weight-sharing supernet trained in rounds,
asking whether WPL keeps earlier architectures better than EWC), without a hand-made choice: ``auto`` strengths are
calibrated then tuned to strengths whose penalties act, the supernet's plasticity (1 - err1, each architecture
right after its own turn) fills LA's place in every table, and the methods are compared at matched plasticity."""

from __future__ import annotations

import json
import math

import pytest

from forgetbench.benchmark.core.calibration import ACTS
from forgetbench.benchmark.front.cli import main
from byo_fixtures import tiny_supernet_params

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ROUNDS = [["lin", "lin"], ["wide", "skip"], ["skip", "lin"]]


def suite() -> dict:
    tune = {"trials": 3, "decades": 1, "neighbours": [0.1, 10]}
    return {
        "name": "own",
        "seeds": [0, 1, 2],
        "device": "cpu",
        "training": {"optimizer": "sgd", "lr": 0.1, "batch_size": 32, "eval_batch_size": 256},
        "scenarios": [
            {
                "name": "custom_supernet",
                "label": "own",
                "params": tiny_supernet_params(search="fixed", architectures=ROUNDS, epochs=2, steps_per_turn=150),
            }
        ],
        "strategies": [
            {"name": "naive"},
            {"name": "ewc", "tune": {"params": {"ewc_lambda": "auto"}, **tune}},
            {"name": "wpl", "tune": {"params": {"alpha": "auto"}, **tune}},
        ],
    }


def test_an_own_supernet_is_tuned_to_acting_strengths_with_plasticity_in_every_table(write_suite, tmp_path):
    import forgetbench

    out = tmp_path / "out"
    assert main(["run", str(write_suite(suite())), "--out", str(out), "--quiet"]) == 0
    calibrated = json.loads((out / "calibration.json").read_text())["entries"]
    for entry in calibrated:  # the peak is an acting probe (an inert one trains as naive does)
        best = next(p for p in entry["probes"] if p["value"] == entry["best"])
        assert best["acts"] and best["ratio"] >= ACTS, entry["verdict"]
        assert math.isfinite(entry["naive"]["la"]), "the supernet's plasticity is calibration's LA"
    for study in json.loads((out / "tuning.json").read_text())["studies"]:
        chosen = next(t for t in study["trials"] if t["number"] == study["chosen_trial"])
        assert chosen["penalty_ratio"] >= ACTS, study["notes"]

    frame = forgetbench.load_results(out).frame()
    la = frame[frame.metric == "LA"]
    assert set(la.strategy.str.split("[").str[0]) == {"naive", "ewc", "wpl"} and la.value.notna().all()
    html = (out / "report.html").read_text()
    assert "Frontiers: own, methods at matched plasticity" in html
    frontier = html[html.index("Frontiers: own, methods at matched plasticity") :]
    assert "At naive&#39;s LA - 1 points" in frontier or "At naive's LA - 1 points" in frontier
    assert "<details><summary>The derived architecture of each run: 21 row(s)" in html  # collapsed: 7 x 3 seeds

    from helpers import browser_page

    with browser_page(1280, 900) as page:  # the answer opens the report: the decisions on its first screen
        page.goto((out / "report.html").resolve().as_uri())
        page.screenshot(path=str(tmp_path / "first_screen.png"))
        box = page.query_selector("#answer").bounding_box()
        assert box is not None and box["y"] + box["height"] <= 900, box
        assert "own" in page.inner_text("#answer") and "decided" in page.inner_text("#answer")
