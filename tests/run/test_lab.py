"""Issue 76, a vision lab's first week: tuning that says when it cannot tell, a calibration that learned nothing
stopping with what to check, the importance passes' cost in the records, and the cost estimate before a suite."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time

import pytest
import yaml

from conftest import tiny_suite

from forgetbench.benchmark.front.cli import main
from forgetbench.benchmark.run.tuning import Resolution, tie_notes


def test_a_tie_within_the_validation_splits_resolution_is_named_with_the_split_that_would_tell():
    # 16 images a task, 2 tasks, 1 seed at ACC 0.9: one standard error is sqrt(0.09 / 32) = 0.053
    resolution = Resolution.of(0.9, [16, 16], 1, "ACC")
    assert resolution.error == pytest.approx(math.sqrt(0.9 * 0.1 / 32))
    trials = [
        {"number": 0, "value": 0.90625, "params": {}},
        {"number": 1, "value": 0.90625, "params": {}},
        {"number": 2, "value": 0.875, "params": {}},
        {"number": 3, "value": 0.5, "params": {}},
    ]
    (note,) = tie_notes(trials, trials[0], resolution, "ACC")
    assert note.startswith("tie: trials 0, 1, 2 score within one binomial standard error (0.0530 ACC)")
    assert "16 samples a task on 2 task(s), 1 seed(s)" in note and "the lowest trial number" in note
    # the smallest difference the trials show is 0.03125: one standard error below it needs 0.09 / (0.03125^2 * 2)
    assert f"about {math.ceil(0.09 / (0.03125**2 * 2))} samples a task" in note
    assert tie_notes(trials[2:], trials[2], resolution, "ACC") == []  # 0.875 and 0.5: told apart
    assert tie_notes(trials, trials[0], None, "ACC") == []  # records that do not say their split's size


def test_a_tie_note_reads_float_rounding_as_no_difference_and_bounds_the_split_it_names():
    """An objective moves in steps of one sample: two trials 1e-16 apart (a mean's rounding) scored the same, and
    the split the note names comes from a real difference (it printed 5e29 samples a task from such a gap)."""
    resolution = Resolution.of(0.9, [16, 16], 1, "ACC")
    trials = [
        {"number": 0, "value": 0.90625, "params": {}},
        {"number": 1, "value": 0.90625 - 1.1e-16, "params": {}},
        {"number": 2, "value": 0.875, "params": {}},
    ]
    (note,) = tie_notes(trials, trials[0], resolution, "ACC")
    assert f"about {math.ceil(0.09 / (0.03125**2 * 2))} samples a task" in note  # from 0.03125, not from 1e-16
    (same,) = tie_notes(trials[:2], trials[0], resolution, "ACC")
    assert "every trial scored the same" in same
    many = Resolution.of(0.9, [16] * 40, 20, "forgetting")  # 800 task-seeds: the smallest real gap is 1/12800
    spread = [{"number": k, "value": 0.5 + k / 12800, "params": {}} for k in range(3)]
    (bounded,) = tie_notes(spread, spread[0], many, "forgetting")
    assert "over 100 times this one (16 samples a task)" in bounded
    assert max(int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*", bounded)) < 10**6


def test_a_tuned_suite_on_a_tiny_validation_split_names_its_ties(tmp_path, capsys):
    suite = tiny_suite(
        strategies=[
            {"name": "naive"},
            {
                "name": "ewc",
                "tune": {"params": {"ewc_lambda": {"low": 0.001, "high": 0.01}}, "trials": 3, "fraction": 0.1},
            },
        ]
    )
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(suite))
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet", "--no-report"]) == 0
    printed = capsys.readouterr().out
    assert "tie: trials" in printed and "samples a task" in printed
    (study,) = json.loads((tmp_path / "out" / "tuning.json").read_text())["studies"]
    assert any(note.startswith("tie: trials") for note in study["notes"])


def test_a_calibration_in_which_nothing_learned_stops_its_study_with_what_to_check(tmp_path, capsys):
    suite = tiny_suite(
        strategies=[{"name": "naive"}, {"name": "ewc", "tune": {"params": {"ewc_lambda": "auto"}, "trials": 2}}]
    )
    suite["training"]["lr"] = 1e-9  # nothing moves: every probe and naive end at chance
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(suite))
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet", "--no-report"]) == 1
    printed = capsys.readouterr()
    assert "no probe learned" in printed.out and "BatchNorm" in printed.out and "Traceback" not in printed.err
    calibration = json.loads((out / "calibration.json").read_text())
    (entry,) = calibration["entries"]
    assert entry["nothing_learned"] and entry["best"] is None and entry["range"] is None  # no peak reported
    (study,) = json.loads((out / "tuning.json").read_text())["studies"]
    assert study["chosen"] is None and study["trials"] == [] and study["stopped"].startswith("ewc_lambda: no probe")


def test_the_importance_passes_are_timed_in_the_records(tmp_path):
    import forgetbench

    config = tmp_path / "suite.yaml"
    config.write_text(
        yaml.safe_dump(tiny_suite(strategies=[{"name": "naive"}, {"name": "ewc"}, {"name": "wpl"}, {"name": "mas"}]))
    )
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet", "--no-report"]) == 0
    timing = {r.strategy.name: r.timing for r in forgetbench.load_results(tmp_path / "out").records}
    assert timing["naive"].importance_seconds is None  # no importance pass: the key is not written
    for name in ("ewc", "wpl", "mas"):
        assert 0 < timing[name].importance_seconds < timing[name].train_seconds, name


@pytest.mark.slow  # measures for 12 s, the command's own start among it: the full tier (test_estimate.py: the inner loop)
def test_the_estimate_counts_every_planned_run_and_writes_nothing(tmp_path):
    """Through the console script, as a user asks: the plan, and the command's whole wait in the seconds it says it
    measured for (its start included, its end without the interpreter's teardown), never a third of it left out."""
    suite = tiny_suite(
        seeds=[0, 1],
        strategies=[
            {"name": "naive"},
            {"name": "ewc", "tune": {"params": {"ewc_lambda": "auto"}, "trials": 3, "neighbours": [0.1, 10.0]}},
        ],
    )
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(suite))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "forgetbench.benchmark.front.cli", "run", str(config), "--out", str(out)]
    begun = time.perf_counter()
    done = subprocess.run([*command, "--estimate"], capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - begun
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout
    measured = float(re.search(r"Measured in ([0-9.]+) s", printed).group(1))
    assert 0.8 * wall <= measured <= wall + 0.05, (measured, wall)  # printed to 0.1 s
    # 2 naive runs; the calibration's first ladder (7 probes and its naive); a naive reference on the trial seed (a
    # suite of 2 seeds tunes on its first); 3 trials x 1 seed; 2 seeds x (the chosen point and 2 neighbours)
    assert printed.startswith(
        "Plan: 20 runs (2 runs, 8 calibration probes, 1 naive references, 3 tuning trials, 6 final runs); 0 already"
    )
    assert "Expected wall: about" in printed and "split / ewc:" in printed and "split / naive:" in printed
    assert not out.exists()  # measured in memory: nothing written


def test_fifteen_strategies_read_as_five_methods_in_the_figures():
    """5 methods x a chosen strength and two neighbours, beside naive (issue 76's suite shape): one hue and one
    marker per method, never repeated, and each strength its own shade of the hue (issue 80: at 15 labels every
    strength of a method had one colour); the chosen point strong, its neighbours faint; naive grey."""
    import colorsys

    from forgetbench.reports import figures as F

    methods = ["ewc", "si", "mas", "wpl", "l2"]
    labels = ["naive"] + [f"{m}[{m}_lambda={v}]" for m in methods for v in (0.1, 1, 10)]
    chosen = {f"{m}[{m}_lambda=1]" for m in methods}
    colours, shapes = F.palette(labels, "naive", chosen), F.markers(labels, "naive")
    assert len({colours[s][:3] for s in labels}) == 16  # every label its own colour
    hues = {
        m: {round(colorsys.rgb_to_hsv(*colours[s][:3])[0], 3) for s in labels if F.method_of(s) == m} for m in methods
    }
    assert all(len(h) == 1 for h in hues.values()) and len({next(iter(h)) for h in hues.values()}) == 5
    light = [colorsys.rgb_to_hls(*colours[f"ewc[ewc_lambda={v}]"][:3])[1] for v in (0.1, 1, 10)]
    assert light == sorted(light, reverse=True)  # lighter to darker in order of strength
    assert len({shapes[f"{m}[{m}_lambda=1]"] for m in methods}) == 5
    assert all(not F.is_faint(colours[s]) for s in chosen) and colours["naive"] == F.NAIVE_GREY
    assert all(F.is_faint(colours[s]) for s in labels if s not in chosen and s != "naive")
    # beyond the colours, a (colour, marker) pair still never repeats
    many = [f"m{i}" for i in range(60)]
    pairs = {(F.palette(many)[m], F.markers(many)[m]) for m in many}
    assert len(pairs) == 60
