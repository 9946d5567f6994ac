"""The Python side of orderstudy's lm-eval tasks (referenced from the YAML with ``!function``).

LawBench's items are scored by the benchmark itself (``benchmarks/lawbench/benchmark.py``), once
each, after lm-eval has generated the answers: lm-eval's metric for a LawBench task only counts
the empty answers. An MMLU item is scored here, once, by lm-eval's ``process_results``.
"""

from __future__ import annotations

import re


def lawbench_process_results(doc: dict, results: list[str]) -> dict:
    """Return whether the answer is empty (LawBench's own scoring runs once, outside lm-eval)."""
    return {"empty_answer": float(not results[0].strip())}


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
