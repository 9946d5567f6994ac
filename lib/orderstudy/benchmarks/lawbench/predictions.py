"""LawBench's published prediction layout: reading ``<system>/<task>.json`` files and scoring them.

A prediction file is a JSON object mapping each item's index ("0", "1", …) to
``{"origin_prompt": …, "prediction": …, "refr": …}``, where ``refr`` is the reference answer and
``origin_prompt`` is the prompt text or ``[{"role": …, "prompt": …}]`` (needed by 2-1 only).
Every problem is reported with the file and, where there is one, the item.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import LawBenchInputError
from .scoring import TASKS_NEEDING_PROMPT, TaskScore, score_task
from .tasks import check_task


class PredictionFileError(LawBenchInputError):
    """A prediction file that is missing, unreadable or not in LawBench's layout; the message names it."""


@dataclass(frozen=True)
class TaskPredictions:
    """One task's predictions, answers and prompts, in item order, and the file they came from."""

    task: str
    path: Path
    predictions: list[str]
    answers: list[str]
    origin_prompts: list


def task_file(system_dir: Path, task: str) -> Path:
    """Return where a system's predictions for ``task`` live: ``<system_dir>/<task>.json``."""
    return Path(system_dir) / f"{check_task(task)}.json"


def read_task_predictions(path: Path, task: str) -> TaskPredictions:
    """Return the predictions of one LawBench prediction file, checked item by item."""
    path = Path(path)
    if not path.is_file():
        raise PredictionFileError(f"{path}: missing task file (expected LawBench's predictions for task {task} here)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise PredictionFileError(f"{path}: not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise PredictionFileError(f"{path}: malformed JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    if not isinstance(data, dict):
        raise PredictionFileError(
            f"{path}: expected a JSON object mapping item indices \"0\", \"1\", … to items, found a {type(data).__name__}"
        )
    if not data:
        raise PredictionFileError(f"{path}: no items")
    expected = [str(i) for i in range(len(data))]
    missing = [key for key in expected if key not in data]
    if missing:
        extra = sorted(set(data) - set(expected))
        raise PredictionFileError(
            f"{path}: item indices must run \"0\" to \"{len(data) - 1}\"; item \"{missing[0]}\" is missing"
            + (f" and {', '.join(repr(k) for k in extra[:3])} is not an index" if extra else "")
        )

    predictions, answers, prompts = [], [], []
    for key in expected:
        item = data[key]
        where = f"{path}: item \"{key}\""
        if not isinstance(item, dict):
            raise PredictionFileError(f"{where}: expected an object with 'prediction' and 'refr', found a {type(item).__name__}")
        if "refr" not in item:
            raise PredictionFileError(f"{where} has no 'refr' (the reference answer)")
        if not isinstance(item["refr"], str):
            raise PredictionFileError(f"{where}: 'refr' must be a string, found {type(item['refr']).__name__}")
        if "prediction" not in item:
            raise PredictionFileError(f"{where} has no 'prediction'")
        if not isinstance(item["prediction"], str):
            raise PredictionFileError(f"{where}: 'prediction' must be a string, found {type(item['prediction']).__name__}")
        if task in TASKS_NEEDING_PROMPT and "origin_prompt" not in item:
            raise PredictionFileError(f"{where} has no 'origin_prompt' (task {task} reads the sentence to correct from it)")
        predictions.append(item["prediction"])
        answers.append(item["refr"])
        prompts.append(item.get("origin_prompt"))
    return TaskPredictions(task, path, predictions, answers, prompts)


def score_task_file(path: Path, task: str) -> TaskScore:
    """Return the LawBench score of one prediction file; errors name the file and the item."""
    loaded = read_task_predictions(path, task)
    try:
        return score_task(task, loaded.predictions, loaded.answers, loaded.origin_prompts)
    except LawBenchInputError as exc:
        raise PredictionFileError(f"{path}: {exc}") from None
