"""The tidy frames the report's figures plot, one function per figure family, each from the run records
of one scenario (pure: records in, a DataFrame or a few numbers out)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from forgetbench.benchmark.core import metrics
from forgetbench.benchmark.core.metrics import curve_series
from forgetbench.benchmark.core.record import RunRecord, as_records
from forgetbench.reports.summary import SUMMARY_COLUMNS, _scenario, _strategy, has_results


def mean_matrices(records: Iterable[RunRecord | Mapping[str, Any]], scenario: str) -> dict[str, np.ndarray]:
    """Strategy -> accuracy matrix averaged over its ok seeds (seeds whose shape differs are skipped)."""
    by_strategy: dict[str, list[np.ndarray]] = defaultdict(list)
    for r in as_records(records):
        if r.ok and _scenario(r) == scenario:
            by_strategy[_strategy(r)].append(np.asarray(r.accuracy_matrix, dtype=float))
    out = {}
    for strategy, mats in by_strategy.items():
        shape = mats[0].shape
        out[strategy] = np.mean([m for m in mats if m.shape == shape], axis=0)
    return out


def final_accuracy_frame(records: Iterable[RunRecord | Mapping[str, Any]], scenario: str) -> pd.DataFrame:
    """strategy, seed, experience, accuracy: the final model's accuracy on each experience."""
    rows = [
        {"strategy": _strategy(r), "seed": r.seed, "experience": j, "accuracy": float(a)}
        for r in as_records(records)
        if r.ok and _scenario(r) == scenario
        for j, a in enumerate(r.accuracy_matrix[-1])
    ]
    return pd.DataFrame(rows, columns=["strategy", "seed", "experience", "accuracy"])


def curves_frame(records: Iterable[RunRecord | Mapping[str, Any]], scenario: str) -> pd.DataFrame:
    """strategy, seed, eval_exp, train_exp, iteration, step, accuracy for earlier models.

    ``step`` is the iteration counted from the start of the whole run: each experience's curve is
    shifted by the largest iteration seen in the experiences before it (over every run of the
    scenario, so all strategies share one time axis).
    """
    rows = []
    for r in as_records(records):
        if r.ok and _scenario(r) == scenario:
            for (t, e), (it, acc) in curve_series(r).items():
                rows += [
                    {
                        "strategy": _strategy(r),
                        "seed": r.seed,
                        "train_exp": t,
                        "eval_exp": e,
                        "iteration": float(i),
                        "accuracy": float(a),
                    }
                    for i, a in zip(it, acc)
                ]
    frame = pd.DataFrame(rows, columns=["strategy", "seed", "train_exp", "eval_exp", "iteration", "accuracy"])
    if frame.empty:
        return frame.assign(step=pd.Series(dtype=float))
    span = frame.groupby("train_exp").iteration.max()
    offsets = span.shift(1, fill_value=0).cumsum()
    frame["step"] = frame.iteration + frame.train_exp.map(offsets)
    return frame


def err_gap_frame(records: Iterable[RunRecord | Mapping[str, Any]], scenario: str) -> pd.DataFrame:
    """strategy, seed, round, architecture, gap = err2 - err1, for supernet runs."""
    rows = []
    for r in as_records(records):
        if r.ok and _scenario(r) == scenario and r.err1 is not None and r.err2 is not None:
            gap = np.asarray(r.err2, dtype=float) - np.asarray(r.err1, dtype=float)
            for (k, a), g in np.ndenumerate(gap):
                if np.isfinite(g):
                    rows.append(
                        {"strategy": _strategy(r), "seed": r.seed, "round": k, "architecture": a, "gap": float(g)}
                    )
    return pd.DataFrame(rows, columns=["strategy", "seed", "round", "architecture", "gap"])


def search_scores_frame(records: Iterable[RunRecord | Mapping[str, Any]], scenario: str) -> pd.DataFrame:
    """strategy, seed, candidate, architecture, supernet (accuracy on the shared weights at the search's end),
    standalone (the ground truth), chosen (the search's pick among them), for search runs with a ground truth."""
    rows = []
    for r in as_records(records):
        search = r.search
        truth = search.ground_truth if search is not None else None
        if not (has_results(r) and _scenario(r) == scenario and truth is not None):
            continue
        chosen = int(np.argmax(truth.supernet_accuracy))  # first on ties, as metrics.search_metrics
        for k, (name, s, t) in enumerate(zip(truth.architectures, truth.supernet_accuracy, truth.standalone_accuracy)):
            rows.append(
                {
                    "strategy": _strategy(r),
                    "seed": r.seed,
                    "candidate": k,
                    "architecture": str(name),
                    "supernet": float(s),
                    "standalone": float(t),
                    "chosen": k == chosen,
                }
            )
    return pd.DataFrame(
        rows, columns=["strategy", "seed", "candidate", "architecture", "supernet", "standalone", "chosen"]
    )


