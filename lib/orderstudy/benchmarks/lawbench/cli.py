"""``python -m orderstudy.benchmarks.lawbench score PREDICTIONS_DIR --out results.csv``: score LawBench predictions.

PREDICTIONS_DIR holds one directory per system, each with LawBench's prediction files
(``<task>.json``, e.g. ``1-1.json``). One CSV row is written per (system, task), plus one row per
system with task ``average``. A system whose files cannot be scored is reported on stderr and
gets no rows; the others are still written, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
import tempfile
from pathlib import Path

from .errors import LawBenchInputError
from .predictions import score_task_file, task_file
from .scoring import TaskScore, lawbench_average
from .tasks import TASK_IDS, TASK_METRICS, TASK_NAMES

COLUMNS = ("system", "task", "task_name", "metric", "score", "abstention_rate", "n", "n_tasks", "unit")
UNIT = "percent"

_DESCRIPTION = """\
Score LawBench predictions with LawBench's own rules, task by task.

PREDICTIONS_DIR holds one directory per system; each holds LawBench's prediction files, one
<task>.json per task (1-1.json … 3-8.json), each a JSON object mapping "0", "1", … to
{"origin_prompt", "prediction", "refr"}.

The CSV has one row per (system, task) and one row per system whose task is "average": the
unweighted mean of the system's task scores, with n_tasks saying over how many tasks.
score and abstention_rate are in PERCENT (0-100), as on LawBench's leaderboard (LawBench's own
results.csv uses 0-1); the unit column repeats this on every row.
"""


def _parse_tasks(text: str) -> tuple[str, ...]:
    tasks = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in tasks if t not in TASK_NAMES]
    if unknown or not tasks:
        raise argparse.ArgumentTypeError(f"unknown task(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(TASK_IDS)}")
    return tuple(t for t in TASK_IDS if t in tasks)


def build_parser(prog: str = "python -m orderstudy.benchmarks.lawbench") -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(prog=prog, description="LawBench scorer.")
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="score a directory of systems' predictions", description=_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    score.add_argument("predictions_dir", metavar="PREDICTIONS_DIR", type=Path, help="one sub-directory per system")
    score.add_argument("--out", required=True, type=Path, help="the CSV to write (scores in percent)")
    score.add_argument("--tasks", type=_parse_tasks, default=TASK_IDS,
                       help="comma-separated task ids to score (default: all 20); only these files are required")
    score.add_argument("--allow-missing", action="store_true",
                       help="score the tasks a system has and skip missing task files (default: a missing file is an error)")
    score.add_argument("--cherrant-data", type=Path, metavar="DIR",
                       help="2-1: a LawBench checkout (or its evaluation/utils/data) whose ChERRANT cilin.txt and "
                            "confusion_dict.txt price substitutions, as LawBench's scorer does (default: the copy "
                            "`LAWBENCH=<checkout> make data` made, else the packaged thesaurus without a confusion set)")
    return parser


def score_system(system_dir: Path, tasks: tuple[str, ...], allow_missing: bool) -> tuple[list[TaskScore], list[str]]:
    """Return the system's task scores and the error messages of the files that could not be scored."""
    scores, errors = [], []
    for task in tasks:
        path = task_file(system_dir, task)
        if allow_missing and not path.exists():
            continue
        try:
            scores.append(score_task_file(path, task))
        except LawBenchInputError as exc:
            errors.append(str(exc))
    if not scores and not errors:
        errors.append(f"{system_dir}: none of the task files {', '.join(f'{t}.json' for t in tasks)} is there")
    return scores, errors


def rows_for(system: str, scores: list[TaskScore]) -> list[dict]:
    """Return the CSV rows of one system: its tasks in LawBench order, then its average."""
    rows = [
        {"system": system, "task": s.task, "task_name": TASK_NAMES[s.task], "metric": TASK_METRICS[s.task],
         "score": _fmt(100 * s.score), "abstention_rate": _fmt(100 * s.abstention_rate), "n": s.n, "n_tasks": "",
         "unit": UNIT}
        for s in scores
    ]
    rows.append({
        "system": system, "task": "average", "task_name": "LawBench average", "metric": "mean of task scores",
        "score": _fmt(lawbench_average(scores)),
        "abstention_rate": _fmt(100 * sum(s.abstention_rate for s in scores) / len(scores)),
        "n": sum(s.n for s in scores), "n_tasks": len(scores), "unit": UNIT,
    })
    return rows


def _fmt(value: float) -> str:
    return f"{value:.6f}"


def _write_csv(path: Path, rows: list[dict]) -> None:
    """Write the rows to ``path`` through a temporary file, so a failed run leaves no half-written CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cost_tables(cherrant_data: Path | None):
    """Return 2-1's ChERRANT tables: from ``cherrant_data``, else the copy in the cache, else the packaged ones."""
    from ...core import paths
    from . import correction

    if cherrant_data is not None:
        return correction.lawbench_tables(cherrant_data)
    if correction.lawbench_data_dir(paths.CHERRANT_DATA) is not None:
        return correction.lawbench_tables(paths.CHERRANT_DATA)
    return correction.packaged_tables()


def run_score(predictions_dir: Path, out: Path, tasks: tuple[str, ...], allow_missing: bool,
              cherrant_data: Path | None = None) -> int:
    """Score every system under ``predictions_dir``, write the CSV and return the exit status."""
    if not predictions_dir.is_dir():
        print(f"error: {predictions_dir}: not a directory", file=sys.stderr)
        return 2
    systems = sorted(p for p in predictions_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not systems:
        hint = ""
        if any((predictions_dir / f"{t}.json").exists() for t in TASK_IDS):
            hint = f" (it holds task files itself: pass its parent, {predictions_dir.resolve().parent})"
        print(f"error: {predictions_dir}: no system directories{hint}", file=sys.stderr)
        return 2

    from . import correction

    tables = None
    if "2-1" in tasks:
        try:
            tables = cost_tables(cherrant_data)  # before any system is scored, not at the first 2-1 file
        except (correction.ThesaurusMissingError, correction.CostTablesError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"2-1: ChERRANT tables {tables.source['kind']} ({tables.source['path']})", file=sys.stderr)

    with correction.using(tables) if tables is not None else contextlib.nullcontext():
        rows, failed = _score_systems(systems, tasks, allow_missing)
    _write_csv(out, rows)
    if failed:
        print(f"error: {len(failed)} of {len(systems)} systems could not be scored: {', '.join(failed)}; "
              f"the other systems' rows are in {out}", file=sys.stderr)
        return 1
    return 0


def _score_systems(systems: list[Path], tasks: tuple[str, ...], allow_missing: bool) -> tuple[list[dict], list[str]]:
    rows, failed = [], []
    for system_dir in systems:
        scores, errors = score_system(system_dir, tasks, allow_missing)
        if errors:
            failed.append(system_dir.name)
            for message in errors:
                print(f"error: system {system_dir.name}: {message}", file=sys.stderr)
            continue
        rows.extend(rows_for(system_dir.name, scores))
        print(f"{system_dir.name}: {len(scores)} tasks, LawBench average {lawbench_average(scores):.2f}", file=sys.stderr)
    return rows, failed


def main(argv: list[str] | None = None, prog: str = "python -m orderstudy.benchmarks.lawbench") -> int:
    """Run the command line; return the exit status."""
    args = build_parser(prog).parse_args(argv)
    if args.command == "score":
        return run_score(args.predictions_dir, args.out, args.tasks, args.allow_missing, args.cherrant_data)
    return 2  # pragma: no cover - argparse enforces a command
