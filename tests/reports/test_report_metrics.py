"""Multi-model metrics and across-seed statistics against hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from forgetbench.benchmark.core import metrics, stats


def test_max_drop_by_hand():
    assert metrics.max_drop([0.8, 0.6, 0.7], baseline=0.9) == pytest.approx(0.3)
    assert metrics.max_drop([0.95, 0.92], baseline=0.9) == 0.0  # never fell below: no drop
    assert math.isnan(metrics.max_drop([], baseline=0.9))


def test_drop_area_by_hand():
    # (0, 0.9) is prepended: drops 0, 0.1, 0 over [0, 10, 20] -> 0.05*10 + 0.05*10 = 1.0
    assert metrics.drop_area([10, 20], [0.8, 0.9], baseline=0.9) == pytest.approx(1.0)
    # unsorted input, starting at 0: drops 0.2, 0.2, 0 over [0, 5, 10] -> 0.2*5 + 0.1*5 = 1.5
    assert metrics.drop_area([10, 0, 5], [0.9, 0.7, 0.7], baseline=0.9) == pytest.approx(1.5)
    assert metrics.drop_area([10, 20], [1.0, 0.95], baseline=0.9) == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        metrics.drop_area([1, 2], [0.5], 0.9)


def test_err_gap_by_hand():
    err1 = [[0.1, 0.2], [0.1, 0.1]]
    err2 = [[0.15, 0.2], [0.4, 0.05]]  # gaps 0.05, 0, 0.3, -0.05
    mean, worst = metrics.err_gap(err1, err2)
    assert mean == pytest.approx(0.075) and worst == pytest.approx(0.3)
    mean, worst = metrics.err_gap([[0.1, None]], [[0.3, 0.5]])  # the missing cell is ignored
    assert mean == pytest.approx(0.2) and worst == pytest.approx(0.2)
    with pytest.raises(ValueError, match="shape"):
        metrics.err_gap([[0.1]], [[0.1, 0.2]])


def test_kendall_tau_by_hand():
    # pairs (0,1) and (0,2) concordant, (1,2) discordant: (2 - 1) / 3
    assert metrics.kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert metrics.kendall_tau([0.1, 0.5, 0.9], [3, 2, 1]) == pytest.approx(-1.0)
    # a tie in a: C - D = 2, 2 untied pairs in a, 3 in b -> 2 / sqrt(6)
    assert metrics.kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert metrics.kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(st.kendalltau([1, 1, 2], [1, 2, 3])[0])
    assert math.isnan(metrics.kendall_tau([1.0], [2.0]))
    assert math.isnan(metrics.kendall_tau([1, 1], [1, 2]))


def test_steps_per_second():
    assert metrics.steps_per_second(100, 4.0) == pytest.approx(25.0)
    assert math.isnan(metrics.steps_per_second(100, 0.0))


def test_summarize_t_interval_by_hand():
    s = stats.summarize([1.0, 2.0, 3.0, float("nan")])  # the NaN is dropped
    half = 4.302652729749464 / math.sqrt(3)  # t_{0.975, 2} * std / sqrt(n), std = 1
    assert (s.mean, s.std, s.n) == (pytest.approx(2.0), pytest.approx(1.0), 3)
    assert s.ci_low == pytest.approx(2 - half) and s.ci_high == pytest.approx(2 + half)


def test_summarize_edge_cases():
    one = stats.summarize([0.7])
    assert one.mean == 0.7 and one.n == 1 and math.isnan(one.std) and math.isnan(one.ci_low)
    assert stats.summarize([]).n == 0
    same = stats.summarize([0.5, 0.5])
    assert same.ci_low == same.ci_high == 0.5
    with pytest.raises(ValueError, match="'t', 'bootstrap'"):
        stats.summarize([1, 2], method="normal")


def test_bootstrap_is_deterministic_with_a_seed():
    values = [0.61, 0.72, 0.65, 0.80, 0.58]
    a = stats.summarize(values, method="bootstrap", seed=3)
    b = stats.summarize(values, method="bootstrap", seed=3)
    c = stats.summarize(values, method="bootstrap", seed=4)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    assert min(values) <= a.ci_low < np.mean(values) < a.ci_high <= max(values)


def test_paired_difference_by_hand():
    x = {0: 0.5, 1: 0.6, 2: 0.8}
    y = {0: 0.4, 1: 0.4, 2: 0.5, 3: 0.9}  # seed 3 has no partner: ignored
    p = stats.paired_difference(x, y)
    # d = 0.1, 0.2, 0.3: mean 0.2, std 0.1, t = 0.2 / (0.1 / sqrt 3) = sqrt 12;
    # df = 2: P(T > t) = (1 - t / sqrt(t^2 + 2)) / 2  ->  p = 1 - sqrt(12 / 14)
    assert p.n == 3 and p.diff == pytest.approx(0.2)
    assert p.p_value == pytest.approx(1 - math.sqrt(12 / 14))
    assert p.ci_low < 0.2 < p.ci_high


def test_paired_difference_degenerate():
    assert stats.paired_difference({0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5}).p_value == 1.0
    assert stats.paired_difference({0: 0.6, 1: 0.7}, {0: 0.5, 1: 0.6}).p_value == pytest.approx(0.0, abs=1e-6)
    single = stats.paired_difference({0: 0.6}, {0: 0.5})
    assert single.n == 1 and single.diff == pytest.approx(0.1) and math.isnan(single.p_value)
    assert stats.paired_difference({0: 0.6}, {1: 0.5}).n == 0
