"""`forgetbench report` at scale (issue 50 item 3): wall time and peak memory of a report on N run records made
from a real results folder, for each N asked.

    forgetbench run configs/demo.yaml --out /tmp/demo
    python scripts/report_scale.py /tmp/demo --runs 10000 100000 [--work /tmp/scale]
    python scripts/report_scale.py /tmp/demo --reading    # what reading one record costs, whole and lean

Each source record (ok runs only) is copied with new seeds (run id and ``seed``) until N records are written, so
every (scenario, strategy) of the source gets about N / len(source) seeds; the copies' accuracy matrices move
by a seeded jitter of at most 0.02 (clipped to [0, 1]) so seeds differ as real ones do; curves, attribution and
the rest are the source's, so each copy is the size of a real record (the demo's: 50 KB). The source's
``suite.yaml`` is copied too. A folder already in ``--work`` with N records is reused.

Peak memory is the largest sum, over the report process and its worker processes, of their proportional set
sizes (PSS: shared pages split between the processes that share them), sampled every 0.1 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil


def write_records(source: Path, out: Path, runs: int) -> None:
    records = [json.loads(p.read_text()) for p in sorted(source.glob("runs/*/result.json"))]
    records = [r for r in records if r.get("status") == "ok"]
    if not records:
        raise SystemExit(f"no ok result files under {source}/runs")
    out.mkdir(parents=True)
    if (source / "suite.yaml").is_file():
        shutil.copy(source / "suite.yaml", out / "suite.yaml")
    rng = np.random.default_rng(0)
    seed_of: dict[str, int] = {}
    for n in range(runs):
        record = dict(records[n % len(records)])
        group = f"{record['scenario']['label']}__{record['strategy']['label']}"
        seed = seed_of[group] = seed_of.get(group, -1) + 1
        matrix = np.asarray(record["accuracy_matrix"], dtype=float)
        record["accuracy_matrix"] = np.clip(matrix + rng.uniform(-0.02, 0.02, matrix.shape), 0, 1).round(6).tolist()
        record["seed"], record["run_id"] = seed, f"{group}__s{seed}"
        folder = out / "runs" / record["run_id"]
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps(record))


def _tree_pss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def measure_report(folder: Path) -> tuple[float, float]:
    """Seconds and peak MB (summed PSS of the process tree) of ``forgetbench report FOLDER``."""
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "forgetbench.benchmark.front.cli", "report", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    process, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        try:
            peak = max(peak, _tree_pss(process))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"report failed on {folder}: {child.stderr.read().decode()[-2000:]}")
    return seconds, peak / 2**20


def reading_costs(source: Path, repeats: int = 20) -> None:
    """Per record of ``source`` (means over its records, ``repeats`` passes): the share of its bytes in curves and
    attribution, JSON parsing by the standard library and by pydantic-core, and validation whole and lean."""
    import pydantic_core

    from forgetbench.benchmark.core.record import RunRecord

    blobs = [p.read_bytes() for p in sorted(source.glob("runs/*/result.json"))]
    raws = [json.loads(b) for b in blobs]
    heavy = sum(len(json.dumps(r.get(k))) for r in raws for k in ("curves", "attribution") if k in r)
    print(f"curves and attribution: {heavy / sum(len(json.dumps(r)) for r in raws):.0%} of the records' bytes")

    def per_record(work) -> float:
        start = time.perf_counter()
        for _ in range(repeats):
            for item in work[1]:
                work[0](item)
        return (time.perf_counter() - start) / (repeats * len(work[1])) * 1e3

    for name, work in (
        ("parse, json.loads", (json.loads, blobs)),
        ("parse, pydantic_core.from_json", (pydantic_core.from_json, blobs)),
        ("validate whole (RunRecord.from_dict)", (RunRecord.from_dict, raws)),
        ("validate lean (RunRecord.from_dict_lean)", (RunRecord.from_dict_lean, raws)),
    ):
        print(f"{name:<42} {per_record(work):.3f} ms per record")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a results folder (OUT of forgetbench run)")
    parser.add_argument("--runs", type=int, nargs="+", default=[10_000], help="how many records, one report each")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/forgetbench-report-scale"),
        help="where the folders of records are written (kept, and reused by a later call)",
    )
    parser.add_argument("--reading", action="store_true", help="time reading the source's records instead")
    args = parser.parse_args()
    if args.reading:
        reading_costs(args.source)
        return
    print(f"{'runs':>8} {'JSON':>9} {'seconds':>8} {'peak MB':>8}")
    for runs in args.runs:
        folder = args.work / f"{runs}"
        if not (folder.is_dir() and sum(1 for _ in folder.glob("runs/*/result.json")) == runs):
            shutil.rmtree(folder, ignore_errors=True)
            write_records(args.source, folder, runs)
        size = sum(p.stat().st_size for p in folder.glob("runs/*/result.json")) / 2**20
        seconds, peak = measure_report(folder)
        print(f"{runs:>8} {size:>7,.0f}MB {seconds:>8.1f} {peak:>8,.0f}", flush=True)


if __name__ == "__main__":
    main()
