"""What pruning saves on a tuning suite, and whether it changes the choice.

Runs a config's tuning twice, as written and with ``pruning`` on every ``tune:`` block (the second run
reads the first's ``calibration.json``, so both search the same ranges), then prints per study the trials'
training steps and seconds, how many trials were pruned, both chosen points and the final runs' objective on the
test split (mean and 95% t-interval over the suite's seeds) at each.

    python scripts/pruning_savings.py configs/compare_demo.yaml --out /tmp/pruning --pruning quartile
    python scripts/pruning_savings.py configs/compare_demo.yaml --out /tmp/pruning24 --trials 24 --pruning median
    python scripts/pruning_savings.py configs/compare_demo.yaml --out /tmp/pruning24 --trials 24 --points 1

A second command with the same ``--out`` and ``--trials`` reuses the unpruned run (complete runs are skipped).

Steps are the work saved (the same on any machine); seconds depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import yaml


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


def _final(out: Path, study: dict) -> tuple[float, float, float] | None:
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
    return float(np.mean(values)), low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pruning", choices=["median", "quartile"], default="quartile")
    parser.add_argument("--startup", type=int, default=4, help="pruning_startup of the pruned run")
    parser.add_argument("--points", type=int, default=0, help="pruning_points of the pruned run (checks inside)")
    parser.add_argument("--trials", type=int, default=None, help="every tune block's trials (default: as written)")
    parser.add_argument("--executor", default="process")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from forgetbench import run_suite

    config = yaml.safe_load(args.config.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    outs = {}
    for pruning in ("off", args.pruning):
        path = args.out / f"{pruning}.yaml"
        path.write_text(yaml.safe_dump(_variant(config, pruning, args.startup, args.trials, args.points)))
        name = "off" if pruning == "off" else f"{pruning}{args.startup}" + (f"p{args.points}" if args.points else "")
        outs["off" if pruning == "off" else "on"] = folder = args.out / name
        if pruning != "off" and (outs["off"] / "calibration.json").exists():
            folder.mkdir(exist_ok=True)
            shutil.copy(outs["off"] / "calibration.json", folder / "calibration.json")
        run_suite(path, folder, progress=False, executor=args.executor, workers=args.workers)

    studies = {p: json.loads((outs[p] / "tuning.json").read_text())["studies"] for p in outs}
    totals = {p: [0, 0.0] for p in outs}
    print(
        f"{'study':<34} {'steps off':>10} {'pruned':>8} {'saved':>6}  {'trials':>6}  chosen off -> pruned; "
        "final objective [95% CI] off | pruned"
    )
    for off, pruned in zip(studies["off"], studies["on"]):
        costs = {p: _trial_cost(outs[p], s) for p, s in (("off", off), ("on", pruned))}
        for p in outs:
            totals[p][0] += costs[p][0]
            totals[p][1] += costs[p][1]
        finals = [_final(outs["off"], off), _final(outs["on"], pruned)]
        shown = ["-" if f is None else f"{f[0]:.4f} [{f[1]:.4f}, {f[2]:.4f}]" for f in finals]
        saved = 1 - costs["on"][0] / costs["off"][0] if costs["off"][0] else float("nan")
        print(
            f"{off['scenario'] + ' ' + off['strategy']:<34} {costs['off'][0]:>10} {costs['on'][0]:>8} "
            f"{saved:>6.1%}  {pruned['pruning']['pruned']:>3}/{pruned['budget']:<2}  {off['chosen']} -> "
            f"{pruned['chosen']}; {shown[0]} | {shown[1]}"
        )
    steps = 1 - totals["on"][0] / totals["off"][0]
    seconds = 1 - totals["on"][1] / totals["off"][1]
    print(
        f"trials' training steps {totals['off'][0]} -> {totals['on'][0]} ({steps:.1%} saved); "
        f"train + eval seconds {totals['off'][1]:.1f} -> {totals['on'][1]:.1f} ({seconds:.1%} saved)"
    )


if __name__ == "__main__":
    main()
