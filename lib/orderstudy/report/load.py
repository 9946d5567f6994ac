"""Finished result files, read through the result schema (``core/results.py``).

One file per run, ``outputs/<study>/results/<ordering>.json`` (``F>P>Q`` -> ``F-P-Q.json``), or,
in a study of several seeds, one per ordering and seed (``F-P-Q.seed1.json``); beside it a
per-item scores file named by its ``items_file`` key. A malformed file raises ``ResultFileError``
naming the file, the key and what was expected; a planned ordering without a file has not run
yet, which is not an error (``Study.status`` says ``not run``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core import results as schema
from ..core.benchmark import names as benchmark_names, trait
from ..core.paths import StudyPaths, parse_run_filename
from ..core.plan import all_orderings, format_ordering, parse_ordering
from . import labels
from .changes import reference_rank

ResultFileError = schema.ResultFileError
read_json_file = schema.read_json_file
NOT_RUN = "not run"


# A task's and a benchmark's score as the result file holds them (the schema's models).
TaskScore = schema.TaskResult
BenchmarkScore = schema.BenchmarkResult


@dataclass(frozen=True)
class Result:
    """One ordering's result file, validated."""

    path: Path
    ordering: str
    seed: int | None  # the run's seed (None in a result written before seed repeats)
    status: str  # "ok" or "failed"
    error: dict | None  # {"type", "message", "traceback"?, "step"?} when failed
    size_bytes: int | None
    n_params: int | None
    quantized: bool | None
    benchmarks: dict[str, BenchmarkScore]
    items_file: str | None
    steps: list[dict] = field(default_factory=list)
    raw: dict = field(default_factory=dict, repr=False)
    weights_bytes: int | None = None  # the weight files alone (None in older results)
    base_bf16_weights_bytes: int | None = None  # what the base weighs in bf16

    @property
    def seeded(self) -> bool | None:
        """Whether a stochastic step decided the final state (it differs by seed); None when the file does not say."""
        if not self.steps or "seed" not in self.steps[-1]:
            return None
        return self.steps[-1]["seed"] is not None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def score(self, benchmark: str) -> float:
        """Return the benchmark's score in percent, NaN when the ordering has none."""
        entry = self.benchmarks.get(benchmark)
        return entry.score if entry is not None else math.nan

    def error_text(self) -> str:
        """Return the failure in one line: ``OutOfMemoryError at F>P: CUDA out of memory``, empty when ok."""
        if not self.error:
            return ""
        where = f" at {self.error['step']}" if self.error.get("step") else ""
        message = " ".join(str(self.error.get("message", "")).split())
        return f"{self.error.get('type', 'Error')}{where}: {message}"


# Per-item scores of one model: benchmark -> task -> item id -> score in [0, 1].
Items = dict[str, dict[str, dict[str, float]]]


