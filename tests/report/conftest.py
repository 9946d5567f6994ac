"""A small finished study written to ``tmp_path``, shaped like the runner's output.

16 orderings x 3 benchmarks x 3 tasks x 20 items with seeded random per-item scores. Items have a
difficulty shared by every model (so models' scores are correlated, as on a real benchmark) and
each ordering an ability of its own. One ordering failed (``Q>P>F``, out of memory) and one has
not run (``P>Q>F``, no result file). mmlu_law is weighted by subject size, as the study writes it.
With ``seeds=(0, 1, 2)`` every ordering with fine-tuning in it gets a seed effect of its own per
seed, the others (base, P, Q, P>Q, Q>P) the same scores for every seed, as shared states do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from orderstudy.core.atomic import write_json, write_text
from orderstudy.core.paths import StudyPaths, ordering_filename, run_filename
from orderstudy.core.plan import REFERENCE_ORDER, parse_ordering, prefixes

TASKS = {
    "lawbench": ("1-1", "2-1", "3-1"),
    "stem": ("abstract_algebra", "college_physics", "astronomy"),
    "mmlu_law": ("professional_law", "international_law", "jurisprudence"),
}
ITEMS_PER_TASK = 20
FAILED = "Q>P>F"
NOT_RUN = "P>Q>F"
BASE_SIZE_BYTES = 272_600_000
BASE_BF16_WEIGHTS_BYTES = 269_060_000  # 134.5 M parameters at 2 bytes
MMLU_LAW_SIZES = {"professional_law": 1534, "international_law": 121, "jurisprudence": 108}
ERROR_MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB"


@dataclass
class FinishedStudy:
    params_file: Path
    outputs_dir: Path
    paths: StudyPaths
    item_scores: dict  # ordering -> benchmark -> task -> item id -> score
    failed: str = FAILED
    not_run: str = NOT_RUN
    error_message: str = ERROR_MESSAGE


def size_bytes(ordering: str) -> int:
    """Return a plausible size: pruning keeps 70%, quantizing 40% of the bytes."""
    ops = parse_ordering(ordering)
    return int(BASE_SIZE_BYTES * (0.7 if "P" in ops else 1.0) * (0.4 if "Q" in ops else 1.0))


def weights_bytes(ordering: str) -> int:
    """Return a plausible weight-files size: the directory less its config and tokenizer files."""
    return int(BASE_BF16_WEIGHTS_BYTES * (0.7 if "P" in parse_ordering(ordering) else 1.0)
               * (0.4 if "Q" in parse_ordering(ordering) else 1.0))


def item_scores(seed: int = 0, run_seed: int = 0) -> dict:
    """Return ordering -> benchmark -> task -> item id -> score in [0, 1] for every ordering.

    ``run_seed``: the study's seed of the run; orderings with fine-tuning move with it.
    """
    rng = np.random.default_rng(seed)
    difficulty = {b: {t: rng.normal(0, 1.5, ITEMS_PER_TASK) for t in tasks} for b, tasks in TASKS.items()}
    scores = {}
    for ordering in REFERENCE_ORDER:
        ability = rng.normal(0, 0.6)
        if "F" in parse_ordering(ordering):
            ability += np.random.default_rng([seed, run_seed, REFERENCE_ORDER.index(ordering)]).normal(0, 0.3)
        if "F" in parse_ordering(ordering) or run_seed == 0:
            rng_items = np.random.default_rng([seed, run_seed, REFERENCE_ORDER.index(ordering), 1])
        else:
            rng_items = np.random.default_rng([seed, 0, REFERENCE_ORDER.index(ordering), 1])
        scores[ordering] = {}
        for benchmark, tasks in TASKS.items():
            scores[ordering][benchmark] = {}
            for task in tasks:
                p = 1 / (1 + np.exp(difficulty[benchmark][task] - ability))
                if benchmark == "lawbench":
                    # Generative tasks give partial credit: a noisy value around p, clipped to [0, 1].
                    values = np.clip(p + rng_items.normal(0, 0.15, ITEMS_PER_TASK), 0, 1).round(4)
                else:
                    values = (rng_items.random(ITEMS_PER_TASK) < p).astype(float)
                scores[ordering][benchmark][task] = {f"{task}/{i:03d}": float(v) for i, v in enumerate(values)}
    return scores


def result_document(study: str, ordering: str, items: dict, seed: int = 0) -> dict:
    """Return a finished result file's content for ``ordering`` from its per-item scores."""
    benchmarks = {}
    for benchmark, tasks in items.items():
        task_scores = {task: {"score": 100 * float(np.mean(list(v.values()))), "n": len(v)} for task, v in tasks.items()}
        if benchmark == "lawbench":
            for entry in task_scores.values():
                entry["abstention_rate"] = 0.1
        sizes = MMLU_LAW_SIZES if benchmark == "mmlu_law" else dict.fromkeys(task_scores, 1)
        for task, entry in task_scores.items():
            entry["weight"] = sizes[task] / sum(sizes.values())
        benchmarks[benchmark] = {
            "score": float(sum(t["weight"] * t["score"] for t in task_scores.values())),
            "aggregation": ("weighted by subject size (questions in the full data), as lm-eval's MMLU groups"
                            if benchmark == "mmlu_law" else "unweighted mean of the tasks, as LawBench's leaderboard"
                            if benchmark == "lawbench" else "unweighted mean of the subjects"),
            "scoring": "loglikelihood" if benchmark != "lawbench" else "lawbench zero_shot, generative",
            "n_items": sum(t["n"] for t in task_scores.values()),
            "tasks": task_scores,
        }
    steps = [
        {"state": state, "operation": state.split(">")[-1], "key": f"key-{ordering_filename(state)}", "reused": False,
         "seconds": 1.0, "size_bytes": size_bytes(state), "n_params": 100,
         "seed": seed if "F" in parse_ordering(state) else None}
        for state in prefixes(ordering)[1:]
    ]
    return {
        "schema": 1, "study": study, "ordering": ordering, "seed": seed, "status": "ok", "error": None,
        "size_bytes": size_bytes(ordering), "weights_bytes": weights_bytes(ordering),
        "base_bf16_weights_bytes": BASE_BF16_WEIGHTS_BYTES,
        "n_params": 94_700_000 if "P" in ordering else 134_500_000,
        "quantized": "Q" in ordering, "benchmarks": benchmarks,
        "items_file": f"items/{ordering_filename(ordering)}.json",
        "steps": steps, "state_key": "k", "params_hash": "h", "versions": {"python": "3.11"}, "device": "cpu",
    }


