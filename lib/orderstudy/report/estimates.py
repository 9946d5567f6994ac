"""A study's scores with their bootstrap replicates, and every comparison between two orderings.

The point estimate of a score is the one in the result file. Its replicates come from
``bootstrap.benchmark_draws`` over the per-item scores, shifted so that they vary around the
reported score (they vary around the item mean, which differs from the reported score only for
a corpus-level metric such as LawBench 2-1). A comparison of two orderings (a change) takes the
difference replicate by replicate: the orderings share resampled items, so the interval is paired.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..params import ReportParams
from .bootstrap import Draws, benchmark_draws, excludes_zero, interval
from .changes import change_rate
from .load import Study


@dataclass(frozen=True)
class Comparison:
    """How one benchmark's score changes from ordering ``before`` to ordering ``after``."""

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


@dataclass(frozen=True)
class Estimates:
    """Scores, replicates and intervals of one study."""

    study: Study
    params: ReportParams
    draws: dict[str, Draws] = field(repr=False)

    @property
    def confidence(self) -> float:
        return self.params.confidence

    def score(self, ordering: str, benchmark: str) -> float:
        """Return the reported score in percent, NaN when there is none."""
        return self.study.score(ordering, benchmark)

    def replicates(self, ordering: str, benchmark: str) -> np.ndarray:
        """Return an ordering's bootstrap replicates on a benchmark, all NaN without per-item scores."""
        return self.draws[benchmark].of(ordering) if benchmark in self.draws else np.full(self.params.bootstrap_resamples, np.nan)

    def score_ci(self, ordering: str, benchmark: str) -> tuple[float, float]:
        return interval(self.replicates(ordering, benchmark), self.confidence)

    def why_missing(self, ordering: str, benchmark: str) -> str:
        """Return why an ordering has no score on a benchmark ("" when it has one)."""
        status = self.study.status(ordering)
        if status == "failed":
            return f"{ordering} failed ({self.study.results[ordering].error_text()})"
        if status != "ok":
            return f"{ordering} {status}"
        if math.isnan(self.score(ordering, benchmark)):
            return f"{ordering} has no {benchmark} score"
        return ""

    def compare(self, before: str, after: str, benchmark: str) -> Comparison:
        """Return the change of a benchmark's score from ``before`` to ``after``, with paired intervals."""
        nan2 = (math.nan, math.nan)
        b, a = self.score(before, benchmark), self.score(after, benchmark)
        missing = [reason for reason in (self.why_missing(before, benchmark), self.why_missing(after, benchmark)) if reason]
        if missing:
            return Comparison(before, after, benchmark, b, a, math.nan, nan2, math.nan, nan2, None, "; ".join(missing))
        if before == after:
            return Comparison(before, after, benchmark, b, a, 0.0, (0.0, 0.0), 0.0, (0.0, 0.0), False)
        rb, ra = self.replicates(before, benchmark), self.replicates(after, benchmark)
        diff_ci = interval(ra - rb, self.confidence)
        change_ci = interval(change_rate(ra, rb), self.confidence)
        notes = []
        if np.isnan(rb).all() or np.isnan(ra).all():
            notes.append("no interval: per-item scores missing")
        elif b == 0:
            notes.append(f"change rate undefined: the {before} score is 0")
        elif np.isnan(change_ci[0]):
            notes.append(f"change-rate interval undefined: the {before} score is 0 in some resamples")
        return Comparison(
            before, after, benchmark, b, a, a - b, diff_ci, change_rate(a, b), change_ci,
            excludes_zero(*diff_ci), "; ".join(notes),
        )


def estimate(study: Study, params: ReportParams | None = None) -> Estimates:
    """Return the study's scores with bootstrap replicates for every ordering that has per-item scores."""
    params = params or ReportParams()
    draws = {}
    for benchmark in study.benchmarks:
        items = {
            ordering: study.items[ordering][benchmark]
            for ordering in study.orderings
            if benchmark in study.items.get(ordering, {}) and not math.isnan(study.score(ordering, benchmark))
        }
        # Pairing needs every model on the same tasks: one with fewer loses its intervals, not the report.
        tasks = set().union(*(set(t) for t in items.values()))
        for ordering in [o for o, t in items.items() if set(t) != tasks]:
            warnings.warn(f"{benchmark}: {ordering} lacks per-item scores for {sorted(tasks - set(items[ordering]))}; "
                          "its intervals are left out", stacklevel=2)
            del items[ordering]
        raw = benchmark_draws(items, benchmark=benchmark, resamples=params.bootstrap_resamples, seed=params.bootstrap_seed)
        reported = np.array([study.score(o, benchmark) for o in raw.models])
        draws[benchmark] = Draws(benchmark, raw.models, raw.values + (reported - raw.estimates), reported)
    return Estimates(study, params, draws)
