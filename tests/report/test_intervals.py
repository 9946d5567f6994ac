"""The report's statistics, exact on small cases and against published worked examples.

The calibration on simulated studies shaped like the real data is ``test_calibration.py``.
"""

import math

import numpy as np
import pytest

from scipy import stats

from orderstudy.report import intervals
from orderstudy.report.intervals import (
    Arm, Design, average, change_rate, detectable_difference, difference, items_needed, mover, own_seed_variance,
    pair_noise, pooled_seed_variance, score_interval, wilson,
)

MMLU_LAW_WEIGHTS = np.array([1534, 121, 108]) / 1763  # professional_law, international_law, jurisprudence


def _design(counts, weights=None):
    counts = np.asarray(counts)
    w = np.full(len(counts), 1 / len(counts)) if weights is None else np.asarray(weights, dtype=float)
    return Design(tuple(f"t{i}" for i in range(len(counts))), np.repeat(np.arange(len(counts)), counts), w)


def _arm(values, weights_design):
    values = np.atleast_2d(np.asarray(values, dtype=float))
    reported = np.array([weights_design.weights @ (np.bincount(weights_design.task_of, v) / weights_design.items_per_task)
                         for v in values])
    return Arm(values, reported)


def test_a_task_with_one_item_leaves_the_whole_benchmark_without_interval_or_mark():
    design = _design([1, 3, 3])
    assert design.too_few_items() == ["t0"]
    a = _arm([1, 0, 1, 0, 0, 1, 0], design)
    b = _arm([0, 1, 1, 1, 1, 1, 1], design)
    assert not score_interval(design, a, 0.95).has_interval
    d = difference(design, a, b, 0.95)
    assert not d.has_interval and d.significant is None
    assert d.value == pytest.approx(100 * (b.estimate - a.estimate))


def test_two_identical_orderings_differ_by_nothing_and_are_never_marked():
    design = _design([4, 4])
    a = _arm([1, 0, 1, 1, 0, 0, 1, 0], design)
    d = difference(design, a, a, 0.95)
    assert d.value == 0 and d.significant is False and d.low <= 0 <= d.high


def test_one_model_right_where_the_other_is_wrong_on_every_item_is_marked_only_with_enough_items():
    # Item by item B beats A: with 2 items it could be luck (exact McNemar p = 0.5), with 24 it cannot.
    few = _design([2])
    d = difference(few, _arm([0, 0], few), _arm([1, 1], few), 0.95)
    assert d.significant is False
    many = _design([2] * 12)
    d = difference(many, _arm([0] * 24, many), _arm([1] * 24, many), 0.95)
    assert d.significant is True and d.low > 50


def test_wilson_interval_stays_in_range_and_is_not_empty_when_every_item_agrees():
    low, high = wilson(0.0, 0.0, 1.96, 20)
    assert low == 0.0 and 0.1 < high < 0.2  # 0 right of 20: the truth may still be up to ~16%
    low, high = wilson(1.0, 0.0, 1.96, 20)
    assert high == 1.0 and 0.8 < low < 0.9
    design = _design([3, 3])
    s = score_interval(design, _arm([0, 0, 0, 0, 0, 0], design), 0.95)
    assert s.low == 0.0 and s.high > 10


def test_a_change_rate_from_a_base_score_near_zero_has_no_interval():
    design = _design([5, 5])
    base = _arm([0, 0, 0, 0, 0, 1, 0, 0, 0, 0], design)  # 10%, indistinguishable from 0 on 10 items
    better = _arm([1, 1, 0, 0, 0, 1, 1, 0, 0, 0], design)
    rate = change_rate(design, base, better, 0.95)
    assert rate.value == pytest.approx(300.0) and not rate.has_interval
    assert math.isnan(change_rate(design, _arm([0] * 10, design), better, 0.95).value)


def test_weights_shift_the_score_and_shrink_the_effective_sample():
    equal, weighted = _design([10, 10, 10]), _design([10, 10, 10], MMLU_LAW_WEIGHTS)
    assert equal.effective_items == pytest.approx(30)
    assert weighted.effective_items == pytest.approx(1 / np.sum(MMLU_LAW_WEIGHTS**2 / 10))
    assert weighted.effective_items < 14  # professional_law's 10 items carry 87% of the weight
    values = [1] * 10 + [0] * 20
    assert _arm(values, equal).estimate == pytest.approx(1 / 3)
    assert _arm(values, weighted).estimate == pytest.approx(MMLU_LAW_WEIGHTS[0])


