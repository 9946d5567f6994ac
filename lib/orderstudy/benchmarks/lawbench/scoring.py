"""LawBench scores: one task's score and abstention rate, one item's score, and the LawBench average.

Each task follows LawBench's own evaluation code (github.com/open-compass/LawBench,
``evaluation/evaluation_functions``); the rules, and their quirks, are described in the module
that implements each family: ``choice`` (1-2, 2-2, 2-4, 2-8, 3-6), ``labels`` (2-3, 2-9, 3-3),
``numbers`` (3-1, 3-4, 3-5, 3-7), ``spans`` (2-5, 2-6, 2-10), ``rouge`` (1-1, 2-7, 3-2, 3-8) and
``correction`` (2-1).

Scores are on LawBench's 0-1 scale; ``lawbench_average`` gives the leaderboard's percent.

Run against a transcription of LawBench's evaluation functions on 1,200 varied predictions per
task (LawBench's answers with right, partial, noisy, empty and unrelated predictions), every
task but 2-1 gave the same score and abstention rate to 1e-12; 2-1 is discussed in
``correction``.

Where ``mean(item_scores) == score`` does not hold:

* 2-1's score is a corpus-level F0.5 (edit counts summed over items, rounded to 4 decimals); an
  item's score is the F0.5 of its own counts.
* LawBench leaves some items out of the score but not out of the abstention rate's denominator:
  2-2 items labelled 赔偿 and 3-4/3-5 items whose term is 死刑 or 无期. Their item score is NaN
  (``math.nan``) and the task score is the mean of the other items.
* 3-4/3-5 item scores are clipped to [0, 1]; the task score is not (see ``numbers``).

Abstention: LawBench defines none for 1-1, 2-1, 2-5, 2-7, 2-10, 3-2 and 3-8, whose rate is 0.
For 2-6 this module reports the rate LawBench's code computes (a prediction with no entities
where the answer has some); LawBench's published CSV shows 0 for 2-6 only because its function
returns the rate under a misspelt key ("anstention_rate").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

from . import choice, correction, labels, numbers, rouge, spans
from .errors import LawBenchInputError
from .tasks import TASK_IDS, check_task

ItemScorer = Callable[[str, str], tuple[float, bool]]

# Task -> scorer of (prediction, answer). 2-1 needs the prompt and is handled apart.
_ITEM_SCORERS: dict[str, ItemScorer] = {
    "1-1": rouge.score_recitation,
    "1-2": choice.score_exam,
    "2-2": choice.score_dispute_focus,
    "2-3": labels.score_marriage,
    "2-4": choice.score_topic,
    "2-5": spans.score_reading,
    "2-6": spans.score_entities,
    "2-7": rouge.score_generation,
    "2-8": choice.score_argument,
    "2-9": labels.score_events,
    "2-10": spans.score_triggers,
    "3-1": numbers.score_articles,
    "3-2": rouge.score_generation,
    "3-3": labels.score_charges,
    "3-4": numbers.score_prison_term,
    "3-5": numbers.score_prison_term,
    "3-6": choice.score_exam,
    "3-7": numbers.score_amount,
    "3-8": rouge.score_generation,
}
assert set(_ITEM_SCORERS) | {"2-1"} == set(TASK_IDS)

TASKS_NEEDING_PROMPT = frozenset({"2-1"})


@dataclass(frozen=True)
class TaskScore:
    """One task's LawBench score (0-1), abstention rate (0-1), number of items and per-item scores."""

    task: str
    score: float
    abstention_rate: float
    n: int
    item_scores: list[float]


def _check_text(value, what: str) -> str:
    if not isinstance(value, str):
        raise LawBenchInputError(f"the {what} must be a string, not {type(value).__name__}")
    return value


