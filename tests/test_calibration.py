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
        (Probe(1, "ok", 0.049, 0.90, 0.20), False, False),  # below the inert bound
        (Probe(1, "ok", 0.05, 0.90, 0.20), True, False),
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
        Probe(10, "ok", 0.03, 0.9, 0.1),
        Probe(100, "ok", 2.0, 0.87, 0.02),
        Probe(1000, "ok", 40.0, 0.6, 0.0),
    ]
    assert acting_range(probes, NAIVE) == (1, 100)  # 10 dips below the bound on its seed: inside the range still
    assert range_verdict(probes, NAIVE).startswith("acts without crushing learning from 1 to 100")


def test_a_null_is_stated_with_the_strengths_at_which_it_is_null():
    inert = [Probe(v, "ok", 0.001 * v, 0.9, 0.2) for v in (0.1, 1.0, 10.0)]
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
    assert [p["value"] for p in by_name["l2"]["probes"]] == [0.1, 1.0, 10.0]
    assert [p["value"] for p in by_name["si"]["probes"]] == [3.0, 30.0, 300.0]  # around si's default
    for entry in result["entries"]:
        for p in entry["probes"]:
            assert p["status"] == "ok" and p["la"] > 0.5  # measured on held-out training data, never the test split
            assert p["ratio"] is not None  # l2 and si record their penalty-to-data gradient ratio now
            fields = ("value", "status", "ratio", "la", "forgetting")
            naive = Probe(**{k: entry["naive"][k] for k in fields})
            assert p["acts"] == calibration.acts(Probe(**{k: p[k] for k in fields}), naive)
        good = [p["value"] for p in entry["probes"] if p["acts"] and not p["crushes"]]
        assert entry["range"] == ([min(good), max(good)] if good else None)
        assert entry["verdict"] in printed
    records = list((tmp_path / "cal" / "calibration" / "runs").glob("*/result.json"))
    assert len(records) == 1 + 3 + 3  # naive, then each ladder
    assert all(json.loads(r.read_text())["evaluated_on"] == {"split": "validation", "fraction": 0.2} for r in records)
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
    }
