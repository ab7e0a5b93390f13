"""`forgetbench perf` smoke tests (tiny sizes, no timing assertions) and the runner's memory record."""

from __future__ import annotations

import json
import os

import pytest
import torch

from forgetbench.benchmark.data.datasets import DataMissingError, check_available, default_data_root
from conftest import read_json, tiny_suite

SECTION_KEYS = {
    "conditions",
    "harness_vs_plain",
    "step_overhead",
    "importance_vs_epoch",
    "fisher_fast_vs_loop",
    "growth",
    "parallel_scaling",
}


def _perf_json(cli, capsys, *args):
    capsys.readouterr()
    status = cli("perf", "--json", "--quick", "--repeats", "1", *args)
    out = capsys.readouterr().out
    return status, json.loads(out) if status == 0 else None


@pytest.mark.slow  # every perf section
def test_perf_quick_json_keys_and_equal_weights(cli, capsys):
    status, result = _perf_json(cli, capsys, "--dataset", "digits")
    assert status == 0
    assert SECTION_KEYS <= result.keys()
    for model in ("mlp", "cnn"):
        row = result["harness_vs_plain"][model]
        assert row["weights_equal"] is True and row["max_weight_diff"] <= 1e-5
        assert row["steps"] == row["steps_plain"] > 0
        assert row["ratio"] > 0 and row["harness_seconds"] > 0 and row["plain_seconds"] > 0
    overhead = result["step_overhead"]
    assert overhead["naive_step_seconds"] > 0
    for name in ("ewc", "si", "mas", "l2", "lwf"):  # every regularizer has its row
        assert overhead[name]["ratio"] > 0
        assert result["importance_vs_epoch"][name] >= 0
    assert "wpl" in overhead and "wpl" in result["importance_vs_epoch"]
    growth = result["growth"]
    assert growth["tasks"] == [2, 4]
    for label in ("naive", "ewc_separate", "ewc_online", "si"):
        per_t = growth[label]["per_T"]
        assert set(per_t) == {"2", "4"}
        assert all(v["step_seconds"] > 0 for v in per_t.values())
    assert growth["naive"]["per_T"]["4"]["regularizer_bytes"] == 0
    assert growth["ewc_online"]["per_T"]["2"]["regularizer_bytes"] > 0
    fisher = result["fisher_fast_vs_loop"]
    assert fisher == "not available" or fisher["equal"] is True
    scaling = result["parallel_scaling"]
    cores = len(os.sched_getaffinity(0))
    assert scaling["workers"] == 2 and scaling["jobs"] == 2
    assert scaling["local_threads"] == cores and scaling["worker_threads"] == max(1, cores // 2)
    assert scaling["speedup"] == pytest.approx(scaling["local_seconds"] / scaling["parallel_seconds"])
    assert scaling["bound"] == pytest.approx(2 * scaling["local_job_seconds"] / scaling["lone_job_seconds"])
    assert len(scaling["local_seconds_all"]) == len(scaling["parallel_seconds_all"]) == 1
    assert result["conditions"]["repeats"] == 1 and result["conditions"]["quick"] is True


def test_perf_sequence_model_times_ewc_and_wpl_on_a_gru_both_ways(cli, capsys):
    status, result = _perf_json(cli, capsys, "--dataset", "digits", "--only", "sequence_model")
    assert status == 0 and set(result) == {"conditions", "sequence_model"}
    section = result["sequence_model"]
    sides = {"ewc", "wpl", "ewc_fallback", "wpl_fallback"}
    assert set(section["ratio"]) == set(section["pass_vs_epoch"]) == sides
    assert set(section["seconds"]) == sides | {"naive"} and all(v > 0 for v in section["seconds"].values())
    assert section["model"].startswith("GRU hidden 8")


def test_perf_table_and_only(cli, capsys):
    capsys.readouterr()
    assert cli("perf", "--quick", "--repeats", "1", "--dataset", "digits", "--only", "harness_vs_plain") == 0
    out = capsys.readouterr().out
    assert "harness_vs_plain" in out and "weights equal" in out and "growth" not in out


def test_perf_missing_data_exits_2(cli, capsys, tmp_path):
    capsys.readouterr()
    assert cli("perf", "--quick", "--data-root", tmp_path) == 2
    err = capsys.readouterr().err
    assert "mnist" in err and str(tmp_path) in err


def test_perf_bad_section_exits_2(cli, capsys):
    assert cli("perf", "--only", "harness_vs_plain,warp_speed") == 2
    err = capsys.readouterr().err
    assert (
        "unknown measurement(s) warp_speed; allowed: avalanche_vs_own_loop, cli_latency" in err
        and "harness_vs_plain" in err
    )


@pytest.mark.slow
def test_perf_quick_on_real_mnist(cli, capsys):
    root = default_data_root()
    try:
        check_available("mnist", root, download=False)
    except DataMissingError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"real MNIST not available offline: {exc}")
    status, result = _perf_json(cli, capsys, "--only", "harness_vs_plain")
    assert status == 0 and result["conditions"]["dataset"] == "mnist"
    assert result["harness_vs_plain"]["mlp"]["weights_equal"] is True


def test_result_records_regularizer_memory(write_suite, cli, tmp_path):
    out = tmp_path / "out"
    suite = tiny_suite(strategies=[{"name": "naive"}, {"name": "ewc"}])
    assert cli("run", "--no-report", write_suite(suite), "--out", out, "--quiet") == 0
    naive = read_json(out / "runs" / "split__naive__seed0" / "result.json")
    ewc = read_json(out / "runs" / "split__ewc__seed0" / "result.json")
    assert naive["memory"] == {"regularizer_bytes": 0}
    n_params = (64 * 32 + 32) + 2 * (32 * 2 + 2)  # digits 8x8 -> 32 -> two heads of 2
    assert ewc["memory"]["regularizer_bytes"] == 2 * 4 * n_params  # importance A and anchor m (caches not counted)


