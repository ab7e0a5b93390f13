"""``forgetbench perf``'s probes (benchmark/perf/measurements/): each module registers the probe of its name, a
``--set`` the probe refuses exits 2 naming the field, and each probe measures what its docs figure says, on tiny
sizes (no timing is asserted, only what holds on any machine)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from forgetbench.benchmark.perf.measurements import load, measurement_names, measurement_params
from forgetbench.benchmark.core.config import ConfigError


def test_every_probe_module_registers_the_probe_of_its_name_with_a_strict_params_model():
    names = measurement_names()
    assert {"step_costs", "cli_latency", "effect_power", "report_scale", "wpl_penalty_trace"} <= set(names)
    for name in names:
        probe = load(name)
        assert probe.name == name and probe.summary
        assert probe.params.model_config.get("extra") == "forbid", name
        assert probe.run.__module__.endswith(f".measurements.{name}") and probe.lines.__module__ == probe.run.__module__


@pytest.mark.parametrize(
    "names, settings, message",
    [
        (["optuna_store_cost"], ["trails=5"], "--set: unknown key(s) trails; allowed: trials (optuna_store_cost)"),
        (["optuna_store_cost"], ["trials=0"], "--set (optuna_store_cost): trials: Input should be greater than 0"),
        (["optuna_store_cost"], ["trials"], "expected KEY=VALUE"),
        ([], ["trials=3"], "allowed: none: name a measurement with --only"),
        (["effect_power"], ["mode=collect"], "give --set out=FILE.json"),
        (["step_costs"], ["strategies=[naive,ewcc]"], "unknown strategy ewcc"),
    ],
)
def test_a_setting_the_probe_refuses_names_the_field(names, settings, message):
    with pytest.raises(ConfigError) as refused:
        measurement_params(names, settings)
    assert message in str(refused.value)


def test_perf_runs_a_named_probe_alone_with_its_settings(cli, capsys, tmp_path):
    """No section runs, no dataset is read (the data root is empty), and the table and the JSON carry the probe's
    parts: four of a trial's milliseconds, each non-negative."""
    capsys.readouterr()
    assert cli("perf", "--only", "optuna_store_cost", "--set", "trials=3", "--data-root", tmp_path, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"conditions", "optuna_store_cost"}
    parts = result["optuna_store_cost"]["ms_per_trial"]
    assert len(parts) == 4 and all(v >= 0 for v in parts.values()) and result["optuna_store_cost"]["trials"] == 3
    assert cli("perf", "--only", "optuna_store_cost", "--set", "trials=2", "--data-root", tmp_path) == 0
    assert "optuna_store_cost (a tuning trial's Optuna milliseconds" in capsys.readouterr().out
    assert cli("perf", "--only", "optuna_store_cost", "--set", "trails=2") == 2
    assert "--set: unknown key(s) trails" in capsys.readouterr().err


def _collected(path, kernels: str, forgetting: dict[str, list[float]]) -> None:
    rows = [
        {"scenario": "s", "strategy": strategy, "seed": seed, "forgetting": value, "last": 90.0, "err_gap": None}
        for strategy, values in forgetting.items()
        for seed, value in enumerate(values)
    ]
    path.write_text(json.dumps({"cpu_kernels": kernels, "rows": rows}))


def test_effect_power_reads_the_interval_and_the_pass_probability_by_hand(tmp_path):
    """ewc's paired differences against naive are -1, -2, -3, -4, -5 under one kernel set: upper end of the 95%
    t-interval = -3 + t(0.975, 4) * sd / sqrt(5), sd = sqrt(2.5); every subset of a pool of only negative, spread
    differences has its interval below 0 (probability 1), and lwf's, all +1 or -1 around 0, never does at 5 seeds."""
    from scipy import stats

    _collected(tmp_path / "a.json", "AVX2", {"naive": [10] * 5, "ewc": [9, 8, 7, 6, 5], "lwf": [11, 9, 11, 9, 11]})
    _collected(tmp_path / "b.json", "DEFAULT", {"naive": [10] * 5, "ewc": [9, 8, 7, 6, 5], "lwf": [9, 11, 9, 11, 9]})
    probe = load("effect_power")
    params = measurement_params(
        ["effect_power"], ["mode=power", f"files=[{tmp_path / 'a.json'},{tmp_path / 'b.json'}]"]
    )
    params = params["effect_power"].model_copy(update={"sizes": [5], "draws": 200})
    result = probe.run(None, params, None)["power"]
    cases = {c["case"]: c for c in result["cases"]}
    upper = -3 + stats.t.ppf(0.975, 4) * math.sqrt(2.5) / math.sqrt(5)
    assert cases["s/ewc"]["upper"]["AVX2"][5] == pytest.approx(upper)
    assert cases["s/ewc"]["pass_probability"][5] == 1.0 and cases["s/lwf"]["pass_probability"][5] == 0.0
    assert probe.lines({"power": result})[1].startswith(f"s/ewc | {upper:+.2f}")


