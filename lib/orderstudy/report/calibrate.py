"""Do a finished study's intervals hold? The calibration simulation, shaped like that study.

``python -m orderstudy.report calibrate PARAMS`` runs, per benchmark, simulated studies drawn
from the study's own per-item scores (a "plasmode" simulation: the real data are the population):

- **Items**: each simulated study draws, in every task, as many items as the study has there,
  with replacement, from that task's real items (every ordering keeps its own score on a drawn
  item, so pairs stay paired), and weighs the tasks as the result files do. The items' spread,
  the subjects' unequal variances, LawBench's zeros and how often two orderings disagree are
  then the study's own.
- **Seeds**: with ``RESAMPLED_SEEDS`` (5) or more seeds, the seeds are drawn the same way (with
  replacement, the same for both orderings), so each ordering's seed noise is its own. With
  fewer they are kept as they are: three seeds drawn with replacement are all the same one a
  ninth of the time, a seed variance of 0 no real fourth seed gives, which would make the check
  fail intervals that hold. With the seeds kept, the truth is the mean over those seeds and the
  intervals' seed part makes them err wide by that much: the check is then the items' part's.
- **Truth**: the population's, the weighted mean of the real items' scores (over the real
  seeds): what an interval from a study of that size should hold.

Per benchmark it reports, over ``studies`` simulated studies cycling through the study's
order-effect pairs (A, B) (or its comparisons against the base when it has none):

- coverage of A's score, and of B − A and (B − A) / A at the pair's real difference (an
  unbounded change-rate interval counts as holding the truth, as the report prints no bound);
- the false-mark rates: on a **null** made from the same pair by swapping A's and B's scores on
  each drawn item with probability 1/2 (both orderings then have the same truth, the pair's
  discordance stays), how often the difference's and the change rate's marks fire.

At the nominal 95%, coverage near 0.95 and false marks near 0.05 say the intervals hold for a
study shaped like this one; one binomial standard error over 400 studies is about 1.1 points.
Coverage well above 0.95 is the paired intervals erring wide where few items are discordant
(they cannot be tighter and valid there); well below, or false marks well above 0.05, means the
intervals are too narrow for this study's shape.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..core.plan import BASE
from . import intervals, labels
from .changes import order_pairs
from .estimates import Estimates
from .intervals import Arm, Design

RESAMPLED_SEEDS = 5


def _pairs(est: Estimates, benchmark: str) -> list[tuple[str, str]]:
    data = est.items[benchmark]
    ok = [o for o in est.study.orderings if o in data.values and not est.why_missing(o, benchmark)]
    return [p for p in order_pairs(ok)] or [(BASE, o) for o in ok if o != BASE and BASE in ok]


def _weighted(design: Design, values: np.ndarray) -> np.ndarray:
    """Return the weighted mean of task means of ``values`` (..., items)."""
    n = design.items_per_task
    sums = np.stack([np.bincount(design.task_of, row, minlength=len(design.tasks)) for row in values.reshape(-1, values.shape[-1])])
    return (sums / n @ design.weights).reshape(values.shape[:-1])


def calibrate_benchmark(est: Estimates, benchmark: str, studies: int = 400, seed: int = 0) -> dict:
    """Return one benchmark's row: coverage of scores, differences and change rates, and false-mark rates."""
    data = est.items.get(benchmark)
    row = {"benchmark": benchmark}
    if data is None:
        return row | {"note": "no per-item scores"}
    reason = est.no_interval_reason(benchmark)
    design = data.design
    n = design.items_per_task
    row |= {"tasks": len(design.tasks), "items_per_task": f"{n.min()}" if n.min() == n.max() else f"{n.min()}-{n.max()}"}
    if reason:
        return row | {"note": reason}
    pairs = _pairs(est, benchmark)
    common = {p: tuple(sorted(set(data.values[p[0]]) & set(data.values[p[1]]))) for p in pairs}
    pairs = [p for p in pairs if common[p]]
    if not pairs:
        return row | {"note": "no pair of orderings with per-item scores on a common seed"}
    rng = np.random.default_rng(seed)
    confidence = est.confidence
    by_task = [np.flatnonzero(design.task_of == t) for t in range(len(design.tasks))]
    counts = dict(score=0, diff=0, rate=0, mark=0, rate_mark=0)
    for s in range(studies):
        a_name, b_name = pairs[s % len(pairs)]
        seeds = common[(a_name, b_name)]
        a_all = np.stack([data.values[a_name][x] for x in seeds])  # (seeds, items)
        b_all = np.stack([data.values[b_name][x] for x in seeds])
        seeded = data.seeded.get(a_name, False) or data.seeded.get(b_name, False)
        true_a, true_b = float(_weighted(design, a_all).mean()), float(_weighted(design, b_all).mean())
        drawn = np.concatenate([rng.choice(idx, idx.size, replace=True) for idx in by_task])
        resample = seeded and len(seeds) >= RESAMPLED_SEEDS
        rows = rng.choice(len(seeds), len(seeds), replace=True) if resample else np.arange(len(seeds))
        a_values, b_values = a_all[np.ix_(rows, drawn)], b_all[np.ix_(rows, drawn)]
        swap = rng.random(drawn.size) < 0.5
        null_a, null_b = np.where(swap, b_values, a_values), np.where(swap, a_values, b_values)

        def arm(values):
            reported = _weighted(design, values)
            return Arm(values, reported, *(intervals.own_seed_variance(reported) if seeded else (0.0, 0.0)))

        arm_a, arm_b = arm(a_values), arm(b_values)
        unit = design.unit
        score = intervals.score_interval(design, arm_a, confidence)
        counts["score"] += score.low <= unit * true_a <= score.high
        d = intervals.difference(design, arm_a, arm_b, confidence)
        counts["diff"] += d.low <= unit * (true_b - true_a) <= d.high
        if true_a != 0:
            rate = intervals.change_rate(design, arm_a, arm_b, confidence)
            counts["rate"] += (not rate.has_interval) or rate.low <= 100 * (true_b / true_a - 1) <= rate.high
        else:
            counts["rate"] += 1  # no rate of a base at 0: none printed, nothing to miss
        a0, b0 = arm(null_a), arm(null_b)
        counts["mark"] += bool(intervals.difference(design, a0, b0, confidence).significant)
        counts["rate_mark"] += bool(intervals.change_rate(design, a0, b0, confidence).significant)
    return row | {"pairs": len(pairs), "studies": studies, "score_coverage": counts["score"] / studies,
                  "diff_coverage": counts["diff"] / studies, "rate_coverage": counts["rate"] / studies,
                  "diff_false_marks": counts["mark"] / studies, "rate_false_marks": counts["rate_mark"] / studies,
                  "note": ""}