def test_perf_minilm_measures_the_text_scenario(cli, capsys, monkeypatch, tmp_path):
    """``--model minilm`` trains the text scenario's encoder layer and heads on both sides (same weights at the
    end) and times every regularizer's step and importance pass on it; a tiny folder corpus stands in for BBC News
    (the real one: ``forgetbench perf --model minilm``, figures in docs/studies/performance.md)."""
    from forgetbench.benchmark.perf import common as perf
    from text_fixtures import folder_corpus, require_text_extra

    require_text_extra()
    corpus = folder_corpus(tmp_path / "corpus")
    monkeypatch.setitem(perf.TEXT_MODELS, "minilm", {**perf.TEXT_MODELS["minilm"], "corpus": corpus, "max_length": 16})
    status, result = _perf_json(
        cli,
        capsys,
        "--dataset",
        "digits",
        "--model",
        "minilm",
        "--data-root",
        str(tmp_path / "data"),
        "--only",
        "harness_vs_plain,step_overhead,fisher_fast_vs_loop,growth",
    )
    assert status == 0
    row = result["harness_vs_plain"]["minilm"]
    assert row["weights_equal"] is True, row and row["steps"] == row["steps_plain"] > 0
    assert result["conditions"]["batch_size"] == 32
    for name in ("ewc", "si", "wpl"):
        assert result["step_overhead"][name]["ratio"] > 0
        assert result["step_overhead"][name]["target"] == perf.target("cpu", "minilm", name)
    assert result["importance_vs_epoch"]["wpl"] > 0  # the pass after task 0 ran (none after the last task)
    assert result["fisher_fast_vs_loop"]["equal"] is True and result["fisher_fast_vs_loop"]["model"] == "minilm"
    assert result["growth"].startswith("not available")


def test_perf_on_cuda_runs_on_deterministic_kernels_and_restores_the_settings(monkeypatch):
    # on an H200 the ResNet's harness and plain loop ended 0.008 apart (cuDNN's backward sums in a run-to-run order),
    # which voids the comparison; the flags need no GPU to be set, so this runs everywhere
    from forgetbench.benchmark.perf.measure import deterministic_kernels

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic)
    with deterministic_kernels(torch.device("cpu")) as on:
        assert on is False and torch.are_deterministic_algorithms_enabled() == before[0]
    with deterministic_kernels(torch.device("cuda")) as on:
        assert on is True and torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic) == before


def test_only_the_harness_comparison_runs_on_deterministic_kernels(tmp_path, monkeypatch):
    """The harness and the plain loop must end with equal weights, so they run on deterministic kernels; the other
    measurements measure the kernels a user's run gets (the Fisher's fast path is slower on deterministic ones)."""
    import dataclasses

    from forgetbench.benchmark.perf import measure as perf
    from forgetbench.benchmark.perf.common import PerfOptions
    from forgetbench.benchmark.perf.measurements import MEASUREMENTS, load

    seen = {}

    def measured(name, value):
        def run(*args):
            seen[name] = torch.are_deterministic_algorithms_enabled()
            return value

        return run

    names = ("harness_vs_plain", "step_overhead", "fisher_fast_vs_loop")
    for name in names:
        value = {"step_overhead": {}, "importance_vs_epoch": {}} if name == "step_overhead" else {}
        monkeypatch.setitem(MEASUREMENTS, name, dataclasses.replace(load(name), run=measured(name, value)))
    before = torch.are_deterministic_algorithms_enabled()
    conditions = {"deterministic_kernels": []}
    for name in names:  # the flags need no GPU to be set
        perf._measure(MEASUREMENTS[name], PerfOptions(tmp_path, device="cuda"), None, conditions)
    assert seen == {"harness_vs_plain": True, "step_overhead": before, "fisher_fast_vs_loop": before}
    assert conditions["deterministic_kernels"] == ["harness_vs_plain"]
    cpu = {"deterministic_kernels": []}
    perf._measure(MEASUREMENTS["harness_vs_plain"], PerfOptions(tmp_path), None, cpu)
    assert cpu["deterministic_kernels"] == []  # the CPU's kernels are deterministic already


def test_the_resnet_workload_on_cuda_has_steps_enough_to_dominate_the_set_up(tmp_path):
    from forgetbench.benchmark.perf.common import PerfOptions

    cpu, cuda = (PerfOptions(tmp_path, device=d).case("resnet18") for d in ("cpu", "cuda"))
    assert (cpu["train_per_task"], cuda["train_per_task"]) == (512, 4096)  # 4 and 32 steps of 128 per experience


def test_perf_suite_overhead_times_the_demo_suite_against_its_runs(cli, capsys):
    status, result = _perf_json(cli, capsys, "--dataset", "digits", "--only", "suite_overhead")
    assert status == 0 and set(result) == {"conditions", "suite_overhead"}
    section = result["suite_overhead"]
    assert section["suite"] == "demo: 2 runs, local executor"  # --quick: one strategy, one seed, both scenarios
    assert section["wall_seconds"] >= section["run_seconds"] > 0 and section["report_seconds"] > 0
    assert section["ratio"] == pytest.approx(section["wall_seconds"] / section["run_seconds"])


def test_the_auto_executor_is_worker_processes_where_there_is_more_than_one_core(monkeypatch):
    from forgetbench.benchmark.run import executors

    monkeypatch.setattr(executors, "available_cores", lambda: 2)
    assert executors.resolve_executor("auto") == "process"
    monkeypatch.setattr(executors, "available_cores", lambda: 1)
    assert executors.resolve_executor("auto") == "local" and executors.resolve_executor("ray") == "ray"
