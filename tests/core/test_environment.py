"""The run fingerprint (the record's ``environment``) and the warning when runs that are averaged or paired
together differ in more than their seed."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

import forgetbench
from forgetbench.benchmark.front.cli import main
from forgetbench.reports import summary
from forgetbench.reports.environment import environment_differences, seed_ranges
from forgetbench.benchmark.core.record import SeedBatch
from helpers import make_record

STORED = Path(__file__).resolve().parents[1] / "data" / "results_89b8dee"
BASE = {"python": "3.11.7", "torch": "2.15.0", "device": "cpu", "torch_threads": "2", "platform": "Linux-a"}


def _runs(environment_of, seeds=range(5), strategies=("naive", "wpl"), scenario="two-model"):
    return [
        make_record(
            scenario={"label": scenario},
            strategy={"label": s},
            seed=seed,
            environment={**BASE, **environment_of(s, seed)},
        )
        for s in strategies
        for seed in seeds
    ]


def test_seed_ranges():
    assert seed_ranges([5, 0, 2, 1]) == "0-2, 5"
    assert seed_ranges([3]) == "3"


def test_thread_counts_that_split_the_seeds_are_named_by_seed():
    runs = _runs(lambda s, seed: {"torch_threads": "2" if seed <= 2 else "1"})
    assert environment_differences(runs) == [
        "two-model: seeds 0-2 ran with torch_threads 2, seeds 3-4 with 1; averaged or paired together, "
        "they are not comparable"
    ]


def test_runs_that_differ_only_in_their_seed_are_comparable():
    assert environment_differences(_runs(lambda s, seed: {})) == []


def test_one_run_on_another_device_is_named_by_strategy_and_seed():
    runs = _runs(lambda s, seed: {"device": "cuda:0" if (s, seed) == ("wpl", 3) else "cpu"})
    assert environment_differences(runs) == [
        "two-model: naive seeds 0-4, wpl seeds 0-2, 4 ran with device cpu, wpl seed 3 with cuda:0; averaged or "
        "paired together, they are not comparable"
    ]


def test_on_an_accelerator_seeds_batched_and_alone_are_named_apart_and_on_the_cpu_not():
    """On an H200 a batched record differed from its own seed's run alone by up to 5.6 accuracy points (issue 96):
    the numeric path is a condition there. On the CPU a batched record is its run alone, bit for bit."""

    def runs(device):
        out = _runs(lambda s, seed: {"device": device})
        for r in out:
            alone = r.strategy.label == "wpl" and r.seed >= 3  # a batch that diverged: these seeds reran alone
            r.batch = SeedBatch(alone="a seed diverged") if alone else SeedBatch(seeds=[0, 1, 2, 3, 4])
        return out

    assert environment_differences(runs("cuda:0")) == [
        "two-model: naive seeds 0-4, wpl seeds 0-2 ran with numeric path a stacked batch of 5 seeds on cuda:0, wpl "
        "seeds 3-4 with alone on cuda:0; on an accelerator a seed stacked with others rounds its products otherwise "
        "than alone (and otherwise at each batch size), so one seed's numbers differ between the paths: averaged or "
        "paired together, they are not comparable"
    ]
    assert environment_differences(runs("cpu")) == []


def test_scenarios_are_compared_apart_and_unrecorded_keys_and_the_platform_are_not_compared():
    runs = _runs(lambda s, seed: {"torch_threads": "1"}, scenario="a") + _runs(
        lambda s, seed: {"torch_threads": "2", "platform": f"Linux-{seed}"}, scenario="b"
    )
    runs[0].environment["forgetbench_commit"] = "abc"  # a newer record among old ones: not compared
    assert environment_differences(runs) == []


def test_new_runs_record_the_fingerprint():
    from forgetbench.benchmark.run.spec import environment

    env = environment("cpu")
    for key in (
        "forgetbench_commit",
        "peft",
        "transformers",
        "cuda",
        "cudnn",
        "device_name",
        "gpu_count",
        "torch_threads",
        "cpu_kernels",
        "deterministic_algorithms",
    ):
        assert env[key], key
    assert env["torch_threads"] == str(torch.get_num_threads())
    assert env["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
    import platform

    assert env["node"] == platform.node()


def test_a_run_stopped_under_device_auto_is_recorded_as_failed():
    # found on a GPU: stopping a `device: auto` suite under worker processes crashed the driver while it wrote the
    # failed records of the runs it stopped (torch.device("auto")), so the suite hung instead of ending
    import dataclasses

    from forgetbench.benchmark.run.spec import failure_record
    from helpers import two_model_spec

    spec = dataclasses.replace(two_model_spec("naive", {}), device="auto")
    record = failure_record(spec, "stopped")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert (record.status, record.error, record.environment["device"]) == ("failed", "stopped", expected)
    # a driver without a GPU recording a `device: cuda` run its worker could not report (a Ray cluster's GPU node)
    record = failure_record(dataclasses.replace(spec, device="cuda"), "worker died")
    assert (record.status, record.environment["device"]) == ("failed", "cuda")
    if not torch.cuda.is_available():
        assert record.environment["device_name"] == "unknown"


@pytest.mark.effect
def test_the_cpu_kernels_asked_for_are_the_ones_that_run():
    """`make test-kernels` sets ATEN_CPU_CAPABILITY=default: if torch ignored it, the second kernel pass of the
    effect tests would silently repeat the first."""
    import os

    wanted = os.environ.get("ATEN_CPU_CAPABILITY")
    if not wanted:
        pytest.skip("ATEN_CPU_CAPABILITY is unset: the machine's best kernels run (make test-kernels sets it)")
    assert torch.backends.cpu.get_cpu_capability().lower() == wanted.lower()


TINY = {
    "name": "tiny",
    "device": "cpu",
    "training": {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "epochs": 1},
    "scenarios": [
        {
            "name": "two_model",
            "label": "two-model",
            "params": {
                "dataset": "digits",
                "depth_a": 1,
                "depth_b": 1,
                "width": 32,
                "shared": 1,
                "a_steps": 60,
                "b_steps": 60,
            },
        }
    ],
    "strategies": [{"name": "naive"}, {"name": "l2"}],
}


def _run(out: Path, seeds: list[int], threads: int) -> Path:
    """The suite with ``training.threads``: every executor runs each run with that many torch threads."""
    before = torch.get_num_threads()
    suite = {**TINY, "seeds": seeds, "training": {**TINY["training"], "threads": threads}}
    results = forgetbench.run_suite(suite, out=out, progress=False)
    assert results.exit_code == 0
    assert torch.get_num_threads() == before  # the caller's own setting is back after the runs
    return out


def test_report_over_folders_with_different_thread_counts_warns_and_shows_it(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(summary, "_WARNED", set())  # said once per process: this test must hear it
    one = _run(tmp_path / "one", [0, 1], threads=1)
    two = _run(tmp_path / "two", [2], threads=2)
    caplog.set_level(logging.WARNING)
    assert main(["report", str(one), str(two), "-o", str(tmp_path / "both.html")]) == 0
    expected = "two-model: seeds 0-1 ran with torch_threads 1, seed 2 with 2"
    assert sum(expected in message for message in caplog.messages) == 1, caplog.messages
    html = (tmp_path / "both.html").read_text()
    assert 'id="environment"' in html and expected in html
    assert any(expected in d for d in forgetbench.load_results(one, two).environment_differences)


@pytest.mark.slow  # starts a process pool: each worker imports the stack, 9 s: for the full tier, not the inner loop
def test_every_executor_runs_with_the_configured_threads_whatever_the_callers_setting(tmp_path):
    """A local run used the caller's thread count (2 here by default) and a Ray worker 1, so the same config gave
    other numbers (issue 50): now the run's own `training.threads` (1 unless set) decides, and is recorded."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        local = forgetbench.run_suite({**TINY, "seeds": [0]}, out=tmp_path / "local", progress=False)
        process = forgetbench.run_suite(
            {**TINY, "seeds": [0]}, out=tmp_path / "process", progress=False, executor="process", workers=2
        )
    finally:
        torch.set_num_threads(before)
    for results in (local, process):
        assert {r.environment["torch_threads"] for r in results.records} == {"1"}
    assert [r.accuracy_matrix for r in local.records] == [r.accuracy_matrix for r in process.records]


