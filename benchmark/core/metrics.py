"""Continual-learning metrics as pure functions of an accuracy matrix.

``R[i][j]`` is the accuracy on experience (task) ``j`` after training experience ``i``; ``b[j]`` the
untrained model's accuracy on ``j``. ``T`` is the number of rows (training stages); the final row
``R[T-1]`` is the model at the end. Every function takes array-likes and returns a float (NaN where
the metric is undefined, e.g. backward transfer with a single experience).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from forgetbench.benchmark.core.metric_registry import registered_metrics
from forgetbench.benchmark.core.record import RunRecord, coerce
from forgetbench.benchmark.core.stats import t_interval


# err1 / err2 as records hold them: None where an architecture was not measured (read as NaN)
Errors = ArrayLike | Sequence[float | None] | Sequence[Sequence[float | None]]


def _matrix(R: ArrayLike) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be 2-D and non-empty, got shape {R.shape}")
    return R


def _square(R: ArrayLike) -> np.ndarray:
    R = _matrix(R)
    if R.shape[0] != R.shape[1]:
        raise ValueError(f"this metric needs one row per experience, got shape {R.shape}")
    return R


def average_accuracy(R: ArrayLike) -> float:
    """ACC = mean_j R[T-1][j]: the final model's mean accuracy over all experiences."""
    return float(_matrix(R)[-1].mean())


def learning_accuracy(R: ArrayLike) -> float:
    """LA = mean_j R[j][j]: accuracy on each experience right after learning it (plasticity)."""
    return float(np.diag(_square(R)).mean())


def last_accuracy(R: ArrayLike) -> float:
    """R[T-1][T-1]: the newest experience's accuracy at the end (the last model's own accuracy; model B's
    in the WPL paper's two-model study)."""
    return float(_square(R)[-1, -1])


def backward_transfer(R: ArrayLike) -> float:
    """BWT = mean_{j<T-1} (R[T-1][j] - R[j][j]); negative means forgetting. NaN for T = 1."""
    R = _square(R)
    T = R.shape[0]
    if T < 2:
        return float("nan")
    return float(np.mean(R[-1, : T - 1] - np.diag(R)[: T - 1]))


def forward_transfer(R: ArrayLike, b: ArrayLike) -> float:
    """FWT = mean_{j>=1} (R[j-1][j] - b_j): accuracy on j before training it, over chance. NaN for T = 1."""
    R = _square(R)
    b = np.asarray(b, dtype=float)
    T = R.shape[0]
    if T < 2:
        return float("nan")
    return float(np.mean([R[j - 1, j] - b[j] for j in range(1, T)]))


def forgetting(R: ArrayLike) -> float:
    """F = mean_{j<T-1} (max_{l<T-1} R[l][j] - R[T-1][j]) (Chaudhry et al., 2018). NaN for T = 1."""
    R = _square(R)
    T = R.shape[0]
    if T < 2:
        return float("nan")
    best = R[: T - 1, : T - 1].max(axis=0)
    return float(np.mean(best - R[-1, : T - 1]))


RUNNING_METRICS = {"ACC": average_accuracy, "LA": learning_accuracy, "BWT": backward_transfer, "forgetting": forgetting}


def running_metric(R: ArrayLike, metric: str) -> list[float]:
    """``metric`` (ACC, LA, BWT or forgetting) after each experience so far: on R's leading (k+1) x (k+1) block for
    every recorded row k (the tasks trained up to then). NaN where it is undefined (BWT, forgetting after the first).
    What a tuning trial is pruned on; R may have fewer rows than columns (a run stopped early)."""
    R = _matrix(R)
    compute = RUNNING_METRICS[metric]
    return [compute(R[: k + 1, : k + 1]) for k in range(min(R.shape))]


