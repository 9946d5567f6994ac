"""Intervals, paired tests and power for benchmark scores, from per-item scores: honest at every sample size.

**The data.** For one benchmark, every ordering's item scores in [0, 1] on the same items, once
per seed (the study scores every ordering and every seed on one sample). The benchmark's score is
a weighted mean of its tasks' mean item scores (weights ``w_t``: equal for LawBench, by subject
size for the MMLU groups; ``evaluation/scores.py``), so it is a stratified mean, the tasks the strata.

**The variance** of a score (or of a difference, item by item) has two parts:

- items: the within-task spread, **pooled over the tasks** (one estimate with ``sum_t (n_t - 1)``
  degrees of freedom), times ``sum_t w_t² / n_t``. With 2-5 items a task, a task's own variance
  is mostly noise, and zero whenever its items agree: per-task (Welch-Satterthwaite) intervals
  then swing between absurdly wide and zero width. Pooling assumes items of every task vary
  alike, which holds well enough for scores in [0, 1] and gives intervals that keep their
  coverage at those sizes (the calibration tests).
- seeds (several seeds): the seeds' part is the variance a score has from the seed, divided by
  the number of seeds ``S``. It is estimated from the spread of the per-seed scores over the
  seeds (the items are the same in every seed, so that spread holds the seed's effect and the
  item-by-seed noise, not the items' own effect), **pooled over every ordering a stochastic step
  decided** (``pooled_seed_variance``: with 2-3 seeds one ordering's own estimate has 1-2
  degrees of freedom, and Welch-Satterthwaite intervals built on it under-cover). The items'
  part is taken from the seed-averaged item scores, less the item-by-seed noise it also holds
  (estimated from the residuals). The model is the two-way one, ``y = truth + item + seed +
  item×seed noise``: the estimate's variance is ``σ²_item/n + σ²_seed/S + σ²_noise/(nS)``.
  States that no stochastic step decided are the same for every seed and have no seeds' part.
  Degrees of freedom combine by Welch-Satterthwaite.

**The intervals.**

- A score: the Wilson score interval with the effective sample size ``p(1 - p) / variance`` and
  the Student-t quantile of the degrees of freedom above ("Wilson with effective sample size":
  Korn & Graubard 1998; Dean & Pagano 2015, for proportions from stratified samples). Unlike
  ``p ± t·se`` it stays inside [0, 100], does not collapse to zero width when every item agrees,
  and keeps its coverage at low scores.
- A paired difference ``B - A`` (two orderings on the same items and seeds, or two averages of
  orderings): MOVER (Zou & Donner 2008) from the two Wilson intervals and the correlation of the
  two scores (pooled within-task covariance, plus the seeds' covariance). For one task of 0/1
  items this is Newcombe's (1998) hybrid score interval for paired proportions (with the t
  quantile and n - 1 items where Newcombe has z and n: slightly wider), the interval counterpart
  of McNemar's test. **The significance mark is this interval excluding zero.**
- A change rate ``(B - A) / A``: Fieller's interval for the ratio of two paired means; left out
  (unbounded) when A's own interval reaches zero, where no ratio is estimable.
- Power: the smallest difference detectable at power ``1 - β`` and the report's confidence is
  ``(t_{1-α/2, df} + t_{1-β, df}) × se`` of a paired difference (normal theory).

**Why not the bootstrap** the report used before: a percentile bootstrap of a weighted mean
over tasks with few items each under-covers (with 2 items a task a resampled task is one item
twice half the time, so the resamples vary less than the estimate does): in the calibration
simulations its "95%" intervals covered about 80% at 2 items a task, 85-88% at 3 and 92% at 5,
and with one item a task it has zero width.

**Calibration** (``tests/report/test_intervals.py``, simulated studies with a known truth): at
2 items a task over 12-19 tasks (0/1 and partial-credit items), for mmlu_law's three subjects
weighted by size at 10 items, and with 3 seeds and a real seed effect, 95% intervals of scores,
differences and change rates covered the truth 95-99% of the time (wide rather than narrow at
2 items a task) and the mark fired on 1.5-5% of studies with no true difference. Where scores
are near 0 and items few the intervals are conservative (coverage up to 99%).

**No interval** from a benchmark with a task of fewer than 2 items: one item says nothing about
how a task's items vary. ``too_few_items`` says which tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_ITEMS_PER_TASK = 2


@dataclass(frozen=True)
class Design:
    """How a benchmark's items are grouped and weighed: the task of every item, each task's weight."""

    tasks: tuple[str, ...]
    task_of: np.ndarray  # (items,) index into tasks
    weights: np.ndarray  # (tasks,) summing to 1

    @property
    def items_per_task(self) -> np.ndarray:
        return np.bincount(self.task_of, minlength=len(self.tasks))

    @property
    def variance_factor(self) -> float:
        """``sum_t w_t² / n_t``: a pooled item variance times this is the variance of the weighted mean."""
        return float(np.sum(self.weights**2 / self.items_per_task))

    @property
    def effective_items(self) -> float:
        """Kish's effective sample size of the weighted mean: ``1 / sum_t w_t² / n_t``."""
        return 1.0 / self.variance_factor

    @property
    def item_df(self) -> int:
        """Degrees of freedom of the pooled within-task variance: items minus tasks."""
        return int(self.task_of.size - len(self.tasks))

    def too_few_items(self) -> list[str]:
        """Return the tasks with fewer than ``MIN_ITEMS_PER_TASK`` items (no interval while there are any)."""
        return [t for t, n in zip(self.tasks, self.items_per_task) if n < MIN_ITEMS_PER_TASK]

    def centred(self, values: np.ndarray) -> np.ndarray:
        """Return ``values`` (items,) minus their task's mean."""
        means = np.bincount(self.task_of, weights=values, minlength=len(self.tasks)) / self.items_per_task
        return values - means[self.task_of]


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: an ordering (or an average of orderings) on one benchmark, per seed.

    ``seed_variance``: the variance one seed's score has from the seed (fraction²; the study's
    pooled estimate, ``pooled_seed_variance``), 0 for a state that every seed shares; ``seed_df``
    its degrees of freedom.
    """

    values: np.ndarray  # (seeds, items), item scores in [0, 1]
    reported: np.ndarray  # (seeds,), the reported score of each seed as a fraction
    seed_variance: float = 0.0
    seed_df: float = 0.0

    @property
    def estimate(self) -> float:
        return float(self.reported.mean())


def average(arms: list[Arm]) -> Arm:
    """Return the arm whose item scores are the mean of ``arms``' (every arm on the same seeds and items).

    The arms' seed effects are taken as independent here (separate training runs); a shared
    ancestor makes them positively correlated, and then the average's interval errs wide.
    """
    k = len(arms)
    seeded = [a.seed_df for a in arms if a.seed_variance > 0]
    return Arm(np.mean([a.values for a in arms], axis=0), np.mean([a.reported for a in arms], axis=0),
               sum(a.seed_variance for a in arms) / k**2, min(seeded) if seeded else 0.0)


def pooled_seed_variance(per_seed_scores: list[np.ndarray]) -> tuple[float, float]:
    """Return ``(variance, df)``: the seed-to-seed variance of a score, pooled over the seeded orderings' per-seed scores.

    Every ordering that a stochastic step decided contributes its scores' spread over its seeds
    (``S - 1`` degrees of freedom each). Pooling assumes one size of seed noise for every such
    ordering: with 2 or 3 seeds an ordering's own estimate has 1 or 2 degrees of freedom, too few
    to weigh anything against (its t quantile is 12.7 or 4.3, and intervals built on it are
    either absurd or, where its estimate happens to be small, too narrow).

    >>> variance, df = pooled_seed_variance([np.array([0.2, 0.4]), np.array([0.5, 0.5, 0.8])])
    >>> round(variance, 4), df    # (0.02 + 0.06) / (1 + 2)
    (0.0267, 3.0)
    """
    sums = sum(float(np.sum((x - x.mean()) ** 2)) for x in per_seed_scores if x.size > 1)
    df = sum(x.size - 1 for x in per_seed_scores if x.size > 1)
    return (sums / df, float(df)) if df else (0.0, 0.0)


@dataclass(frozen=True)
class Estimate:
    """A score, a difference or a change rate with its interval; units as the quantity's (percent or points)."""

    value: float
    low: float = math.nan
    high: float = math.nan
    se: float = math.nan
    df: float = math.nan
    significant: bool | None = None  # the interval excludes zero (differences and change rates); None: no interval

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))


