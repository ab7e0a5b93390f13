"""Strength calibration: the declaration, the judging of probes (hand-made ladders), and `forgetbench calibrate`
end to end on a tiny suite (the test split is never read; a rerun resumes every probe)."""

from __future__ import annotations

import math

import json

import pytest
import torch
from pydantic import NonNegativeFloat

from forgetbench.benchmark.core import calibration
from forgetbench.benchmark.core.calibration import (
    Probe,
    acting_range,
    acts,
    bracket,
    bracket_verdict,
    crushes,
    ladder,
    median_ratio,
    range_verdict,
)
from forgetbench.benchmark.front.cli import main
from forgetbench.strategies import STRATEGIES
from forgetbench.strategies.base import StrategyParams, strength, strength_params
from conftest import tiny_suite

NAIVE = Probe(0.0, "ok", None, la=0.90, forgetting=0.20)


def test_every_built_in_regularizer_declares_its_strength_and_naive_none():
    declared = {e.name: strength_params(e.params) for e in STRATEGIES}
    assert declared["ewc"] == ["ewc_lambda"] and declared["si"] == ["si_lambda"] and declared["wpl"] == ["alpha"]
    assert declared["mas"] == ["lambda_reg"] and declared["l2"] == ["l2_lambda"] and declared["lwf"] == ["alpha"]
    assert declared["olora"] == ["lam"] and declared["avalanche.EWC"] == ["ewc_lambda"]
    assert declared["avalanche.MAS"] == ["lambda_reg"]  # not its `alpha`, a decay
    assert declared["naive"] == [] and declared["replay"] == []


def test_one_line_declares_a_strength_and_keeps_the_fields_bounds():
    class Mine(StrategyParams):
        beta: NonNegativeFloat = strength(2.0)
        other: float = 1.0

    assert strength_params(Mine) == ["beta"] and Mine().beta == 2.0
    with pytest.raises(ValueError):
        Mine(beta=-1.0)


def test_ladder_is_decades_around_the_centre():
    assert ladder(300.0, 2) == [3.0, 30.0, 300.0, 3000.0, 30000.0]
    assert ladder(0.0, 1) == [0.1, 1.0, 10.0]  # no centre to scale: decades around 1
    assert ladder(0.3, 1) == [0.03, 0.3, 3.0]  # 6 significant digits: no 0.30000000000000004


def test_median_ratio_reads_every_recorded_ratio_and_skips_experiences_without_a_penalty():
    assert median_ratio({"wpl_penalty_to_data_gradient": [None, 0.1, 0.3, 10.0], "wpl_penalty_inert": []}) == 0.3
    assert median_ratio({"ewc_penalty_to_data_gradient": [None, 0.2, 0.4]}) == pytest.approx(0.3)
    assert median_ratio({"something_else": [1.0]}) is None and median_ratio({}) is None


@pytest.mark.parametrize(
    "probe, acting, crushing",
    [
        (Probe(1, "ok", 0.0099, 0.90, 0.20), False, False),  # below the inert bound
        (Probe(1, "ok", 0.01, 0.90, 0.20), True, False),
        (Probe(1, "ok", 20.0, 0.90, 0.0), True, False),
        (Probe(1, "ok", 20.01, 0.90, 0.0), True, True),  # the penalty decides every step
        (Probe(1, "ok", 1.0, 0.849, 0.0), True, True),  # more than 5 points of plasticity lost
        (Probe(1, "ok", 1.0, 0.851, 0.0), True, False),
        (Probe(1, "diverged", 1.0, 0.9, 0.0), False, True),
        (Probe(1, "ok", None, 0.9, 0.18), True, False),  # no ratio recorded: forgetting cut by >= 10%
        (Probe(1, "ok", None, 0.9, 0.185), False, False),
    ],
)
def test_a_probe_acts_when_its_penalty_is_visible_and_crushes_when_plasticity_goes(probe, acting, crushing):
    assert acts(probe, NAIVE) is acting and crushes(probe, NAIVE) is crushing


@pytest.mark.parametrize(
    "probe, crushing",
    [
        (Probe(1, "ok", 1.0, math.nan, 0.02), False),  # a search: no LA, the ratio acts and does not dominate
        (Probe(1, "ok", 20.01, math.nan, 0.0), True),
        (Probe(1, "diverged", 1.0, math.nan, 0.0), True),
    ],
)
def test_a_search_without_accuracy_is_judged_by_its_ratio_and_status(probe, crushing):
    """A search records no LA for naive either (err1 is a perplexity): every probe used to 'crush' there."""
    search_naive = Probe(0.0, "ok", None, math.nan, 0.05)
    assert crushes(probe, search_naive) is crushing
    assert crushes(Probe(1, "ok", 1.0, math.nan, 0.0), NAIVE)  # where naive has an LA, a missing one still crushes


