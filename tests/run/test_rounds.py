"""Seeds added where a decision needs them (benchmark/run/rounds.py): which runs a round adds, that a suite stops when
its pairs are decided or its budget is spent, that a SIGKILL mid-round resumes to the uninterrupted records and
verdict, and that the decisions the report shows are those of ``Results.decisions()``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import tiny_suite
from helpers import REPO, comparable

from forgetbench.benchmark.core.config import resolve_config
from forgetbench.benchmark.core.decide import Undecided
from forgetbench.benchmark.run.rounds import Rounds
from forgetbench.benchmark.run.spec import expand_suite


def _suite(**overrides):
    base = {
        "name": "rounds",
        "seeds": {"start": 3, "max": 5},
        "strategies": [{"name": "naive"}, {"name": "ewc"}, {"name": "l2"}],
    }
    return tiny_suite(**(base | overrides))


def test_a_round_adds_seeds_to_the_undecided_pairs_strategies_and_their_naive(tmp_path):
    suite = resolve_config(_suite())
    assert suite.seeds == [0, 1, 2] and suite.until_decided is not None and suite.until_decided.max == 5
    first = expand_suite(suite)
    assert {s.round for s in first} == {0}  # the first seeds are round 0 of the rounds, in their records too
    assert {s.round for s in expand_suite(suite.model_copy(update={"until_decided": None}))} == {None}
    rounds = Rounds(suite, tmp_path, first, suite.until_decided)
    assert rounds.order == [0, 1, 2, 3, 4]
    added = rounds.next_round(
        Undecided(pairs={"split": [("ewc", "l2")]}, participants={"split": {"naive", "ewc", "l2"}})
    )
    # ewc and l2 get the next seed; naive the seeds they will have (its scenario's reference)
    assert added == {"split__ewc": [3], "split__l2": [3], "split__naive": [3]}
    specs = rounds.specs(added, 1)
    assert sorted(s.run_id for s in specs) == ["split__ewc__seed3", "split__l2__seed3", "split__naive__seed3"]
    assert {s.round for s in specs} == {1}  # each record keeps the round that ran it: the decisions' order
    added = rounds.next_round(Undecided(pairs={"split": [("naive", "ewc")]}))
    assert added == {"split__naive": [4], "split__ewc": [4]}
    rounds.specs(added, 2)
    assert rounds.next_round(Undecided(pairs={"split": [("naive", "ewc")]})) == {}  # the budget is spent
    stopped = rounds.stopped(
        Undecided(
            pairs={"split": [("naive", "ewc")]},
            participants={"split": {"naive", "ewc", "l2"}},
            decided_at={"split": {"l2": 4}},
        )
    )
    assert stopped["split"]["naive"].startswith("budget: 5 seeds") and stopped["split"]["l2"].startswith("decided")
    # the seed count at which its pairs were decided, not the seeds it ran as others' reference
    assert stopped["split"]["l2"] == "decided: every pair it is in was decided by 4 paired seeds"


def test_a_method_in_an_undecided_pair_gets_seeds_at_every_strength():
    suite = resolve_config(
        _suite(strategies=[{"name": "naive"}, {"name": "ewc", "params": {"ewc_lambda": [1.0, 100.0]}}])
    )
    rounds = Rounds(suite, Path("."), expand_suite(suite), suite.until_decided)
    added = rounds.next_round(Undecided(pairs={"split": [("ewc", "naive")]}))
    assert added == {"split__ewc[ewc_lambda=1]": [3], "split__ewc[ewc_lambda=100]": [3], "split__naive": [3]}


def test_bad_until_decided_settings_are_named():
    from forgetbench.benchmark.core.config import ConfigError

    for seeds, words in [
        ({"start": 2, "max": 5}, "seeds.start"),
        ({"start": 5, "max": 4}, "max: 4 is below start 5"),
        ({"start": 3, "max": 5, "every": 2}, "seeds.every"),
    ]:
        with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
            resolve_config(tiny_suite(seeds=seeds))


def _cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "forgetbench.benchmark.front.cli", *args],
        env=env or dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow  # two suites with rounds, one SIGKILLed mid-round: 30-60 s, for the full tier
@pytest.mark.timeout(2400)  # three suite runs waited for, each up to 600 s on a loaded machine
def test_a_sigkill_mid_round_and_a_rerun_give_the_uninterrupted_records_and_verdict(tmp_path):
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(_suite(seeds={"start": 3, "max": 6})))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = _cli("run", str(config), "--out", str(whole), "--quiet", "--no-report")
    assert done.wait(timeout=600) == 0, done.stderr.read()
    rounds = json.loads((whole / "rounds.json").read_text())
    assert rounds["rounds"], "the pairs were decided on the first seeds: nothing to interrupt"

    proc = _cli("run", str(config), "--out", str(killed), "--quiet", "--no-report")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:  # inside the first round: its record is written
        if (killed / "rounds.json").exists() and len(list(killed.glob("runs/*/result.json"))) > 9:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = _cli("run", str(config), "--out", str(killed), "--quiet", "--no-report")
    assert again.wait(timeout=600) == 0, again.stderr.read()

    import forgetbench

    assert comparable(killed) == comparable(whole)
    assert json.loads((killed / "rounds.json").read_text()) == rounds
    assert forgetbench.load_results(killed).verdicts() == forgetbench.load_results(whole).verdicts()


def test_a_suite_adds_seeds_until_decided_and_the_report_shows_why_it_stopped(tmp_path, capsys):
    from forgetbench.benchmark.front.cli import main

    import forgetbench

    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(_suite()))
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "not adjusted" not in printed and "the chance of any false claim" in printed
    assert "group-sequential paired t-tests" in printed and "up to the 5 seeds the rounds planned" in printed
    rounds = json.loads((out / "rounds.json").read_text())
    stopped = rounds["stopped"]["split"]
    assert set(stopped) == {"naive", "ewc", "l2"}
    results = forgetbench.load_results(out)
    decisions = results.decisions()
    assert set(decisions.outcome) <= {"less", "greater", "equivalent", "undecided"}
    assert (decisions.method == "sequential").all()
    frame = results.frame()
    seeds = {s: len(g.seed.unique()) for s, g in frame.groupby("strategy")}
    ran = dict(zip(frame.seed, frame["round"]))  # each record keeps the round that added it
    assert all(ran[s] == 0 for s in (0, 1, 2)) and ran.get(3) == 1 and ran.get(4) == 2
    for strategy, why in stopped.items():  # a budget reached means 5 seeds; decided ones stop at what they had
        assert (seeds[strategy] == 5) if why.startswith("budget") else 3 <= seeds[strategy] <= 5
    on_disk = pd.read_csv(out / "decisions.csv")
    assert list(on_disk.outcome) == list(decisions.outcome) and list(on_disk.n) == list(decisions.n)
    html = (out / "report.html").read_text()
    assert "Seeds added until decided" in html and all(why.split(":")[0] in html for why in stopped.values())


def _moved_to_the_next_round(path: Path) -> None:  # a seed of round 1 said to be round 2's
    state = json.loads(path.read_text())
    first, second = state["rounds"][0]["added"], state["rounds"][1]["added"]
    name = next(iter(first))
    second[name] = first.pop(name) + second.get(name, [])
    path.write_text(json.dumps(state))


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (_moved_to_the_next_round, "does not match the records (split / "),
        (lambda path: path.write_text(path.read_text()[: len(path.read_text()) // 2]), "cannot be read"),
        (lambda path: path.unlink(), "rounds.json is missing"),
    ],
    ids=["edited", "truncated", "deleted"],
)
def test_a_rounds_file_that_disagrees_with_the_records_is_re_derived_from_them_and_said_once(
    damage, why, tmp_path, capsys
):
    """An edited rounds.json was replayed silently (runs counted in the wrong round, new runs, another verdict); a
    truncated one printed a 'skipping' line per run. Now the records' round fields rebuild the rounds, said once."""
    import shutil

    from forgetbench.benchmark.front.cli import main

    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(_suite()))
    good, out = tmp_path / "good", tmp_path / "out"
    assert main(["run", str(config), "--out", str(good), "--quiet", "--no-report"]) == 0
    rounds = json.loads((good / "rounds.json").read_text())
    assert len(rounds["rounds"]) >= 2, "the pairs were decided too soon: no second round to move a seed into"
    capsys.readouterr()
    shutil.copytree(good, out)
    damage(out / "rounds.json")
    assert main(["run", str(config), "--out", str(out), "--quiet", "--no-report"]) == 0
    printed = capsys.readouterr()
    said = [line for line in (printed.out + printed.err).splitlines() if "re-derived from the records" in line]
    assert len(said) == 1 and why in said[0], printed.out + printed.err
    assert "skipping" not in printed.out + printed.err and "0 run(s) executed" in printed.out
    again = json.loads((out / "rounds.json").read_text())
    assert [r["added"] for r in again["rounds"]] == [r["added"] for r in rounds["rounds"]]
    assert again["stopped"] == rounds["stopped"]