@dataclass(frozen=True)
class _Variance:
    """Variances and covariance of two arms' estimates (fractions²), split into the items' and the seeds' parts."""

    item: np.ndarray  # 2x2: [[Vaa, Vab], [Vab, Vbb]]
    seed: np.ndarray  # 2x2, zeros with one seed
    item_df: int
    seed_df: int

    @property
    def total(self) -> np.ndarray:
        return self.item + self.seed

    def df(self, weights: np.ndarray) -> float:
        """Return Welch-Satterthwaite's degrees of freedom of the linear combination ``weights`` of the two estimates."""
        vi, vs = float(weights @ self.item @ weights), float(weights @ self.seed @ weights)
        if vi + vs <= 0:
            return float(self.item_df)
        denominator = vi**2 / self.item_df + (vs**2 / self.seed_df if self.seed_df else 0.0)
        return (vi + vs) ** 2 / denominator if denominator > 0 else float(self.item_df)


def _variance(design: Design, a: Arm, b: Arm) -> _Variance:
    """Return the (co)variance of the two arms' estimates (means over items and seeds), by part.

    Items: the pooled within-task (co)variance of the seed-averaged item scores, times
    ``sum_t w_t² / n_t``; with several seeds less the item-by-seed noise it also holds (that noise
    is in the seeds' part: estimated from the residuals, with many degrees of freedom), kept
    positive semi-definite. Seeds: each arm's seed variance over the number of seeds, the two
    arms' seed effects correlated as their item-by-seed residuals are.
    """
    centred = np.stack([design.centred(a.values.mean(axis=0)), design.centred(b.values.mean(axis=0))])
    item = centred @ centred.T / design.item_df * design.variance_factor
    seeds = a.reported.size
    if seeds == 1:
        return _Variance(item, np.zeros((2, 2)), design.item_df, 0)
    # Item-by-seed residuals: what is left of a score once the item's and the seed's (per task) means are out.
    residuals = np.stack([_interaction(design, x.values) for x in (a, b)]).reshape(2, -1)
    noise = residuals @ residuals.T / ((seeds - 1) * design.item_df)
    values, vectors = np.linalg.eigh(item - design.variance_factor * noise / seeds)
    item = vectors @ np.diag(np.clip(values, 0.0, None)) @ vectors.T
    # Two orderings that share a seeded ancestor (F>P>Q and F>Q>P share F) move together from seed
    # to seed; the correlation of their item-by-seed residuals (many degrees of freedom) says how much.
    rho = float(noise[0, 1] / math.sqrt(noise[0, 0] * noise[1, 1])) if noise[0, 0] > 0 and noise[1, 1] > 0 else 0.0
    sd = np.sqrt([a.seed_variance, b.seed_variance])
    seed = np.array([[sd[0] ** 2, rho * sd[0] * sd[1]], [rho * sd[0] * sd[1], sd[1] ** 2]]) / seeds
    seed_df = [x.seed_df for x in (a, b) if x.seed_variance > 0]
    return _Variance(item, seed, design.item_df, min(seed_df) if seed_df else 0)