def test_the_range_spans_the_strengths_that_act_without_crushing():
    probes = [
        Probe(0.1, "ok", 0.001, 0.9, 0.2),
        Probe(1, "ok", 0.08, 0.9, 0.1),
        Probe(10, "ok", 0.006, 0.9, 0.1),
        Probe(100, "ok", 2.0, 0.87, 0.02),
        Probe(1000, "ok", 40.0, 0.6, 0.0),
    ]
    assert acting_range(probes, NAIVE) == (1, 100)  # 10 dips below the bound on its seed: inside the range still
    assert range_verdict(probes, NAIVE).startswith("acts without crushing learning from 1 to 100")


def test_a_null_is_stated_with_the_strengths_at_which_it_is_null():
    inert = [Probe(v, "ok", 0.0009 * v, 0.9, 0.2) for v in (0.1, 1.0, 10.0)]
    assert acting_range(inert, NAIVE) is None
    assert range_verdict(inert, NAIVE) == "inert at every strength probed, 0.1 to 10: probe higher"
    crushing = [Probe(0.1, "ok", 0.0, 0.9, 0.2), Probe(1, "ok", 50.0, 0.5, 0.0)]
    assert "crushes learning wherever it acts" in range_verdict(crushing, NAIVE)


def test_si_penalty_is_half_lambda_omega_squared_distance_on_the_tracked_tensors():
    """The penalty whose gradient ratio SI now records is the one it trains with: (lambda/2) sum omega (theta - m)^2."""
    from forgetbench.strategies.si import SIPlugin

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    plugin = SIPlugin(si_lambda=4.0, used_params=None)
    omega = {"weight": torch.rand(2, 3), "bias": torch.rand(2)}
    anchor = {n: p.detach() + 0.5 for n, p in model.named_parameters()}
    plugin.names = ["weight", "bias"]
    plugin.quadratic.replace(omega, anchor)
    plugin._active, plugin._subset = [model.weight, model.bias], None
    by_hand = sum(2.0 * (omega[n] * (p - anchor[n]) ** 2).sum() for n, p in model.named_parameters())
    assert float(plugin.penalty().detach()) == pytest.approx(float(by_hand), rel=1e-6)


def _calibrate(write_suite, tmp_path, *extra: str) -> tuple[int, dict]:
    suite = write_suite(
        tiny_suite(
            seeds=[3], strategies=[{"name": "naive"}, {"name": "l2", "params": {"l2_lambda": 1.0}}, {"name": "si"}]
        )
    )
    out = tmp_path / "cal"
    status = main(["calibrate", str(suite), "--out", str(out), "--decades", "1", "--quiet", *extra])
    return status, json.loads((out / "calibration.json").read_text())