def failed_document(study: str, ordering: str) -> dict:
    return {
        "schema": 1, "study": study, "ordering": ordering, "status": "failed",
        "error": {"type": "OutOfMemoryError", "message": ERROR_MESSAGE, "traceback": "Traceback ...", "step": ordering},
        "size_bytes": None, "n_params": None, "quantized": None, "benchmarks": None, "items_file": None,
        "steps": [], "state_key": "k", "params_hash": "h", "versions": {}, "device": "cuda",
    }


def write_study(root: Path, study: str = "demo", *, seed: int = 0, report: str = "",
                seeds: tuple[int, ...] = (0,)) -> FinishedStudy:
    """Write a finished study under ``root``: a params file and ``outputs/<study>/{results,items}``.

    With several ``seeds``, one result per ordering and seed (``F-P-Q.seed1.json``), as the runner writes them.
    """
    outputs_dir = root / "outputs"
    paths = StudyPaths(study, outputs_dir)
    first = None
    for run_seed in seeds:
        scores = item_scores(seed, run_seed)
        first = first or scores
        tag = run_seed if len(seeds) > 1 else None
        for ordering in REFERENCE_ORDER:
            if ordering == NOT_RUN:
                continue
            if ordering == FAILED:
                write_json(paths.result(ordering, tag), failed_document(study, ordering))
                continue
            document = result_document(study, ordering, scores[ordering], run_seed)
            document["items_file"] = f"items/{run_filename(ordering, tag)}.json"
            write_json(paths.dir / document["items_file"], scores[ordering])
            write_json(paths.result(ordering, tag), document)
    params_file = write_text(
        root / "params" / f"{study}.yaml",
        f"study: {study}\nseeds: {list(seeds)}\nmodel:\n  source: tiny-model\nreport:\n  confidence: 0.95\n{report}",
    )
    return FinishedStudy(params_file, outputs_dir, paths, first)


@pytest.fixture
def finished_study(tmp_path) -> FinishedStudy:
    return write_study(tmp_path)


@pytest.fixture
def study_writer():
    """Return ``write_study`` (test modules cannot import conftest under --import-mode=importlib)."""
    return write_study