@dataclass(frozen=True)
class Study:
    """A study's finished results: which orderings were planned, ran, failed, and their scores."""

    name: str
    dir: Path
    orderings: tuple[str, ...]  # planned or found, in the reference row order
    benchmarks: tuple[str, ...]
    runs: dict[str, dict[int, Result]]  # ordering -> seed -> its result file
    items: dict[str, dict[int, Items]]  # ordering -> seed -> per-item scores
    seeds: tuple[int, ...] = (0,)  # the study's seeds
    # Result files read but not reported, each with why (made by other params): path -> reason.
    left_out: dict[Path, str] = field(default_factory=dict)

    @property
    def results(self) -> dict[str, Result]:
        """Return one result per ordering that has any: its first finished seed's, else its first seed's.

        What every seed shares (size on disk, parameters, quantization) is read from it.
        """
        out = {}
        for ordering, by_seed in self.runs.items():
            ok = [r for _, r in sorted(by_seed.items()) if r.ok]
            out[ordering] = ok[0] if ok else by_seed[min(by_seed)]
        return out

    def ok_seeds(self, ordering: str) -> tuple[int, ...]:
        """Return the seeds whose run of ``ordering`` finished."""
        return tuple(s for s, r in sorted(self.runs.get(ordering, {}).items()) if r.ok)

    def status(self, ordering: str) -> str:
        """Return ``ok`` (some seed finished), ``failed`` (none did, some failed) or ``not run``."""
        by_seed = self.runs.get(ordering, {})
        if not by_seed:
            return NOT_RUN
        return "ok" if any(r.ok for r in by_seed.values()) else "failed"

    def missing_seeds(self, ordering: str) -> str:
        """Return which of the study's seeds an ordering that finished lacks, and why ("" when none)."""
        if self.status(ordering) != "ok":
            return ""
        by_seed = self.runs.get(ordering, {})
        parts = [f"seed {s} {'failed (' + by_seed[s].error_text() + ')' if s in by_seed else 'not run'}"
                 for s in self.seeds if s not in self.ok_seeds(ordering)]
        return "; ".join(parts)

    def seed_scores(self, ordering: str, benchmark: str) -> np.ndarray:
        """Return the ordering's score on a benchmark for each finished seed, in percent (empty when none)."""
        values = [r.score(benchmark) for s, r in sorted(self.runs.get(ordering, {}).items()) if r.ok]
        return np.array([v for v in values if not math.isnan(v)])

    @property
    def base_provenance(self) -> dict | None:
        """Return where the base model comes from, as the first result that records it says (None when none does)."""
        return next((r.raw["provenance"] for r in self.results.values() if r.raw.get("provenance")), None)

    def project_written_tasks(self) -> dict[str, str]:
        """Return the LawBench tasks scored here whose items are not LawBench's, each with its source.

        Every result records where each task's items come from (``lawbench_sources``: the
        packaged data lacks 1-2, 2-8 and 3-6, and items written for this project stand in).
        """
        scored = {t for r in self.results.values() if r.ok and "lawbench" in r.benchmarks for t in r.benchmarks["lawbench"].tasks}
        out = {}
        for result in self.results.values():
            for task, source in (result.raw.get("lawbench_sources") or {}).items():
                if task in scored and isinstance(source, dict) and source.get("lawbench") is False:
                    out.setdefault(task, str(source.get("source", "")))
        return dict(sorted(out.items(), key=lambda kv: [int(p) for p in kv[0].split("-")]))

    def lawbench_own_score(self, ordering: str, written: set[str]) -> float:
        """Return LawBench's score over LawBench's own tasks only (the unweighted mean of the others), mean over seeds; NaN when none."""
        values = []
        for _, result in sorted(self.runs.get(ordering, {}).items()):
            entry = result.benchmarks.get("lawbench") if result.ok else None
            own = [t.score for name, t in (entry.tasks.items() if entry else ()) if name not in written]
            if own:
                values.append(sum(own) / len(own))
        return float(np.mean(values)) if values else math.nan

    def capped_tasks(self) -> dict[str, dict[str, TaskScore]]:
        """Return, per benchmark, the tasks whose generation budget was capped below their answers' length.

        Every ordering of a study shares one evaluation suite, so a task capped in one result is
        capped in all; the first finished result that lists it is shown.
        """
        capped: dict[str, dict[str, TaskScore]] = {}
        for result in self.results.values():
            for benchmark, entry in (result.benchmarks if result.ok else {}).items():
                for task, score in entry.tasks.items():
                    if score.capped:
                        capped.setdefault(benchmark, {}).setdefault(task, score)
        return capped

    def score(self, ordering: str, benchmark: str) -> float:
        """Return a score in percent (the mean over finished seeds), NaN for an ordering that failed, did not run, or lacks the benchmark.

        A failed run may have scored some benchmarks before failing; those partial scores stay in
        its result file and out of the tables, which compare finished models only.
        """
        scores = self.seed_scores(ordering, benchmark)
        return float(scores.mean()) if scores.size else math.nan

    def seed_sd(self, ordering: str, benchmark: str) -> float:
        """Return the standard deviation of an ordering's score over its finished seeds (NaN with fewer than 2)."""
        scores = self.seed_scores(ordering, benchmark)
        return float(scores.std(ddof=1)) if scores.size > 1 else math.nan