def test_calibrate_probes_each_strength_on_held_out_training_data_and_resumes(
    write_suite, tmp_path, monkeypatch, capsys
):
    import dataclasses

    from forgetbench.benchmark.run import assemble

    real_build = assemble.build_scenario

    def poisoned_test_split(spec, data_root):  # a probe evaluated on the test split would score 0
        scenario = real_build(spec, data_root)
        scenario.tasks = [dataclasses.replace(t, test_y=torch.full_like(t.test_y, -1)) for t in scenario.tasks]
        return scenario

    monkeypatch.setattr(assemble, "build_scenario", poisoned_test_split)
    status, result = _calibrate(write_suite, tmp_path)
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert result["seed"] == 3 and result["validation_fraction"] == 0.2 and result["without_strength"] == ["naive"]
    by_name = {e["strategy"]: e for e in result["entries"]}
    assert set(by_name) == {"l2", "si"} and by_name["l2"]["param"] == "l2_lambda"
    for name, first in (("l2", [0.1, 1.0, 10.0]), ("si", [3.0, 30.0, 300.0])):  # around the given / default value
        values = [p["value"] for p in by_name[name]["probes"]]
        assert set(first) <= set(values) and set(values) - set(first) == set(by_name[name]["extended"])
    for entry in result["entries"]:
        for p in entry["probes"]:
            assert p["status"] == "ok" and p["la"] > 0.5  # measured on held-out training data, never the test split
            assert p["ratio"] is not None  # l2 and si record their penalty-to-data gradient ratio now
            fields = ("value", "status", "ratio", "la", "forgetting")
            naive = Probe(**{k: entry["naive"][k] for k in fields})
            assert p["acts"] == calibration.acts(Probe(**{k: p[k] for k in fields}), naive)
        # the range brackets the objective's peak: the best probe's neighbours, each scoring below it, or an end
        # that says why it stays open
        values = [p["value"] for p in entry["probes"]]
        top = max(p["objective"] for p in entry["probes"])
        tied = [i for i, p in enumerate(entry["probes"]) if p["objective"] == top]  # a tie spans the peak
        best = entry["probes"][tied[0]]
        assert entry["objective"] == "ACC" and entry["best"] == best["value"]
        low, high = entry["range"]
        assert low == values[max(tied[0] - 1, 0)] and high == values[min(tied[-1] + 1, len(values) - 1)]
        for side, end in (("low", low), ("high", high)):
            if entry["bracketed"][side]:
                assert next(p for p in entry["probes"] if p["value"] == end)["objective"] < best["objective"]
            else:
                assert entry["open_ends"][side]
        assert entry["verdict"] in printed
    records = list((tmp_path / "cal" / "calibration" / "runs").glob("*/result.json"))
    assert len(records) == 1 + sum(len(e["probes"]) for e in result["entries"])  # naive, each ladder, extensions
    assert all(
        {k: v for k, v in json.loads(r.read_text())["evaluated_on"].items() if k != "samples"}
        == {"split": "validation", "fraction": 0.2}
        for r in records
    )
    assert not (tmp_path / "cal" / "runs").exists()  # probes are not the suite's runs: reports never mix them in

    # a rerun reads every probe back instead of training again
    from forgetbench.benchmark.run import runner

    def no_training(*args, **kwargs):
        raise AssertionError("a complete probe was trained again")

    monkeypatch.setattr(runner, "run", no_training)
    status, again = _calibrate(write_suite, tmp_path)
    assert status == 0 and again == result


def test_a_diverged_probe_is_written_without_nan():
    probe = Probe(100.0, "diverged", None, float("nan"), float("nan"))
    assert crushes(probe, NAIVE) and not acts(probe, NAIVE)
    assert json.loads(json.dumps(probe.as_dict(), allow_nan=False)) == {
        "value": 100.0,
        "status": "diverged",
        "ratio": None,
        "la": None,
        "forgetting": None,
        "objective": None,
    }


CAP = (1e-6, 1e6)


def _probes(values, objective, ratio=1.0, status="ok"):
    return [Probe(v, status, ratio, 0.9, 0.1, objective(v)) for v in values]


def test_the_range_is_the_best_probes_neighbours_whatever_acts_or_crushes():
    """The old range ended where LA fell 5 points below naive's; the objective (ACC) may peak past that point, at
    a strength that costs plasticity and saves more forgetting (the LSTM's SI at 300, 10 ACC points above the
    strength the cut-off range allowed)."""
    probes = [
        Probe(0.3, "ok", 0.002, 0.97, 0.30, 0.70),  # inert
        Probe(3, "ok", 0.2, 0.96, 0.20, 0.76),
        Probe(30, "ok", 2.0, 0.93, 0.10, 0.80),
        Probe(300, "ok", 15.0, 0.90, 0.02, 0.85),  # crushes (LA 7 points below naive's), yet the best ACC
        Probe(3000, "ok", 40.0, 0.60, 0.00, 0.60),
    ]
    naive = Probe(0.0, "ok", None, 0.97, 0.30, 0.70)
    assert crushes(probes[3], naive) and acting_range(probes, naive) == (3, 30)  # the old rule cut the peak off
    found = bracket(probes, naive, CAP)
    assert (found.best, found.range, found.extend) == (300, (30, 3000), ())
    assert found.low_bracketed and found.high_bracketed
    assert bracket_verdict(found, probes, naive).startswith("ACC peaks at 300 (85.0 vs naive 70.0); range 30 to 3000")


def test_an_objective_that_peaks_beyond_the_ladder_extends_it_a_decade_at_a_time_until_bracketed():
    def acc(v):  # peaks at 300, three decades above the first ladder's centre
        return 0.9 - 0.05 * abs(math.log10(v) - math.log10(300))

    values = ladder(0.3, 1)  # 0.03, 0.3, 3
    extensions = []
    while True:
        found = bracket(_probes(values, acc), NAIVE, CAP)
        if not found.extend:
            break
        assert found.extend == (values[-1] * 10,)  # only where the objective still rises
        extensions += found.extend
        values = sorted(values + list(found.extend))
    assert extensions == [30.0, 300.0, 3000.0]
    assert (found.best, found.range) == (300.0, (30.0, 3000.0))


