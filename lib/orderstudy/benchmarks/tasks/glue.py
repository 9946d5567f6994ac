"""The Python side of orderstudy's lm-eval tasks (referenced from the YAML with ``!function``)."""

from __future__ import annotations

import re

import math

from orderstudy.benchmarks.lawbench.scoring import score_item, score_task


def lawbench_process_results(doc: dict, results: list[str]) -> dict:
    """Return the item for LawBench's task-level scorers (scored together in the aggregation)."""
    item = {"task": doc["task"], "prediction": results[0], "answer": doc["answer"], "prompt": doc["prompt"]}
    return {"score": item, "abstention": item}


def all_left_out(task: str, answers: list[str]) -> bool:
    """Return whether LawBench leaves every one of these items out of the task's score.

    It does so by the answer alone (2-2's compensation items, 3-4/3-5's death and life
    sentences: their item score is NaN whatever the prediction).
    """
    return task != "2-1" and all(math.isnan(score_item(task, "", a)[0]) for a in answers)


def _score(items: list[dict]):
    task, answers = items[0]["task"], [i["answer"] for i in items]
    if all_left_out(task, answers):
        return None
    return score_task(task, [i["prediction"] for i in items], answers, [i["prompt"] for i in items])


def lawbench_aggregate_score(items: list[dict]) -> float:
    """Return the task's LawBench score in percent (NaN when every item is left out)."""
    scored = _score(items)
    return math.nan if scored is None else 100.0 * scored.score


def lawbench_aggregate_abstention(items: list[dict]) -> float:
    """Return the task's abstention rate in percent (NaN when every item is left out)."""
    scored = _score(items)
    return math.nan if scored is None else 100.0 * scored.abstention_rate


_LETTER = re.compile(r"^\s*[\(\[]?([ABCD])(?:[\s\.\):\]]|$)")
_STATED = re.compile(r"answer is:?\s*[\(\[]?([ABCD])\b", re.IGNORECASE)


def mmlu_letter(response: str) -> str | None:
    """Return the answer letter a response gives, ``None`` when it gives none clearly.

    >>> mmlu_letter(" B. 42"), mmlu_letter("The answer is (C)"), mmlu_letter("I think so")
    ('B', 'C', None)
    """
    match = _LETTER.match(response) or _STATED.search(response)
    return match.group(1) if match else None


def mmlu_generative_process_results(doc: dict, results: list[str]) -> dict:
    return {"acc": float(mmlu_letter(results[0]) == "ABCD"[doc["answer"]])}
