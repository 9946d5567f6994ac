"""Calibration on simulated studies shaped like the study's real data, at the sizes the demo runs.

Each simulated study scores two orderings A and B on the same sampled items of a benchmark with
its real task weights (stem's 19 subjects and mmlu_law's 3 by their sizes in MMLU, LawBench's
8 demo tasks equally), 3 items a task as the demo samples (and 10 or 20), with subjects that vary
unequally (mmlu_law: professional_law spread out, international_law and jurisprudence near 0),
A and B differing only in stem's four heaviest subjects, LawBench's zero-inflated partial credit,
and with 3 seeds whose noise differs between orderings. Each check counts, over 400 studies
(one binomial standard error of a 95% coverage is about one point), how often the report's 95%
intervals of a score, a difference and a change rate hold the truth (an unbounded change-rate
interval holds it), and how often the mark fires when A and B do not differ; at three
simulation seeds (800 studies where the checks are tight). False marks are held to 7% at each
seed (one seed's 400 studies put a correct 5% mark above 6% about one run in five) and to 6% over
the three seeds together. With the old pooled item variance (``SHRINKAGE_DF`` infinite) mmlu_law's
scores covered 79-81% and stem's concentrated differences drew 11-14% false marks: these fail.

Where a benchmark has few discordant items (mmlu_law: professional_law's few items carry 87% of
the score) the paired interval, like Newcombe's method 10 it generalises, errs wide: coverage
of differences there reaches 99-100% and no interval can be both valid and tighter at 3-10 items
of 0/1 scores; those checks bound coverage below and false marks above, not coverage above.
"""

import functools
import math

import numpy as np
import pytest
from scipy.optimize import brentq

from orderstudy.report import intervals
from orderstudy.report.intervals import Arm, Design, change_rate, detectable_difference, difference, score_interval

STEM_SIZES = np.array([100, 135, 152, 144, 100, 100, 100, 102, 100, 235, 145, 378, 310, 203, 100, 270, 151, 216, 112.0])
LAW_SIZES = np.array([1534, 121, 108.0])  # professional_law, international_law, jurisprudence


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _benchmark(kind, changed_everywhere=False):
    """Return a benchmark's shape: weights, subject offsets and spreads (logit scale), where A and B differ."""
    if kind == "mmlu_law":
        shape = dict(w=LAW_SIZES / LAW_SIZES.sum(), offsets=np.array([0.0, -4.0, -4.0]),
                     spread=np.array([1.5, 0.3, 0.3]), changed=np.array([True, False, False]))
    elif kind == "stem":
        rng = np.random.default_rng(11)
        w = STEM_SIZES / STEM_SIZES.sum()
        offsets, spread = rng.uniform(-3.5, 0.5, 19), rng.uniform(0.2, 1.5, 19)
        heavy = np.argsort(-w)[:4]  # elementary_mathematics, high_school_biology, high_school_mathematics, conceptual_physics
        offsets[heavy], spread[heavy] = [0.0, 0.3, -0.3, 0.2], 1.5
        shape = dict(w=w, offsets=offsets, spread=spread, changed=np.isin(np.arange(19), heavy))
    else:  # LawBench: 8 tasks, equal weights, partial credit with many zeros
        rng = np.random.default_rng(12)
        shape = dict(w=np.full(8, 1 / 8), offsets=rng.uniform(-2, 1, 8), spread=rng.uniform(0.3, 1.5, 8),
                     changed=np.ones(8, bool), zero=rng.uniform(0.2, 0.8, 8))
    if changed_everywhere:
        shape["changed"] = np.ones(len(shape["w"]), bool)
    return shape


def _items(shape, logits, u, z):
    """Return item scores: 0/1 (right with the chance of the logit), or LawBench-like zero-inflated partial credit."""
    p = _sigmoid(logits)
    if "zero" not in shape:
        return (u < p).astype(float)
    zeros = z < shape["zero"][:, None] * (1 - 0.5 * p)
    return np.where(zeros, 0.0, np.clip(p + (u - 0.5) * 0.6, 0, 1))


def _truth(shape, effect, seed_sd):
    """Return the expected scores of A and B (fractions) over items and seeds, by Monte Carlo."""
    rng = np.random.default_rng(99)
    tasks, draws = len(shape["w"]), 20000
    logits = rng.normal(0, 1, (tasks, draws)) * shape["spread"][:, None] + shape["offsets"][:, None]
    logits = logits + rng.normal(0, 1, (1, draws)) * seed_sd
    u, z = rng.random((tasks, draws)), rng.random((tasks, draws))
    return tuple(float(shape["w"] @ _items(shape, logits + shift * shape["changed"][:, None], u, z).mean(axis=1))
                 for shift in (0.0, effect))


