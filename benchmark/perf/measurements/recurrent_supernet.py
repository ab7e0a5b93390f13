"""``perf``'s ``recurrent_supernet`` section: the ENAS recurrent supernet's turns, harness against plain loop,
and WPL's step and Fisher update."""

from __future__ import annotations

from typing import Any

from forgetbench.benchmark.perf.measurements import section, row, ratio_and_weights
from forgetbench.benchmark.perf.common import (
    against_plain,
    PerfOptions,
    RECURRENT,
    RECURRENT_QUICK,
    RECURRENT_WPL,
    importance_ratio,
    median_of,
    seconds_per_step,
    ratio_of,
    harness_train,
    max_weight_diff,
    plain_train,
    recurrent_workload,
)


def recurrent_supernet(opts: PerfOptions) -> dict[str, Any]:
    """One shared step of the recurrent supernet: the harness (naive) against the plain loop on the same turns,
    WPL's (online Fisher) step against naive's, and WPL's Fisher update against the turn's own batches."""
    workload, training = recurrent_workload(opts)
    device = opts.torch_device
    sizes = RECURRENT_QUICK if opts.quick else RECURRENT
    plain_train(workload, training, opts.seed, device)  # warm-up, untimed
    harness_s, plain_s, naive_step, wpl_step, fisher_share, diffs = [], [], [], [], [], []
    steps = steps_plain = 0
    for r in range(opts.repeats):
        order = ["plain", "harness", "wpl"] if r % 2 == 0 else ["wpl", "harness", "plain"]
        models = {}
        for side in order:
            if side == "plain":
                models["plain"], seconds, steps_plain = plain_train(workload, training, opts.seed, device)
                plain_s.append(seconds)
            elif side == "harness":
                run = harness_train(workload, "naive", training, opts.seed, device=device)
                models["harness"], steps = run.model, run.steps
                harness_s.append(run.train_seconds)
                naive_step.append(seconds_per_step(run, first_exp=0))
            else:
                run = harness_train(workload, "wpl_online", training, opts.seed, RECURRENT_WPL, device)
                wpl_step.append(seconds_per_step(run))
                fisher_share.append(importance_ratio(run))
        diffs.append(max_weight_diff(models["plain"], models["harness"]))
    return {
        **against_plain(harness_s, plain_s, steps, steps_plain, diffs),
        "model": (
            f"ENAS cell {sizes['nodes']} nodes, hidden {sizes['hidden']}, vocabulary {sizes['vocabulary']}, "
            f"bptt {sizes['bptt']}, batch {sizes['batch']}; {sizes['turns']} turns x {sizes['steps']} steps"
        ),
        "step_seconds": median_of(naive_step),
        "wpl_step_seconds": median_of(wpl_step),
        "wpl_vs_naive": ratio_of(median_of(wpl_step), median_of(naive_step)),
        "fisher_vs_turn": median_of(fisher_share),
    }


def lines(r: Any) -> list[str]:
    """Its block of perf's table."""
    return [
        f"recurrent_supernet ({r['model']})",
        row(
            f"harness naive / plain: {r['harness_seconds']:.3f}s / {r['plain_seconds']:.3f}s",
            ratio_and_weights(r),
            "target <= 1.10",
        ),
        row(
            f"wpl (online) / naive step ({r['wpl_step_seconds'] * 1e3:.1f} / {r['step_seconds'] * 1e3:.1f} ms)",
            f"{r['wpl_vs_naive']:.3f}",
            "target <= 1.15",
        ),
        row("Fisher update / the turn's batches", f"{r['fisher_vs_turn']:.3f}", "target <= 1.0"),
    ]


section(
    __name__,
    "the ENAS recurrent supernet's turns: harness, WPL and its Fisher update",
    recurrent_supernet,
    lines,
    rank=6,
)