def score_item(task: str, prediction: str, answer: str, origin_prompt=None,
               cherrant: correction.CostTables | None = None) -> tuple[float, bool]:
    """Return (the item's score in [0, 1] or NaN if LawBench leaves it out, whether it is an abstention).

    ``origin_prompt`` is needed by 2-1 only (the sentence to correct is read from it); it may be
    the prompt text or LawBench's ``[{"role": …, "prompt": …}]`` list. ``cherrant``: 2-1's cost
    tables (default: ``correction.current_tables()``).
    """
    check_task(task)
    prediction = _check_text(prediction, "prediction")
    answer = _check_text(answer, "answer")
    if task == "2-1":
        return correction.score_item(prediction, answer, origin_prompt, cherrant)
    return _ITEM_SCORERS[task](prediction, answer)


def score_task(task: str, predictions: list[str], answers: list[str], origin_prompts: list | None = None,
               cherrant: correction.CostTables | None = None) -> TaskScore:
    """Return the task's LawBench score and abstention rate over all items, with per-item scores.

    ``cherrant``: 2-1's cost tables (default: ``correction.current_tables()``).

    Raises ``LawBenchInputError`` naming the item (its index in the lists) when an answer is not
    in LawBench's form for the task, a prediction is not text, or 2-1 has no usable prompt.
    """
    check_task(task)
    n = len(predictions)
    if len(answers) != n or (origin_prompts is not None and len(origin_prompts) != n):
        raise LawBenchInputError(
            f"task {task}: {n} predictions, {len(answers)} answers"
            + ("" if origin_prompts is None else f", {len(origin_prompts)} prompts") + "; they must be as many"
        )
    if n == 0:
        raise LawBenchInputError(f"task {task}: no items to score")
    if task in TASKS_NEEDING_PROMPT and origin_prompts is None:
        raise LawBenchInputError(f"task {task}: the origin prompts are needed (the sentence to correct is read from them)")

    item_scores, abstentions, counts = [], 0, []
    for index in range(n):
        prompt = origin_prompts[index] if origin_prompts is not None else None
        try:
            if task == "2-1":
                count = correction.sentence_counts(_check_text(predictions[index], "prediction"),
                                                   _check_text(answers[index], "answer"), prompt, cherrant)
                counts.append(count)
                value, abstained = correction.f_beta(*count), False
            else:
                value, abstained = score_item(task, predictions[index], answers[index], prompt)
        except LawBenchInputError as exc:
            raise LawBenchInputError(f"task {task}, item {index}: {exc}") from None
        item_scores.append(value)
        abstentions += abstained

    if task == "2-1":
        score = correction.corpus_score(counts)
    else:
        scored = [value for value in item_scores if not math.isnan(value)]
        if not scored:
            raise LawBenchInputError(f"task {task}: all {n} items are ones LawBench leaves out of the score")
        if task in ("3-4", "3-5"):
            # Distances are read again (cached) so that the score is LawBench's, unclipped.
            score = _normalized_log_distance(predictions, answers)
        else:
            score = sum(scored) / len(scored)
    return TaskScore(task=task, score=score, abstention_rate=abstentions / n, n=n, item_scores=item_scores)


def _normalized_log_distance(predictions: list[str], answers: list[str]) -> float:
    """Return LawBench's 3-4/3-5 score: (log 216 - mean distance) / log 216 over the scored items."""
    distances = []
    for prediction, answer in zip(predictions, answers):
        months = numbers.answer_months(answer)
        if months is not None:
            distances.append(numbers.log_distance(prediction, months)[0])
    return (numbers.LOG_216 - sum(distances) / len(distances)) / numbers.LOG_216


def lawbench_average(scores: Iterable[TaskScore]) -> float:
    """Return the LawBench score in percent: the unweighted mean of the given tasks' scores, times 100.

    Each task counts once; giving the same task twice is an error, and so is giving none.
    """
    scores = list(scores)
    if not scores:
        raise ValueError("no task scores to average")
    tasks = [s.task for s in scores]
    duplicates = sorted({t for t in tasks if tasks.count(t) > 1})
    if duplicates:
        raise ValueError(f"task scores given more than once: {', '.join(duplicates)}")
    return 100.0 * sum(s.score for s in scores) / len(scores)