def parse_result(data: Any, path: Path, *, study: str | None = None, ordering: str | None = None) -> Result:
    """Return the validated result in ``data`` (read from ``path``), or raise ``ResultFileError``.

    ``study`` and ``ordering``, when given, are what the file's location says it must contain.
    """
    parsed = schema.parse(data, path)
    if study is not None and parsed.study != study:
        raise schema.problem(path, "study", f"{study!r}, the study whose results directory holds the file", parsed.study)
    found_ordering = format_ordering(parse_ordering(parsed.ordering))
    if ordering is not None and found_ordering != ordering:
        raise schema.problem(path, "ordering", f"{ordering!r}, the ordering the file name stands for", parsed.ordering)
    return Result(path, found_ordering, parsed.seed, parsed.status, data.get("error"), parsed.size_bytes,
                  parsed.n_params, parsed.quantized, dict(parsed.benchmarks or {}), parsed.items_file,
                  data.get("steps") or [], data, parsed.weights_bytes, parsed.base_bf16_weights_bytes)


def load_result(path: Path, *, study: str | None = None, ordering: str | None = None) -> Result:
    """Return the validated result file at ``path``."""
    path = Path(path)
    return parse_result(read_json_file(path), path, study=study, ordering=ordering)


def bounded(benchmark: str) -> bool:
    """Return whether a benchmark's item scores lie in [0, 1] (every one but a divergence; unknown ones are)."""
    return trait(benchmark, "bounded")


def higher_is_better(benchmark: str) -> bool:
    """Return whether a higher score is better (an accuracy; not a divergence from the base, nor a share of flips)."""
    return trait(benchmark, "higher_is_better")


def unit(benchmark: str) -> str:
    """Return what a benchmark's score is counted in (``%`` for every proportion; a divergence's own unit)."""
    return trait(benchmark, "unit")


def from_base(benchmark: str) -> bool:
    """Return whether a benchmark's score is itself a distance from the base (fidelity): no change rate against it."""
    return trait(benchmark, "from_base")


def load_items(path: Path) -> Items:
    """Return the per-item scores in ``path`` (benchmark -> task -> item id -> score in [0, 1])."""
    path = Path(path)
    data = read_json_file(path)
    if not isinstance(data, dict):
        raise schema.problem(path, "(top level)", "an object of benchmark -> task -> item id -> score", type(data).__name__)
    items: Items = {}
    for benchmark, tasks in data.items():
        if not isinstance(tasks, dict):
            raise schema.problem(path, benchmark, "an object of task -> item id -> score", tasks)
        items[benchmark] = {}
        for task, scores in tasks.items():
            if not isinstance(scores, dict) or not scores:
                raise schema.problem(path, f"{benchmark}.{task}", "a non-empty object of item id -> score in [0, 1]", scores)
            top = 1.0 if bounded(benchmark) else math.inf   # a divergence (kl) is any value >= 0
            for item_id, value in scores.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= top:
                    raise schema.problem(path, f"{benchmark}.{task}.{item_id}",
                                         "a score in [0, 1]" if top == 1.0 else "a value >= 0", value)
            items[benchmark][task] = {str(k): float(v) for k, v in scores.items()}
    return items