def intransigence(R: ArrayLike, reference: ArrayLike) -> float:
    """I = mean_j (a*_j - R[j][j]), with a* the reference (joint or standalone) accuracy per experience."""
    R = _square(R)
    reference = np.asarray(reference, dtype=float)
    return float(np.mean(reference - np.diag(R)))


def forgetting_reduction(f_strategy: float, f_naive: float) -> float:
    """1 - F_strategy / F_naive, in percent (the WPL paper's headline). NaN if naive did not forget."""
    if not np.isfinite(f_naive) or f_naive <= 0:
        return float("nan")
    return float(100.0 * (1.0 - f_strategy / f_naive))


def forgetting_cut(f_strategy: ArrayLike, f_naive: ArrayLike) -> float:
    """100 (1 - mean F_strategy / mean F_naive) over paired seeds, in percent: a ratio of the paired means, so one
    seed where naive barely forgot cannot make it -1900%. NaN unless naive forgets: its mean forgetting's 95% t
    interval lies above zero (at least 2 paired seeds), since a cut of nothing is no figure."""
    mine, naive = np.asarray(f_strategy, dtype=float), np.asarray(f_naive, dtype=float)
    kept = np.isfinite(mine) & np.isfinite(naive)
    mine, naive = mine[kept], naive[kept]
    low, _ = t_interval(naive, 0.95)
    if naive.size < 2 or not low > 0:
        return float("nan")
    return float(100.0 * (1.0 - mine.mean() / naive.mean()))


# --- multi-model metrics -------------------------------------------------------------------------


def max_drop(accuracy: ArrayLike, baseline: float) -> float:
    """Largest drop of an earlier model during later training: max_k (baseline - a_k), floored at 0.

    ``accuracy`` is the earlier model's accuracy at each evaluation point while a later experience
    trains; ``baseline`` its accuracy just before that training began. 0 when it never fell below
    the baseline; NaN for an empty curve.
    """
    a = np.asarray(accuracy, dtype=float)
    if a.size == 0:
        return float("nan")
    return float(max(0.0, baseline - a.min()))


def drop_area(iterations: ArrayLike, accuracy: ArrayLike, baseline: float) -> float:
    """Area under the drop curve: the trapezoidal integral of max(0, baseline - a(t)) dt.

    ``t`` runs over the training iterations of the later experience, so the unit is accuracy x
    iterations (0.1 below baseline for 500 iterations = 50). A point at the baseline is prepended at
    iteration 0 when the curve does not start there, so an immediate drop counts from the start.
    NaN for an empty curve.
    """
    it = np.asarray(iterations, dtype=float)
    a = np.asarray(accuracy, dtype=float)
    if it.shape != a.shape:
        raise ValueError(f"iterations and accuracy differ in length: {it.shape} vs {a.shape}")
    if a.size == 0:
        return float("nan")
    order = np.argsort(it, kind="stable")
    it, a = it[order], a[order]
    if it[0] > 0:
        it, a = np.concatenate([[0.0], it]), np.concatenate([[baseline], a])
    drop = np.maximum(0.0, baseline - a)
    # trapezoid rule, written out (np.trapz was renamed across numpy versions)
    return float(np.sum((drop[1:] + drop[:-1]) * np.diff(it)) / 2.0)


def err_gap(err1: Errors, err2: Errors) -> tuple[float, float]:
    """Supernet forgetting: ``(mean, max)`` of err2 - err1 over every (round, architecture).

    ``err1[r][a]`` is architecture a's validation error right after its own turn in round r,
    ``err2[r][a]`` the same at the end of round r; err2 - err1 > 0 means the later turns of the
    round made it forget. Cells that are None/NaN in either list are ignored.
    """
    gap = _defined_gaps(err1, err2)
    if gap.size == 0:
        return float("nan"), float("nan")
    return float(gap.mean()), float(gap.max())


