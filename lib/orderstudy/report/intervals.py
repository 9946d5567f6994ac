"""Intervals, paired tests and power for benchmark scores, from per-item scores: honest at every sample size.

**The data.** For one benchmark, every ordering's item scores in [0, 1] on the same items, once
per seed (the study scores every ordering and every seed on one sample). The benchmark's score is
a weighted mean of its tasks' mean item scores (weights ``w_t``: equal for LawBench, by subject
size for the MMLU groups; ``evaluation/scores.py``), so it is a stratified mean, the tasks the strata.

**The variance** of a score (or of a difference, item by item) has two parts:

- items: **the stratified estimator** ``sum_t w_t² S̃_t / n_t``, each task with its own
  within-task variance, and **Satterthwaite's degrees of freedom** of that sum. Subjects do not
  vary alike (mmlu_law's professional_law, 87% of its weight, spreads its items out while
  international_law and jurisprudence sit near 0; two orderings differ on stem's heaviest
  subjects and agree on the rest), and a variance pooled over the tasks and then weighted by
  size is too narrow exactly there (simulated: 79-81% coverage of mmlu_law's "95%" intervals,
  11-14% false marks on stem). **Small tasks, explicitly**: a task's own variance has ``ν_t = n_t - 1`` degrees of
  freedom (1 or 2 at the demo's 2-3 items, and exactly zero whenever its items agree), so it is
  shrunk toward the variance pooled over all tasks with the weight of ``SHRINKAGE_DF = 1``
  degree of freedom: ``S̃_t = (ν_t S_t + ν₀ S_pooled) / (ν_t + ν₀)``. At 2 items a task's own
  estimate weighs 1/2, at 3 items 2/3, at 10 items 9/10, at 20 items 19/20: small tasks borrow
  from the others, large ones speak for themselves. Satterthwaite's degrees of freedom count
  each task's own estimate with its weight in the sum (its own share, and its share of the
  pooled part). ν₀ = 1 was chosen on the calibration below: 0 (no shrinkage) errs wide at
  3 items a task (99-100% coverage of differences), 2 and more err narrow where the variance is
  concentrated in a few heavy subjects. One item a task gives no interval at all (below).
- seeds (several seeds): the seeds' part is the variance a score has from the seed, divided by
  the number of seeds ``S``. It is estimated from the spread of **the ordering's own** per-seed
  scores (``own_seed_variance``, ``S - 1`` degrees of freedom): the items are the same in every
  seed, so that spread holds the seed's effect and the item-by-seed noise, not the items' own
  effect. Orderings' seeds vary by different amounts, and a variance pooled over the orderings
  is too narrow for the pair whose seeds vary most (simulated: 88-92% coverage). The items'
  part is taken from the seed-averaged item scores, less the item-by-seed noise it also holds
  (estimated from the residuals, per task). The model is the two-way one, ``y = truth + item +
  seed + item×seed noise``: the estimate's variance is ``σ²_item/n + σ²_seed/S +
  σ²_noise/(nS)``. States that no stochastic step decided are the same for every seed and have
  no seeds' part. The two parts' degrees of freedom combine by Welch-Satterthwaite.

**The intervals.**

- A score: the Wilson score interval with the effective sample size ``p(1 - p) / variance`` and
  the Student-t quantile of the degrees of freedom above ("Wilson with effective sample size":
  Korn & Graubard 1998; Dean & Pagano 2015, for proportions from stratified samples). Unlike
  ``p ± t·se`` it stays inside [0, 100], does not collapse to zero width when every item agrees,
  and keeps its coverage at low scores.
- A paired difference ``B - A`` (two orderings on the same items and seeds, or two averages of
  orderings): MOVER (Zou & Donner 2008, ``mover``) from the two Wilson intervals and the
  correlation of the two scores. For 0/1 items the covariance carries **Newcombe's correction**
  of φ (``ad - bc - n/2`` where ``ad > bc``), so that for one task this is Newcombe's (1998)
  method 10 for paired proportions, with the t quantile and ``n - 1`` items where Newcombe has z
  and ``n``: never narrower than method 10 (tested on his worked example, the table (59, 6, 16,
  80): −0.1186 to −0.0046, and on random tables). **The difference's mark is this interval
  excluding zero.**
- A change rate ``(B - A) / A``: Fieller's interval for the ratio of two paired means (on the
  same covariance); **its mark is its own interval excluding zero** (the table prints it beside
  that interval; it can disagree with the difference's mark in a few cells, since the two are
  different intervals). When A's own interval reaches zero the ratio has no bounded interval:
  none is given, and **no mark**.
- A continuous metric (``Design.continuous``: a per-document KL divergence, ≥ 0 and unbounded)
  and any linear contrast of arms on the same items (an interaction, ``s(X>Y) - s(X) - s(Y) +
  s(base)``): ``contrast_interval``, the paired t interval of the per-item contrast values (the
  variance above, of those values), in the values' own unit. Values outside [0, 1] on a design of
  proportions are an error, not a clipped Wilson interval. ``paired_difference`` takes any two
  models' per-item values.
- **p-values** (``Estimate.p``, for the multiplicity adjustment, ``multiplicity.py``) invert the
  interval that gives the mark: one less the largest confidence at which it still excludes zero
  (MOVER: by bisection on its quantile; Fieller: where it stops being bounded or stops excluding
  a ratio of 1; t: the t test's), so a mark is exactly ``p < 1 - confidence``.
- Power: ``detectable_difference``, the smallest true difference at which the mark fires with
  probability ``1 - β``: ``δ = (t_{1-α/2, df} + t_{1-β, df}) · se(δ)``, where ``se(δ)`` grows
  with δ (a paired difference of 0/1 items has more discordant items the larger the true
  change; ``PairNoise.growth``). The same t quantiles plan the items and seeds it would take.

**Why not the bootstrap** the report used before: a percentile bootstrap of a weighted mean
over tasks with few items each under-covers (with 2 items a task a resampled task is one item
twice half the time, so the resamples vary less than the estimate does): in the calibration
simulations its "95%" intervals covered about 80% at 2 items a task, 85-88% at 3 and 92% at 5,
and with one item a task it has zero width.

**Calibration** (``tests/report/test_calibration.py``): simulated studies shaped like the real
data (stem's and mmlu_law's real subject weights, subjects that vary unequally, A and B differing
only in stem's heaviest subjects, LawBench's zero-inflated partial credit, seeds that vary more
for the compared pair than for the other orderings) at the demo's 3 items a task and at 10 and
20, three simulation seeds each. Scores are covered 93-98.5% of the time (mmlu_law at 3 items
a task: up to 100%, its score is professional_law's 3 items), differences and change rates at
least 93% and at 10 or more items of stem and LawBench at most 98.5%; at 3 items a task, and
on mmlu_law, the paired intervals err wide (up to 100%: with one or two discordant items
expected, no valid interval is tighter). Without a difference the marks fire on 0-6.5% of
studies at one simulation seed, at most 5.8% over the three together (nominally 5%). At the reported minimum detectable change they fire 75-85% of the time
(for 80% power); the former ``(t + t) · se`` at the observed se was reached 55-70% of the time.

**No interval** from a benchmark with a task of fewer than 2 items: one item says nothing about
how a task's items vary. ``too_few_items`` says which tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_ITEMS_PER_TASK = 2
SHRINKAGE_DF = 1.0


@dataclass(frozen=True)
class Design:
    """How a benchmark's items are grouped and weighed: the task of every item, each task's weight."""

    tasks: tuple[str, ...]
    task_of: np.ndarray  # (items,) index into tasks
    weights: np.ndarray  # (tasks,) summing to 1
    # Item values that are not proportions (a fidelity metric: KL divergence in nats, >= 0 and
    # unbounded): their intervals are t-type on the per-item values (``contrast_interval``), in the
    # values' own unit; proportions (0/1 or partial credit in [0, 1]) get Wilson and MOVER, in percent.
    continuous: bool = False

    @property
    def unit(self) -> float:
        """Return what an item value is multiplied by to be in the reported unit: 100 (percent) or 1."""
        return 1.0 if self.continuous else 100.0

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

    Its seed variance is that of its own per-seed scores (the mean of the arms' scores, seed by
    seed), so an ordering repeated in ``arms`` counts once for each time it appears, with all its
    seed noise (not as independent orderings, which would halve it), and arms that share a
    seeded ancestor move together as they do.
    """
    values, reported = np.mean([a.values for a in arms], axis=0), np.mean([a.reported for a in arms], axis=0)
    if not any(a.seed_variance > 0 for a in arms) or reported.size < 2:
        return Arm(values, reported)
    return Arm(values, reported, *own_seed_variance(reported))