def search_epochs_frame(records: Iterable[RunRecord | Mapping[str, Any]], scenario: str) -> pd.DataFrame:
    """strategy, seed, epoch, forgetting value (mean, top-5 mean, max) and controller reward per search epoch."""
    rows = []
    for r in as_records(records):
        if not (has_results(r) and _scenario(r) == scenario and r.search is not None):
            continue
        series = metrics.search_epochs(r)
        for e, (e1, e2) in enumerate(zip(r.err1 or [], r.err2 or [])):
            _, top5, _ = metrics.forgetting_value(e1, e2)
            rows.append(
                {
                    "strategy": _strategy(r),
                    "seed": r.seed,
                    "epoch": e,
                    "fv_mean": series["mean_gap"][e],
                    "fv_top5": top5,
                    "fv_max": series["max_gap"][e],
                    "fv_best5": series["best_gap"][e],
                    "reward": series["reward"][e],
                }
            )
    return pd.DataFrame(
        rows, columns=["strategy", "seed", "epoch", "fv_mean", "fv_top5", "fv_max", "fv_best5", "reward"]
    )


NAMED_GAP_COLUMNS = ["strategy", "seed", "epoch", "architecture", "gap"]


def named_gap_frame(records: Iterable[RunRecord | Mapping[str, Any]], scenario: str) -> pd.DataFrame:
    """strategy, seed, epoch, architecture (its name), gap = err2 - err1: one row per turn of the searches of
    ``scenario`` whose records name their architectures (``architecture_names``; a user's supernet, NAS-Bench-201),
    but an epoch's last turn: nothing trains after it before the epoch's end, so its gap is 0 by definition, not a
    measure of how little it forgot. Names are the same across seeds, so an architecture's forgetting can be pooled
    over them."""
    rows = []
    for r in as_records(records):
        names = r.architecture_names
        if not (has_results(r) and _scenario(r) == scenario and names and r.epoch_architectures):
            continue
        for e, (tasks, e1, e2) in enumerate(zip(r.epoch_architectures, r.err1 or [], r.err2 or [])):
            for task, a, b in list(zip(tasks, e1, e2))[:-1]:
                if a is not None and b is not None and 0 <= task < len(names):
                    rows.append(
                        {
                            "strategy": _strategy(r),
                            "seed": r.seed,
                            "epoch": e,
                            "architecture": names[task],
                            "gap": b - a,
                        }
                    )
    return pd.DataFrame(rows, columns=NAMED_GAP_COLUMNS)


def most_forgotten(frame: pd.DataFrame, per_strategy: int = 5) -> pd.DataFrame:
    """Per strategy, the ``per_strategy`` architectures with the largest mean err2 - err1 over the turns that trained
    them (all seeds): strategy, architecture, turns, gap."""
    if frame.empty:
        return pd.DataFrame(columns=["strategy", "architecture", "turns", "gap"])
    pooled = frame.groupby(["strategy", "architecture"], sort=False).gap.agg(turns="size", gap="mean").reset_index()
    pooled = pooled.sort_values(["strategy", "gap", "architecture"], ascending=[True, False, True], kind="stable")
    return pooled.groupby("strategy", sort=False).head(per_strategy).reset_index(drop=True)


DERIVED_COLUMNS = ["strategy", "seed", "architecture", "test", "retrained_test", "score"]


def derived_frame(records: Iterable[RunRecord | Mapping[str, Any]], scenario: str) -> pd.DataFrame:
    """strategy, seed, architecture (its name), test and retrained_test scores, score (what they are: "accuracy"
    or "perplexity"): the architecture each search of ``scenario`` derived, one row per run."""
    rows = []
    for r in as_records(records):
        derived = r.search.derived if r.search is not None else None
        if not (has_results(r) and _scenario(r) == scenario and derived is not None):
            continue
        perplexity = derived.test_ppl is not None
        retrained = derived.retrained
        rows.append(
            {
                "strategy": _strategy(r),
                "seed": r.seed,
                "architecture": str(derived.cell if derived.cell is not None else derived.architecture),
                "test": derived.test_ppl if perplexity else derived.test_accuracy,
                "retrained_test": None
                if retrained is None
                else (retrained.test_ppl if perplexity else retrained.test_accuracy),
                "score": "perplexity" if perplexity else "accuracy",
            }
        )
    return pd.DataFrame(rows, columns=DERIVED_COLUMNS).sort_values(["strategy", "seed"], kind="stable")