def test_folders_that_differ_only_in_their_seeds_report_without_a_warning(tmp_path, caplog):
    one = _run(tmp_path / "one", [0], threads=1)
    two = _run(tmp_path / "two", [1], threads=1)
    caplog.set_level(logging.WARNING)
    assert main(["report", str(one), str(two), "-o", str(tmp_path / "both.html")]) == 0
    assert not [m for m in caplog.messages if "not comparable" in m]
    assert 'id="environment"' not in (tmp_path / "both.html").read_text()
    assert forgetbench.load_results(one, two).environment_differences == []


def test_an_old_folder_without_the_fingerprint_reports_beside_a_new_one(tmp_path):
    """The stored folder (commit 89b8dee) records 8 environment keys; a new folder of the same suite records
    the whole fingerprint. Together they load and report; only keys both record are compared."""
    old = tmp_path / "old"
    shutil.copytree(STORED / "runs", old / "runs")
    shutil.copy(STORED / "suite.yaml", old / "suite.yaml")
    new = tmp_path / "new"
    forgetbench.run_suite(str(old / "suite.yaml"), out=new, seeds=[7], progress=False)
    results = forgetbench.load_results(old, new)
    assert {r.seed for r in results.records} == {0, 1, 7}
    assert not any("forgetbench_commit" in d or "cudnn" in d for d in results.environment_differences)
    report = results.report(tmp_path / "both.html")
    assert "<html" in report.read_text()[:200].lower()