def _studies(shape, *, items, seeds, effect, seed_sd, studies, seed, shared, changed_everywhere):
    """Yield the design and each simulated study's arms A and B (see ``simulate``)."""
    w, tasks = shape["w"], len(shape["w"])
    design = Design(tuple(f"t{i}" for i in range(tasks)), np.repeat(np.arange(tasks), items), w)
    rng = np.random.default_rng(seed)
    size = (studies, seeds, tasks, items)
    logits = (rng.normal(0, 1, (studies, 1, tasks, items)) * shape["spread"][:, None] + shape["offsets"][:, None])
    seed_a = rng.normal(0, 1, (studies, seeds))
    seed_b = 0.7 * seed_a + math.sqrt(1 - 0.7**2) * rng.normal(0, 1, (studies, seeds))
    ua, za = rng.random(size), rng.random(size)
    same = rng.random(size) < np.where(shape["changed"] & ~changed_everywhere, 0.0, shared)[:, None]
    ub, zb = np.where(same, ua, rng.random(size)), np.where(same, za, rng.random(size))
    values_a = _items(shape, logits + seed_sd * seed_a[..., None, None], ua, za)
    values_b = _items(shape, logits + seed_sd * seed_b[..., None, None] + effect * shape["changed"][:, None], ub, zb)
    reported_a, reported_b = ((v.mean(axis=-1) * w).sum(axis=-1) for v in (values_a, values_b))  # (studies, seeds)
    for s in range(studies):
        arms = []
        for values, reported in ((values_a[s], reported_a[s]), (values_b[s], reported_b[s])):
            seeded = intervals.own_seed_variance(reported) if seed_sd else (0.0, 0.0)
            arms.append(Arm(values.reshape(seeds, -1), reported, *seeded))
        yield design, arms[0], arms[1]


def simulate(kind, *, items=3, seeds=1, effect=0.0, seed_sd=0.0, studies=400, seed=0, shared=0.7,
             changed_everywhere=False):
    """Return coverage of scores, differences, change rates and the rates of marks, over ``studies`` studies.

    A and B share an item's draw with probability ``shared`` where they do not differ (orderings of
    the same operations answer mostly alike) and never where they do; with ``seed_sd`` a seed moves
    both (correlated 0.7, as orderings with a shared fine-tuned ancestor); each arm's seed
    variance is its own (other orderings' seeds, varying less, do not dilute it).
    """
    shape = _benchmark(kind, changed_everywhere)
    true_a, true_b = _truth(shape, 0.0, seed_sd)[0], _truth(shape, effect, seed_sd)[1]
    counts = dict(score=0, diff=0, rate=0, mark=0, rate_mark=0)
    for design, a, b in _studies(shape, items=items, seeds=seeds, effect=effect, seed_sd=seed_sd, studies=studies,
                                 seed=seed, shared=shared, changed_everywhere=changed_everywhere):
        score = score_interval(design, a, 0.95)
        counts["score"] += score.low <= 100 * true_a <= score.high
        d = difference(design, a, b, 0.95)
        counts["diff"] += d.low <= 100 * (true_b - true_a) <= d.high
        counts["mark"] += bool(d.significant)
        rate = change_rate(design, a, b, 0.95)
        # An unbounded interval (A not distinguishable from 0) holds the truth, and carries no mark.
        counts["rate"] += (not rate.has_interval) or rate.low <= 100 * (true_b / true_a - 1) <= rate.high
        counts["rate_mark"] += bool(rate.significant)
        assert rate.has_interval or rate.significant is None
    return {k: v / studies for k, v in counts.items()}


SCENARIOS = {
    # name: (simulate's settings, score coverage bounds, difference/rate coverage bounds)
    "stem 19x3 by size, A and B differ in its 4 heaviest subjects only":
        (dict(kind="stem", items=3), (0.93, 0.985), (0.93, 0.985)),
    "stem 19x10 by size, A and B differ in its 4 heaviest subjects only":
        (dict(kind="stem", items=10, studies=800), (0.93, 0.985), (0.93, 0.985)),
    "stem 19x3 by size, A and B alike everywhere": (dict(kind="stem", items=3, changed_everywhere=True),
                                                    (0.93, 0.985), (0.93, 1.0)),
    "mmlu_law 3x3 by size, one variable subject and two near 0": (dict(kind="mmlu_law", items=3), (0.93, 1.0), (0.93, 1.0)),
    "mmlu_law 3x10 by size, one variable subject and two near 0": (dict(kind="mmlu_law", items=10), (0.93, 0.995), (0.93, 1.0)),
    "mmlu_law 3x20 by size, one variable subject and two near 0": (dict(kind="mmlu_law", items=20), (0.93, 0.985), (0.93, 1.0)),
    "LawBench 8x3, zero-inflated partial credit": (dict(kind="lawbench", items=3), (0.93, 0.985), (0.93, 1.0)),
    "LawBench 8x10, zero-inflated partial credit": (dict(kind="lawbench", items=10, studies=800), (0.93, 0.985),
                                                    (0.93, 0.985)),
    "stem 19x3, 3 seeds; A's and B's seeds vary more than the other orderings'":
        (dict(kind="stem", items=3, seeds=3, seed_sd=0.5), (0.93, 0.985), (0.93, 0.995)),
    "LawBench 8x3, 3 seeds; A's and B's seeds vary more than the other orderings'":
        (dict(kind="lawbench", items=3, seeds=3, seed_sd=0.5), (0.93, 0.985), (0.93, 1.0)),
}


