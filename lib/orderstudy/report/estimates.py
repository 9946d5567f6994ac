"""A study's scores with their intervals, and every comparison between orderings (``intervals.py`` says how).

The point estimate of a score is the result files' score, averaged over the ordering's finished
seeds. Its interval, and the paired interval of a comparison, come from the per-item scores
(``intervals``): the orderings were scored on the same items, and each seed on the same items
too, so every comparison is paired item by item and seed by seed (over the seeds both orderings
finished). A benchmark whose items are too few for an interval has none anywhere, and
``interval_notes`` says why and what it would take.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..core.benchmark import get_benchmark
from ..core.params import ReportParams
from ..core.plan import BASE
from . import intervals
from .changes import change_rate
from .intervals import Arm, Design, Estimate
from .load import Study, bounded, from_base



def items_key(benchmark: str) -> str:
    """Return the params key that sets a benchmark's items per task (the registry's ``items_key``)."""
    try:
        return get_benchmark(benchmark).items_key or "evaluation"
    except KeyError:
        return "evaluation"


@dataclass(frozen=True)
class Comparison:
    """How one benchmark's score changes from ``before`` to ``after`` (orderings, or groups of them for a claim)."""

    before: str
    after: str
    benchmark: str
    before_score: float
    after_score: float
    diff: float  # points (percent of the benchmark)
    diff_ci: tuple[float, float]
    change_pct: float  # (after - before) / before * 100, NaN when undefined
    change_ci: tuple[float, float]
    significant: bool | None  # the difference's interval excludes zero; None when there is no interval
    note: str = ""  # why something is N/A
    seeds: int = 1  # the seeds the comparison is paired over
    seed_sd: float = math.nan  # the difference's standard deviation over those seeds (points)
    diff_se: float = math.nan  # the difference's standard error (points), items and seeds
    # The change rate's own (Fieller) interval excludes zero: the mark printed beside that interval.
    # None when it has none (unbounded: the before score is not distinguishable from 0).
    change_significant: bool | None = None
    # The p-values of those two intervals (intervals.Estimate.p), NaN without one: what multiplicity adjusts.
    p: float = math.nan
    change_p: float = math.nan


@dataclass
class BenchmarkItems:
    """One benchmark's per-item scores, aligned: the same items for every ordering and seed that has them."""

    design: Design
    values: dict[str, dict[int, np.ndarray]]  # ordering -> seed -> item scores in [0, 1], in the design's order
    seeded: dict[str, bool]  # ordering -> whether a stochastic step decided its state
    seed_variance: float  # pooled over the seeded orderings (fraction²): for the record, each arm uses its own
    seed_df: float


