"""A strength study's table, as Markdown (issue 52: configs/enas_wpl_strength.yaml and its micro-CNN sibling): per
strategy label (one per strength), the seeds, whether the penalty acted (median penalty-to-data gradient ratio, the
share of turns where it was inert), err2 - err1 over the measured epochs and the retrained derived architecture's
test score, each as mean [95% t-interval] and as the paired difference against naive on the same seeds
(mean [95% interval], p), and the controller's last-epoch reward.

    python scripts/strength_table.py /work/runs/enas_wpl_strength [MORE_FOLDERS ...] [--from-epoch N]

Several folders are read as one (e.g. a later seed run for some of the points into a folder of its own). The last
column is the derived architecture's test score on the shared weights, before retraining.

A language-model search reports err in nats and perplexities; an image search points of error and accuracies.
"""

from __future__ import annotations

import argparse
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from forgetbench.benchmark.core import metrics, stats
from forgetbench.benchmark.core.calibration import median_ratio
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.store import load_results

_NUMBER = re.compile(r"(\d+(?:\.\d+)?(?:e[+-]?\d+)?)")
LAST_REWARD = "last_reward"  # the controller's mean reward in the search's last epoch (metrics.search_epochs)
LANGUAGE = (
    "lm_forgetting_mean",
    "retrained_test_ppl",
    LAST_REWARD,
    1.0,
    "{:.3f}",
    "{:.1f}",
    "derived_test_ppl",
)
IMAGES = (
    "forgetting_value_mean",
    "retrained_test_accuracy",
    LAST_REWARD,
    100.0,
    "{:.2f}",
    "{:.1f}",
    "derived_test_accuracy",
)


def _natural(label: str) -> list[Any]:
    """``ewc[ewc_lambda=600]`` after ``ewc[ewc_lambda=60]``: numbers compared as numbers."""
    return [(0, float(part), "") if _NUMBER.fullmatch(part) else (1, 0.0, part) for part in _NUMBER.split(label)]


def _label(record: RunRecord) -> str:
    return record.strategy.label or record.strategy.name


def _inert_share(record: RunRecord) -> tuple[int, int]:
    extras: dict[str, Any] = record.model_extra or {}
    ratios = [v for k, s in extras.items() if k.endswith("_penalty_to_data_gradient") for v in s or [] if v is not None]
    inert = sum(len(s or []) for k, s in extras.items() if k.endswith("_penalty_inert"))
    return inert, len(ratios)


def _mean(values: list[float], scale: float, fmt: str) -> str:
    s = stats.summarize(values)
    if s.n == 0:
        return "–"
    if s.n < 2 or not math.isfinite(s.ci_low):
        return fmt.format(scale * s.mean)
    return f"{fmt.format(scale * s.mean)} [{fmt.format(scale * s.ci_low)}, {fmt.format(scale * s.ci_high)}]"


def _paired(values: dict[int, float], naive: dict[int, float], scale: float, fmt: str) -> str:
    p = stats.paired_difference(values, naive)
    if p.n == 0:
        return "–"
    if p.n < 2:
        return f"{fmt.format(scale * p.diff)} (1 seed)"
    return f"{fmt.format(scale * p.diff)} [{fmt.format(scale * p.ci_low)}, {fmt.format(scale * p.ci_high)}], p = {p.p_value:.2g}"


def from_epoch(record: RunRecord, epoch: int) -> float:
    """Mean err2 - err1 over the search epochs from ``epoch`` on (the mean over each epoch's architectures, then over
    the epochs, as the forgetting value itself): the measure over the epochs a penalty started later was on."""
    gaps = metrics.search_epochs(record)["mean_gap"][epoch:]
    return float(sum(gaps) / len(gaps)) if gaps else math.nan


def strength_table(folders: Path | list[Path], naive_label: str = "naive", first_epoch: int | None = None) -> str:
    """``first_epoch``: err2 - err1 averaged over the epochs from this one on (default: the scenario's own measure,
    from its ``measure_from_epoch``)."""
    folders = [folders] if isinstance(folders, Path) else folders
    records = [r for folder in folders for r in load_results(folder) if r.status == "ok"]
    if not records:
        raise SystemExit(f"no ok runs in {', '.join(map(str, folders))}")
    language = any("log-perplexity" in str(r.search.error if r.search else "") for r in records)
    forgetting, score, reward, scale, ffmt, sfmt, derived = LANGUAGE if language else IMAGES
    by_label: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
    ratios: dict[str, list[float]] = defaultdict(list)
    inert: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        label = _label(r)
        rewards = metrics.search_epochs(r)["reward"]
        by_label[label][r.seed] = metrics.search_metrics(r) | {LAST_REWARD: rewards[-1] if rewards else math.nan}
        if first_epoch is not None:
            by_label[label][r.seed][forgetting] = from_epoch(r, first_epoch)
        ratio = median_ratio(r.model_extra or {})
        if ratio is not None:
            ratios[label].append(ratio)
        a, b = _inert_share(r)
        inert[label][0] += a
        inert[label][1] += b
    naive = by_label.get(naive_label, {})
    unit = "nats" if language else "points"
    epochs = f", epochs {first_epoch}+" if first_epoch is not None else ""
    lines = [
        f"| strategy | seeds | median penalty / data gradient | inert turns | err2 - err1 ({unit}{epochs}) | vs naive | "
        f"retrained test {'ppl' if language else 'acc (%)'} | vs naive | last reward | "
        f"derived test {'ppl' if language else 'acc (%)'} (shared weights) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label in sorted(by_label, key=lambda x: (x != naive_label, _natural(x))):
        runs = by_label[label]

        def column(key: str, runs: dict[int, dict[str, float]] = runs) -> dict[int, float]:
            return {seed: m[key] for seed, m in runs.items() if key in m and math.isfinite(m[key])}

        base_f, base_s = column(forgetting, naive), column(score, naive)
        shown_scale = 1.0 if language else 100.0
        median = f"{sorted(ratios[label])[len(ratios[label]) // 2]:.3g}" if ratios[label] else "–"
        acted = f"{inert[label][0]} / {inert[label][1]}" if inert[label][1] else "–"
        lines.append(
            "| "
            + " | ".join(
                [
                    label,
                    str(len(runs)),
                    median,
                    acted,
                    _mean(list(column(forgetting).values()), scale, ffmt),
                    "–" if label == naive_label else _paired(column(forgetting), base_f, scale, ffmt),
                    _mean(list(column(score).values()), shown_scale, sfmt),
                    "–" if label == naive_label else _paired(column(score), base_s, shown_scale, sfmt),
                    _mean(list(column(reward).values()), 1.0, "{:.2f}"),
                    _mean(list(column(derived).values()), shown_scale, sfmt),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", type=Path, nargs="+", help="results folders, read as one")
    parser.add_argument("--naive", default="naive", help="the baseline's strategy label")
    parser.add_argument(
        "--from-epoch",
        type=int,
        help="err2 - err1 over the search epochs from this one (0-based) on, e.g. the first with the penalty on "
        "(default: the scenario's measure_from_epoch)",
    )
    args = parser.parse_args()
    print(strength_table(args.folders, args.naive, args.from_epoch))


if __name__ == "__main__":
    main()
