"""How likely is an effect test to pass on another CPU? Per-seed results under several kernel sets, resampled.

A CPU with other float kernels gives each seed other numbers: the same effect, another draw of its noise. So the
per-seed paired differences measured under two kernel sets (this machine's best and ``ATEN_CPU_CAPABILITY=default``)
are pooled, and a test's pass probability at n seeds is the share of random n-seed subsets of that pool on which it
passes. ``tests/strategies/test_defaults.py`` and ``tests/acceptance/test_demo.py`` took their seed counts and assertions from these
figures (docs/studies/robustness.md).

    forgetbench perf --only effect_power --set mode=collect --set out=best.json --set seeds=60
    ATEN_CPU_CAPABILITY=default forgetbench perf --only effect_power --set mode=collect --set out=portable.json \
        --set seeds=60
    forgetbench perf --only effect_power --set mode=power --set files=[best.json,portable.json]
    forgetbench perf --only effect_power --set mode=demo --set files=[best.json,portable.json]

``collect`` runs configs/demo.yaml's scenarios with each strategy's default params (one torch thread, as the test
suite) and writes per-seed forgetting, B's accuracy and err2 - err1; ``power`` gives, per case, the interval of the
paired difference on each file's first n seeds and the resampled pass probability of ``tests/strategies/test_defaults.py``'s
assertion (the 95% interval of strategy minus naive below 0); ``demo`` the pass probabilities of
``tests/acceptance/test_demo.py``'s assertions at the demo's 5 seeds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FilePath, PositiveInt, model_validator

from forgetbench.benchmark.perf.measurements import REPO, Measurement, register

STRATEGIES = ["naive", "ewc", "si", "wpl", "l2", "mas", "lwf"]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["collect", "power", "demo"] = "power"
    out: Path | None = None  # collect: the JSON file written
    seeds: PositiveInt = 20  # collect: seeds per (scenario, strategy)
    strategies: list[str] = Field(default_factory=lambda: list(STRATEGIES), min_length=1)  # collect
    files: list[FilePath] = Field(default_factory=list)  # power, demo: collected files, one per kernel set
    sizes: list[PositiveInt] = Field(default_factory=lambda: [5, 10, 20, 40, 60])  # power: seed counts
    draws: PositiveInt | None = None  # resamples (default 4000 for power, 20000 for demo)

    @model_validator(mode="after")
    def _what_the_mode_needs(self) -> Params:
        if self.mode == "collect" and self.out is None:
            raise ValueError("mode collect writes its per-seed results to out: give --set out=FILE.json")
        if self.mode != "collect" and not self.files:
            raise ValueError(f"mode {self.mode} reads collected files: give --set files=[A.json,B.json]")
        return self


def collect(out: Path, seeds: int, strategies: list[str], data_root: Path) -> dict[str, Any]:
    import numpy as np
    import torch

    from forgetbench.benchmark.core.config import ComponentSpec, load_config
    from forgetbench.benchmark.core.metrics import run_metrics
    from forgetbench.benchmark.core.store import atomic_write_text
    from forgetbench.benchmark.run.runner import run
    from forgetbench.benchmark.run.spec import RunSpec

    torch.set_num_threads(1)
    demo = load_config(REPO / "configs" / "demo.yaml")
    rows = []
    for scenario in demo.scenarios:
        for strategy in strategies:
            for seed in range(seeds):
                spec = RunSpec("defaults", scenario, ComponentSpec(name=strategy), seed, demo.training, "cpu")
                record = run(spec, data_root)
                if record.status != "ok":
                    raise RuntimeError(f"{scenario.label}/{strategy}/seed {seed}: {record.status}: {record.error}")
                R = record.accuracy_matrix
                gaps = None if record.err1 is None else np.asarray(record.err2, float) - np.asarray(record.err1, float)
                gap = None if gaps is None else np.nanmean(gaps)
                rows.append(
                    {
                        "scenario": scenario.label,
                        "strategy": strategy,
                        "seed": seed,
                        "forgetting": 100 * run_metrics(record)["forgetting"],
                        "last": 100 * R[-1][-1],
                        "err_gap": None if gap is None else float(gap),
                    }
                )
    kernels = torch.backends.cpu.get_cpu_capability()
    payload = {"cpu_kernels": kernels, "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY"), "rows": rows}
    atomic_write_text(out, json.dumps(payload))
    return {"runs": len(rows), "cpu_kernels": kernels, "out": str(out)}


def _upper(d: Any) -> float:
    """The upper end of the 95% t-interval of the mean (the assertion's bound: below 0 passes)."""
    from forgetbench.benchmark.core.stats import t_interval

    return t_interval(d)[1]


def power(files: list[Path], sizes: list[int], draws: int) -> dict[str, Any]:
    import numpy as np

    tables = []
    for f in files:
        data = json.loads(f.read_text())
        table: dict[tuple[str, str], dict[int, float]] = {}
        for row in data["rows"]:
            table.setdefault((row["scenario"], row["strategy"]), {})[row["seed"]] = row["forgetting"]
        tables.append((data["cpu_kernels"], table))
    rng = np.random.default_rng(0)
    cases = sorted({key for _, t in tables for key in t if key[1] != "naive"})
    rows = []
    for scenario, strategy in cases:
        upper, pool = {}, []
        for kernels, table in tables:
            mine, base = table[(scenario, strategy)], table[(scenario, "naive")]
            diffs = np.array([mine[s] - base[s] for s in sorted(mine.keys() & base.keys())])
            pool.append(diffs)
            upper[kernels] = {n: _upper(diffs[:n]) if len(diffs) >= n else None for n in sizes}
        pooled = np.concatenate(pool)
        chance = {
            n: float(np.mean([_upper(rng.choice(pooled, n, replace=False)) < 0 for _ in range(draws)]))
            if pooled.size > n
            else None
            for n in sizes
        }
        rows.append({"case": f"{scenario}/{strategy}", "upper": upper, "pass_probability": chance})
    return {"sizes": sizes, "cases": rows}


def demo_power(files: list[Path], draws: int) -> dict[str, Any]:
    """Pass probabilities of tests/acceptance/test_demo.py's assertions at the demo's 5 seeds (two-model and supernet rows of
    naive and wpl, pooled over the files)."""
    import numpy as np

    from forgetbench.benchmark.core.stats import paired_difference

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
        "naive's mean forgetting of A >= 5 points": (pool, lambda x: x[:, 0].mean() >= 5),
        "WPL below naive, paired t-test p < 0.05": (
            pool,
            lambda x: paired_difference(dict(enumerate(x[:, 1])), dict(enumerate(x[:, 0]))).p_value < 0.05,
        ),
        "WPL's mean forgetting <= 0.25 x naive's": (pool, lambda x: x[:, 1].mean() <= 0.25 * x[:, 0].mean()),
        "points WPL saves A > points it costs B (means)": (
            pool,
            lambda x: (x[:, 0] - x[:, 1]).mean() > (x[:, 2] - x[:, 3]).mean(),
        ),
        "was: B under WPL within 3 points of naive": (pool, lambda x: abs((x[:, 3] - x[:, 2]).mean()) <= 3),
        "supernet: naive's mean err2 - err1 > 0": (gap_pool, lambda g: g[:, 0].mean() > 0),
        "was: supernet: WPL's mean err2 - err1 below naive's": (gap_pool, lambda g: g[:, 1].mean() < g[:, 0].mean()),
    }
    return {
        "pass_probability": {
            name: float(np.mean([check(data[rng.choice(len(data), 5, replace=False)]) for _ in range(draws)]))
            for name, (data, check) in checks.items()
        }
    }