def test_report_scale_copies_each_record_with_new_seeds_and_a_small_jitter(tmp_path):
    """Copy n is ok source record n mod 4 (in path order: the failed one is left out) with the next seed of its
    (scenario, strategy) and its accuracies moved by at most 0.02 within [0, 1]."""
    from report_records import basic_records, write_folder
    from forgetbench.benchmark.perf.measurements.report_scale import write_records

    source = write_folder(tmp_path / "source", basic_records())
    write_records(source, tmp_path / "copies", 12)
    ok = [json.loads(p.read_text()) for p in sorted(source.glob("runs/*/result.json"))]
    ok = [r for r in ok if r["status"] == "ok"]
    assert len(ok) == 4 and len(list((tmp_path / "copies").glob("runs/*/result.json"))) == 12
    seeds: dict[str, int] = {}
    for n in range(12):
        origin = ok[n % 4]
        group = f"{origin['scenario']['label']}__{origin['strategy']['label']}"
        seeds[group] = seeds.get(group, -1) + 1
        copy = json.loads((tmp_path / "copies" / "runs" / f"{group}__s{seeds[group]}" / "result.json").read_text())
        assert copy["seed"] == seeds[group] and copy["status"] == "ok"
        base, moved = np.asarray(origin["accuracy_matrix"]), np.asarray(copy["accuracy_matrix"])
        assert moved.shape == base.shape and 0 < np.abs(moved - base).max() <= 0.02 + 1e-6
        assert moved.min() >= 0 and moved.max() <= 1


def test_pruning_savings_writes_the_pruned_variant_of_every_tune_block():
    from forgetbench.benchmark.perf.measurements.pruning_savings import _variant

    config = {"strategies": [{"name": "naive"}, {"name": "ewc", "tune": {"trials": 8}}]}
    pruned = _variant(config, "median", 3, 24, points=2)
    assert pruned["strategies"][0] == {"name": "naive"}
    assert pruned["strategies"][1]["tune"] == {
        "trials": 24,
        "pruning": "median",
        "pruning_startup": 3,
        "pruning_points": 2,
    }
    assert _variant(config, "off", 3, None)["strategies"][1]["tune"] == {"trials": 8} and config["strategies"][1][
        "tune"
    ] == {"trials": 8}


def test_cli_latency_measures_a_fresh_process_not_perfs_own_memory():
    """``--help`` imports no torch: its peak is far below torch's import (over 300 MB), though perf's own process,
    which started it, holds torch."""
    import torch  # noqa: F401  (this process is as heavy as perf's)

    from forgetbench.benchmark.perf.measurements.cli_latency import measure

    seconds, peak_mb = measure(["--help"])
    assert seconds > 0 and 0 < peak_mb < 200


def test_the_training_probes_measure_each_strategy_named(cli, capsys):
    capsys.readouterr()
    args = ("perf", "--json", "--dataset", "digits", "--quick", "--repeats", "1")
    assert (
        cli(*args, "--only", "step_costs,isolation_step_cost", "--set", "strategies=[naive,ewc]", "--set", "steps=2")
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert set(result["step_costs"]["strategies"]) == {"ewc"} and result["step_costs"]["strategies"]["ewc"]["ratio"] > 0
    assert (
        set(result["isolation_step_cost"]) == {"naive", "ewc"}
        and result["isolation_step_cost"]["naive"]["vs_naive"] == 1
    )
    assert cli(*args, "--only", "fisher_layer_costs") == 0
    layers = json.loads(capsys.readouterr().out)["fisher_layer_costs"]["layers"]
    assert [r["channels"] for r in layers] == [20, 40, 80, 160] and all(r["per_sample_ms"] > 0 for r in layers)
