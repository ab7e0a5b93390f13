"""Acceptance of the demo (`make demo` = `forgetbench run configs/demo.yaml`): it tells the multi-model
forgetting story with significance, prints one verdict line per scenario and the report's file:// URI,
and the report opens on the headline figure (A's accuracy while B trains) above the fold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from forgetbench.benchmark.front.cli import main
from forgetbench.benchmark.core.store import load_results
from helpers import browser_page
from forgetbench.benchmark.core.stats import paired_difference

DEMO = Path(__file__).parents[2] / "configs" / "demo.yaml"
# its tests share the demo's run (36 s): one worker runs them, where two would have one wait for the other
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("demo")]


@pytest.fixture(scope="module")
def demo(shared_results):
    """The demo's 40 runs, its printout and its report, once per session whichever xdist worker asks first."""
    out = shared_results.folder / "demo" / "results"

    def run_demo() -> dict:
        import contextlib
        import io

        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            status = main(["run", str(DEMO), "--out", str(out), "--quiet"])
        return {"status": status, "printed": buffer.getvalue()}

    ran = shared_results.get("demo", run_demo)
    return ran["status"], out, ran["printed"]


def by_strategy(out: Path, scenario: str) -> dict[str, dict[int, dict]]:
    found: dict[str, dict[int, dict]] = {}
    for r in load_results(out):
        if r.scenario.label == scenario:
            found.setdefault(r.strategy.label, {})[r.seed] = r
    return found


def test_demo_runs_every_run_and_prints_verdicts_and_the_report_uri(demo):
    status, out, printed = demo
    assert status == 0, printed
    assert len(load_results(out)) == 40  # 2 scenarios x 4 strategies x 5 seeds
    verdict = printed.split("Verdict", 1)[1]
    assert "\n  two-model: " in verdict and "\n  supernet: " in verdict
    assert f"Report: {(out / 'report.html').resolve().as_uri()}" in printed


@pytest.mark.effect
def test_two_model_naive_forgets_and_wpl_cuts_it_by_three_quarters_significantly(demo):
    """The demo's 5 seeds carry a paired test of the cut and point estimates with margins that hold across CPUs.

    Each assertion's pass rate was estimated by resampling 5 of the per-seed results measured under this
    machine's AVX-512 kernels and ``ATEN_CPU_CAPABILITY=default`` (docs/studies/robustness.md): 1.000 for every
    one below. The old ``abs(B wpl - B naive) <= 3`` passed with 0.55: B's cost under WPL is about 3 points on
    average and 0 to 12 on a seed, so a 3-point bound was a coin toss on a new CPU. What B's check guards
    against is WPL crushing B: the points WPL saves A exceed the points it costs B.
    """
    _, out, _ = demo
    runs = by_strategy(out, "two-model")

    def a_drop(label):  # points of A's accuracy lost while B trains, per seed
        return {s: 100 * (r.accuracy_matrix[0][0] - r.accuracy_matrix[1][0]) for s, r in runs[label].items()}

    def b_final(label):
        return {s: 100 * r.accuracy_matrix[1][1] for s, r in runs[label].items()}

    naive, wpl = a_drop("naive"), a_drop("wpl")
    naive_mean, wpl_mean = np.mean(list(naive.values())), np.mean(list(wpl.values()))
    assert naive_mean >= 5, naive
    assert paired_difference(wpl, naive).p_value < 0.05, (wpl, naive)
    assert wpl_mean <= 0.25 * naive_mean, (wpl, naive)
    b_cost = -paired_difference(b_final("wpl"), b_final("naive")).diff
    assert naive_mean - wpl_mean > b_cost, f"WPL saves A {naive_mean - wpl_mean:.1f} points and costs B {b_cost:.1f}"


@pytest.mark.effect
def test_supernet_naive_forgets_between_turns(demo):
    """err2 - err1 is positive for naive on the demo's seeds (pass rate 0.9999 over resampled seeds and kernels).

    That WPL (and every other default) lowers the supernet's forgetting is a paired test at 20 seeds in
    tests/strategies/test_defaults.py; the demo's own decisions are checked below.
    """
    _, out, _ = demo
    runs = by_strategy(out, "supernet")
    gaps = [np.nanmean(np.subtract(r.err2, r.err1)) for r in runs["naive"].values()]
    assert np.mean(gaps) > 0, gaps


