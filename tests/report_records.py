"""Hand-built result records in the agreed schema (including keys main does not write yet)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.store import write_result


def record(
    scenario: str,
    strategy: str,
    seed: int,
    R: list[list[float]],
    *,
    name: str | None = None,
    status: str = "ok",
    error: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "run_id": f"{scenario}__{re.sub(r'[^A-Za-z0-9_.+=-]', '_', strategy)}__seed{seed}",  # a folder name
        "suite": "hand",
        "scenario": {"name": "split", "label": scenario, "params": {}},
        "strategy": {"name": name or strategy, "label": strategy, "params": {}},
        "seed": seed,
        "status": status,
        "error": error,
        "config": {"seed": seed},
        "environment": {
            "python": "3.11.7",
            "torch": "2.15.0",
            "avalanche": "0.6.0",
            "device": "cpu",
            "platform": "Linux-test",
        },
        "experiences": [f"task{j}" for j in range(len(R[0]) if R else 0)],
        "accuracy_matrix": R,
        "init_accuracy": [0.5] * (len(R[0]) if R else 0),
        "timing": {"train_seconds": 2.0, "eval_seconds": 0.5, "steps": 100},
        **extra,
    }


NAIVE = {0: [[0.9, 0.5], [0.6, 0.95]], 1: [[0.9, 0.5], [0.7, 0.95]]}  # forgetting 0.3, 0.2
EWC = {0: [[0.9, 0.5], [0.8, 0.9]], 1: [[0.9, 0.5], [0.85, 0.9]]}  # forgetting 0.1, 0.05

R3 = [[0.9, 0.5, 0.5], [0.8, 0.9, 0.5], [0.7, 0.85, 0.9]]
CURVES = [  # earlier models while experiences 1 and 2 train; the (1, 1) point is the model in training
    {"train_exp": 1, "iteration": 10, "eval_exp": 0, "accuracy": 0.7},
    {"train_exp": 1, "iteration": 20, "eval_exp": 0, "accuracy": 0.8},
    {"train_exp": 1, "iteration": 10, "eval_exp": 1, "accuracy": 0.1},
    {"train_exp": 2, "iteration": 10, "eval_exp": 0, "accuracy": 0.75},
    {"train_exp": 2, "iteration": 20, "eval_exp": 0, "accuracy": 0.7},
    {"train_exp": 2, "iteration": 10, "eval_exp": 1, "accuracy": 0.9},
    {"train_exp": 2, "iteration": 20, "eval_exp": 1, "accuracy": 0.85},
]
SUPERNET_R = [[0.5, 0.6, 0.7], [0.6, 0.8, 0.7]]  # rows are rounds
ERR1 = [[0.5, 0.4, 0.3], [0.4, 0.2, 0.3]]
ERR2 = [[0.6, 0.4, 0.3], [0.5, 0.2, 0.25]]  # gaps .1 0 0 .1 0 -.05: mean 0.025, max 0.1


def basic_records(label: str = "ewc") -> list[dict[str, Any]]:
    """naive and one strategy on seeds 0 and 1 (T = 2) plus a failed seed 2 of the strategy."""
    recs = [record("pair", "naive", s, R) for s, R in NAIVE.items()]
    recs += [record("pair", label, s, R, name="ewc") for s, R in EWC.items()]
    recs.append(
        record(
            "pair",
            label,
            2,
            [],
            name="ewc",
            status="failed",
            error="RuntimeError: boom <b>bold</b>",
            traceback="Traceback ...",
        )
    )
    return recs


def full_records() -> list[dict[str, Any]]:
    """Every optional section: curves + memory, a joint reference, and a supernet scenario."""
    recs = basic_records()
    for seed in (0, 1):
        recs.append(record("curvy", "naive", seed, R3, curves=CURVES, memory={"regularizer_bytes": 0}))
        recs.append(record("curvy", "ewc", seed, R3, curves=CURVES, memory={"regularizer_bytes": 4096}))
        recs.append(record("curvy", "joint", seed, [[0.99, 0.96, 0.94]] * 3))
        for strategy in ("naive", "wpl"):
            recs.append(
                record("nas", strategy, seed, SUPERNET_R, err1=ERR1, err2=ERR2, standalone_accuracy=[0.7, 0.9, 0.8])
            )
    return recs


def write_plan(folder: Path) -> Path:
    """``folder``'s plan.json, planning every record under its runs/ (as the suite that wrote them would have)."""
    from forgetbench.benchmark.core import plan
    from forgetbench.benchmark.core.record import config_fingerprint
    from forgetbench.benchmark.core.store import atomic_write_bytes, load_results

    records = load_results(folder)
    for record in records:  # each record carries its planned run's fingerprint, as the suite writes it
        record.fingerprint = config_fingerprint(record.config)
        write_result(folder, record)
    runs = [plan.PlannedRun(r.run_id, r.config) for r in records]
    atomic_write_bytes(plan.plan_path(folder), plan.plan_bytes(plan.extended({}, runs)))
    return folder


def write_folder(folder: Path, records: list[dict[str, Any]]) -> Path:
    for rec in records:
        write_result(folder, RunRecord.from_dict(rec))
    return folder
