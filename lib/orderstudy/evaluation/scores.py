"""How a benchmark's task scores become its score, the way the benchmark says (``Benchmark.weights``).

- **LawBench**: the unweighted mean of its tasks' scores, as LawBench's leaderboard reports it.
- **MMLU groups** (``stem``, ``mmlu_law``): by default weighted by subject size, as lm-eval's MMLU
  groups are (``benchmarks/mmlu/benchmark.py`` says what this means for a sample).

``aggregate`` runs once, when an evaluation is summarized, so a stored evaluation holds the
score the report prints. How scores are aggregated decides no item's score, so it is not in the
evaluation's key: a stored evaluation aggregated otherwise than the params now say is
aggregated again when it is read (``Study.stored_evaluation``), and stored so.
"""

from __future__ import annotations

import copy

from ..core.benchmark import get_benchmark


def aggregate(benchmarks: dict, params) -> dict:
    """Return the evaluation's benchmark entries with each score aggregated as ``params`` say.

    Every benchmark gets ``aggregation`` (in words), every task its ``weight`` (and, where the
    weights come from the full data, its ``population``); the benchmark's ``score`` is the
    weighted mean of its task scores.
    """
    out = copy.deepcopy(benchmarks)
    for name, entry in out.items():
        tasks = entry["tasks"]
        if not tasks:
            continue
        spec = get_benchmark(name)
        populations = spec.populations(tasks, params)  # each subject file read once
        for task, size in populations.items():
            tasks[task]["population"] = size
        weights = spec.weights(tasks, params, populations)
        for task, weight in weights.items():
            tasks[task]["weight"] = round(weight, 9)
        entry["score"] = round(sum(weights[t] * tasks[t]["score"] for t in tasks), 6)
        entry["aggregation"] = spec.aggregation(params)
    return out


def is_aggregated_as(benchmarks: dict, params) -> bool:
    """Return whether every benchmark entry was aggregated as ``params`` say now."""
    return all(entry.get("aggregation") == get_benchmark(name).aggregation(params)
               for name, entry in benchmarks.items() if entry.get("tasks"))
