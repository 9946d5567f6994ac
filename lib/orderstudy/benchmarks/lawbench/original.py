"""The original items written for the LawBench tasks the packaged data lacks (1-2, 2-8, 3-6).

They are not LawBench's (see ``data/original/README.md``); they follow LawBench's data layout
and answer forms, so the scorers treat them like LawBench's own items.
"""

from __future__ import annotations

import json
from pathlib import Path

ORIGINAL_DIR = Path(__file__).parent / "data" / "original"
ORIGINAL_TASKS: tuple[str, ...] = ("1-2", "2-8", "3-6")
SETTINGS: tuple[str, ...] = ("zero_shot", "one_shot")


def original_path(task: str, setting: str = "zero_shot") -> Path:
    """Return the file of the original items of ``task`` in ``setting`` (zero_shot or one_shot)."""
    if task not in ORIGINAL_TASKS:
        raise ValueError(f"no original items for task {task!r}; there are for {', '.join(ORIGINAL_TASKS)}")
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; expected one of {', '.join(SETTINGS)}")
    return ORIGINAL_DIR / f"{task}.json" if setting == "zero_shot" else ORIGINAL_DIR / "one_shot" / f"{task}.json"


def original_items(task: str, setting: str = "zero_shot") -> list[dict]:
    """Return the original items of ``task``: a list of {"instruction", "question", "answer"}."""
    return json.loads(original_path(task, setting).read_text(encoding="utf-8"))
