"""How likely is an effect test to pass on another CPU? Per-seed results under several kernel sets, resampled.

A CPU with other float kernels gives each seed other numbers: the same effect, another draw of its noise. So
the per-seed paired differences measured under two kernel sets (this machine's best and
``ATEN_CPU_CAPABILITY=default``) are pooled, and a test's pass probability at n seeds is the share of
random n-seed subsets of that pool on which it passes. ``tests/test_defaults.py`` and ``tests/test_demo.py``
took their seed counts and assertions from these figures (docs/studies/robustness.md).

    python scripts/effect_power.py collect best.json --seeds 60
    ATEN_CPU_CAPABILITY=default python scripts/effect_power.py collect portable.json --seeds 60
    python scripts/effect_power.py power best.json portable.json
    python scripts/effect_power.py demo best.json portable.json     # tests/test_demo.py's assertions

``collect`` runs configs/demo.yaml's scenarios with each strategy's default params (one torch thread, as the
test suite) and writes per-seed forgetting, B's accuracy and err2 - err1; ``power`` prints, per case, the
interval of the paired difference on each file's first n seeds and the resampled pass probability of
``tests/test_defaults.py``'s assertion (the 95% interval of strategy minus naive below 0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = ["naive", "ewc", "si", "wpl", "l2", "mas", "lwf"]


def collect(out: Path, seeds: int, strategies: list[str]) -> None:
    import torch

    from forgetbench.benchmark.core.config import ComponentSpec, load_config
    from forgetbench.benchmark.core.metrics import run_metrics
    from forgetbench.benchmark.run.runner import run
    from forgetbench.benchmark.run.spec import RunSpec

    torch.set_num_threads(1)
    demo = load_config(REPO / "configs" / "demo.yaml")
    rows = []
    for scenario in demo.scenarios:
        for strategy in strategies:
            for seed in range(seeds):
                spec = RunSpec("defaults", scenario, ComponentSpec(name=strategy), seed, demo.training, "cpu")
                record = run(spec, None)
                if record.status != "ok":
                    sys.exit(f"{scenario.label}/{strategy}/seed {seed}: {record.status}: {record.error}")
                R = record.accuracy_matrix
                rows.append(
                    {
                        "scenario": scenario.label,
                        "strategy": strategy,
                        "seed": seed,
                        "forgetting": 100 * run_metrics(record)["forgetting"],
                        "last": 100 * R[-1][-1],
                        "err_gap": (
                            float(np.nanmean(np.subtract(record.err2, record.err1)))
                            if record.err1 is not None
                            else None
                        ),
                    }
                )
            print(f"{scenario.label} {strategy}: {seeds} seeds", flush=True)
    kernels = torch.backends.cpu.get_cpu_capability()
    tmp = out.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"cpu_kernels": kernels, "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY"), "rows": rows})
    )
    tmp.replace(out)
    print(f"{len(rows)} runs under {kernels} kernels -> {out}")


def _upper(d: np.ndarray) -> float:
    from scipy import stats

    return float(d.mean() + stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))


def power(files: list[Path], sizes: list[int], draws: int) -> None:
    tables = []
    for f in files:
        data = json.loads(f.read_text())
        table: dict[tuple[str, str], dict[int, float]] = {}
        for row in data["rows"]:
            table.setdefault((row["scenario"], row["strategy"]), {})[row["seed"]] = row["forgetting"]
        tables.append((data["cpu_kernels"], table))
    rng = np.random.default_rng(0)
    cases = sorted({key for _, t in tables for key in t if key[1] != "naive"})
    print(
        "case | "
        + " | ".join(f"{k} upper@{n}" for k, _ in tables for n in sizes)
        + " | "
        + " | ".join(f"P(pass)@{n}" for n in sizes)
    )
    for scenario, strategy in cases:
        cells, pool = [], []
        for _, table in tables:
            mine, base = table[(scenario, strategy)], table[(scenario, "naive")]
            shared = sorted(mine.keys() & base.keys())
            diffs = np.array([mine[s] - base[s] for s in shared])
            pool.append(diffs)
            cells += [f"{_upper(diffs[:n]):+.2f}" if len(diffs) >= n else "-" for n in sizes]
        pooled = np.concatenate(pool)
        chances = [
            f"{np.mean([_upper(rng.choice(pooled, n, replace=False)) < 0 for _ in range(draws)]):.3f}"
            if pooled.size > n
            else "-"
            for n in sizes
        ]
        print(f"{scenario}/{strategy} | " + " | ".join(cells) + " | " + " | ".join(chances))


def demo_power(files: list[Path], draws: int) -> None:
    """Pass probabilities of tests/test_demo.py's assertions at the demo's 5 seeds (two-model and supernet rows of
    naive and wpl, pooled over the files)."""
    from scipy import stats

    pairs, gaps = [], []
    for f in files:
        table: dict[tuple[str, str], dict[int, dict]] = {}
        for row in json.loads(f.read_text())["rows"]:
            table.setdefault((row["scenario"], row["strategy"]), {})[row["seed"]] = row
        naive, wpl = table[("two-model", "naive")], table[("two-model", "wpl")]
        pairs += [
            (naive[s]["forgetting"], wpl[s]["forgetting"], naive[s]["last"], wpl[s]["last"])
            for s in sorted(naive.keys() & wpl.keys())
        ]
        sn_naive, sn_wpl = table[("supernet", "naive")], table[("supernet", "wpl")]
        gaps += [(sn_naive[s]["err_gap"], sn_wpl[s]["err_gap"]) for s in sorted(sn_naive.keys() & sn_wpl.keys())]
    pool, gap_pool = np.array(pairs), np.array(gaps)
    rng = np.random.default_rng(0)
    checks = {
        "naive's mean forgetting of A >= 5 points": lambda x: x[:, 0].mean() >= 5,
        "WPL below naive, paired t-test p < 0.05": lambda x: stats.ttest_rel(x[:, 1], x[:, 0]).pvalue < 0.05,
        "WPL's mean forgetting <= 0.25 x naive's": lambda x: x[:, 1].mean() <= 0.25 * x[:, 0].mean(),
        "points WPL saves A > points it costs B (means)": lambda x: (
            (x[:, 0] - x[:, 1]).mean() > (x[:, 2] - x[:, 3]).mean()
        ),
        "was: B under WPL within 3 points of naive": lambda x: abs((x[:, 3] - x[:, 2]).mean()) <= 3,
    }
    for name, check in checks.items():
        rate = np.mean([check(pool[rng.choice(len(pool), 5, replace=False)]) for _ in range(draws)])
        print(f"{name}: {rate:.4f}")
    for name, check in {
        "supernet: naive's mean err2 - err1 > 0": lambda g: g[:, 0].mean() > 0,
        "was: supernet: WPL's mean err2 - err1 below naive's": lambda g: g[:, 1].mean() < g[:, 0].mean(),
    }.items():
        rate = np.mean([check(gap_pool[rng.choice(len(gap_pool), 5, replace=False)]) for _ in range(draws)])
        print(f"{name}: {rate:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="run the demo's scenarios per seed under the current kernels")
    c.add_argument("out", type=Path)
    c.add_argument("--seeds", type=int, default=20)
    c.add_argument("--strategies", default=",".join(STRATEGIES))
    p = sub.add_parser("power", help="pass probabilities from collected files (one per kernel set)")
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--sizes", default="5,10,20,40,60")
    p.add_argument("--draws", type=int, default=4000)
    d = sub.add_parser("demo", help="pass probabilities of tests/test_demo.py's assertions at the demo's 5 seeds")
    d.add_argument("files", type=Path, nargs="+")
    d.add_argument("--draws", type=int, default=20000)
    args = parser.parse_args()
    if args.command == "collect":
        collect(args.out, args.seeds, args.strategies.split(","))
    elif args.command == "demo":
        demo_power(args.files, args.draws)
    else:
        power(args.files, [int(n) for n in args.sizes.split(",")], args.draws)


if __name__ == "__main__":
    main()
