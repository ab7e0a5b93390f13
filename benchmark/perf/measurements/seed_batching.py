"""``perf``'s ``seed_batching`` section: seeds per second, K seeds of one run trained as one stacked model
(:mod:`forgetbench.benchmark.run.batching`) against the same K seeds one after another, in one process.

Each side runs whole runs (scenario, training, evaluation, importance passes, records), the demo's scenarios at
decide_demo's sizes, Split MNIST on the real data as ``configs/split_mnist.yaml`` trains it (each seed's own class
order: its tasks of other sizes, its epochs of other lengths) and a BatchNorm CNN (the reduced ResNet-18 on digits,
which the path refuses: the row says why), on the torch threads a run gets; the sides alternate over ``repeats`` and each K is timed on
both. The batched records must be the per-seed ones (``same``: accuracy matrices within 1e-4, compared on the first
repeat), and a batch the path refused is named (``alone``: its reason), never timed as batched. The ratio is
per-seed seconds / batched seconds (higher is better); ``seeds_per_second`` both ways.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from forgetbench.benchmark.perf.common import PerfOptions, median_of
from forgetbench.benchmark.perf.measurements import section

SCENARIOS: dict[str, dict[str, Any]] = {  # decide_demo's two scenarios
    "two-model": {
        "name": "two_model",
        "params": {"dataset": "digits", "depth_a": 2, "depth_b": 3, "width": 128, "shared": 2, "data_b": "permuted",
                   "a_steps": 200, "b_steps": 300},
    },
    "supernet": {
        "name": "supernet",
        "params": {"dataset": "digits", "layers": 3, "ops": 3, "width": 32, "architectures": 5, "head": "private",
                   "schedule": "sequential", "steps_per_turn": 100},
    },
    # real data, each seed's own split (configs/split_mnist.yaml's scenario): slower, so fewer seeds and strategies
    "split-mnist": {
        "name": "split", "params": {"dataset": "mnist", "tasks": 5, "classes_per_task": 2, "widths": [256, 256]},
        "seeds": [10], "strategies": ["naive", "ewc", "si"], "training": {"lr": 0.01, "batch_size": 128},
    },
    "bn-cnn": {
        "name": "split", "params": {"dataset": "digits", "tasks": 3, "classes_per_task": 2, "trunk": "resnet18",
                                    "widths": [4]},
        "seeds": [8], "strategies": ["naive"],
    },
}  # fmt: skip
STRATEGIES: dict[str, dict[str, Any]] = {  # decide_demo's strategies and strengths (two-model's)
    "naive": {},
    "ewc": {"ewc_lambda": 1000.0},
    "si": {"si_lambda": 3.0},
    "mas": {"lambda_reg": 0.3},
    "wpl": {"alpha": 10000.0},
}


class SeedBatchingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seeds: list[int] = Field(default_factory=lambda: [8, 20, 50])  # K, the seeds of one batch
    # the seeds run one after another (the first of the K; None: all K), their rate the per-seed side's: K = 500 on
    # a GPU is timed against 8 seeds alone, not 500
    alone_seeds: int | None = Field(default=None, ge=1)
    scenarios: list[str] = Field(default_factory=lambda: list(SCENARIOS))
    strategies: list[str] = Field(default_factory=lambda: list(STRATEGIES))


def _specs(opts: PerfOptions, scenario: str, strategy: str, seeds: int) -> list[Any]:
    from forgetbench.benchmark.core.config import ComponentSpec
    from forgetbench.benchmark.core.training import TrainingConfig
    from forgetbench.benchmark.run.spec import RunSpec

    chosen = SCENARIOS[scenario]
    training = TrainingConfig(
        **{
            "optimizer": "sgd",
            "lr": 0.05,
            "momentum": 0.9,
            "batch_size": 32,
            "epochs": 1,
            "eval_batch_size": 2000,
            **chosen.get("training", {}),
        }  # fmt: skip
    )
    return [
        RunSpec("perf_seed_batching", ComponentSpec(name=chosen["name"], params=chosen["params"]),
                ComponentSpec(name=strategy, params=STRATEGIES[strategy]), seed, training, opts.device)
        for seed in range(seeds)
    ]  # fmt: skip


def seed_batching(opts: PerfOptions, params: SeedBatchingParams, data: Any) -> dict[str, Any]:
    import torch

    rows = []
    # --quick: a smoke of the section (the first two strategies, 3 seeds), not a figure
    strategies = params.strategies[:2] if opts.quick else params.strategies
    for scenario in params.scenarios:
        chosen = SCENARIOS[scenario]
        for strategy in [s for s in strategies if s in chosen.get("strategies", strategies)]:
            for k in chosen.get("seeds", params.seeds) if not opts.quick else [min(*params.seeds, 3)]:
                row = _measure(opts, params, scenario, strategy, k)
                rows.append(row)
                if row.get("failed") is not None or row["alone"] is not None:
                    break  # a larger K is refused (or fails) for the same reason
    return {"threads": torch.get_num_threads(), "repeats": opts.repeats, "device": opts.device, "rows": rows}


def _measure(opts: PerfOptions, params: SeedBatchingParams, scenario: str, strategy: str, k: int) -> dict[str, Any]:
    """One row: K seeds as one batch against ``alone_seeds`` of them one after another (all K by default), the
    sides alternating over the repeats; the records' largest accuracy difference over the seeds run both ways, and
    on an accelerator the batch's peak memory."""
    import torch

    from forgetbench.benchmark.run.batching import run_seeds
    from forgetbench.benchmark.run.runner import run

    specs = _specs(opts, scenario, strategy, k)
    alone_specs = specs[: params.alone_seeds or k]
    where = {"scenario": scenario, "strategy": strategy, "seeds": k}
    warm = run_seeds(specs[:2], opts.data_root)  # warm-up: imports, the dataset cache
    if warm[0].status == "failed":  # e.g. no MNIST under the data root: said, not timed
        return where | {"failed": warm[0].error}
    alone_s, batched_s, records_alone, records, refused, peak = [], [], [], [], None, None
    cuda = opts.device.startswith("cuda")
    for repeat in range(opts.repeats):
        for side in ("alone", "batched") if repeat % 2 == 0 else ("batched", "alone"):
            t0 = time.perf_counter()
            if side == "alone":
                records_alone = [run(spec, opts.data_root) for spec in alone_specs]
                alone_s.append(time.perf_counter() - t0)
                continue
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            records = run_seeds(specs, opts.data_root)
            batched_s.append(time.perf_counter() - t0)
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
            batch = records[0].batch
            if batch is None or batch.seeds is None:
                refused = batch.alone if batch is not None else "not one run's seeds"
        if refused is not None:
            break
    alone_t, batched_t = median_of(alone_s), median_of(batched_s)
    rates = {"alone": len(alone_specs) / alone_t, "batched": k / batched_t}
    apart = max((largest_difference(a.accuracy_matrix, b.accuracy_matrix) for a, b in zip(records_alone, records)))
    return where | {
        "alone_seeds": len(alone_specs), "alone_seconds": alone_t, "batched_seconds": batched_t,
        "ratio": rates["batched"] / rates["alone"] if refused is None else None, "seeds_per_second": rates,
        "largest_difference": apart, "same": apart <= 1e-4, "peak_memory_gb": peak, "alone": refused,
    }  # fmt: skip