def supernet_plasticity(err1: Errors, err2: Errors) -> tuple[float, float]:
    """A supernet's ``(LA, forgetting)`` where its accuracy matrix has no diagonal (search turns, round-robin
    rounds): the same two ideas read off its turns.

    LA = mean over every (round, turn) of ``1 - err1``: each architecture's accuracy right after its own turn, as
    R[j][j] is an experience's right after it is learned. Forgetting = mean of ``err2 - err1`` over every turn but
    each round's last, whose gap is 0 by definition (``err2`` is read when that turn ends), as the last experience
    is left out of :func:`forgetting`. None/NaN cells are left out; NaN where nothing is defined."""
    e1 = np.asarray(err1, dtype=float)
    e2 = np.asarray(err2, dtype=float)
    if e1.shape != e2.shape:
        raise ValueError(f"err1 and err2 differ in shape: {e1.shape} vs {e2.shape}")
    after = 1.0 - e1[np.isfinite(e1)]
    gaps = _defined_gaps(e1[..., :-1], e2[..., :-1]) if e1.ndim == 2 else np.empty(0)
    return (
        float(after.mean()) if after.size else float("nan"),
        float(gaps.mean()) if gaps.size else float("nan"),
    )


def _defined_gaps(err1: Errors, err2: Errors) -> np.ndarray:
    """err2 - err1 over the cells where both are defined (None/NaN cells left out), flattened."""
    e1 = np.asarray(err1, dtype=float)
    e2 = np.asarray(err2, dtype=float)
    if e1.shape != e2.shape:
        raise ValueError(f"err1 and err2 differ in shape: {e1.shape} vs {e2.shape}")
    return (e2 - e1)[np.isfinite(e2 - e1)]