def own_seed_variance(per_seed_scores: np.ndarray) -> tuple[float, float]:
    """Return ``(variance, df)``: the spread of one ordering's per-seed scores (fractions), ``S - 1`` degrees of freedom.

    Each arm carries its own: orderings' seeds vary by different amounts (fine-tuning last moves
    a score more from seed to seed than fine-tuning first), and a pooled estimate is too narrow
    for the orderings whose seeds vary most. Its few degrees of freedom (2 with 3 seeds) enter
    Welch-Satterthwaite's combination with the items' part, which the calibration tests check.

    >>> variance, df = own_seed_variance(np.array([0.5, 0.5, 0.8]))
    >>> round(variance, 4), df
    (0.03, 2.0)
    """
    if per_seed_scores.size < 2:
        return 0.0, 0.0
    return float(np.var(per_seed_scores, ddof=1)), float(per_seed_scores.size - 1)


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
    # The p-value of the same interval: 1 - the largest confidence at which it still excludes zero
    # (``significant`` is ``p < 1 - confidence``); what the multiplicity adjustment works on.
    p: float = math.nan

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))


@dataclass(frozen=True)
class _Variance:
    """Variances and covariance of two arms' estimates (fractions²), split into the items' and the seeds' parts.

    ``item`` is the stratified sum ``sum_t w_t² S̃_t / n_t`` of the tasks' shrunk within-task
    (co)variances ``S̃_t``; ``per_task`` (tasks, 2, 2) holds the ``S̃_t``, ``coefficients`` what
    each task's own raw estimate weighs in ``item`` (its own share and its share of the pooled
    target), ``task_df`` each task's own degrees of freedom: from them Satterthwaite's degrees
    of freedom of any contrast. ``correction`` is Newcombe's continuity correction of the two
    estimates' covariance (fraction²), already taken off ``item``'s covariance where positive.
    """

    item: np.ndarray  # 2x2: [[Vaa, Vab], [Vab, Vbb]]
    seed: np.ndarray  # 2x2, zeros with one seed
    per_task: np.ndarray  # (tasks, 2, 2)
    coefficients: np.ndarray  # (tasks,)
    task_df: np.ndarray  # (tasks,)
    seed_df: float
    correction: float = 0.0

    @property
    def total(self) -> np.ndarray:
        return self.item + self.seed

    def item_df(self, weights: np.ndarray) -> float:
        """Return Satterthwaite's degrees of freedom of the items' part of the contrast ``weights``."""
        own = np.clip(np.einsum("i,tij,j->t", weights, self.per_task, weights), 0.0, None) * self.coefficients
        denominator = float(np.sum(own**2 / self.task_df))
        return float(np.sum(own)) ** 2 / denominator if denominator > 0 else float(np.sum(self.task_df))

    def df(self, weights: np.ndarray) -> float:
        """Return Welch-Satterthwaite's degrees of freedom of the linear combination ``weights`` of the two estimates."""
        vi, vs = float(weights @ self.item @ weights), float(weights @ self.seed @ weights)
        item_df = self.item_df(weights)
        if vi + vs <= 0:
            return item_df
        denominator = (vi**2 / item_df if vi > 0 else 0.0) + (vs**2 / self.seed_df if self.seed_df and vs > 0 else 0.0)
        return (vi + vs) ** 2 / denominator if denominator > 0 else item_df