@pytest.mark.effect
def test_the_demo_decides_a_pair_in_each_scenario_on_its_5_seeds(demo):
    """Paired t-tests with Holm decide on 5 seeds what the demo shows: two-model wpl < naive (16.8 points, adjusted p
    0.005 here) and, on the supernet's eight fixed architectures, wpl < si (6.6 points, adjusted p < 0.001 here):
    far from the 0.05 a claim needs, so another CPU's rounding does not move them across it."""
    import pandas as pd

    status, out, printed = demo
    decisions = pd.read_csv(out / "decisions.csv")
    decided = decisions[decisions.outcome != "undecided"]
    assert set(decided.scenario) == {"two-model", "supernet"}, decisions[["scenario", "first", "second", "outcome"]]
    two = decided[decided.scenario == "two-model"]
    assert any({r.first, r.second} == {"naive", "wpl"} for r in two.itertuples())
    assert "wpl < naive by" in printed.split("Verdict", 1)[1]


def test_report_opens_on_the_a_accuracy_figure_above_the_fold(demo):
    """Screenshot at 1280x1200: the decisions (the answer box) and then the first scenario's headline figure lie
    within the first 1,200 pixels."""
    _, out, _ = demo
    with browser_page(1280, 1200) as page:
        page.goto((out / "report.html").resolve().as_uri(), wait_until="load")
        first = page.query_selector("figure.headline")
        assert first is not None and first.get_attribute("id") == "headline-s-two-model"
        box = page.eval_on_selector(
            "figure.headline img",
            "i => { const r = i.getBoundingClientRect(); return [r.top, r.bottom, i.complete ? i.naturalWidth : 0]; }",
        )
        alt = page.eval_on_selector("figure.headline img", "i => i.alt")
        answer = page.eval_on_selector("#answer", "a => [a.getBoundingClientRect().bottom, a.innerText]")
        shot = out / "above_the_fold.png"
        page.screenshot(path=str(shot), full_page=False)
    top, bottom, width = box
    assert width > 0 and 0 <= top and bottom <= 1200, box
    assert answer[0] <= top and "wpl < naive by" in answer[1], answer  # the decisions come first, on the first screen
    assert "two-model" in alt
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    band = pixels[int(top) : int(bottom)]
    assert band.std() > 10  # the figure's pixels are drawn, not blank


@pytest.mark.effect
def test_the_figures_getting_started_quotes_hold_on_a_fresh_run(demo, capsys):
    """docs/getting-started.md quotes the demo from the command it names (`forgetbench table interval ...`): naive's
    and WPL's forgetting on two-model, B's cost against naive, and the decided wpl < naive. The command's table is
    checked against the records (its means are theirs), and each quoted mean must lie within this run's 95% interval
    of that mean as the command prints it (an interval, not equality: another CPU's rounding moves the digits, not
    the seeds' spread); the decision it names must be this run's: a demo whose settings changed under its quotes
    (five architectures drawn per seed, once) fails."""
    import re

    from forgetbench.benchmark.front.cli import main as cli

    _, out, printed = demo
    text = (Path(__file__).parents[2] / "docs" / "getting-started.md").read_text()
    quoted = re.search(
        r"A lose ([\d.]+) \[[^\]]+\] points of accuracy while B trains.*?WPL keeps it to ([\d.]+) \[[^\]]+\].*?"
        r"with B ([\d.]+) points less accurate.*?`forgetbench table (interval results/demo [^`]+)`",
        text,
        re.S,
    )
    assert quoted, "getting-started.md no longer quotes the demo's two-model figures from its table command"
    naive_quote, wpl_quote, cost_quote = map(float, quoted.groups()[:3])
    capsys.readouterr()
    assert cli(["table", *quoted.group(4).replace("results/demo", str(out)).split()]) == 0
    rows = {
        cells[1]: cells[2:]
        for line in capsys.readouterr().out.splitlines()
        if (cells := [c.strip() for c in line.strip("|").split("|")])[0] == "two-model"
    }

    def interval(cell: str) -> tuple[float, float, float]:
        mean, low, high = map(float, re.match(r"(-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]", cell).groups())
        return mean, low, high

    runs = by_strategy(out, "two-model")
    for label in ("naive", "wpl"):  # the command's means are the records'
        drops = [100 * (r.accuracy_matrix[0][0] - r.accuracy_matrix[1][0]) for r in runs[label].values()]
        assert interval(rows[label][0])[0] == pytest.approx(sum(drops) / len(drops), abs=0.051)
    for name, quote, (_, low, high) in (
        ("naive", naive_quote, interval(rows["naive"][0])),
        ("wpl", wpl_quote, interval(rows["wpl"][0])),
        ("B's cost", -cost_quote, interval(rows["wpl"][2])),
    ):
        assert low <= quote <= high, f"{name}: quoted {quote}, this run's 95% interval [{low:.1f}, {high:.1f}]"
    assert "wpl < naive by" in text and "wpl < naive by" in printed.split("Verdict", 1)[1]