def test_pooled_seed_variance_and_what_more_items_can_and_cannot_buy():
    variance, df = pooled_seed_variance([np.array([0.40, 0.46]), np.array([0.30, 0.30, 0.36]), np.array([0.5])])
    assert df == 3 and variance == pytest.approx((0.0018 + 0.0024) / 3)
    design = _design([2] * 12)
    a = _arm(np.tile([1, 0] * 12, (1, 1)), design)
    b = _arm(np.tile([1, 1, 0, 0] * 6, (1, 1)), design)
    noise = pair_noise(design, a, b)
    assert noise.seed == 0 and noise.item > 0
    # 0/1 items: the variance grows by half of sum_t w²/n · δ(100 - δ) with the true change.
    assert noise.growth == pytest.approx(0.5 * 12 * (1 / 12) ** 2 / 2)
    needed = items_needed(design, noise, 5.0, 0.95, 0.8)
    # The same t quantiles as the minimum detectable change (not z): t_{.975,df} + t_{.8,df}.
    q = stats.t.ppf(0.975, noise.df) + stats.t.ppf(0.8, noise.df)
    assert needed == math.ceil((noise.item + noise.growth * 5 * 95) / (5.0 / q) ** 2 * 2)  # today's 2 items a task
    seed_bound = type(noise)(noise.item, (5.0 / q) ** 2 * 1.01, noise.df, noise.growth)
    assert items_needed(design, seed_bound, 5.0, 0.95, 0.8) == math.inf  # seed noise alone is too much
    z = 1.959964 + 0.841621
    assert detectable_difference(2.0, 1e6, 0.95, 0.8) == pytest.approx(2.0 * z, rel=1e-4)
    # With growth the change solves δ = q · sqrt(se² + g δ (100 - δ)).
    mde = detectable_difference(2.0, 30, 0.95, 0.8, growth=0.01)
    q30 = stats.t.ppf(0.975, 30) + stats.t.ppf(0.8, 30)
    assert mde == pytest.approx(q30 * math.sqrt(4.0 + 0.01 * mde * (100 - mde)), rel=1e-9) and mde > 2.0 * q30
    # A target equal to the minimum detectable change needs today's items.
    today = type(noise)(4.0, 0.0, 30, 0.01)
    assert items_needed(design, today, mde, 0.95, 0.8) == 2


def test_newcombes_worked_example_59_6_16_80():
    # Newcombe (1998), Statistics in Medicine 17:857-872 (paired proportions), the table
    # (a, b, c, d) = (59, 6, 16, 80): method 10 gives -0.1186 to -0.0046 for p1 - p2.
    assert [round(x, 4) for x in _newcombe_10(59, 6, 16, 80)] == [-0.1186, -0.0046]
    # The same table as 161 items of one task, A right on a + b, B on a + c: the report's interval
    # of A - B (t quantile, 160 degrees of freedom) holds method 10's and is barely wider.
    a_items = np.array([1] * 59 + [1] * 6 + [0] * 16 + [0] * 80, dtype=float)
    b_items = np.array([1] * 59 + [0] * 6 + [1] * 16 + [0] * 80, dtype=float)
    design = _design([161])
    d = difference(design, _arm(b_items, design), _arm(a_items, design), 0.95)
    assert d.value == pytest.approx(100 * -10 / 161)
    assert d.low <= -11.86 and d.high >= -0.46 and d.low > -11.86 - 0.3 and d.high < -0.46 + 0.3
    assert d.significant is True
    # Without Newcombe's correction of φ it would be narrower than method 10 at its upper end.
    phi = (59 * 80 - 6 * 16) / math.sqrt(65 * 96 * 75 * 86)
    z = stats.norm.ppf(0.975)
    wa, wb = wilson(65 / 161, 65 * 96 / 161**3, z, 161), wilson(75 / 161, 75 * 86 / 161**3, z, 161)
    assert mover(75 / 161, wb, 65 / 161, wa, phi)[1] < -0.0046 - 0.001


def _newcombe_10(a, b, c, d):
    """Newcombe's method 10 written out from the paper, with z: an independent reference."""
    n, z = a + b + c + d, stats.norm.ppf(0.975)

    def wilson_counts(x):
        p = x / n
        centre, half = (2 * x + z * z) / (2 * (n + z * z)), z * math.sqrt(z * z + 4 * x * (1 - p)) / (2 * (n + z * z))
        return centre - half, centre + half

    p1, p2 = (a + b) / n, (a + c) / n
    (l1, u1), (l2, u2) = wilson_counts(a + b), wilson_counts(a + c)
    product = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (max(a * d - b * c - n / 2, 0) if a * d > b * c else a * d - b * c) / math.sqrt(product)
    delta = math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    epsilon = math.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    return p1 - p2 - delta, p1 - p2 + epsilon