def sampled_search_unit(records: Iterable[RunRecord | Mapping[str, Any]], scenario: str) -> tuple[str, float] | None:
    """``(axis label, scale)`` of err for a search whose architectures are sampled while it runs (its record
    names its error: ``enas_rnn``, ``enas_cnn``, a random or controller ``custom_supernet``), None for any other
    scenario (a fixed schedule's rounds are not sampled: ``supernet``). Accuracy errors are drawn in
    points (scale 100), log-perplexities in nats (scale 1)."""
    errors = {
        r.search.error
        for r in as_records(records)
        if _scenario(r) == scenario and r.search is not None and r.search.error and r.search.kind != "fixed"
    }
    if not errors:
        return None
    if any("log-perplexity" in e for e in errors):
        return "nats (log-perplexity)", 1.0
    return "points (validation error)", 100.0


def fixed_schedule(records: Iterable[RunRecord | Mapping[str, Any]], scenario: str) -> bool:
    """True when every search run of ``scenario`` trains a fixed list in rounds (``supernet``, a ``fixed``
    ``custom_supernet``): its architectures are known up front, so the report shows where the forgetting is per
    architecture rather than per search epoch."""
    kinds = {r.search.kind for r in as_records(records) if _scenario(r) == scenario and r.search is not None}
    return kinds == {"fixed"}


MANY_EXPERIENCES = 20  # above this, per-experience figures are drawn as distributions (a search's candidates)


def many_experiences(records: Iterable[RunRecord | Mapping[str, Any]], scenario: str) -> bool:
    """True when ``scenario``'s accuracy matrices have more than :data:`MANY_EXPERIENCES` columns (a search
    over tens to hundreds of architectures): one bar or heatmap column per experience is unreadable there."""
    return any(
        r.ok and _scenario(r) == scenario and len(r.accuracy_matrix[-1]) > MANY_EXPERIENCES for r in as_records(records)
    )


SWEEP_METRICS = ("forgetting_value_mean", "search_tau", "regret")


def search_sweep_frame(
    table: pd.DataFrame,
    records: Iterable[RunRecord | Mapping[str, Any]],
    setting: str = "steps_per_turn",
    metrics_shown: Sequence[str] = SWEEP_METRICS,
) -> pd.DataFrame:
    """The summary rows of ``metrics_shown`` for the search scenarios of a suite that differ in ``setting``
    (a scenario param, e.g. the turn length), with that param's value as column ``setting``.

    Empty unless at least two search scenarios with results take different values of ``setting``. A line
    of the sweep is a ``series``: the strategy, followed by the search kind when the swept scenarios mix
    random and controller searches (so the two are never joined into one line)."""
    columns = [*SUMMARY_COLUMNS, "setting", "series"]
    value_of: dict[str, Any] = {}
    kind_of: dict[str, str] = {}
    for r in as_records(records):
        params = r.scenario.params
        if has_results(r) and r.search is not None and setting in params:
            value_of[_scenario(r)] = params[setting]
            kind_of[_scenario(r)] = str(params.get("search", ""))
    if len(set(value_of.values())) < 2:
        return pd.DataFrame(columns=columns)
    rows = table[table.scenario.isin(list(value_of)) & table.metric.isin(list(metrics_shown))].copy()
    rows["setting"] = rows.scenario.map(value_of)
    mixed = len(set(kind_of.values())) > 1
    rows["series"] = [f"{s} · {kind_of[sc]}" if mixed else s for s, sc in zip(rows.strategy, rows.scenario)]
    return rows[columns].reset_index(drop=True)


def attribution_frame(records: Iterable[RunRecord | Mapping[str, Any]], scenario: str) -> pd.DataFrame:
    """strategy, seed, turn, iteration, model, observed, predicted, first_order: one row per point of the runs
    that recorded a forgetting attribution (``training.attribution``): an earlier model after a turn (iteration
    NaN) or at a curve point inside one."""
    columns = ["strategy", "seed", "turn", "iteration", "model", "observed", "predicted", "first_order"]
    rows = [
        {
            "strategy": _strategy(r),
            "seed": r.seed,
            "turn": e.turn,
            "iteration": float("nan") if e.iteration is None else e.iteration,
            "model": e.model,
            "observed": e.observed,
            "predicted": e.predicted,
            "first_order": e.first_order,
        }
        for r in as_records(records)
        if r.ok and _scenario(r) == scenario
        for e in r.attribution or []
    ]
    return pd.DataFrame(rows, columns=columns)