def _interaction(design: Design, values: np.ndarray) -> np.ndarray:
    """Return the item-by-seed residuals of ``values`` (seeds, items): less each item's mean and each seed's task mean."""
    per_seed = np.stack([design.centred(row) for row in values])  # less each seed's task mean
    return per_seed - per_seed.mean(axis=0, keepdims=True)  # less each item's mean (over seeds)


def _quantile(confidence: float, df: float) -> float:
    return float(stats.t.ppf(0.5 + confidence / 2.0, df))


def wilson(p: float, variance: float, q: float, fallback_n: float) -> tuple[float, float]:
    """Return the Wilson interval of a proportion ``p`` with effective sample size ``p(1-p)/variance`` and quantile ``q``.

    ``fallback_n`` (Kish's effective sample size) stands in when that ratio is undefined: ``p`` is
    0 or 1, or every item agrees.

    >>> [round(x, 4) for x in wilson(0.0, 0.0, 1.96, 20)]
    [0.0, 0.1611]
    """
    n = p * (1.0 - p) / variance if variance > 0 and 0.0 < p < 1.0 else fallback_n
    centre = (p + q * q / (2 * n)) / (1 + q * q / n)
    half = q / (1 + q * q / n) * math.sqrt(max(p * (1 - p) / n + q * q / (4 * n * n), 0.0))
    return max(0.0, centre - half), min(1.0, centre + half)