def run(opts: Any, params: Params, data: Any) -> dict[str, Any]:
    if params.mode == "collect":
        assert params.out is not None  # the validator's
        return {"collect": collect(params.out, params.seeds, params.strategies, opts.data_root)}
    if params.mode == "demo":
        return {"demo": demo_power(params.files, params.draws or 20_000)}
    return {"power": power(params.files, params.sizes, params.draws or 4000)}


def lines(result: dict[str, Any]) -> list[str]:
    if "collect" in result:
        r = result["collect"]
        return [f"{r['runs']} runs under {r['cpu_kernels']} kernels -> {r['out']}"]
    if "demo" in result:
        return [f"{name}: {rate:.4f}" for name, rate in result["demo"]["pass_probability"].items()]
    r = result["power"]
    kernels = list(r["cases"][0]["upper"]) if r["cases"] else []

    def shown(value: float | None, spec: str) -> str:
        return "-" if value is None else f"{value:{spec}}"

    out = [
        "case | "
        + " | ".join(f"{k} upper@{n}" for k in kernels for n in r["sizes"])
        + " | "
        + " | ".join(f"P(pass)@{n}" for n in r["sizes"])
    ]
    for case in r["cases"]:
        cells = [shown(case["upper"][k][n], "+.2f") for k in kernels for n in r["sizes"]]
        chances = [shown(case["pass_probability"][n], ".3f") for n in r["sizes"]]
        out.append(f"{case['case']} | " + " | ".join(cells) + " | " + " | ".join(chances))
    return out


register(
    Measurement("effect_power", "an effect test's pass probability, resampled over kernel sets", Params, run, lines)
)
