"""The tools a session with a GPU runs for batched seeds (scripts/gpu_batching.sh), checked on the CPU: the table of a
suite's forgetting on the two numeric paths (scripts/paths_table.py), which ``forgetbench decide`` reads, and perf's
seed_batching row timing a few seeds alone against K batched."""

from __future__ import annotations

import csv
import io
import sys

import yaml

from conftest import tiny_suite
from helpers import REPO, run_command

from forgetbench.benchmark.front.cli import main
from forgetbench.benchmark.perf.common import PerfOptions
from forgetbench.benchmark.perf.measurements.seed_batching import SeedBatchingParams, seed_batching


def test_the_paths_table_pairs_each_seeds_forgetting_on_the_two_paths(tmp_path, capsys):
    suite = tiny_suite(seeds=[0, 1, 2], strategies=[{"name": "naive"}, {"name": "ewc", "params": {"ewc_lambda": 100}}])
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(suite))
    for path, switch in (("batched", "on"), ("alone", "off")):
        assert main(["run", str(config), "--out", str(tmp_path / path), "--quiet", "--no-report", "--batch-seeds",
                     switch]) == 0  # fmt: skip
    made = run_command([sys.executable, str(REPO / "scripts" / "paths_table.py"), str(tmp_path / "batched"),
                        str(tmp_path / "alone")])  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(made.stdout)))
    assert {(r["scenario"], r["method"], r["seed"]) for r in rows} == {
        (f"split/{strategy}", method, str(seed))
        for strategy in ("naive", "ewc")
        for method in ("batched", "alone")
        for seed in (0, 1, 2)
    }
    values = {(r["scenario"], r["seed"], r["method"]): float(r["value"]) for r in rows}
    assert all(values[(s, seed, "batched")] == values[(s, seed, "alone")] for s, seed, _ in values)  # the CPU's paths
    (tmp_path / "paths.csv").write_text(made.stdout)
    assert main(["decide", str(tmp_path / "paths.csv"), "--margin", "1", "--baseline", "alone"]) == 0
    assert "split/naive" in capsys.readouterr().out


def test_a_batching_row_times_a_few_seeds_alone_against_k_batched(tmp_path):
    params = SeedBatchingParams(seeds=[3], alone_seeds=2, scenarios=["two-model"], strategies=["naive"])
    value = seed_batching(PerfOptions(data_root=tmp_path, repeats=1), params, None)
    (row,) = value["rows"]
    assert row["alone"] is None and row["alone_seeds"] == 2 and row["seeds"] == 3
    assert row["largest_difference"] == 0.0 and row["same"] and row["peak_memory_gb"] is None
    rates = row["seeds_per_second"]
    assert rates["alone"] == 2 / row["alone_seconds"] and rates["batched"] == 3 / row["batched_seconds"]