def test_minimising_forgetting_brackets_its_lowest_value():
    found = bracket(_probes([1, 10, 100, 1000], lambda v: abs(math.log10(v) - 2) / 10), NAIVE, CAP, maximise=False)
    assert (found.best, found.range) == (100, (10, 1000))


@pytest.mark.parametrize(
    "probes, low_reason",
    [
        # rising towards the cap: it may extend no further
        (_probes([1e-6, 1e-5, 1e-4], lambda v: 0.9 - v), "the cap"),
    ],
)
def test_an_end_that_cannot_be_bracketed_says_why(probes, low_reason):
    found = bracket(probes, NAIVE, CAP)
    assert found.extend == () and not found.low_bracketed and found.high_bracketed
    assert low_reason in found.low_reason
    assert f"not bracketed below: {found.low_reason}" in bracket_verdict(found, probes, NAIVE)


def test_an_inert_probe_is_never_the_peak_and_the_range_starts_where_the_penalty_acts():
    """On a custom supernet every regularizer's ACC peak was a strength its own diagnostic flagged inert (ewc 1,
    wpl 0.03): its ACC is naive's plus noise. The peak is chosen among acting probes; below it the range starts
    where the ratio reaches ACTS, interpolated on log-log axes: .002 -> .05 over 0.1 -> 1 reaches .01 halfway."""
    probes = [
        Probe(0.1, "ok", 0.002, 0.9, 0.2, 0.92),  # the best ACC, inert
        Probe(1, "ok", 0.05, 0.9, 0.1, 0.90),
        Probe(10, "ok", 0.5, 0.88, 0.05, 0.85),
    ]
    found = bracket(probes, NAIVE, CAP)
    assert (found.best, found.range, found.extend) == (1, (0.316, 10), ())
    verdict = bracket_verdict(found, probes, NAIVE)
    assert verdict.startswith("ACC peaks at 1 (90.0") and "inert, never chosen: 0.1" in verdict


def test_inert_everywhere_extends_upwards_then_chooses_nothing_and_says_so():
    probes = _probes([0.1, 1, 10], lambda v: 0.9, ratio=0.002)
    found = bracket(probes, NAIVE, CAP)
    assert found.best is None and found.range is None and found.extend == (100.0,)
    at_cap = bracket(_probes([10.0, 100.0, 1000.0], lambda v: 0.9, ratio=0.003), NAIVE, (0.001, 1000.0))
    assert at_cap.extend == () and at_cap.best is None
    verdict = bracket_verdict(at_cap, _probes([10.0, 100.0, 1000.0], lambda v: 0.9, ratio=0.003), NAIVE)
    assert verdict.startswith("inert at every strength probed") and "largest penalty ratio 0.003 < 0.01" in verdict


def test_where_every_acting_strength_crushes_learning_the_verdict_says_so_with_the_figures():
    probes = [Probe(0.1, "ok", 0.001, 0.9, 0.2, 0.7)] + [Probe(v, "ok", 5.0, 0.8, 0.05, 0.8) for v in (1, 10)]
    found = bracket(probes, NAIVE, CAP)
    assert found.best == 1  # still the objective's peak among acting strengths: the report compares at matched LA
    verdict = bracket_verdict(found, probes, NAIVE)
    assert "no acting strength keeps plasticity: the weakest that acts, 1, has LA 80.0 vs naive 90.0" in verdict
    kept = [Probe(1, "ok", 0.05, 0.88, 0.1, 0.8)] + probes[1:]
    assert "keeps plasticity" not in bracket_verdict(bracket(kept, NAIVE, CAP), kept, NAIVE)


def test_a_strategy_without_a_ratio_beside_a_naive_that_does_not_forget_keeps_every_probe_and_says_why():
    naive = Probe(0.0, "ok", None, la=0.9, forgetting=0.0)
    probes = _probes([0.1, 1, 10], lambda v: 0.9 - abs(math.log10(v)) / 10, ratio=None)
    found = bracket(probes, naive, CAP)
    assert (found.best, found.range) == (1, (0.1, 10))
    assert "cannot be told here" in bracket_verdict(found, probes, naive)


def test_a_plateau_reaching_an_end_is_not_extended():
    """A flat objective (every probe at 100% on a task too easy to forget) is not rising towards either end."""
    found = bracket(_probes([0.1, 1, 10], lambda v: 1.0), NAIVE, CAP)
    assert found.extend == () and (found.best, found.range) == (0.1, (0.1, 10))
    assert "level" in found.low_reason and "level" in found.high_reason


