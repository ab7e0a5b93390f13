"""``perf``'s ``sequence_model`` section: EWC's and WPL's train time on a GRU against naive's, and each importance
pass against an epoch of training (the train-time ratio at E epochs per task is about 1 + (T - 1) / T x pass / E).

A GRU's weights have no per-sample gradient rule of their own; the Fisher pass unrolls the recurrence into the
Linear maps it is made of (:mod:`forgetbench.strategies.recurrent`). This section trains the toy sequence tasks of
:mod:`forgetbench.benchmark.data.sequences` (a GRU with one shared head, domain-incremental) with naive, EWC and
WPL through the runner's own training loop and reports each regularizer's train time (its Fisher passes included)
over naive's, and the same with the unrolled path switched off (the torch.func fallback every GRU took before).
"""

from __future__ import annotations

import copy
from typing import Any

from forgetbench.benchmark.perf.measurements import section, row
from forgetbench.benchmark.perf.common import (
    PerfOptions,
    Workload,
    harness_train,
    importance_ratio,
    median_of,
    ratio_of,
)

# 2 epochs per task, as configs/example_gru.yaml trains; pass_vs_epoch gives the ratio at any other count
SEQUENCE = dict(tasks=3, features=6, length=24, train=1200, test=200, hidden=64, epochs=2)
SEQUENCE_QUICK = dict(tasks=2, features=4, length=6, train=64, test=16, hidden=8, epochs=1)
REGULARIZERS = {"ewc": {"ewc_lambda": 1000.0}, "wpl": {"alpha": 1000.0}}


def sequence_workload(opts: PerfOptions) -> Workload:
    from forgetbench.benchmark.data.scenarios import SCENARIOS, ScenarioInputs
    from forgetbench.benchmark.run.spec import seed_everything

    sizes = SEQUENCE_QUICK if opts.quick else SEQUENCE
    entry = SCENARIOS.get("custom")
    params = entry.parse_params(
        {
            "benchmark": "forgetbench.benchmark.data.sequences:make_benchmark",
            "benchmark_params": {k: sizes[k] for k in ("tasks", "features", "length", "train", "test")},
            "model": "forgetbench.benchmark.data.sequences:make_model",
            "model_params": {"features": sizes["features"], "hidden": sizes["hidden"]},
        }
    )
    seed_everything(opts.seed)
    scenario = entry.factory(params, ScenarioInputs(opts.seed, opts.data_root))
    scenario.model.to(opts.torch_device)
    return Workload("sequence", scenario, copy.deepcopy(scenario.model.state_dict()))


def sequence_model(opts: PerfOptions) -> dict[str, Any]:
    """Train seconds (median over repeats, order alternated) of naive, ewc and wpl on the GRU workload, with the
    unrolled Fisher and with the fallback."""
    from unittest import mock

    from forgetbench.strategies import recurrent

    workload = sequence_workload(opts)
    training = opts.training.model_copy(update={"epochs": (SEQUENCE_QUICK if opts.quick else SEQUENCE)["epochs"]})
    device = opts.torch_device
    harness_train(workload, "naive", training, opts.seed, device=device)  # warm-up, untimed
    seconds: dict[str, list[float]] = {}
    passes: dict[str, list[float]] = {}  # the importance pass after an experience / that experience's epoch
    sides = ["naive", *REGULARIZERS, *(f"{name}_fallback" for name in REGULARIZERS)]
    for r in range(opts.repeats):
        for side in sides if r % 2 == 0 else sides[::-1]:
            name = side.removesuffix("_fallback")
            params = REGULARIZERS.get(name, {})
            if side.endswith("_fallback"):
                with mock.patch.object(recurrent, "supported", lambda module: False):
                    run = harness_train(workload, name, training, opts.seed, params, device)
            else:
                run = harness_train(workload, name, training, opts.seed, params, device)
            seconds.setdefault(side, []).append(run.train_seconds)
            if side != "naive":
                passes.setdefault(side, []).append(importance_ratio(run))
    median = {side: median_of(values) for side, values in seconds.items()}
    sizes = SEQUENCE_QUICK if opts.quick else SEQUENCE
    return {
        "model": (
            f"GRU hidden {sizes['hidden']} over {sizes['length']} steps of {sizes['features']} features, one shared "
            f"head; {sizes['tasks']} tasks x {sizes['train']} sequences, {training.epochs} epoch(s), "
            f"batch {training.batch_size}"
        ),
        "seconds": median,
        "ratio": {side: ratio_of(median[side], median["naive"]) for side in sides if side != "naive"},
        "pass_vs_epoch": {side: median_of(values) for side, values in passes.items()},
    }


def lines(r: Any) -> list[str]:
    """Its block of perf's table."""
    out = [f"sequence_model ({r['model']}): train time / naive's ({r['seconds']['naive']:.2f} s)"]
    for side, ratio in r["ratio"].items():
        how = "the torch.func fallback (before)" if side.endswith("_fallback") else "unrolled Fisher"
        out.append(
            row(
                f"{side.removesuffix('_fallback')}, {how}: {r['seconds'][side]:.2f} s",
                f"{ratio:.2f}x",
                f"its pass {r['pass_vs_epoch'][side]:.2f} epochs; target <= 1.5x",
            )
        )
    return out


section(__name__, "EWC's and WPL's train time on a GRU against naive's", sequence_model, lines, rank=7)