def study_benchmarks(results, planned: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Return the benchmarks to report: the planned ones, else those any result has, known ones first."""
    if planned:
        return tuple(planned)
    found = {name for result in results for name in result.benchmarks}
    # The registry's order (core/benchmark.py), whatever order a file lists them in; unknown ones after.
    known = benchmark_names()
    return tuple(b for b in known if b in found) + tuple(sorted(found - set(known)))


def other_params(result: Result, current_keys: dict[str, str] | None) -> str:
    """Return why a result was made by other params than the current ones ("" when it was not, or when no keys are given).

    ``current_keys``: per result file name, the result key the current params give that run
    (``Study.current_result_keys``). The key covers the states, the evaluation suite and the
    seed, so a result an earlier run made and the current params would make the same is kept.
    """
    if current_keys is None:
        return ""
    expected = current_keys.get(result.path.name)
    found = result.raw.get("result_key")
    if expected is None:
        return "no run of the current params has this file name (another seed set or other operations)"
    if found == expected:
        return ""
    made_by = result.raw.get("params_file") or "an unknown params file"
    return (f"made by other params ({Path(made_by).name}, params_hash {result.raw.get('params_hash')}): its result key "
            f"{found} is not the current params' {expected}; rerun the study to replace it")


def left_out_lines(study: Study) -> list[str]:
    """Return one warning line per result file left out of the tables, naming it and why."""
    return [f"warning: {path} left out of the tables: {reason}" for path, reason in sorted(study.left_out.items())]


def load_study(
    paths: StudyPaths,
    orderings: tuple[str, ...] | None = None,
    benchmarks: tuple[str, ...] | None = None,
    seeds: tuple[int, ...] | None = None,
    current_keys: dict[str, str] | None = None,
) -> Study:
    """Return a study's finished results, read from ``paths.results``.

    ``orderings``: the planned orderings (default: all 16). Orderings with a result file are
    shown too, planned or not (an earlier run's results stay valid); all in the reference row
    order. ``benchmarks``: the benchmarks to report (default: those found in the results).
    ``seeds``: the study's seeds (default: those the file names say, ``F-P-Q.seed1.json``, or the
    one seed of plain ``F-P-Q.json`` files). With several seeds, the ``.seed<N>`` files of those
    seeds are read; with one, the plain files. ``current_keys``: the result keys of the current
    params (``other_params``); a result made by other params goes to ``Study.left_out``, not the tables.
    """
    if not paths.dir.is_dir():
        raise FileNotFoundError(f"{paths.dir}: no such study directory; run the study first (make study PARAMS=<params file>) or check the study name")
    files: dict[tuple[str, int | None], Path] = {}
    for path in sorted(paths.results.glob("*.json")) if paths.results.is_dir() else []:
        if path.name.startswith("."):
            continue  # a temporary file of an atomic write in progress
        try:
            name, file_seed = parse_run_filename(path.stem)
            ordering = format_ordering(parse_ordering(name))
        except ValueError:
            warnings.warn(f"{path}: ignored, the file name is not a run (expected e.g. F-P-Q.json or F-P-Q.seed1.json)",
                          stacklevel=2)
            continue
        files[(ordering, file_seed)] = path
    several = len(seeds) > 1 if seeds is not None else any(seed is not None for _, seed in files)
    found: dict[str, dict[int, Result]] = {}
    left_out: dict[Path, str] = {}
    for (ordering, file_seed), path in files.items():
        if several != (file_seed is not None) or (several and seeds is not None and file_seed not in seeds):
            continue  # another seed set's runs (the study had one seed then, or other seeds)
        result = load_result(path, study=paths.study, ordering=ordering)
        if reason := other_params(result, current_keys):
            left_out[path] = reason
            continue
        labels.remember_operations(result.raw.get("operations"))
        seed = file_seed if file_seed is not None else (result.seed if result.seed is not None else (seeds or (0,))[0])
        found.setdefault(ordering, {})[seed] = result
    if seeds is None:
        seeds = tuple(sorted({s for by_seed in found.values() for s in by_seed})) or (0,)

    planned = set(orderings) if orderings is not None else set(all_orderings())
    # Tables keep the reference study's row order, whatever order the params file lists.
    shown = tuple(sorted(planned | set(found), key=reference_rank))
    items: dict[str, dict[int, Items]] = {}
    for ordering, by_seed in found.items():
        for seed, result in by_seed.items():
            if result.items_file:
                items_path = paths.dir / result.items_file
                if not items_path.is_file():
                    raise ResultFileError(f"{result.path}: key 'items_file': names {items_path}, which does not exist")
                items.setdefault(ordering, {})[seed] = load_items(items_path)
    return Study(
        name=paths.study,
        dir=paths.dir,
        orderings=shown,
        benchmarks=study_benchmarks([r for by_seed in found.values() for r in by_seed.values()], benchmarks),
        runs=found,
        items=items,
        seeds=tuple(seeds),
        left_out=left_out,
    )