def _task_sums(design: Design, products: np.ndarray) -> np.ndarray:
    """Return ``products`` (k, items) summed within each task: (k, tasks)."""
    return np.stack([np.bincount(design.task_of, weights=p, minlength=len(design.tasks)) for p in products])


def _as_matrices(triples: np.ndarray) -> np.ndarray:
    """Return (tasks, 2, 2) symmetric matrices from (3, tasks) rows ``[aa, ab, bb]``."""
    aa, ab, bb = triples
    return np.stack([np.stack([aa, ab], axis=-1), np.stack([ab, bb], axis=-1)], axis=-2)


def _variance(design: Design, a: Arm, b: Arm, correct: bool = True) -> _Variance:
    """Return the (co)variance of the two arms' estimates (means over items and seeds), by part.

    Items (the stratified estimator): each task's within-task (co)variance ``S_t`` of the
    seed-averaged item scores (``n_t - 1`` degrees of freedom), with several seeds less that
    task's item-by-seed noise over the seeds (the noise is in the seeds' part); shrunk toward the
    pooled one, ``S̃_t = (ν_t S_t + ν₀ S_pooled) / (ν_t + ν₀)`` with ``ν_t = n_t - 1`` and
    ``ν₀ = SHRINKAGE_DF``; summed as ``sum_t w_t² S̃_t / n_t`` and kept positive semi-definite.
    For 0/1 item scores Newcombe's correction of φ comes off the covariance where it is positive
    (not below zero): ``1 / (2 n (n - 1))`` for one task of ``n`` items (his ``ad - bc - n/2``),
    with Kish's effective number of items for ``n`` in a weighted benchmark. Seeds: each arm's
    own seed variance over the number of seeds, the two arms' seed effects correlated as their
    item-by-seed residuals are.
    """
    n = design.items_per_task.astype(float)
    nu = n - 1.0
    w2n = design.weights**2 / n
    centred = np.stack([design.centred(a.values.mean(axis=0)), design.centred(b.values.mean(axis=0))])
    own = _task_sums(design, np.stack([centred[0] ** 2, centred[0] * centred[1], centred[1] ** 2])) / nu
    seeds = a.reported.size
    noise = None
    if seeds > 1:
        # Item-by-seed residuals: what is left of a score once the item's and the seed's (per task) means are out.
        r = np.stack([_interaction(design, x.values) for x in (a, b)])  # (2, seeds, items)
        per_task_noise = _task_sums(design, np.stack([(r[0] ** 2).sum(0), (r[0] * r[1]).sum(0), (r[1] ** 2).sum(0)]))
        noise = per_task_noise.sum(axis=1) / ((seeds - 1) * nu.sum())  # pooled: many degrees of freedom
        own = own - per_task_noise / ((seeds - 1) * nu) / seeds
    pooled = own @ nu / nu.sum()
    share = nu / (nu + SHRINKAGE_DF)  # how much a task's own estimate weighs in its shrunk one
    shrunk = share * own + (1.0 - share) * pooled[:, None]
    coefficients = w2n * share + nu / nu.sum() * float(np.sum(w2n * (1.0 - share)))
    item = _as_matrices((shrunk * w2n).sum(axis=1)[:, None])[0]
    binary = correct and all(np.isin(x.values, (0.0, 1.0)).all() for x in (a, b))
    correction = design.variance_factor / (2.0 * max(design.effective_items - 1.0, 1.0)) if binary else 0.0
    if item[0, 1] > 0:
        item[0, 1] = item[1, 0] = max(item[0, 1] - correction, 0.0)
    values, vectors = np.linalg.eigh(item)
    item = vectors @ np.diag(np.clip(values, 0.0, None)) @ vectors.T
    per_task = _as_matrices(shrunk)
    if seeds == 1:
        return _Variance(item, np.zeros((2, 2)), per_task, coefficients, nu, 0.0, correction)
    # Two orderings that share a seeded ancestor (F>P>Q and F>Q>P share F) move together from seed
    # to seed; the correlation of their item-by-seed residuals (many degrees of freedom) says how much.
    rho = float(noise[1] / math.sqrt(noise[0] * noise[2])) if noise[0] > 0 and noise[2] > 0 else 0.0
    sd = np.sqrt([a.seed_variance, b.seed_variance])
    seed = np.array([[sd[0] ** 2, rho * sd[0] * sd[1]], [rho * sd[0] * sd[1], sd[1] ** 2]]) / seeds
    seed_df = [x.seed_df for x in (a, b) if x.seed_variance > 0]
    return _Variance(item, seed, per_task, coefficients, nu, float(min(seed_df)) if seed_df else 0.0, correction)


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
        return Estimate(design.unit * p)
    if _continuous(design, arm):
        return contrast_interval(design, [arm], [1.0], confidence)
    var = _variance(design, arm, arm)
    df = var.df(np.array([1.0, 0.0]))
    low, high = wilson(min(max(p, 0.0), 1.0), float(var.total[0, 0]), _quantile(confidence, df), design.effective_items)
    # The Wilson interval holds p; min/max keep rounding from putting p a hair outside it.
    return Estimate(100 * p, min(100 * low, 100 * p), max(100 * high, 100 * p), 100 * math.sqrt(var.total[0, 0]), df)


