"""Bootstrap replicates of benchmark scores, shared by all models so that comparisons are paired.

A benchmark's score is the unweighted mean of its tasks' scores, and a task's score is 100 x the
mean of its items' scores. One bootstrap replicate resamples the items of every task with
replacement (the same number of items as the task has) and takes that macro average again.

Paired: every model of a study is scored on the *same* resampled items in a replicate, because
all models were evaluated on the same items. The difference between two models is then computed
replicate by replicate, so the item-to-item variation they share (an item every model gets
right, or wrong) cancels out, and the interval of a difference is narrower than if each model
were resampled on its own (``paired=False``, kept for comparison).

Resampling with replacement is drawn as multinomial counts (how often each item is picked), so a
whole task is one matrix product: counts (resamples x items) @ scores (items x models).

Approximation: LawBench task 2-1 publishes a corpus-level metric, which is not a mean over
items; its per-item scores are resampled like any other task's, so its interval approximates the
variation of that metric.

The random stream of each task is seeded from (seed, benchmark, task), so an interval does not
change when another benchmark, task or model is added to the study, and the same seed gives the
same intervals.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from typing import Mapping

import numpy as np

# model -> task -> item id -> score in [0, 1], for one benchmark
BenchmarkItems = Mapping[str, Mapping[str, Mapping[str, float]]]


@dataclass(frozen=True)
class Draws:
    """Bootstrap replicates of one benchmark's score for several models, in percent."""

    benchmark: str
    models: tuple[str, ...]
    values: np.ndarray  # shape (resamples, models)
    estimates: np.ndarray  # the macro average of the items actually scored, shape (models,)

    def of(self, model: str) -> np.ndarray:
        """Return the replicates of one model's score (NaN if the model has none)."""
        if model not in self.models:
            return np.full(self.values.shape[0], np.nan)
        return self.values[:, self.models.index(model)]


def _stream(seed: int, *names: str) -> np.random.Generator:
    """Return the random stream for a task: fixed by the seed and the names, independent of anything else."""
    return np.random.default_rng([seed, *(zlib.crc32(name.encode("utf-8")) for name in names)])


def resample_counts(rng: np.random.Generator, n_items: int, resamples: int) -> np.ndarray:
    """Return how often each item is drawn in each replicate: shape (resamples, n_items), rows sum to n_items."""
    return rng.multinomial(n_items, np.full(n_items, 1.0 / n_items), size=resamples)


def _aligned(items: BenchmarkItems, benchmark: str) -> dict[str, tuple[list[str], np.ndarray]]:
    """Return task -> (item ids, scores of shape (models, items)) over the items every model has."""
    models = list(items)
    tasks = sorted({task for per_model in items.values() for task in per_model})
    aligned = {}
    for task in tasks:
        missing = [m for m in models if task not in items[m]]
        if missing:
            raise ValueError(
                f"{benchmark}: task {task!r} has per-item scores for some models but not for {', '.join(missing)}; "
                "every model must be scored on the same items for paired intervals (rerun those orderings' evaluation)"
            )
        ids = set.intersection(*(set(items[m][task]) for m in models))
        every = set.union(*(set(items[m][task]) for m in models))
        if ids != every:
            warnings.warn(
                f"{benchmark}/{task}: the models were scored on different items; the intervals use the "
                f"{len(ids)} items all of them share (of {len(every)})",
                stacklevel=3,
            )
        if not ids:
            raise ValueError(f"{benchmark}/{task}: no item is scored for every model; cannot pair them")
        order = sorted(ids)
        aligned[task] = (order, np.array([[items[m][task][i] for i in order] for m in models], dtype=float))
    return aligned


def benchmark_draws(
    items: BenchmarkItems,
    *,
    benchmark: str,
    resamples: int,
    seed: int,
    paired: bool = True,
) -> Draws:
    """Return bootstrap replicates of each model's macro-averaged score on one benchmark (percent).

    ``items``: model -> task -> item id -> score in [0, 1]. With ``paired`` (the default) every
    model sees the same resampled items in a replicate; without, each model is resampled on its
    own.
    """
    models = tuple(items)
    if not models:
        return Draws(benchmark, (), np.empty((resamples, 0)), np.empty(0))
    total = np.zeros((resamples, len(models)))
    estimates = np.zeros(len(models))
    aligned = _aligned(items, benchmark)
    for task, (ids, scores) in aligned.items():
        n = len(ids)
        rng = _stream(seed, benchmark, task)
        if paired:
            counts = resample_counts(rng, n, resamples)
            total += counts @ scores.T / n
        else:
            for m in range(len(models)):
                total[:, m] += resample_counts(rng, n, resamples) @ scores[m] / n
        estimates += scores.mean(axis=1)
    return Draws(benchmark, models, 100.0 * total / len(aligned), 100.0 * estimates / len(aligned))


def interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """Return the percentile interval ``(low, high)`` of 1-D replicates; NaNs when any replicate is undefined.

    An undefined replicate (a change rate whose base score was 0 in that resample) has no place
    in an ordering of values, so the interval is left undefined rather than silently narrowed.
    """
    replicates = np.asarray(replicates, dtype=float)
    if replicates.size == 0 or np.isnan(replicates).any():
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(replicates, [tail, 100.0 - tail])
    return float(low), float(high)


def excludes_zero(low: float, high: float) -> bool | None:
    """Return whether an interval lies entirely above or below zero, None when it is undefined."""
    if np.isnan(low) or np.isnan(high):
        return None
    return bool(low > 0 or high < 0)