def largest_difference(mine: list | None, theirs: list | None) -> float:
    """The largest entry-wise difference of two accuracy matrices (0 for two missing ones; inf where one is missing
    or shaped otherwise; entries missing in both are skipped)."""
    import torch

    if mine is None or theirs is None:
        return 0.0 if mine is theirs else float("inf")
    a, b = torch.tensor(mine, dtype=torch.float64), torch.tensor(theirs, dtype=torch.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(torch.nan_to_num(a - b, nan=0.0).abs().max()) if a.numel() else 0.0


def lines(value: dict[str, Any]) -> list[str]:
    out = [
        f"seed_batching: seeds per second, K seeds as one stacked model vs one after another (whole runs on "
        f"{value.get('device', 'cpu')}, {value['threads']} thread(s), median of {value['repeats']}; ratio = batched "
        "seeds/s over per-seed seeds/s, higher is better)"
    ]
    for row in value["rows"]:
        where = f"  {row['scenario']:<11} {row['strategy']:<6} K={row['seeds']:<3}"
        if row.get("failed") is not None:
            out.append(f"{where} not measured: {row['failed']}")
            continue
        if row["alone"] is not None:
            out.append(f"{where} not batched: {row['alone']}")
            continue
        rate = row["seeds_per_second"]
        apart = "equal" if row["largest_difference"] == 0 else f"apart by at most {row['largest_difference']:.3g}"
        peak = f", peak {row['peak_memory_gb']:.2f} GB" if row.get("peak_memory_gb") is not None else ""
        alone = f" (alone: {row['alone_seeds']} seeds)" if row.get("alone_seeds", row["seeds"]) != row["seeds"] else ""
        out.append(
            f"{where} {rate['alone']:6.2f} -> {rate['batched']:6.2f} seeds/s  x{row['ratio']:.2f}{alone}"
            f"  (records {apart}{peak})"
        )
    return out


MEASUREMENT = section(
    __name__,
    "seeds per second: one run's seeds as one stacked model against one after another",
    seed_batching,
    lines,
    params=SeedBatchingParams,
    rank=95,
)