def mover(pa: float, a_interval: tuple[float, float], pb: float, b_interval: tuple[float, float],
          r: float) -> tuple[float, float]:
    """Return MOVER's interval of ``pb - pa`` from the two estimates' own intervals and their correlation ``r``.

    With Wilson intervals and Newcombe's corrected φ this is Newcombe's (1998) method 10 for paired
    proportions: his worked example, the table (59, 6, 16, 80), gives −0.1186 to −0.0046.

    >>> from scipy.stats import norm
    >>> z, n = norm.ppf(0.975), 161
    >>> wa, wb = wilson(65 / n, 65 / n * 96 / n / n, z, n), wilson(75 / n, 75 / n * 86 / n / n, z, n)
    >>> phi = (59 * 80 - 6 * 16 - n / 2) / math.sqrt(65 * 96 * 75 * 86)
    >>> [round(x, 4) for x in mover(75 / n, wb, 65 / n, wa, phi)]
    [-0.1186, -0.0046]
    """
    (la, ua), (lb, ub) = a_interval, b_interval
    d = pb - pa
    r = min(max(r, -1.0), 1.0)
    low = d - math.sqrt(max((pb - lb) ** 2 + (ua - pa) ** 2 - 2 * r * (pb - lb) * (ua - pa), 0.0))
    high = d + math.sqrt(max((ub - pb) ** 2 + (pa - la) ** 2 - 2 * r * (ub - pb) * (pa - la), 0.0))
    return low, high


