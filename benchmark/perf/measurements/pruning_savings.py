"""What pruning saves on a tuning suite, and whether it changes the choice. Runs a config's tuning twice, as
written and with ``pruning`` on every ``tune:`` block (the second run reads the first's ``calibration.json``, so
both search the same ranges), then gives per study the trials' training steps and seconds, how many trials were
pruned, both chosen points and the final runs' objective on the test split (mean and 95% t-interval over the
suite's seeds) at each. A second call with the same ``out`` and ``trials`` reuses the unpruned run (complete runs
are skipped). Steps are the work saved (the same on any machine); seconds depend on the machine and its load.

    forgetbench perf --only pruning_savings --set config=configs/compare_demo.yaml --set out=/tmp/pruning \
        [--set pruning=median] [--set trials=24] [--set points=1]
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, FilePath, NonNegativeInt, PositiveInt

from forgetbench.benchmark.perf.measurements import Measurement, register


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: FilePath
    out: Path
    pruning: Literal["median", "quartile"] = "quartile"
    startup: NonNegativeInt = 4  # pruning_startup of the pruned run
    points: NonNegativeInt = 0  # pruning_points of the pruned run (checks inside a trial)
    trials: PositiveInt | None = None  # every tune block's trials (default: as written)
    executor: Literal["local", "process", "ray", "auto"] = "process"
    workers: PositiveInt = 2


def _variant(config: dict, pruning: str, startup: int, trials: int | None, points: int = 0) -> dict:
    config = json.loads(json.dumps(config))
    for entry in config["strategies"]:
        tune = entry.get("tune")
        if tune is None:
            continue
        if trials is not None:
            tune["trials"] = trials
        if pruning != "off":
            tune.update(pruning=pruning, pruning_startup=startup)
            if points:
                tune["pruning_points"] = points
    return config


def _records(folder: Path, run_ids: list[str]) -> list[dict]:
    paths = [folder / "runs" / run / "result.json" for run in dict.fromkeys(run_ids)]
    return [json.loads(path.read_text()) for path in paths if path.exists()]


def _trial_cost(out: Path, study: dict) -> tuple[int, float]:
    records = _records(out / "tuning", [run for trial in study["trials"] for run in trial["runs"]])
    return (
        sum(r["timing"]["steps"] for r in records),
        sum(r["timing"]["train_seconds"] + r["timing"]["eval_seconds"] for r in records),
    )


def _final(out: Path, study: dict) -> list[float] | None:
    import numpy as np

    from forgetbench.benchmark.core.metrics import run_metrics
    from forgetbench.benchmark.core.stats import t_interval

    if study["chosen"] is None:
        return None
    values = []
    for path in (out / "runs").glob("*/result.json"):
        record = json.loads(path.read_text())
        if (
            record["scenario"].get("label", record["scenario"]["name"]) == study["scenario"]
            and record["strategy"]["name"] == study["strategy"]
            and record["strategy"].get("params")
            and all(record["strategy"]["params"].get(k) == v for k, v in study["chosen"].items())
        ):
            values.append(run_metrics(record)[study["objective"]])
    low, high = t_interval(values)
    return [float(np.mean(values)), low, high]


def run(opts: Any, params: Params, data: Any) -> dict[str, Any]:
    import yaml

    from forgetbench.benchmark.core.config import load_config
    from forgetbench.benchmark.run.executors import resolve_executor
    from forgetbench.benchmark.run.suite import run_suite

    config = yaml.safe_load(params.config.read_text())
    params.out.mkdir(parents=True, exist_ok=True)
    outs = {}
    for pruning in ("off", params.pruning):
        path = params.out / f"{pruning}.yaml"
        path.write_text(yaml.safe_dump(_variant(config, pruning, params.startup, params.trials, params.points)))
        name = (
            "off" if pruning == "off" else f"{pruning}{params.startup}" + (f"p{params.points}" if params.points else "")
        )
        outs["off" if pruning == "off" else "on"] = folder = params.out / name
        if pruning != "off" and (outs["off"] / "calibration.json").exists():
            folder.mkdir(exist_ok=True)
            shutil.copy(outs["off"] / "calibration.json", folder / "calibration.json")
        run_suite(
            load_config(path),
            folder,
            opts.data_root,
            show_progress=False,
            executor=resolve_executor(params.executor),
            workers=params.workers,
        )
    studies = {p: json.loads((outs[p] / "tuning.json").read_text())["studies"] for p in outs}
    rows = []
    for off, pruned in zip(studies["off"], studies["on"]):
        cost = {p: _trial_cost(outs[p], s) for p, s in (("off", off), ("on", pruned))}  # each study's trials read once
        rows.append(
            {
                "study": f"{off['scenario']} {off['strategy']}",
                "steps": {p: c[0] for p, c in cost.items()},
                "seconds": {p: c[1] for p, c in cost.items()},
                "pruned": pruned["pruning"]["pruned"],
                "budget": pruned["budget"],
                "chosen": {"off": off["chosen"], "on": pruned["chosen"]},
                "final": {"off": _final(outs["off"], off), "on": _final(outs["on"], pruned)},
            }
        )
    return {"studies": rows}


def lines(result: dict[str, Any]) -> list[str]:
    out = [
        f"{'study':<34} {'steps off':>10} {'pruned':>8} {'saved':>6}  {'trials':>6}  chosen off -> pruned; "
        "final objective [95% CI] off | pruned"
    ]
    totals = {"off": [0, 0.0], "on": [0, 0.0]}
    for r in result["studies"]:
        for p in totals:
            totals[p][0] += r["steps"][p]
            totals[p][1] += r["seconds"][p]
        shown = ["-" if f is None else f"{f[0]:.4f} [{f[1]:.4f}, {f[2]:.4f}]" for f in r["final"].values()]
        saved = 1 - r["steps"]["on"] / r["steps"]["off"] if r["steps"]["off"] else float("nan")
        out.append(
            f"{r['study']:<34} {r['steps']['off']:>10} {r['steps']['on']:>8} {saved:>6.1%}  "
            f"{r['pruned']:>3}/{r['budget']:<2}  {r['chosen']['off']} -> {r['chosen']['on']}; {shown[0]} | {shown[1]}"
        )
    if totals["off"][0] and totals["off"][1]:
        out.append(
            f"trials' training steps {totals['off'][0]} -> {totals['on'][0]} "
            f"({1 - totals['on'][0] / totals['off'][0]:.1%} saved); train + eval seconds {totals['off'][1]:.1f} -> "
            f"{totals['on'][1]:.1f} ({1 - totals['on'][1] / totals['off'][1]:.1%} saved)"
        )
    return out


register(
    Measurement("pruning_savings", "what pruning saves on a tuning suite, and the choice it makes", Params, run, lines)
)
