"""Experiment tracking: each finished run's per-experience metrics and forgetting curves, written
to the trackers Avalanche users already read (``loggers:`` in a suite).

* ``csv`` (always available): ``OUT/logs/csv/<run_id>.csv``, tidy: ``run_id, kind, step, train_exp,
  iteration, eval_exp, accuracy`` where ``kind`` is ``matrix`` (row ``step`` = after training
  experience ``step``) or ``curve`` (``step`` = iterations since the run began).
* ``tensorboard`` (the ``tensorboard`` package): event files under ``OUT/logs/tensorboard/<run_id>/``
  (``tensorboard --logdir OUT/logs/tensorboard``): ``accuracy/<experience>`` at each training
  experience, ``curve/<experience>`` along the iterations, and the run's final metrics under ``final/``.
* ``mlflow`` (the ``mlflow`` or ``mlflow-skinny`` package): MLflow's local file store ``OUT/mlruns``,
  one experiment per suite, one MLflow run per forgetbench run (params: scenario, strategy, seed
  and the strategy's params; the same metrics as TensorBoard). MLflow 3 keeps its file store in
  maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE=true``, which this module sets for itself; open
  it with ``MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri OUT/mlruns``.

Logging reads the finished result record, in the suite's driver, so it works the same with every
executor and never touches training. A tracker that fails is reported and the suite goes on.
"""

from __future__ import annotations

import csv
import io
import re
import os
import time
from pathlib import Path
from typing import Any, Sequence

from forgetbench.benchmark.core.store import atomic_write_text
from forgetbench.benchmark.core.metric_registry import registered_metrics
from forgetbench.benchmark.core.metrics import run_metrics
from forgetbench.benchmark.core.record import RunRecord

# the built-ins logged as final.<key>; every metric added with register_metric is logged too
FINAL_METRICS = ("ACC", "forgetting", "LA", "BWT", "err_gap_mean", "curve_max_drop", "train_seconds")


def _points(record: RunRecord) -> list[dict[str, Any]]:
    """Every accuracy the record holds, tidy (matrix rows, then curves on one iteration axis)."""
    rows: list[dict[str, Any]] = []
    for i, row in enumerate(record.accuracy_matrix):
        rows += [
            {"kind": "matrix", "step": i, "train_exp": i, "iteration": "", "eval_exp": j, "accuracy": a}
            for j, a in enumerate(row)
        ]
    offsets: dict[int, int] = {}
    spans: dict[int, int] = {}
    for point in record.curves or []:
        spans[point.train_exp] = max(spans.get(point.train_exp, 0), point.iteration)
    total = 0
    for t in sorted(spans):
        offsets[t], total = total, total + spans[t]
    for p in record.curves or []:
        rows.append(
            {
                "kind": "curve",
                "step": offsets[p.train_exp] + p.iteration,
                "train_exp": p.train_exp,
                "iteration": p.iteration,
                "eval_exp": p.eval_exp,
                "accuracy": p.accuracy,
            }
        )
    return rows


def metric_name(record: RunRecord, j: int) -> str:
    """Experience ``j``'s name as a metric name both trackers accept (``task0(4,6)`` -> ``task0_4_6``)."""
    names = record.experiences
    name = str(names[j]) if j < len(names) else f"experience{j}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or f"experience{j}"


def _finals(record: RunRecord) -> dict[str, float]:
    values = run_metrics(record)
    keys = [*FINAL_METRICS, *(m.key for m in registered_metrics())]
    return {k: float(values[k]) for k in keys if k in values and values[k] == values[k]}


def _csv(out: Path, record: RunRecord) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["run_id", "kind", "step", "train_exp", "iteration", "eval_exp", "accuracy"])
    writer.writeheader()
    for row in _points(record):
        writer.writerow({"run_id": record.run_id, **row})
    atomic_write_text(out / "logs" / "csv" / f"{record.run_id}.csv", buffer.getvalue())


def _tensorboard(out: Path, record: RunRecord) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(out / "logs" / "tensorboard" / record.run_id)) as writer:
        for p in _points(record):
            tag = f"{'accuracy' if p['kind'] == 'matrix' else 'curve'}/{metric_name(record, p['eval_exp'])}"
            writer.add_scalar(tag, p["accuracy"], p["step"])
        last = len(record.accuracy_matrix)
        for key, value in _finals(record).items():
            writer.add_scalar(f"final/{key}", value, last)


def _mlflow(out: Path, record: RunRecord, suite: str) -> None:
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name(suite)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(suite)
    run = client.create_run(
        experiment_id,
        run_name=record.run_id,
        tags={"forgetbench.status": record.status, "forgetbench.run_id": record.run_id},
    )
    now = int(time.time() * 1000)
    params = {
        "scenario": record.scenario.label,
        "strategy": record.strategy.label,
        "seed": record.seed,
        **{f"strategy.{k}": v for k, v in record.strategy.params.items()},
    }
    metrics = [
        Metric(
            f"{'accuracy' if p['kind'] == 'matrix' else 'curve'}.{metric_name(record, p['eval_exp'])}",
            float(p["accuracy"]),
            now,
            int(p["step"]),
        )
        for p in _points(record)
    ]
    last = len(record.accuracy_matrix)
    metrics += [Metric(f"final.{k}", v, now, last) for k, v in _finals(record).items()]
    for start in range(0, max(len(metrics), 1), 1000):  # MLflow takes at most 1000 metrics per batch
        client.log_batch(
            run.info.run_id,
            metrics=metrics[start : start + 1000],
            params=[Param(k, str(v)[:500]) for k, v in params.items()] if start == 0 else [],
        )
    client.set_terminated(run.info.run_id, "FINISHED" if record.status == "ok" else "FAILED")


def log_run(out: Path, record: RunRecord, loggers: Sequence[str], suite: str) -> list[str]:
    """Write ``record`` to each tracker; returns one message per tracker that failed (the suite goes on)."""
    problems = []
    for logger in loggers:
        try:
            if logger == "csv":
                _csv(out, record)
            elif logger == "tensorboard":
                _tensorboard(out, record)
            elif logger == "mlflow":
                _mlflow(out, record, suite)
        except Exception as exc:  # a tracker must never cost a result
            problems.append(f"{logger} logger failed for {record.run_id}: {type(exc).__name__}: {exc}")
    return problems