def _continuous(design: Design, *arms: Arm) -> bool:
    """Return whether the arms' item values are a continuous metric; values outside [0, 1] on a proportion design are an error."""
    if design.continuous:
        return True
    outside = [x for x in arms if ((x.values < 0) | (x.values > 1)).any()]
    if outside:
        raise ValueError(f"item values outside [0, 1] (from {float(outside[0].values.min()):g} to "
                         f"{float(outside[0].values.max()):g}) on a design of proportions: a metric such as a KL "
                         "divergence needs Design(..., continuous=True), whose intervals do not assume proportions")
    return False


def _p_from_t(value: float, se: float, df: float) -> float:
    if se > 0:
        return float(2 * stats.t.sf(abs(value) / se, df))
    return 1.0 if value == 0 else 0.0


def contrast_interval(design: Design, arms: list[Arm], coefficients, confidence: float) -> Estimate:
    """Return ``sum_k c_k · arm_k`` (in the design's unit) with a paired t interval on the per-item contrast values.

    The arms are on the same items (and seeds): each item's contrast ``sum_k c_k x_k,i`` is one
    value, so the interval clusters by item, and its variance is the stratified one of those
    values (``_variance``: each task its own, shrunk; with several seeds the contrast's own
    per-seed spread); ``estimate ± t_df · se`` with Satterthwaite's degrees of freedom. This is
    the interval of a continuous metric's difference (``difference`` with ``Design.continuous``)
    and of an interaction, ``s(X>Y) - s(X) - s(Y) + s(base)``, for any item values; with 0/1
    items and few items a task it is approximate (the calibration covers proportions' own paths).
    """
    coefficients = np.asarray(coefficients, dtype=float)
    values = np.tensordot(coefficients, np.stack([x.values for x in arms]), axes=1)
    reported = np.tensordot(coefficients, np.stack([x.reported for x in arms]), axes=1)
    value = design.unit * float(reported.mean())
    if design.too_few_items():
        return Estimate(value)
    seeded = any(x.seed_variance > 0 for x in arms) and reported.size > 1
    arm = Arm(values, reported, *(own_seed_variance(reported) if seeded else (0.0, 0.0)))
    var = _variance(design, arm, arm, correct=False)
    df = var.df(np.array([1.0, 0.0]))
    se = design.unit * math.sqrt(max(float(var.total[0, 0]), 0.0))
    half = _quantile(confidence, df) * se
    p = _p_from_t(value, se, df)
    return Estimate(value, value - half, value + half, se, df, bool(p < 1 - confidence), p)


