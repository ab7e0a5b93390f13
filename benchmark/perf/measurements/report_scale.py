"""``forgetbench report`` at scale: wall time and peak memory of a report on N run records made from a real results
folder, for each N asked; with ``reading``, what reading one record costs instead (whole and lean).

    forgetbench run configs/demo.yaml --out /tmp/demo
    forgetbench perf --only report_scale --set results=/tmp/demo --set runs=[10000,100000] [--set work=/tmp/scale]
    forgetbench perf --only report_scale --set results=/tmp/demo --set reading=true

Each source record (ok runs only) is copied with new seeds (run id and ``seed``) until N records are written, so
every (scenario, strategy) of the source gets about N / len(source) seeds; the copies' accuracy matrices move
by a seeded jitter of at most 0.02 (clipped to [0, 1]) so seeds differ as real ones do; curves, attribution and
the rest are the source's, so each copy is the size of a real record (the demo's: 50 KB). The source's
``suite.yaml`` is copied too. A folder already in ``work`` with N records is reused.

Peak memory is the largest sum, over the report process and its worker processes, of their proportional set
sizes (PSS: shared pages split between the processes that share them), sampled every 0.1 s.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, DirectoryPath, Field, PositiveInt

from forgetbench.benchmark.perf.measurements import Measurement, register


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    results: DirectoryPath  # the source: a results folder (OUT of forgetbench run)
    runs: list[PositiveInt] = Field(default_factory=lambda: [10_000], min_length=1)  # records, one report each
    work: Path = Path("/tmp/forgetbench-report-scale")  # where the folders are written (kept, reused)
    reading: bool = False  # time reading the source's records instead


def write_records(source: Path, out: Path, runs: int) -> None:
    import numpy as np

    records = [json.loads(p.read_text()) for p in sorted(source.glob("runs/*/result.json"))]
    records = [r for r in records if r.get("status") == "ok"]
    if not records:
        raise ValueError(f"no ok result files under {source}/runs")
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


def _tree_pss(process: Any) -> int:
    import psutil

    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def measure_report(folder: Path) -> tuple[float, float]:
    """Seconds and peak MB (summed PSS of the process tree) of ``forgetbench report FOLDER``."""
    import psutil

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
        raise RuntimeError(f"report failed on {folder}: {child.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
    return seconds, peak / 2**20


def reading_costs(source: Path, repeats: int = 20) -> dict[str, float]:
    """Per record of ``source`` (means over its records, ``repeats`` passes): the share of its bytes in curves and
    attribution, and the milliseconds of JSON parsing (standard library, pydantic-core) and validation whole and
    lean."""
    import pydantic_core

    from forgetbench.benchmark.core.record import RunRecord

    blobs = [p.read_bytes() for p in sorted(source.glob("runs/*/result.json"))]
    raws = [json.loads(b) for b in blobs]
    heavy = sum(len(json.dumps(r.get(k))) for r in raws for k in ("curves", "attribution") if k in r)
    costs = {"curves_and_attribution_share": heavy / sum(len(json.dumps(r)) for r in raws)}
    steps: list[tuple[str, Callable[[Any], object], list[Any]]] = [
        ("parse, json.loads", json.loads, blobs),
        ("parse, pydantic_core.from_json", pydantic_core.from_json, blobs),
        ("validate whole (RunRecord.from_dict)", RunRecord.from_dict, raws),
        ("validate lean (RunRecord.from_dict_lean)", RunRecord.from_dict_lean, raws),
    ]
    for name, parse, items in steps:
        start = time.perf_counter()
        for _ in range(repeats):
            for item in items:
                parse(item)
        costs[name] = (time.perf_counter() - start) / (repeats * len(items)) * 1e3
    return costs


def run(opts: Any, params: Params, data: Any) -> dict[str, Any]:
    if params.reading:
        return {"reading_ms_per_record": reading_costs(params.results)}
    rows = []
    for runs in params.runs:
        folder = params.work / f"{runs}"
        if not (folder.is_dir() and sum(1 for _ in folder.glob("runs/*/result.json")) == runs):
            shutil.rmtree(folder, ignore_errors=True)
            write_records(params.results, folder, runs)
        size = sum(p.stat().st_size for p in folder.glob("runs/*/result.json")) / 2**20
        seconds, peak = measure_report(folder)
        rows.append({"runs": runs, "json_mb": size, "seconds": seconds, "peak_mb": peak})
    return {"reports": rows}


def lines(result: dict[str, Any]) -> list[str]:
    if "reading_ms_per_record" in result:
        costs = dict(result["reading_ms_per_record"])
        share = costs.pop("curves_and_attribution_share")
        out = [f"curves and attribution: {share:.0%} of the records' bytes"]
        return out + [f"{name:<42} {ms:.3f} ms per record" for name, ms in costs.items()]
    out = [f"{'runs':>8} {'JSON':>9} {'seconds':>8} {'peak MB':>8}"]
    for r in result["reports"]:
        out.append(f"{r['runs']:>8} {r['json_mb']:>7,.0f}MB {r['seconds']:>8.1f} {r['peak_mb']:>8,.0f}")
    return out


register(Measurement("report_scale", "a report's seconds and peak memory on N copied records", Params, run, lines))