def test_newcombes_method_10_on_random_tables_is_never_wider_than_the_reports_interval():
    rng = np.random.default_rng(3)
    for _ in range(40):
        a, b, c, d = rng.integers(0, 30, 4) + np.array([1, 0, 0, 1])
        n = int(a + b + c + d)
        if min(a + b, c + d, a + c, b + d) == 0:
            continue
        design = _design([n])
        first = np.repeat([1.0, 1.0, 0.0, 0.0], [a, b, c, d])
        second = np.repeat([1.0, 0.0, 1.0, 0.0], [a, b, c, d])
        found = difference(design, _arm(second, design), _arm(first, design), 0.95)
        low, high = _newcombe_10(int(a), int(b), int(c), int(d))
        assert found.low <= 100 * low + 1e-9 and found.high >= 100 * high - 1e-9, (a, b, c, d)


def test_stratified_variance_weighs_each_subjects_own_variance():
    # Two subjects of 20 items by size weights 0.9 / 0.1: the heavy one varies (half right), the
    # light one not at all. Its variance: sum_t w_t² s̃_t² / n_t, s̃_t² = (ν_t s_t² + ν₀ s²_pooled) / (ν_t + ν₀).
    design = _design([20, 20], [0.9, 0.1])
    values = np.array([1, 0] * 10 + [0] * 20, dtype=float)
    s2 = np.array([np.var(values[:20], ddof=1), 0.0])
    pooled = s2.mean()
    nu0 = intervals.SHRINKAGE_DF
    shrunk = (19 * s2 + nu0 * pooled) / (19 + nu0)
    expected = float(np.sum(np.array([0.81, 0.01]) * shrunk / 20))
    s = score_interval(design, _arm(values, design), 0.95)
    assert (s.se / 100) ** 2 == pytest.approx(expected)
    # The old pooled estimate would have been (0.81 + 0.01) / 20 times the pooled variance: too small.
    assert expected > 1.5 * (0.82 / 20) * pooled
    # Satterthwaite's degrees of freedom: nearly the heavy subject's own 19, not the 38 of both.
    assert 15 < s.df < 25


def test_a_change_rate_is_marked_by_its_own_interval_and_never_when_unbounded():
    rng = np.random.default_rng(8)
    design = _design([3] * 19)
    disagreements = 0
    for _ in range(300):
        p = rng.uniform(0.05, 0.6)
        a = (rng.random(57) < p).astype(float)
        b = np.where(rng.random(57) < 0.7, a, (rng.random(57) < p * rng.uniform(0.5, 1.5)).astype(float))
        arm_a, arm_b = _arm(a, design), _arm(b, design)
        rate = change_rate(design, arm_a, arm_b, 0.95)
        if rate.has_interval:
            assert rate.significant == (rate.low > 0 or rate.high < 0)
            disagreements += rate.significant != difference(design, arm_a, arm_b, 0.95).significant
        else:
            assert rate.significant is None
    # Fieller's and MOVER's intervals are different intervals; each cell's mark is its own interval's.
    assert disagreements < 30


def test_averaging_a_repeated_ordering_keeps_its_seed_variance():
    design = _design([2, 2])
    values = np.array([[1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 1, 0]], dtype=float)
    reported = np.array([0.5, 0.75, 0.25])
    arm = Arm(values, reported, *own_seed_variance(reported))
    assert arm.seed_variance == pytest.approx(np.var(reported, ddof=1)) and arm.seed_df == 2
    twice = average([arm, arm])
    # The same ordering twice is that ordering: not two independent ones with half its seed noise.
    assert twice.seed_variance == pytest.approx(arm.seed_variance) and twice.seed_df == 2
    other = Arm(values[::-1], reported[::-1], *own_seed_variance(reported[::-1]))
    mixed = average([arm, other])  # seed by seed, the two move oppositely here: the mean barely moves
    assert mixed.seed_variance == pytest.approx(np.var((reported + reported[::-1]) / 2, ddof=1))


def test_every_interval_holds_its_estimate_exactly():
    # A score of 100: Wilson's upper end is 1 up to rounding, and a figure's error bar must not go negative.
    rng = np.random.default_rng(5)
    for counts in ([3, 3, 3], [2] * 19, [10, 10, 10]):
        design = _design(counts, MMLU_LAW_WEIGHTS if len(counts) == 3 and counts[0] == 10 else None)
        for p in (0.0, 0.03, 0.5, 0.97, 1.0):
            a = _arm((rng.random(sum(counts)) < p).astype(float), design)
            b = _arm((rng.random(sum(counts)) < 1 - p).astype(float), design)
            s = score_interval(design, a, 0.95)
            assert s.low <= s.value <= s.high
            d = difference(design, a, b, 0.95)
            assert d.low <= d.value <= d.high
            r = change_rate(design, a, b, 0.95)
            assert not r.has_interval or r.low <= r.value <= r.high
    full = _design([4, 4])
    s = score_interval(full, _arm([1.0] * 8, full), 0.95)
    assert s.value == 100.0 and s.high == 100.0