def paired_difference(values_a, values_b, confidence: float = 0.95, task_of=None, weights=None,
                      continuous: bool = True) -> Estimate:
    """Return ``B - A`` with its paired interval from any per-item values (items,) or (seeds, items) of two models.

    ``task_of`` (items,) and ``weights`` (tasks,) group the items into weighted tasks (default:
    one task). ``continuous`` (default): a t interval on the per-item differences in the values'
    own unit (a per-document KL divergence, a flip indicator read as a mean); ``False``: the
    values are proportions in [0, 1] and the difference is in points with the paired MOVER interval.

    One task of items is the textbook paired t interval: mean 0.55, sd 0.129, ``t_{0.975, 3} = 3.182``.

    >>> d = paired_difference([0.0, 0.0, 0.0, 0.0], [0.5, 0.7, 0.4, 0.6])
    >>> round(d.value, 3), round(d.low, 3), round(d.high, 3), d.significant
    (0.55, 0.345, 0.755, True)
    """
    a, b = (np.atleast_2d(np.asarray(v, dtype=float)) for v in (values_a, values_b))
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: the two models' values must be on the same items and seeds, "
                         f"got shapes {a.shape} and {b.shape}")
    items = a.shape[1]
    task_of = np.zeros(items, dtype=int) if task_of is None else np.asarray(task_of, dtype=int)
    tasks = int(task_of.max()) + 1
    weights = np.full(tasks, 1.0 / tasks) if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
    design = Design(tuple(f"t{i}" for i in range(tasks)), task_of, weights, continuous)
    n = design.items_per_task

    def arm(values):
        reported = np.array([weights @ (np.bincount(task_of, row, minlength=tasks) / n) for row in values])
        return Arm(values, reported, *own_seed_variance(reported))

    return difference(design, arm(a), arm(b), confidence)


def _mover_interval(design: Design, var: _Variance, pa: float, pb: float, q: float) -> tuple[float, float]:
    v = var.total
    wa = wilson(pa, float(v[0, 0]), q, design.effective_items)
    wb = wilson(pb, float(v[1, 1]), q, design.effective_items)
    r = float(v[0, 1] / math.sqrt(v[0, 0] * v[1, 1])) if v[0, 0] > 0 and v[1, 1] > 0 else 0.0
    return mover(pa, wa, pb, wb, r)


def _mover_p(design: Design, var: _Variance, pa: float, pb: float, shift: float, df: float) -> float:
    """Return the p-value of the MOVER interval: ``2 t_df(-q*)`` for the quantile ``q*`` at which it just touches zero."""
    d = pb - pa + shift

    def excludes(q):
        low, high = _mover_interval(design, var, pa, pb, q)
        return low + shift > 0 or high + shift < 0

    if d == 0 or not excludes(1e-9):
        return 1.0
    low, high = 0.0, 1.0
    while excludes(high):
        low, high = high, 2 * high
        if high > 1e4:
            return float(2 * stats.t.sf(high, df))
    for _ in range(60):  # the interval widens with q: bisect where it reaches zero
        middle = (low + high) / 2
        low, high = (middle, high) if excludes(middle) else (low, middle)
    return float(2 * stats.t.sf((low + high) / 2, df))


def difference(design: Design, a: Arm, b: Arm, confidence: float) -> Estimate:
    """Return ``B - A`` in points with its paired MOVER interval; significant when the interval excludes zero.

    Continuous item values (``Design.continuous``) take ``contrast_interval``, in their own unit.
    """
    pa, pb = a.estimate, b.estimate
    d = pb - pa
    if design.too_few_items():
        return Estimate(design.unit * d)
    if _continuous(design, a, b):
        return contrast_interval(design, [a, b], [-1.0, 1.0], confidence)
    var = _variance(design, a, b)
    contrast = np.array([-1.0, 1.0])
    df = var.df(contrast)
    q = _quantile(confidence, df)
    v = var.total
    pa, pb = min(max(pa, 0.0), 1.0), min(max(pb, 0.0), 1.0)
    low, high = _mover_interval(design, var, pa, pb, q)
    # Clipping a score into [0, 1] must not move the interval off the estimate.
    shift = d - (pb - pa)
    low, high = low + shift, high + shift
    se = math.sqrt(max(float(contrast @ v @ contrast), 0.0))
    p = _mover_p(design, var, pa, pb, shift, df)
    return Estimate(100 * d, 100 * low, 100 * high, 100 * se, df, bool(low > 0 or high < 0), p)