def attribution_layers_frame(records: Iterable[RunRecord | Mapping[str, Any]], scenario: str) -> pd.DataFrame:
    """strategy, seed, layer, predicted, first_order, drift: per run and shared layer, summed over the earlier
    models' after-turn points (drift: the mean): where the forgetting each turn left lives."""
    rows = [
        {
            "strategy": _strategy(r),
            "seed": r.seed,
            "layer": layer.layer,
            "predicted": layer.predicted,
            "first_order": layer.first_order,
            "drift": layer.drift,
        }
        for r in as_records(records)
        if r.ok and _scenario(r) == scenario
        for e in r.attribution or []
        if e.iteration is None
        for layer in e.layers
    ]
    frame = pd.DataFrame(rows, columns=["strategy", "seed", "layer", "predicted", "first_order", "drift"])
    if frame.empty:
        return frame
    return (
        frame.groupby(["strategy", "seed", "layer"], sort=False)
        .agg(predicted=("predicted", "sum"), first_order=("first_order", "sum"), drift=("drift", "mean"))
        .reset_index()
    )


def adapters_frame(records: Iterable[RunRecord | Mapping[str, Any]], scenario: str) -> pd.DataFrame:
    """strategy, seed, task, norm, overlap, trainable_params, total_params: one row per task of the ok runs whose
    strategy keeps per-task adapters (the ``adapters.per_task`` key of pic, merge, olora, inflora, osf)."""
    columns = ["strategy", "seed", "task", "norm", "overlap", "trainable_params", "total_params"]
    rows = [
        {
            "strategy": _strategy(r),
            "seed": r.seed,
            "task": row["task"],
            "norm": row["norm"],
            "overlap": float("nan") if row.get("overlap") is None else row["overlap"],
            "trainable_params": row["trainable_params"],
            "total_params": row["total_params"],
        }
        for r in as_records(records)
        if r.ok and _scenario(r) == scenario
        for row in ((r.model_extra or {}).get("adapters") or {}).get("per_task") or []
    ]
    return pd.DataFrame(rows, columns=columns)


def adapter_summary(frame: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Per strategy (in ``order``) and task: the means over seeds of the update norm, the overlap with the earlier
    adapters (NaN for a task with none) and the adapter entries trained and held."""
    if frame.empty:
        return frame
    table = (
        frame.groupby(["strategy", "task"], sort=False)
        .agg(
            seeds=("seed", "nunique"),
            norm=("norm", "mean"),
            overlap=("overlap", "mean"),
            trainable_params=("trainable_params", "mean"),
            total_params=("total_params", "mean"),
        )
        .reset_index()
    )
    rank = {s: i for i, s in enumerate(order)}
    return table.sort_values(
        ["strategy", "task"], key=lambda c: c.map(rank) if c.name == "strategy" else c, kind="stable"
    ).reset_index(drop=True)


INERT_SHARE = 0.5  # a method is flagged when its penalty was too small to act in at least this share of experiences


def inert_penalties(
    records: Iterable[RunRecord | Mapping[str, Any]], scenario: str, by_label: bool = False
) -> dict[str, dict[str, int]]:
    """method (``by_label``: each strategy label, one strength) -> where its penalty was too small to act (``<name>_penalty_inert`` non-empty): ``runs`` of its
    ``of_runs`` ok runs, and ``experiences`` of the ``of_experiences`` that had a penalty (a finite
    ``<name>_penalty_to_data_gradient``), summed over its ok runs at every strength. Only methods whose penalty did
    not act in at least :data:`INERT_SHARE` of those experiences are kept: a penalty that is inert now and then (a
    short last experience) tells the reader nothing, one that is inert in most of them says the result is nearly the
    unregularised one."""
    counts: dict[str, dict[str, int]] = {}
    for r in as_records(records):
        if not (r.ok and _scenario(r) == scenario):
            continue
        extra = r.model_extra or {}
        inert = sum(len(v) for k, v in extra.items() if k.endswith("_penalty_inert") and isinstance(v, list))
        had = sum(
            1
            for k, v in extra.items()
            if k.endswith("_penalty_to_data_gradient") and isinstance(v, list)
            for x in v
            if isinstance(x, (int, float)) and not isinstance(x, bool)
        )
        if not had and not inert:
            continue
        method = _strategy(r) if by_label else _strategy(r).partition("[")[0]
        c = counts.setdefault(method, {"runs": 0, "of_runs": 0, "experiences": 0, "of_experiences": 0})
        c["of_runs"] += 1
        c["runs"] += bool(inert)
        c["experiences"] += inert
        c["of_experiences"] += max(had, inert)
    return {s: c for s, c in counts.items() if c["runs"] and c["experiences"] >= INERT_SHARE * c["of_experiences"]}