SIMULATION_SEEDS = (0, 1, 2)
# Each scenario's simulations at each seed, run once for the two tests that read them.
_simulated = functools.lru_cache(maxsize=None)(simulate)


@pytest.mark.parametrize("simulation_seed", SIMULATION_SEEDS)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_intervals_hold_the_truth_and_marks_are_rare_without_a_difference(name, simulation_seed):
    settings, score_bounds, diff_bounds = SCENARIOS[name]
    found = _simulated(**settings, seed=simulation_seed)
    assert score_bounds[0] <= found["score"] <= score_bounds[1], (name, found)
    assert diff_bounds[0] <= found["diff"] <= diff_bounds[1], (name, found)
    assert diff_bounds[0] <= found["rate"] <= diff_bounds[1], (name, found)
    # No true difference: the mark fires on at most 7% of studies, on the difference or on the change
    # rate (nominally 5%; 400 studies put one standard error at 1.1 points: the worst seeds reach 6.5%).
    assert found["mark"] <= 0.07 and found["rate_mark"] <= 0.07, (name, found)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_over_the_simulation_seeds_together_false_marks_stay_at_most_six_percent(name):
    # One seed's 400 studies cannot hold a correct 5% mark to 6% (it exceeds 6% about one run in
    # five: the worst seeds reach 6.5%); the three seeds together (1,200-2,400 studies, one standard
    # error 0.45-0.63 points) can, and there the mark fires at most 6% of the time.
    settings = SCENARIOS[name][0]
    runs = [_simulated(**settings, seed=s) for s in SIMULATION_SEEDS]
    for key in ("mark", "rate_mark"):
        assert np.mean([r[key] for r in runs]) <= 0.06, (name, key, [r[key] for r in runs])


@pytest.mark.parametrize("kind,items", [("stem", 3), ("lawbench", 3), ("stem", 10)])
def test_at_the_minimum_detectable_change_the_mark_fires_with_the_stated_power(kind, items):
    # The power table's way: the typical paired standard error of a pilot study's pairs (root mean
    # square over them), their median degrees of freedom, and the growth of the variance with the change.
    shape = _benchmark(kind, changed_everywhere=True)
    noises = [intervals.pair_noise(design, a, b) for design, a, b in _studies(
        shape, items=items, seeds=1, effect=0.0, seed_sd=0.0, studies=200, seed=7, shared=0.7, changed_everywhere=True)]
    se = math.sqrt(np.mean([n.item + n.seed for n in noises]))
    df, growth = float(np.median([n.df for n in noises])), float(np.mean([n.growth for n in noises]))
    mde = detectable_difference(se, df, 0.95, 0.8, growth)
    # The shift of every item's chance (logit scale) whose true difference is that change.
    effect = brentq(lambda e: 100 * (_truth(shape, e, 0.0)[1] - _truth(shape, e, 0.0)[0]) - mde, 0.0, 8.0)
    marked = [simulate(kind, items=items, effect=effect, seed=s, changed_everywhere=True)["mark"] for s in (0, 1)]
    assert all(0.75 <= m <= 0.85 for m in marked), (mde, marked)
    # The old minimum detectable change, (t + t) · se at the observed se, is found far less often.
    old = detectable_difference(se, df, 0.95, 0.8)
    effect = brentq(lambda e: 100 * (_truth(shape, e, 0.0)[1] - _truth(shape, e, 0.0)[0]) - old, 0.0, 8.0)
    assert simulate(kind, items=items, effect=effect, seed=0, changed_everywhere=True)["mark"] < 0.72
    # Planning agrees with it: the change it detects today needs today's items.
    noise = intervals.PairNoise(se**2, 0.0, df, growth)
    assert intervals.items_needed(_design(shape, items), noise, mde, 0.95, 0.8) == max(items, 2)


def _design(shape, items):
    tasks = len(shape["w"])
    return Design(tuple(f"t{i}" for i in range(tasks)), np.repeat(np.arange(tasks), items), shape["w"])


def test_the_old_pooled_item_variance_fails_these_checks(monkeypatch):
    # Pooling every task's items into one variance (an infinite prior) assumes subjects vary alike.
    monkeypatch.setattr(intervals, "SHRINKAGE_DF", 1e9)
    assert simulate(kind="mmlu_law", items=10)["score"] < 0.9
    assert simulate(kind="stem", items=3)["mark"] > 0.07


def test_a_real_difference_is_marked_more_often_the_more_items_there_are():
    # The same true change (a shift of 0.8 on the logit scale in every subject), 3 and 10 items a subject.
    few = simulate(kind="stem", items=3, effect=0.8, changed_everywhere=True)
    many = simulate(kind="stem", items=10, effect=0.8, changed_everywhere=True)
    assert 0.93 <= few["diff"] and 0.93 <= many["diff"]
    assert 0.3 <= few["mark"] <= 0.55 and many["mark"] >= 0.9, (few, many)  # 0.42 and 0.97 at seed 0