@dataclass(frozen=True)
class Estimates:
    """Scores, intervals and comparisons of one study."""

    study: Study
    params: ReportParams
    items: dict[str, BenchmarkItems] = field(repr=False)

    @property
    def confidence(self) -> float:
        return self.params.confidence

    def score(self, ordering: str, benchmark: str) -> float:
        """Return the reported score in percent (the mean over finished seeds), NaN when there is none."""
        return self.study.score(ordering, benchmark)

    def arm(self, ordering: str, benchmark: str, seeds: tuple[int, ...]) -> Arm | None:
        """Return an ordering's item scores on ``seeds`` as an interval's input, None without per-item scores."""
        data = self.items.get(benchmark)
        if data is None or ordering not in data.values or any(s not in data.values[ordering] for s in seeds):
            return None
        by_seed = {s: r.score(benchmark) / data.design.unit for s, r in self.study.runs[ordering].items()}
        reported = np.array([by_seed[s] for s in seeds])
        # A seeded ordering's own seed-to-seed variance, over the seeds compared (intervals.own_seed_variance).
        seed_variance, seed_df = intervals.own_seed_variance(reported) if data.seeded[ordering] else (0.0, 0.0)
        return Arm(np.stack([data.values[ordering][s] for s in seeds]), reported, seed_variance, seed_df)

    def score_estimate(self, ordering: str, benchmark: str) -> Estimate:
        """Return an ordering's score with its interval (over its finished seeds)."""
        seeds = self.study.ok_seeds(ordering)
        arm = self.arm(ordering, benchmark, seeds) if seeds else None
        if arm is None:
            return Estimate(self.score(ordering, benchmark))
        found = intervals.score_interval(self.items[benchmark].design, arm, self.confidence)
        # The reported score (LawBench 2-1 is a corpus-level metric, not an item mean) with the items' interval.
        score = self.score(ordering, benchmark)
        return Estimate(score, min(found.low, score), max(found.high, score), found.se, found.df)

    def score_ci(self, ordering: str, benchmark: str) -> tuple[float, float]:
        estimate = self.score_estimate(ordering, benchmark)
        return estimate.low, estimate.high

    def why_missing(self, ordering: str, benchmark: str) -> str:
        """Return why an ordering has no score on a benchmark ("" when it has one)."""
        status = self.study.status(ordering)
        if ordering not in self.study.orderings:
            return f"{ordering} is not among the study's orderings"
        if status == "failed":
            return f"{ordering} failed ({self.study.results[ordering].error_text()})"
        if status != "ok":
            return f"{ordering} {status}"
        if math.isnan(self.score(ordering, benchmark)):
            return f"{ordering} has no {benchmark} score"
        return ""

    def no_interval_reason(self, benchmark: str) -> str:
        """Return why a benchmark has no intervals at all ("" when it has them)."""
        data = self.items.get(benchmark)
        if data is None:
            return "no per-item scores"
        few = data.design.too_few_items()
        if few:
            shown = ", ".join(few[:6]) + (", …" if len(few) > 6 else "")
            key = items_key(benchmark)
            return (f"{len(few)} of its {len(data.design.tasks)} tasks have fewer than {intervals.MIN_ITEMS_PER_TASK} "
                    f"items ({shown}): how a task's items vary cannot be told from one item, so there is no interval "
                    f"and no significance mark; it needs {intervals.MIN_ITEMS_PER_TASK} or more items in every task "
                    f"({key} ≥ {intervals.MIN_ITEMS_PER_TASK}), more to detect small changes (see the power table)")
        return ""

    def interval_notes(self) -> dict[str, str]:
        """Return, for each benchmark without intervals, why (benchmark -> reason)."""
        return {b: reason for b in self.study.benchmarks if (reason := self.no_interval_reason(b))}

    def compare(self, before: str, after: str, benchmark: str) -> Comparison:
        """Return the change of a benchmark's score from ``before`` to ``after``, with paired intervals."""
        return self.contrast((before,), (after,), benchmark)

    def contrast(self, before: tuple[str, ...], after: tuple[str, ...], benchmark: str,
                 items: np.ndarray | None = None) -> Comparison:
        """Return the mean score of the orderings ``after`` minus that of ``before``, with paired intervals.

        One ordering a side is a plain comparison; several (a claim: quantize-last triples against
        the others) compare the two groups' means, item by item. ``items`` (a boolean mask over the
        benchmark's aligned items, ``split_items``): the comparison on those items alone, its
        scores their weighted item means (not the reported scores, which are on every item).
        """
        before_name, after_name = " + ".join(before), " + ".join(after)
        nan2 = (math.nan, math.nan)
        missing = [reason for o in (*before, *after) if (reason := self.why_missing(o, benchmark))]
        b = float(np.mean([self.score(o, benchmark) for o in before]))
        a = float(np.mean([self.score(o, benchmark) for o in after]))
        if missing:
            return Comparison(before_name, after_name, benchmark, b, a, math.nan, nan2, math.nan, nan2, None, "; ".join(missing))
        if set(before) == set(after):
            return Comparison(before_name, after_name, benchmark, b, a, 0.0, (0.0, 0.0), 0.0, (0.0, 0.0), False,
                              change_significant=False, p=1.0, change_p=1.0)
        seeds = tuple(sorted(set.intersection(*(set(self.study.ok_seeds(o)) for o in (*before, *after)))))
        notes = []
        if not seeds:
            notes.append("no seed finished for every ordering compared")
        # The point estimates: the reported scores, averaged over the seeds the comparison pairs.
        b = float(np.mean([self._mean_over(o, benchmark, seeds) for o in before])) if seeds else b
        a = float(np.mean([self._mean_over(o, benchmark, seeds) for o in after])) if seeds else a
        arms_b = [self.arm(o, benchmark, seeds) for o in before] if seeds else [None]
        arms_a = [self.arm(o, benchmark, seeds) for o in after] if seeds else [None]
        design = self.items[benchmark].design if benchmark in self.items else None
        if items is not None and design is not None and not any(x is None for x in (*arms_a, *arms_b)):
            design = Design(design.tasks, design.task_of[items], design.weights, design.continuous)
            arms_b, arms_a = ([_restricted(x, design, items) for x in arms] for arms in (arms_b, arms_a))
            b = design.unit * float(np.mean([x.estimate for x in arms_b]))
            a = design.unit * float(np.mean([x.estimate for x in arms_a]))
        diff, change = a - b, change_rate(a, b)
        diff_ci = change_ci = nan2
        significant, change_significant, se, seed_sd = None, None, math.nan, math.nan
        p = change_p = math.nan
        if any(x is None for x in (*arms_a, *arms_b)):
            if seeds:
                notes.append("no interval: per-item scores missing")
        elif not self.no_interval_reason(benchmark) and not design.too_few_items():
            # Centred on the reported scores (not the item means: LawBench 2-1 is corpus-level).
            arm_b, arm_a = intervals.average(arms_b), intervals.average(arms_a)
            found = intervals.difference(design, arm_b, arm_a, self.confidence)
            diff_ci, significant, se, p = (found.low, found.high), found.significant, found.se, found.p
            rate = intervals.change_rate(design, arm_b, arm_a, self.confidence)
            change_ci, change_significant = (rate.low, rate.high), rate.significant
            change_p = rate.p  # an unbounded interval's too (above 1 - confidence): the family counts it
            if len(seeds) > 1:
                seed_sd = design.unit * float(np.std(arm_a.reported - arm_b.reported, ddof=1))
            if b > 0 and not rate.has_interval:
                notes.append(f"change-rate interval unbounded: the {before_name} score is not distinguishable from 0")
        if b == 0 and not (from_base(benchmark) and before == (BASE,)):  # a fidelity score is 0 at the base
            notes.append(f"change rate undefined: the {before_name} score is 0")
        partial = [f"{o}: {m}" for o in (*before, *after) if (m := self.study.missing_seeds(o))]
        if partial:
            notes.append("over seeds " + ", ".join(map(str, seeds)) + " only (" + "; ".join(partial) + ")")
        return Comparison(before_name, after_name, benchmark, b, a, diff, diff_ci, change, change_ci, significant,
                          "; ".join(notes), len(seeds), seed_sd, se, change_significant, p, change_p)

    def split_items(self, benchmark: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Return two disjoint halves of a benchmark's items (boolean masks), each task's items alternating between them.

        For a claim whose direction comes from the data: chosen on the first half, tested on the
        second. None when a task has too few items for the second half to give an interval
        (``2 · MIN_ITEMS_PER_TASK``), or without per-item scores.
        """
        data = self.items.get(benchmark)
        if data is None or data.design.items_per_task.min() < 2 * intervals.MIN_ITEMS_PER_TASK:
            return None
        task_of = data.design.task_of
        rank = np.array([int(np.sum(task_of[:i] == t)) for i, t in enumerate(task_of)])
        return rank % 2 == 0, rank % 2 == 1

    def item_mean(self, ordering: str, benchmark: str, items: np.ndarray) -> float:
        """Return an ordering's weighted item mean on ``items`` (a mask), over its finished seeds; NaN without items."""
        seeds = self.study.ok_seeds(ordering)
        arm = self.arm(ordering, benchmark, seeds) if seeds else None
        if arm is None:
            return math.nan
        design = self.items[benchmark].design
        restricted = Design(design.tasks, design.task_of[items], design.weights, design.continuous)
        return design.unit * _restricted(arm, restricted, items).estimate

    def _mean_over(self, ordering: str, benchmark: str, seeds: tuple[int, ...]) -> float:
        return float(np.mean([self.study.runs[ordering][s].score(benchmark) for s in seeds]))


def _restricted(arm: Arm, design: Design, items: np.ndarray) -> Arm:
    """Return ``arm`` on the masked ``items`` (``design`` already restricted): its scores the weighted item means there."""
    values = arm.values[:, items]
    n = np.bincount(design.task_of, minlength=len(design.tasks)).astype(float)
    means = np.stack([np.bincount(design.task_of, row, minlength=len(design.tasks)) for row in values])
    with np.errstate(invalid="ignore", divide="ignore"):
        reported = np.nansum(means / n * design.weights, axis=1) / design.weights[n > 0].sum()
    seeded = arm.seed_variance > 0
    return Arm(values, reported, *(intervals.own_seed_variance(reported) if seeded else (0.0, 0.0)))


def _continuous(benchmark: str, values: dict[str, dict[int, np.ndarray]]) -> bool:
    """Return whether a benchmark's item values are a continuous metric, not proportions.

    The registry says so (a benchmark not ``bounded``: a fidelity
    metric such as a per-document KL divergence, whose score is in its own unit, not percent),
    or its values do (any outside [0, 1]). Its intervals are then t-type on the per-item values
    (``intervals.contrast_interval``) instead of Wilson's and MOVER's, which assume proportions.
    """
    return not bounded(benchmark) or any(((v < 0) | (v > 1)).any() for by_seed in values.values() for v in by_seed.values())


def _align(study: Study, benchmark: str) -> BenchmarkItems | None:
    """Return the benchmark's item scores of every finished run, on the items all of them share."""
    runs = {(o, s): study.items[o][s][benchmark] for o in study.orderings for s in study.ok_seeds(o)
            if benchmark in study.items.get(o, {}).get(s, {}) and not math.isnan(study.runs[o][s].score(benchmark))}
    if not runs:
        return None
    # Pairing needs every run on the same tasks: an ordering with fewer loses its intervals, not the report.
    tasks = set().union(*(set(t) for t in runs.values()))
    for ordering in sorted({o for (o, _), t in runs.items() if set(t) != tasks}):
        lacking = sorted(set().union(*(tasks - set(t) for (o, _), t in runs.items() if o == ordering)))
        warnings.warn(f"{benchmark}: {ordering} lacks per-item scores for {lacking}; its intervals are left out",
                      stacklevel=3)
        runs = {k: v for k, v in runs.items() if k[0] != ordering}
    if not runs:
        return None
    order, task_of = [], []
    tasks = sorted(tasks)
    for index, task in enumerate(tasks):
        every = set.union(*(set(items[task]) for items in runs.values()))
        shared = set.intersection(*(set(items[task]) for items in runs.values()))
        if shared != every:
            warnings.warn(f"{benchmark}/{task}: the runs were scored on different items; the intervals use the "
                          f"{len(shared)} items all of them share (of {len(every)})", stacklevel=3)
        ids = sorted(shared)
        order += [(task, i) for i in ids]
        task_of += [index] * len(ids)
    # The tasks' weights as the result files give them (equal when they do not), the first run's.
    first = study.runs[next(iter(runs))[0]][next(iter(runs))[1]].benchmarks[benchmark]
    weights = first.weights()
    values: dict[str, dict[int, np.ndarray]] = {}
    for (o, s), items in runs.items():
        values.setdefault(o, {})[s] = np.array([items[t][i] for t, i in order], dtype=float)
    continuous = _continuous(benchmark, values)
    design = Design(tuple(tasks), np.array(task_of, dtype=int), np.array([weights.get(t, 0.0) for t in tasks]), continuous)
    if design.weights.sum() > 0:
        design = Design(design.tasks, design.task_of, design.weights / design.weights.sum(), continuous)
    seeded = {}
    for o, by_seed in values.items():
        said = study.results[o].seeded
        varies = len(by_seed) > 1 and len({study.runs[o][s].score(benchmark) for s in by_seed}) > 1
        seeded[o] = said if said is not None else varies
    per_seed = [np.array([study.runs[o][s].score(benchmark) / design.unit for s in sorted(by_seed)])
                for o, by_seed in values.items() if seeded[o] and len(by_seed) > 1]
    seed_variance, seed_df = intervals.pooled_seed_variance(per_seed)
    return BenchmarkItems(design, values, seeded, seed_variance, seed_df)


def estimate(study: Study, params: ReportParams | None = None) -> Estimates:
    """Return the study's scores and comparisons, with intervals where per-item scores allow them."""
    params = params or ReportParams()
    aligned = {b: data for b in study.benchmarks if (data := _align(study, b)) is not None}
    return Estimates(study, params, aligned)