def score_interval(design: Design, arm: Arm, confidence: float) -> Estimate:
    """Return an arm's score (percent) with its Wilson interval; no interval when a task has fewer than 2 items."""
    p = arm.estimate
    if design.too_few_items():
        return Estimate(100 * p)
    var = _variance(design, arm, arm)
    df = var.df(np.array([1.0, 0.0]))
    low, high = wilson(min(max(p, 0.0), 1.0), float(var.total[0, 0]), _quantile(confidence, df), design.effective_items)
    # The Wilson interval holds p; min/max keep rounding from putting p a hair outside it.
    return Estimate(100 * p, min(100 * low, 100 * p), max(100 * high, 100 * p), 100 * math.sqrt(var.total[0, 0]), df)


def difference(design: Design, a: Arm, b: Arm, confidence: float) -> Estimate:
    """Return ``B - A`` in points with its paired MOVER interval; significant when the interval excludes zero."""
    pa, pb = a.estimate, b.estimate
    d = pb - pa
    if design.too_few_items():
        return Estimate(100 * d)
    var = _variance(design, a, b)
    contrast = np.array([-1.0, 1.0])
    df = var.df(contrast)
    q = _quantile(confidence, df)
    v = var.total
    la, ua = wilson(min(max(pa, 0.0), 1.0), float(v[0, 0]), q, design.effective_items)
    lb, ub = wilson(min(max(pb, 0.0), 1.0), float(v[1, 1]), q, design.effective_items)
    r = float(v[0, 1] / math.sqrt(v[0, 0] * v[1, 1])) if v[0, 0] > 0 and v[1, 1] > 0 else 0.0
    r = min(max(r, -1.0), 1.0)
    low = d - math.sqrt(max((pb - lb) ** 2 + (ua - pa) ** 2 - 2 * r * (pb - lb) * (ua - pa), 0.0))
    high = d + math.sqrt(max((ub - pb) ** 2 + (pa - la) ** 2 - 2 * r * (ub - pb) * (pa - la), 0.0))
    se = math.sqrt(max(float(contrast @ v @ contrast), 0.0))
    return Estimate(100 * d, 100 * low, 100 * high, 100 * se, df, bool(low > 0 or high < 0))