def test_a_run_records_the_digest_of_the_data_it_read_and_the_digest_follows_the_data(tmp_path):
    from forgetbench.benchmark.data.datasets import tensors_digest

    results = forgetbench.run_suite(
        {**TINY, "seeds": [0], "strategies": [{"name": "naive"}]}, out=tmp_path, progress=False
    )
    (record,) = results.records
    name, digest = record.environment["data"].split("=")
    assert name == "digits" and digest.startswith("blake2b:") and len(digest) == len("blake2b:") + 16
    x = torch.arange(12.0).reshape(3, 4)
    assert tensors_digest(x) == tensors_digest(x.clone())
    changed = x.clone()
    changed[1, 2] += 1e-6
    assert tensors_digest(changed) != tensors_digest(x)
    assert tensors_digest(x.reshape(4, 3)) != tensors_digest(x)  # same bytes, another shape


def test_text_and_language_corpora_are_digested_when_read_in_a_run(tmp_path):
    from forgetbench.benchmark.data import language, text
    from forgetbench.benchmark.data.datasets import recording_data_reads

    root = tmp_path / "corpus"
    for cls, docs in {"a": ["one two", "three four"], "b": ["five six", "seven"]}.items():
        (root / cls).mkdir(parents=True)
        for i, doc in enumerate(docs):
            (root / cls / f"{i}.txt").write_text(doc)
    lm = Path(__file__).resolve().parents[1] / "data" / "lm_corpus"
    with recording_data_reads() as reads:
        text.load_corpus(f"folder:{root}")
        language.load_language_corpus(f"folder:{lm}", 30)
    assert set(reads) == {f"folder:{root}", f"folder:{lm}"}
    assert all(d.startswith("blake2b:") for d in reads.values())
    (root / "b" / "1.txt").write_text("seven!")
    with recording_data_reads() as again:
        text.load_corpus(f"folder:{root}")
    assert again[f"folder:{root}"] != reads[f"folder:{root}"]  # one changed file, another digest
    text.load_corpus(f"folder:{root}")  # outside a run: nothing recorded, nothing computed


def test_a_plug_in_strategy_beside_built_ins_is_comparable_but_two_versions_of_it_are_not():
    """``plugins`` names where a run's own strategy comes from (none for a built-in): it differs between strategies
    by design, so it is compared only between the runs of one strategy."""
    mixed = _runs(lambda s, seed: {"plugins": "none" if s == "naive" else "mystrats==0.1.0"})
    assert environment_differences(mixed) == []
    upgraded = _runs(lambda s, seed: {"plugins": "none" if s == "naive" else f"mystrats==0.{1 + (seed > 2)}.0"})
    assert environment_differences(upgraded) == [
        "two-model: wpl seeds 0-2 ran with plugins mystrats==0.1.0, wpl seeds 3-4 with mystrats==0.2.0; averaged or "
        "paired together, they are not comparable"
    ]