def change_rate(design: Design, a: Arm, b: Arm, confidence: float) -> Estimate:
    """Return ``(B - A) / A`` in percent with Fieller's paired interval; NaN when A is 0, no interval when unbounded."""
    pa, pb = a.estimate, b.estimate
    if pa == 0:
        return Estimate(math.nan)
    value = 100 * (pb / pa - 1)
    if design.too_few_items():
        return Estimate(value)
    _continuous(design, a, b)  # a continuous metric's rate is Fieller's too; values outside [0, 1] need it declared
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
        # A is not distinguishable from 0: the ratio has no bounded interval, and no mark (significant None).
        return Estimate(value, df=df)
    roots = sorted(((-qb - math.sqrt(disc)) / (2 * qa), (-qb + math.sqrt(disc)) / (2 * qa)))
    low, high = min(100 * (roots[0] - 1), value), max(100 * (roots[1] - 1), value)  # Fieller's holds B/A
    se = 100 / pa * math.sqrt(max(float(np.array([-ratio, 1.0]) @ v @ np.array([-ratio, 1.0])), 0.0))
    # The mark is this interval's own (it is what the table prints beside the rate), not the difference's.
    # Its p-value inverts the same interval: it is bounded while q < A / sd(A), and excludes a ratio
    # of 1 while q < |B - A| / sd(B - A); the larger confidence at which both hold is where it stops.
    sd_a, sd_d = math.sqrt(max(float(v[0, 0]), 0.0)), math.sqrt(max(float(v[0, 0] - 2 * v[0, 1] + v[1, 1]), 0.0))
    q_star = min(pa / sd_a if sd_a > 0 else math.inf, abs(pb - pa) / sd_d if sd_d > 0 else (math.inf if pb != pa else 0.0))
    p = float(2 * stats.t.sf(q_star, df)) if pb != pa else 1.0
    return Estimate(value, low, high, se, df, bool(low > 0 or high < 0), p)


def detectable_difference(se_points: float, df: float, confidence: float, power: float, growth: float = 0.0) -> float:
    """Return the smallest true difference (points) that the report's mark finds with probability ``power``.

    A paired difference's standard error is not the same at every true difference: on 0/1 items
    it grows with it (an item's paired difference ``B - A`` has variance ``π - δ²`` where π is the
    share of items the two score differently, and a true change ``δ`` makes π at least ``δ``).
    ``se_points`` is the standard error the study observes (of pairs whose differences are mostly
    small); at a true difference ``δ`` (points) the variance is taken as
    ``se² + growth · δ (100 - δ)`` with ``growth = sum_t w_t² / n_t`` (the items' variance factor,
    ``Design.variance_factor``; 0 leaves it constant), and the smallest δ with
    ``δ = (t_{1-α/2, df} + t_{power, df}) · se(δ)`` is returned (a quadratic). The mark fires when
    the interval excludes zero, i.e. about when the estimate exceeds ``t_{1-α/2} · se(δ)``, which
    at that δ happens with probability ``power`` (the calibration test simulates it).

    >>> round(detectable_difference(1.0, 1e9, 0.95, 0.8), 2)
    2.8
    >>> round(detectable_difference(1.0, 1e9, 0.95, 0.8, growth=1 / 50), 2)   # 50 items: at 14 points se is 5
    14.05
    """
    if math.isnan(se_points) or math.isnan(df):
        return math.nan
    q = _power_quantile(confidence, power, df)
    if growth <= 0:
        return q * se_points
    # δ² = q² (se² + g δ (100 - δ))  ->  (1 + q² g) δ² - 100 q² g δ - q² se² = 0
    a, b, c = 1.0 + q * q * growth, -100.0 * q * q * growth, -q * q * se_points**2
    return (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)