def change_rate(design: Design, a: Arm, b: Arm, confidence: float) -> Estimate:
    """Return ``(B - A) / A`` in percent with Fieller's paired interval; NaN when A is 0, no interval when unbounded."""
    pa, pb = a.estimate, b.estimate
    if pa == 0:
        return Estimate(math.nan)
    value = 100 * (pb / pa - 1)
    if design.too_few_items():
        return Estimate(value)
    var = _variance(design, a, b)
    v = var.total
    ratio = pb / pa
    df = var.df(np.array([-ratio, 1.0]))
    q2 = _quantile(confidence, df) ** 2
    # (B - R·A)² <= q² Var(B - R·A): a quadratic in R whose roots bound the interval.
    qa = pa * pa - q2 * v[0, 0]
    qb = -2 * (pa * pb - q2 * v[0, 1])
    qc = pb * pb - q2 * v[1, 1]
    disc = qb * qb - 4 * qa * qc
    if qa <= 0 or disc < 0:
        return Estimate(value, df=df)  # A is not distinguishable from 0: the ratio has no bounded interval
    roots = sorted(((-qb - math.sqrt(disc)) / (2 * qa), (-qb + math.sqrt(disc)) / (2 * qa)))
    low, high = min(100 * (roots[0] - 1), value), max(100 * (roots[1] - 1), value)  # Fieller's holds B/A
    se = 100 / pa * math.sqrt(max(float(np.array([-ratio, 1.0]) @ v @ np.array([-ratio, 1.0])), 0.0))
    return Estimate(value, low, high, se, df, bool(low > 0 or high < 0))


def detectable_difference(se_points: float, df: float, confidence: float, power: float) -> float:
    """Return the smallest true difference (points) a two-sided test at ``confidence`` detects with ``power``.

    >>> round(detectable_difference(1.0, 1e9, 0.95, 0.8), 2)
    2.8
    """
    if math.isnan(se_points) or math.isnan(df):
        return math.nan
    return (_quantile(confidence, df) + float(stats.t.ppf(power, df))) * se_points


@dataclass(frozen=True)
class PairNoise:
    """What a paired difference's variance is made of (points²): the items' part and the seeds' part."""

    item: float
    seed: float
    df: float


def pair_noise(design: Design, a: Arm, b: Arm) -> PairNoise:
    """Return the variance of ``B - A`` split into its items' and seeds' parts, in points².

    Works with one item a task too (for planning only): the spread of all items around their
    benchmark's mean then stands in for the within-task spread, which overstates it.
    """
    contrast = np.array([-1.0, 1.0])
    if design.too_few_items():
        diffs = b.values.mean(axis=0) - a.values.mean(axis=0)
        item = float(np.var(diffs, ddof=1)) * design.variance_factor if diffs.size > 1 else math.nan
        seeds = a.reported.size
        seed = float(np.var(b.reported - a.reported, ddof=1)) / seeds if seeds > 1 else 0.0
        return PairNoise(1e4 * item, 1e4 * seed, float(diffs.size - 1))
    var = _variance(design, a, b)
    return PairNoise(1e4 * float(contrast @ var.item @ contrast), 1e4 * float(contrast @ var.seed @ contrast),
                     var.df(contrast))


def seeds_needed(noise: PairNoise, seeds: int, target_points: float, confidence: float, power: float) -> int:
    """Return how many seeds the seeds' part alone allows ``target_points`` with (items then have to grow too).

    >>> seeds_needed(PairNoise(item=0.0, seed=4.0, df=10), seeds=3, target_points=5.0, confidence=0.95, power=0.8)
    4
    """
    z = float(stats.norm.ppf(0.5 + confidence / 2) + stats.norm.ppf(power))
    allowed = (target_points / z) ** 2
    return int(math.floor(seeds * noise.seed / allowed)) + 1


def items_needed(design: Design, noise: PairNoise, target_points: float, confidence: float, power: float) -> float:
    """Return how many items per task (the same in every task) would detect ``target_points`` at ``power``; inf if seeds forbid.

    The items' part of the variance shrinks as the items grow, the seeds' part does not (more
    seeds do): when the seeds' part alone exceeds what the target allows, no number of items
    will do. Normal quantiles: a projection, not a promise.
    """
    z = float(stats.norm.ppf(0.5 + confidence / 2) + stats.norm.ppf(power))
    allowed = (target_points / z) ** 2
    if math.isnan(noise.item) or allowed <= noise.seed:
        return math.inf
    scale = noise.item / (allowed - noise.seed)  # how many times today's items
    return max(float(MIN_ITEMS_PER_TASK), math.ceil(scale * float(np.mean(design.items_per_task))))
