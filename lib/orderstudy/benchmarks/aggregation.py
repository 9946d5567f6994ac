"""How a benchmark's task scores become its score: the way the field reports each benchmark.

- **LawBench**: the unweighted mean of its tasks' scores, as LawBench's leaderboard reports it.
- **MMLU groups** (``stem``, ``mmlu_law``): by default weighted by subject size, as lm-eval's
  MMLU groups are (``weight_by_size: true``: a group's score is its accuracy over all its
  questions). ``evaluation.mmlu_weight_by_size: false`` gives the unweighted mean of the subjects.

What "weighted by subject size" means when only a sample of each subject is scored: a subject's
weight is its number of questions **in the full data** (``N_s``), not in the sample. A sample of
``n_s`` of a subject's ``N_s`` questions estimates that subject's accuracy ``p_s`` over all of
them, so ``sum_s N_s p̂_s / sum_s N_s`` estimates the group's accuracy over all its questions: the
number lm-eval prints for the whole group (stratified sampling's estimator). Weighting by the
sample's sizes instead would, with the same ``n`` per subject, just give the unweighted mean.
With every question scored the two weightings agree and equal lm-eval's. The price of an equal
sample per subject: professional_law (1,534 of mmlu_law's 1,763 questions) weighs 87% of the
mmlu_law score on its few sampled items, so that score's interval is wide (the report says so).
"""

from __future__ import annotations

import copy
from pathlib import Path

from ..core import paths
from ..core.params import EvaluationParams

MMLU_GROUPS = ("stem", "mmlu_law")


def mmlu_subject_sizes(data_dir: Path, subjects) -> dict[str, int]:
    """Return each MMLU subject's number of questions in the full data (``<subject>.jsonl`` lines)."""
    sizes = {}
    for subject in subjects:
        path = Path(data_dir) / f"{subject}.jsonl"
        with open(path, encoding="utf-8") as f:
            sizes[subject] = sum(1 for line in f if line.strip())
    return sizes


def task_weights(benchmark: str, tasks, params: EvaluationParams, sizes: dict[str, int] | None = None) -> dict[str, float]:
    """Return each task's weight in the benchmark's score, summing to 1 (``sizes``: the subjects' sizes, if read already)."""
    tasks = list(tasks)
    if benchmark in MMLU_GROUPS and params.mmlu_weight_by_size:
        sizes = sizes or mmlu_subject_sizes(paths.resolve(params.mmlu_data), tasks)
        total = sum(sizes.values())
        return {t: sizes[t] / total for t in tasks}
    return {t: 1.0 / len(tasks) for t in tasks}


def describe(benchmark: str, params: EvaluationParams) -> str:
    """Return how the benchmark's score is aggregated, in words (recorded in every result)."""
    if benchmark in MMLU_GROUPS and params.mmlu_weight_by_size:
        return "weighted by subject size (questions in the full data), as lm-eval's MMLU groups"
    if benchmark in MMLU_GROUPS:
        return "unweighted mean of the subjects"
    return "unweighted mean of the tasks, as LawBench's leaderboard"


def aggregate(benchmarks: dict, params: EvaluationParams) -> dict:
    """Return the evaluation's benchmark scores with each score aggregated as ``params`` say.

    Every benchmark gets ``aggregation`` (in words), every task its ``weight`` (and for MMLU its
    full-data ``population``); the benchmark's ``score`` is the weighted mean of its task scores.
    """
    out = copy.deepcopy(benchmarks)
    for name, entry in out.items():
        tasks = entry["tasks"]
        if not tasks:
            continue
        sizes = mmlu_subject_sizes(paths.resolve(params.mmlu_data), tasks) if name in MMLU_GROUPS else None
        weights = task_weights(name, tasks, params, sizes)
        for task, size in (sizes or {}).items():
            tasks[task]["population"] = size
        for task, weight in weights.items():
            tasks[task]["weight"] = round(weight, 9)
        entry["score"] = round(sum(weights[t] * tasks[t]["score"] for t in tasks), 6)
        entry["aggregation"] = describe(name, params)
    return out
