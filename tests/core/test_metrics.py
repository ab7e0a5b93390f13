"""Metrics against hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forgetbench.benchmark.core import metrics

# R[i][j]: accuracy on j after training i.
R3 = [
    [0.9, 0.1, 0.2],
    [0.6, 0.8, 0.3],
    [0.5, 0.7, 0.95],
]
B3 = [0.1, 0.2, 0.25]


def test_three_experiences_by_hand():
    assert metrics.average_accuracy(R3) == pytest.approx((0.5 + 0.7 + 0.95) / 3)
    assert metrics.learning_accuracy(R3) == pytest.approx((0.9 + 0.8 + 0.95) / 3)
    assert metrics.last_accuracy(R3) == 0.95 and metrics.last_accuracy([[0.9, 0.1], [0.6, 0.8]]) == 0.8
    # BWT: ((0.5-0.9) + (0.7-0.8)) / 2
    assert metrics.backward_transfer(R3) == pytest.approx(-0.25)
    # FWT: ((R[0][1]-b1) + (R[1][2]-b2)) / 2 = ((0.1-0.2) + (0.3-0.25)) / 2
    assert metrics.forward_transfer(R3, B3) == pytest.approx(-0.025)
    # Forgetting: j=0: max(0.9, 0.6) - 0.5 = 0.4; j=1: max(0.1, 0.8) - 0.7 = 0.1
    assert metrics.forgetting(R3) == pytest.approx(0.25)
    assert metrics.intransigence(R3, [1.0, 0.9, 0.95]) == pytest.approx((0.1 + 0.1 + 0.0) / 3)


def test_running_metric_is_each_leading_block_by_hand():
    # after experience 0: the 1x1 block; after 1: [[0.9, 0.1], [0.6, 0.8]]; after 2: R3 itself
    assert metrics.running_metric(R3, "ACC") == pytest.approx([0.9, (0.6 + 0.8) / 2, (0.5 + 0.7 + 0.95) / 3])
    assert metrics.running_metric(R3, "LA") == pytest.approx([0.9, (0.9 + 0.8) / 2, (0.9 + 0.8 + 0.95) / 3])
    forgetting = metrics.running_metric(R3, "forgetting")
    assert math.isnan(forgetting[0]) and forgetting[1:] == pytest.approx([0.9 - 0.6, 0.25])
    bwt = metrics.running_metric(R3, "BWT")
    assert math.isnan(bwt[0]) and bwt[1:] == pytest.approx([0.6 - 0.9, -0.25])
    # a run stopped after experience 1 keeps two rows of three columns: two values
    assert metrics.running_metric(R3[:2], "ACC") == pytest.approx([0.9, 0.7])


def test_prune_rule_compares_in_the_objectives_direction_and_never_without_a_bound():
    from forgetbench.benchmark.run.spec import PruneRule

    acc = PruneRule("ACC", True, (0.9, None, 0.5))
    assert acc.falls_behind(0, 0.89) and not acc.falls_behind(0, 0.9) and not acc.falls_behind(0, 0.95)
    assert not acc.falls_behind(1, 0.0) and not acc.falls_behind(3, 0.0)  # no bound there, or past the bounds
    assert not acc.falls_behind(2, float("nan"))
    lower_is_better = PruneRule("forgetting", False, (0.1,))
    assert lower_is_better.falls_behind(0, 0.11) and not lower_is_better.falls_behind(0, 0.09)


def test_pruning_bounds_by_hand():
    from forgetbench.benchmark.run.tuning import pruning_bounds

    curves = [[1.0, 0.8, 0.7, 0.6], [1.0, 0.6, float("nan"), 0.5], [1.0, 0.9, 0.5, 0.4]]
    # the median; no bound after the last experience; NaN values left out
    assert pruning_bounds(curves, 0.5, True) == (1.0, 0.8, 0.6)
    # the lower quartile of (0.6, 0.8, 0.9) by linear interpolation: 0.6 + 0.5 * (0.8 - 0.6); of (0.5, 0.7): 0.55
    assert pruning_bounds(curves, 0.25, True) == pytest.approx((1.0, 0.7, 0.55))
    # lower is better (forgetting): the upper quartile, 0.8 + 0.5 * (0.9 - 0.8); 0.65
    assert pruning_bounds(curves, 0.25, False) == pytest.approx((1.0, 0.85, 0.65))
    assert pruning_bounds([[float("nan"), 0.5]], 0.5, True) == (None,) and pruning_bounds([], 0.5, True) == ()


def test_forgetting_uses_the_best_earlier_row_not_the_diagonal():
    R = [[0.5, 0.0], [0.8, 0.9]]  # accuracy on task 0 rose after task 1 (positive transfer)
    assert metrics.forgetting(R) == pytest.approx(0.5 - 0.8)
    assert metrics.backward_transfer(R) == pytest.approx(0.3)


def test_single_experience():
    R = [[0.7]]
    assert metrics.average_accuracy(R) == pytest.approx(0.7)
    assert metrics.learning_accuracy(R) == pytest.approx(0.7)
    for value in (metrics.backward_transfer(R), metrics.forward_transfer(R, [0.1]), metrics.forgetting(R)):
        assert math.isnan(value)


def test_two_experiences():
    R = [[0.9, 0.4], [0.6, 0.8]]
    assert metrics.forgetting(R) == pytest.approx(0.3)
    assert metrics.backward_transfer(R) == pytest.approx(-0.3)
    assert metrics.forward_transfer(R, [0.5, 0.5]) == pytest.approx(-0.1)
    assert metrics.average_accuracy(R) == pytest.approx(0.7)


def test_forgetting_reduction():
    assert metrics.forgetting_reduction(0.05, 0.2) == pytest.approx(75.0)
    assert math.isnan(metrics.forgetting_reduction(0.05, 0.0))


def test_forgetting_cut_is_a_ratio_of_paired_means_and_only_where_naive_forgets():
    # naive 10, 12, 8 points; the strategy 2, 1, 3: 1 - 2 / 10 = 80%, by hand
    assert metrics.forgetting_cut([0.02, 0.01, 0.03], [0.10, 0.12, 0.08]) == pytest.approx(80.0)
    # the README example's old case: naive forgot 0.22 points on one seed and nothing on the others; the mean of
    # per-seed cuts read -100% from that one seed; naive's interval reaches 0, so there is no cut to show
    assert math.isnan(metrics.forgetting_cut([0.0044, 0.001, 0.0], [0.0022, -0.001, 0.0005]))
    assert metrics.forgetting_reduction(0.0044, 0.0022) == pytest.approx(-100.0)
    assert math.isnan(metrics.forgetting_cut([0.01], [0.2]))  # one seed: no interval, no figure
    assert math.isnan(metrics.forgetting_cut([0.01, np.nan], [0.2, 0.3]))  # the finite pairs only: one left


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        metrics.average_accuracy(np.zeros((0, 0)))
    with pytest.raises(ValueError):
        metrics.forgetting([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]])


def test_ranking_kendall_tau_by_hand():
    from forgetbench.benchmark.core.metrics import ranking_kendall_tau

    # supernet order 0 > 1 > 2 > 3; standalone swaps 2 and 3: 5 concordant, 1 discordant of 6 pairs
    assert ranking_kendall_tau([0.9, 0.8, 0.7, 0.6], [0.95, 0.9, 0.5, 0.6]) == pytest.approx((5 - 1) / 6)
    assert ranking_kendall_tau([0.1, 0.2, 0.3], [0.3, 0.2, 0.1]) == pytest.approx(-1.0)
    assert math.isnan(ranking_kendall_tau([0.5, 0.5], [0.1, 0.2]))
    assert math.isnan(ranking_kendall_tau([0.5], [0.1]))
    with pytest.raises(ValueError, match="equal length"):
        ranking_kendall_tau([0.1, 0.2], [0.1, 0.2, 0.3])


def test_supernet_plasticity_by_hand():
    # two rounds of three turns; a None cell is left out of both means
    err1 = [[0.5, 0.4, 0.3], [0.4, None, 0.3]]
    err2 = [[0.6, 0.45, 0.3], [0.5, 0.2, 0.3]]
    la, forgot = metrics.supernet_plasticity(err1, err2)
    assert la == pytest.approx(1 - (0.5 + 0.4 + 0.3 + 0.4 + 0.3) / 5)
    assert forgot == pytest.approx((0.1 + 0.05 + 0.1) / 3)  # each round's last turn left out
    la, forgot = metrics.supernet_plasticity([[0.2]], [[0.2]])
    assert la == pytest.approx(0.8) and math.isnan(forgot)  # one turn a round: nothing to forget


def test_a_search_record_carries_its_turns_plasticity_unless_its_errors_are_perplexities():
    from helpers import make_record

    base = {"status": "ok", "err1": [[0.5, 0.4]], "err2": [[0.6, 0.4]], "accuracy_matrix": []}
    m = metrics.run_metrics(make_record(base, search={"error": "validation error (1 - accuracy)"}))
    assert m["LA"] == pytest.approx(0.55) and m["forgetting"] == pytest.approx(0.1)
    perplexity = make_record(base, search={"error": "validation log-perplexity (nats)"})
    assert math.isnan(metrics.run_metrics(perplexity)["LA"])


def test_mean_err_gap_by_hand():
    from forgetbench.benchmark.core.metrics import mean_err_gap

    assert mean_err_gap([[0.1, 0.2]], [[0.3, 0.2]]) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="differ in shape"):
        mean_err_gap([[0.1]], [[0.1, 0.2]])