def test_diverged_probes_bracket_from_above_and_ties_span_the_peak():
    probes = _probes([1, 10], lambda v: 0.8) + [Probe(100, "diverged", None, math.nan, math.nan)]
    found = bracket(probes + _probes([0.1], lambda v: 0.7), NAIVE, CAP)
    assert (found.best, found.range, found.extend) == (1, (0.1, 100), ())  # 1 and 10 tie: both inside
    nothing = bracket([Probe(v, "diverged", None, math.nan, math.nan) for v in (1, 10)], NAIVE, CAP)
    assert nothing.best is None and nothing.range is None and nothing.extend == ()


def test_calibrate_extends_through_real_records_and_a_rerun_takes_the_same_decisions(tmp_path):
    """calibrate() on records a fake executor writes: ACC peaks at 300 for si (centre 30, one decade each way),
    so the ladder grows to 3000 in one more wave; a rerun reads every probe back and runs nothing."""
    from forgetbench.benchmark.core import store
    from forgetbench.benchmark.core.config import resolve_config
    from forgetbench.benchmark.run import calibrate as calibrate_run
    from forgetbench.benchmark.run.spec import new_record

    suite = resolve_config(tiny_suite(strategies=[{"name": "naive"}, {"name": "si"}]))
    plan = calibrate_run.plan_calibration(suite, 0, 1, 0.2)
    folder = tmp_path / "calibration"
    waves: list[list[str]] = []

    def acc(spec) -> float:
        value = spec.strategy.params.get("si_lambda")
        return 0.7 if value is None else 0.9 - 0.05 * abs(math.log10(value) - math.log10(300))

    def run_batch(batch):
        todo = [spec for _, spec in batch if store.read_result(store.result_path(folder, spec.run_id)) is None]
        waves.append([spec.run_id for spec in todo])
        for spec in todo:
            record = new_record(spec)
            record.experiences = ["a", "b"]
            record.accuracy_matrix = [[acc(spec), 0.5], [acc(spec), acc(spec)]]
            record.init_accuracy = [0.5, 0.5]
            store.write_result(folder, record)

    result, records = calibrate_run.calibrate(plan, folder, run_batch)
    (entry,) = result["entries"]
    assert [p["value"] for p in entry["probes"]] == [3.0, 30.0, 300.0, 3000.0]
    assert entry["extended"] == [3000.0] and len(waves) == 2 and len(waves[1]) == 1
    assert (entry["best"], entry["range"], entry["bracketed"]) == (300.0, [30.0, 3000.0], {"low": True, "high": True})
    assert result["criteria"]["objective"] == "ACC" and entry["probes"][2]["objective"] == pytest.approx(0.9)

    waves.clear()
    again, _ = calibrate_run.calibrate(calibrate_run.plan_calibration(suite, 0, 1, 0.2), folder, run_batch)
    assert again == result and all(not wave for wave in waves)


def test_a_divergence_names_the_end_of_the_ladder_it_is_at():
    """'diverged=6: probes too strong for this optimiser' was printed where four of the six were the weakest
    strengths: each calibrated strategy now says which end, by its strengths."""
    from forgetbench.benchmark.core.calibration import divergence_lines

    def entry(strategy, statuses):
        probes = [{"value": v, "status": s} for v, s in zip((0.01, 0.1, 1.0, 10.0, 100.0), statuses)]
        return {"scenario": "s", "strategy": strategy, "param": "lam", "probes": probes}

    ok, bad = "ok", "diverged"
    lines = divergence_lines(
        [
            entry("strong", [ok, ok, ok, bad, "collapsed"]),
            entry("weak", [bad, bad, ok, ok, ok]),
            entry("between", [ok, bad, ok, ok, ok]),
            entry("all", [bad] * 5),
            entry("none", [ok] * 5),
        ]
    )
    assert lines[0] == (
        "s / strong lam 10, 100 diverged or collapsed at the strongest end: too strong for this optimiser; "
        "they bracket the peak from above"
    )
    assert lines[1].startswith("s / weak lam 0.01, 0.1 diverged or collapsed at the weakest end:")
    assert "the learning rate is too high for this model, not the strength" in lines[1]
    assert lines[2].startswith("s / between lam 0.1 diverged or collapsed between finished probes, at neither end")
    assert lines[3].startswith("s / all lam 0.01, 0.1, 1, 10, 100 diverged or collapsed at every strength")
    assert len(lines) == 4