# How much of ``sum_t w_t² / n_t · δ (1 - δ)`` a true change δ adds to a paired difference's variance:
# half for 0/1 items (a shift of the items' chances turns some discordant items concordant as it makes
# others discordant), a fifth for partial credit (smaller steps, many zeros). Calibrated so that at
# the minimum detectable change the mark fires with the stated power (tests/report/test_calibration.py).
GROWTH_BINARY, GROWTH_PARTIAL = 0.5, 0.2


@dataclass(frozen=True)
class PairNoise:
    """What a paired difference's variance is made of (points²): the items' part and the seeds' part.

    ``growth``: how the items' part grows with the true difference δ (points): by ``growth · δ (100 - δ)``.
    """

    item: float
    seed: float
    df: float
    growth: float = 0.0


def _growth(design: Design, a: Arm, b: Arm) -> float:
    if design.continuous:
        return 0.0  # a continuous metric's spread is not a proportion's, which grows with the change
    binary = all(np.isin(x.values, (0.0, 1.0)).all() for x in (a, b))
    return (GROWTH_BINARY if binary else GROWTH_PARTIAL) * design.variance_factor


def pair_noise(design: Design, a: Arm, b: Arm) -> PairNoise:
    """Return the variance of ``B - A`` split into its items' and seeds' parts, in points² (a continuous metric: its unit²).

    Works with one item a task too (for planning only): the spread of all items around their
    benchmark's mean then stands in for the within-task spread, which overstates it.
    """
    contrast = np.array([-1.0, 1.0])
    unit2 = design.unit**2  # points² for proportions, the metric's own unit² for a continuous one
    if design.too_few_items():
        diffs = b.values.mean(axis=0) - a.values.mean(axis=0)
        item = float(np.var(diffs, ddof=1)) * design.variance_factor if diffs.size > 1 else math.nan
        seeds = a.reported.size
        seed = float(np.var(b.reported - a.reported, ddof=1)) / seeds if seeds > 1 else 0.0
        return PairNoise(unit2 * item, unit2 * seed, float(diffs.size - 1), _growth(design, a, b))
    var = _variance(design, a, b)
    return PairNoise(unit2 * float(contrast @ var.item @ contrast), unit2 * float(contrast @ var.seed @ contrast),
                     var.df(contrast), _growth(design, a, b))


def _power_quantile(confidence: float, power: float, df: float) -> float:
    """Return ``t_{1-α/2, df} + t_{power, df}``: the quantiles of the minimum detectable change, used throughout."""
    return _quantile(confidence, df) + float(stats.t.ppf(power, df))


def seeds_needed(noise: PairNoise, seeds: int, target_points: float, confidence: float, power: float) -> int:
    """Return how many seeds the seeds' part alone allows ``target_points`` with (items then have to grow too).

    >>> seeds_needed(PairNoise(item=0.0, seed=4.0, df=1e9), seeds=3, target_points=5.0, confidence=0.95, power=0.8)
    4
    """
    allowed = (target_points / _power_quantile(confidence, power, noise.df)) ** 2
    return int(math.floor(seeds * noise.seed / allowed)) + 1


def items_needed(design: Design, noise: PairNoise, target_points: float, confidence: float, power: float) -> float:
    """Return how many items per task (the same in every task) would detect ``target_points`` at ``power``; inf if seeds forbid.

    The items' part of the variance (and its growth with the true difference) shrinks as the
    items grow, the seeds' part does not (more seeds do): when the seeds' part alone exceeds what
    the target allows, no number of items will do. The quantiles are the minimum detectable
    change's, at today's degrees of freedom (more items would have more: a cautious projection),
    so that the target equal to today's minimum detectable change needs today's items.
    """
    allowed = (target_points / _power_quantile(confidence, power, noise.df)) ** 2
    if math.isnan(noise.item) or allowed <= noise.seed:
        return math.inf
    # (item + growth · T (100 - T)) / k + seed <= allowed: k times today's items
    scale = (noise.item + noise.growth * target_points * (100.0 - target_points)) / (allowed - noise.seed)
    return max(float(MIN_ITEMS_PER_TASK), math.ceil(scale * float(np.mean(design.items_per_task)) - 1e-9))