def _scorings(scores_a: ArrayLike, scores_b: ArrayLike, metric: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(scores_a, dtype=float)
    b = np.asarray(scores_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"{metric} needs two 1-D scorings of equal length, got {a.shape} and {b.shape}")
    return a, b


def kendall_tau(scores_a: ArrayLike, scores_b: ArrayLike) -> float:
    """Kendall's tau-b between two scorings of the same items (1 = same ranking, -1 = reversed).

    tau-b = (C - D) / sqrt((n0 - n_a) (n0 - n_b)) with C/D the concordant/discordant pairs, n0 the
    number of pairs and n_a/n_b the pairs tied in a/in b. Used between the supernet's ranking of the
    architectures (its final accuracies) and the standalone ranking. NaN for fewer than 2 items
    or a constant scoring.
    """
    a, b = _scorings(scores_a, scores_b, "kendall_tau")
    if a.size < 2:
        return float("nan")
    i, j = np.triu_indices(a.size, k=1)
    sa, sb = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    concordant_minus_discordant = float(np.sum(sa * sb))
    n_a = float(np.sum(sa != 0))  # pairs not tied in a
    n_b = float(np.sum(sb != 0))
    if n_a == 0 or n_b == 0:
        return float("nan")
    return concordant_minus_discordant / float(np.sqrt(n_a * n_b))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of the values, ties sharing the mean of their ranks (scipy.stats.rankdata's ``average``, without
    importing scipy.stats: 1 s, most of a report's import)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_run = np.r_[True, ordered[1:] != ordered[:-1]]
    run = np.cumsum(starts_run) - 1  # which run of equal values each sorted position is in
    first = np.flatnonzero(starts_run)  # 0-based position where each run starts
    size = np.diff(np.r_[first, ordered.size])
    ranks = np.empty(values.size)
    ranks[order] = (first + (size + 1) / 2.0)[run]
    return ranks


def spearman_rho(scores_a: ArrayLike, scores_b: ArrayLike) -> float:
    """Spearman's rho: the Pearson correlation of the two scorings' ranks (ties get their mean rank).

    NaN for fewer than 2 items or a constant scoring."""
    a, b = _scorings(scores_a, scores_b, "spearman_rho")
    if a.size < 2:
        return float("nan")
    ra, rb = average_ranks(a) - (a.size + 1) / 2.0, average_ranks(b) - (b.size + 1) / 2.0
    denominator = float(np.sqrt(np.sum(ra**2) * np.sum(rb**2)))
    return float(np.sum(ra * rb)) / denominator if denominator > 0 else float("nan")


def top_k(scores: ArrayLike, k: int) -> list[int]:
    """Indices of the ``k`` highest scores, best first; ties go to the lower index."""
    s = np.asarray(scores, dtype=float)
    return [int(i) for i in np.argsort(-s, kind="stable")[:k]]


def precision_at_k(predicted: ArrayLike, truth: ArrayLike, k: int) -> float:
    """|top-k by ``predicted`` & top-k by ``truth``| / k: how many of the truly best k the ranking finds."""
    if not 1 <= k <= len(np.asarray(truth)):
        raise ValueError(f"k must be in 1..{len(np.asarray(truth))}, got {k}")
    return len(set(top_k(predicted, k)) & set(top_k(truth, k))) / k


def regret(truth: ArrayLike, chosen: int) -> float:
    """Best true score in the space minus the chosen item's true score (0 = the search found the best)."""
    t = np.asarray(truth, dtype=float)
    return float(t.max() - t[chosen])


def forgetting_value(err1: Errors, err2: Errors, top: int = 5) -> tuple[float, float, float]:
    """``(mean, mean of the top largest, max)`` of err2 - err1 over the cells where both are defined.

    One epoch of a search (Benyahia et al. 2019, Figure; Ning et al. 2021's forgetting value): err1 is
    each trained architecture's error right after its turn, err2 at the epoch's end; None/NaN cells
    (architectures the epoch did not train) are left out. NaNs when no cell is defined."""
    gap = _defined_gaps(err1, err2)
    if gap.size == 0:
        return float("nan"), float("nan"), float("nan")
    largest = np.sort(gap)[::-1][:top]
    return float(gap.mean()), float(largest.mean()), float(gap.max())


def steps_per_second(steps: float, train_seconds: float) -> float:
    """Training throughput: optimiser steps / training wall-clock seconds (NaN if no time measured)."""
    if not train_seconds or train_seconds <= 0 or not np.isfinite(train_seconds):
        return float("nan")
    return float(steps) / float(train_seconds)


def mean_err_gap(err1: ArrayLike, err2: ArrayLike) -> float:
    """Mean over rounds and architectures of err2 - err1 (the first value of :func:`err_gap`)."""
    return err_gap(err1, err2)[0]


def ranking_kendall_tau(supernet_accuracy: ArrayLike, standalone_accuracy: ArrayLike) -> float:
    """Kendall's tau-b between the supernet's ranking of the architectures (its final accuracies)
    and their standalone ranking (:func:`kendall_tau`)."""
    return kendall_tau(supernet_accuracy, standalone_accuracy)


# --- one run record -> its metrics ----------------------------------------------------------------


def errors_in_nats(record: RunRecord) -> bool:
    """Whether a search's err1 / err2 are log-perplexities (a language model's), not 1 - accuracy."""
    return record.search is not None and "log-perplexity" in str(record.search.error or "")


def search_metrics(record: RunRecord) -> dict[str, float]:
    """Search-quality metrics of a search run (none for other runs).

    Rankings compare the supernet's validation accuracy of every candidate (what the search ranks
    by) with the standalone ground truth (``supernet_search``: every candidate; ``custom_supernet``: the K
    architectures of ``search.ground_truth``, its pick the best of them on the shared weights); regret is that of
    the chosen candidate; the forgetting
    value is :func:`forgetting_value` per search epoch, averaged over epochs; the reward is the
    controller's mean reward in the last epoch."""
    search = record.search
    if search is None:
        return {}
    out: dict[str, float] = {}
    predicted, truth, top_k, chosen = (
        search.validation_accuracy,
        record.standalone_accuracy,
        search.top_k,
        search.chosen,
    )
    if predicted is None and search.ground_truth is not None:  # the search ranks K architectures trained alone
        gt = search.ground_truth
        predicted, truth, top_k = gt.supernet_accuracy, gt.standalone_accuracy, gt.top_k or 3
        chosen = int(np.argmax(predicted))  # its pick among them: the best on the shared weights (first on ties)
    if predicted is not None and truth is not None and len(truth) == len(predicted) and chosen is not None:
        out["search_tau"] = kendall_tau(predicted, truth)
        out["search_rho"] = spearman_rho(predicted, truth)
        out["precision_at_k"] = precision_at_k(predicted, truth, int(top_k or 5))
        out["regret"] = regret(truth, int(chosen))
    derived = search.derived
    language_model = errors_in_nats(record)
    if language_model:  # errors in nats (log-perplexity), not accuracy points: metrics of their own
        epochs = search_epochs(record)
        start = int(search.measured_from_epoch or 0)
        for key, series in (
            ("lm_forgetting_mean", "mean_gap"),
            ("lm_forgetting_best5", "best_gap"),
            ("lm_forgetting_max", "max_gap"),
            ("lm_controller_reward", "reward"),
            ("lm_forgetting_whole_search", "mean_gap"),
        ):
            values = np.asarray(epochs[series], dtype=float)
            if key != "lm_forgetting_whole_search":
                values = values[start:]
            if np.isfinite(values).any():
                out[key] = float(np.nanmean(values))
        if derived is not None:
            out["derived_valid_ppl"], out["derived_test_ppl"] = _floats(derived.valid_ppl, derived.test_ppl)
            if derived.retrained is not None:
                out["retrained_valid_ppl"], out["retrained_test_ppl"] = _floats(
                    derived.retrained.valid_ppl, derived.retrained.test_ppl
                )
        return out
    err1, err2 = record.err1 or [], record.err2 or []
    start = int(search.measured_from_epoch or 0)  # a sampled-architecture search may skip its warm-up
    values = np.array([forgetting_value(a, b) for a, b in zip(err1, err2)], dtype=np.float64).reshape(-1, 3)
    if len(values[start:]):
        with np.errstate(all="ignore"):
            mean, top5, largest = (_finite_mean(values[start:, i]) for i in range(3))
        out["forgetting_value_mean"], out["forgetting_value_top5"], out["forgetting_value_max"] = mean, top5, largest
        if start:
            out["forgetting_value_whole_search"] = _finite_mean(values[:, 0])
    if derived is not None and derived.test_accuracy is not None:
        out["derived_valid_accuracy"], out["derived_test_accuracy"] = _floats(
            derived.valid_accuracy, derived.test_accuracy
        )
        if derived.retrained is not None:
            out["retrained_valid_accuracy"], out["retrained_test_accuracy"] = _floats(
                derived.retrained.valid_accuracy, derived.retrained.test_accuracy
            )
    if search.rewards:
        out["controller_reward"] = float(np.mean(search.rewards[-1]))
    return out


def _floats(*values: float | None) -> tuple[float, ...]:
    return tuple(float("nan") if v is None else float(v) for v in values)


def _finite_mean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def best_err1_gap(err1: Errors, err2: Errors, k: int = 5) -> float:
    """Mean err2 - err1 over the ``k`` cells with the lowest err1 (the WPL paper's second panel: forgetting
    of the best models of an epoch); NaN when no cell is defined."""
    e1, e2 = np.asarray(err1, dtype=float).ravel(), np.asarray(err2, dtype=float).ravel()
    defined = np.isfinite(e1) & np.isfinite(e2)
    if not defined.any():
        return float("nan")
    e1, e2 = e1[defined], e2[defined]
    best = np.argsort(e1, kind="stable")[:k]
    return float((e2[best] - e1[best]).mean())


def search_epochs(record: RunRecord, k: int = 5) -> dict[str, list[float]]:
    """The WPL paper's four panels for one search run, one value per search epoch: ``mean_gap`` (mean
    err2 - err1 over the epoch's models), ``best_gap`` (the same over the ``k`` with lowest err1),
    ``max_gap`` and ``reward`` (the controller's mean reward after the epoch; NaN without a controller)."""
    err1, err2 = record.err1 or [], record.err2 or []
    out: dict[str, list[float]] = {"mean_gap": [], "best_gap": [], "max_gap": [], "reward": []}
    rewards = (record.search.rewards if record.search is not None else None) or []
    for e, (a, b) in enumerate(zip(err1, err2)):
        mean, _, largest = forgetting_value(a, b)
        out["mean_gap"].append(mean)
        out["best_gap"].append(best_err1_gap(a, b, k))
        out["max_gap"].append(largest)
        out["reward"].append(float(np.mean(rewards[e])) if e < len(rewards) and rewards[e] else float("nan"))
    return out


def _is_square(R: np.ndarray) -> bool:
    return R.ndim == 2 and R.shape[0] == R.shape[1]


def curve_series(record: RunRecord) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """``(train_exp, eval_exp) -> (iterations, accuracies)`` sorted by iteration, earlier models only."""
    return series_of_points((p.train_exp, p.iteration, p.eval_exp, p.accuracy) for p in record.curves or [])


def series_of_points(
    points: Iterable[tuple[int, int, int, float | None]],
) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """:func:`curve_series` of ``(train_exp, iteration, eval_exp, accuracy)`` tuples."""
    by_key: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for train_exp, iteration, eval_exp, accuracy in points:
        if train_exp != eval_exp and accuracy is not None:
            by_key[(train_exp, eval_exp)].append((float(iteration), float(accuracy)))
    series = {}
    for key, pts in sorted(by_key.items()):
        pts.sort()
        series[key] = (np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
    return series


def _curve_metrics(series: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]], R: np.ndarray) -> dict[str, float]:
    if not series:
        return {}
    drops, areas = [], []
    for (train_exp, eval_exp), (it, acc) in series.items():
        # Baseline = the earlier model's accuracy just before train_exp began: the matrix row of
        # the previous experience when rows are experiences, else the series' first point.
        if _is_square(R) and 1 <= train_exp <= R.shape[0] and eval_exp < R.shape[1]:
            baseline = float(R[train_exp - 1, eval_exp])
        else:
            baseline = float(acc[0])
        drops.append(max_drop(acc, baseline))
        areas.append(drop_area(it, acc, baseline))
    return {"curve_max_drop": float(np.max(drops)), "curve_drop_area": float(np.mean(areas))}


def _turn_plasticity(record: RunRecord) -> dict[str, float]:
    """LA and forgetting of a supernet's turns (:func:`supernet_plasticity`) where its errors are accuracy errors
    (a language model's are log-perplexities: no accuracy to put in LA's place); empty otherwise."""
    if record.err1 is None or record.err2 is None:
        return {}
    if errors_in_nats(record):
        return {}
    la, forgot = supernet_plasticity(record.err1, record.err2)
    return {"LA": la, "forgetting": forgot}


def run_metrics(
    record: RunRecord | Mapping[str, Any],
    reference: np.ndarray | None = None,
    curve_points: Sequence[tuple[int, int, int, float]] | None = None,
) -> dict[str, float]:
    """Every metric of one run record, as floats: the one place a record becomes numbers.

    ACC needs a finished (``ok``) run with an accuracy row; LA, forgetting, BWT, FWT and
    intransigence need one row per experience (a square matrix); the curve, supernet, ranking,
    cost and memory metrics appear when their keys are in the record. Undefined metrics are NaN;
    a run that is not ok gives NaN for every accuracy metric. ``reference`` is a*_j per
    experience (joint or standalone runs of the same scenario) for intransigence. ``curve_points`` stand for
    ``record.curves`` when the record was read without them (``RunRecord.from_dict_lean``).
    """
    record = coerce(record)
    nan = float("nan")
    timing = {
        "train_seconds": float(record.timing.train_seconds),
        "steps_per_second": steps_per_second(record.timing.steps, record.timing.train_seconds),
    }
    if record.timing.importance_seconds is not None:  # a regularizer with importance passes (EWC, WPL, MAS)
        timing["importance_seconds"] = float(record.timing.importance_seconds)
    if not record.ok and record.status == "ok" and record.search is not None:
        # a search whose evaluation units are sampled architectures keeps no accuracy matrix: its numbers are the
        # search's own, with its turns' plasticity and forgetting in LA's and forgetting's place
        return (
            {key: nan for key in ("ACC", "LA", "last", "forgetting", "BWT", "FWT", "intransigence")}
            | _turn_plasticity(record)
            | {**search_metrics(record), **timing}
            | _registered_values(record)
        )
    if not record.ok:
        return (
            {key: nan for key in ("ACC", "LA", "last", "forgetting", "BWT", "FWT", "intransigence")}
            | timing
            | {m.key: nan for m in registered_metrics()}
        )
    R = np.asarray(record.accuracy_matrix, dtype=float)
    square = _is_square(R)
    b = record.init_accuracy
    out: dict[str, float] = {
        "ACC": average_accuracy(R),
        "LA": learning_accuracy(R) if square else nan,
        "last": last_accuracy(R) if square else nan,
        "forgetting": forgetting(R) if square else nan,
        "BWT": backward_transfer(R) if square else nan,
        "FWT": forward_transfer(R, b) if square and len(b) == R.shape[1] else nan,
        "intransigence": run_intransigence(R, reference),
    }
    out.update(_curve_metrics(curve_series(record) if curve_points is None else series_of_points(curve_points), R))
    if record.err1 is not None and record.err2 is not None:
        out["err_gap_mean"], out["err_gap_max"] = err_gap(record.err1, record.err2)
        if not square:
            out |= _turn_plasticity(record)
    standalone = record.standalone_accuracy
    if standalone is not None and len(standalone) == R.shape[1]:
        out["kendall_tau"] = kendall_tau(R[-1], standalone)
    out.update(search_metrics(record))
    out.update(timing)
    if record.memory is not None:
        out["regularizer_bytes"] = float(record.memory.regularizer_bytes)
    return out | _registered_values(record)


def run_intransigence(R: np.ndarray, reference: np.ndarray | None) -> float:
    """:func:`intransigence` of a run's matrix against ``reference`` (a*_j); NaN unless the matrix is square and
    the reference has one entry per experience."""
    square = _is_square(R)
    return (
        intransigence(R, reference)
        if square and reference is not None and len(reference) == R.shape[0]
        else float("nan")
    )


def _registered_values(record: RunRecord) -> dict[str, float]:
    """The values of the metrics added with ``register_metric`` (each its own function of the record)."""
    values = {}
    for metric in registered_metrics():
        try:
            value = metric.compute(record)  # type: ignore[misc]  # registered metrics always have one
        except Exception as exc:
            raise ValueError(
                f"metric {metric.key!r} failed on run {record.run_id}: {type(exc).__name__}: {exc}"
            ) from exc
        values[metric.key] = float("nan") if value is None else float(value)
    return values


def quadratic_explained(predicted: ArrayLike, observed: ArrayLike) -> float:
    """sum(predicted) / sum(observed): the share of the observed loss increase (earlier models, summed over
    every (turn, model) pair) that the quadratic prediction (1/2) sum F (theta - theta*)^2 accounts for.
    NaN when the observed increases sum to 0 or less (nothing was forgotten)."""
    p, o = np.asarray(predicted, dtype=float), np.asarray(observed, dtype=float)
    total = float(o.sum())
    return float(p.sum()) / total if total > 0 else float("nan")