def calibration_table(est: Estimates, studies: int = 400, seed: int = 0) -> pd.DataFrame:
    """Return one row per benchmark of the study (``calibrate_benchmark``)."""
    columns = ["benchmark", "tasks", "items_per_task", "pairs", "studies", "score_coverage", "diff_coverage",
               "rate_coverage", "diff_false_marks", "rate_false_marks", "note"]
    return pd.DataFrame([calibrate_benchmark(est, b, studies, seed) for b in est.study.benchmarks], columns=columns)


def calibration_text(frame: pd.DataFrame, confidence: float) -> str:
    """Return the calibration table as Markdown, with how to read it."""
    from .markdown import is_missing, pipe_table

    header = ["benchmark", "items (tasks × per task)", "pairs", "score coverage", "difference coverage",
              "change-rate coverage", "false marks (difference)", "false marks (change rate)"]
    rows = []
    for _, row in frame.iterrows():
        name = labels.benchmark_name(row["benchmark"])
        if is_missing(row.get("studies")):
            rows.append([name, "", "", "", "", "", "", f"not simulated: {row['note']}"])
            continue
        rows.append([name, f"{int(row['tasks'])} × {row['items_per_task']}", str(int(row["pairs"]))]
                    + [f"{row[c]:.3f}" for c in ("score_coverage", "diff_coverage", "rate_coverage",
                                                  "diff_false_marks", "rate_false_marks")])
    studies = frame["studies"].dropna()
    count = int(studies.iloc[0]) if len(studies) else 0
    se = math.sqrt(confidence * (1 - confidence) / count) if count else math.nan
    legend = (f"{count} simulated studies per benchmark, drawn from this study's own items (and, from "
              f"{RESAMPLED_SEEDS} seeds on, its seeds) with replacement. Coverage: how often the {confidence:.0%} intervals held the truth, nominally "
              f"{confidence:.3f} (one standard error: {se:.3f}); false marks: how often a mark fired on a pair "
              f"without a difference, nominally {1 - confidence:.3f}. Well above nominal coverage: the paired "
              "intervals err wide; below it, or more false marks: they are too narrow for this study's shape.")
    return pipe_table(header, rows) + "\n" + legend + "\n"
