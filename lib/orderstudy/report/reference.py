"""The reference study's printed tables, read back, and a check of their arithmetic.

``lib/orderstudy/reference/reference_study.md`` is a verbatim copy of the study this project
reproduces. It prints scores rounded to 0.01 and, computed from
them, change rates and absolute changes. Feeding those printed scores to this package's change
tables (``reference_as_study`` -> ``tables.main_table`` and ``tables.transition_tables``) must
give back every printed change, up to rounding.

Rounding is handled by interval arithmetic, not a tolerance: a printed score ``s`` stands for a
true value in ``[s - 0.005, s + 0.005]``, so a change computed from two scores can lie anywhere
in a range; a printed change ``c`` is consistent when its own rounding interval
``[c - 0.005, c + 0.005]`` meets that range. ``inconsistent_cells`` lists the cells for which it
does not: the reference's own slips.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.benchmark import display_name  # the reference's own names, never this study's marks
from ..core.params import ReportParams
from ..core.plan import BASE, REFERENCE_ORDER, parse_ordering
from . import labels
from .load import BenchmarkScore, Result, Study

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference"
REFERENCE_FILE = REFERENCE_DIR / "reference_study.md"

BENCHMARKS = ("lawbench", "stem", "mmlu_law")
# Half the last printed digit: the reference prints every number with two decimals.
HALF_ULP = 0.005
# Keeps a boundary case (the range ending exactly at a rounding edge) from failing on float noise.
_EPS = 1e-9


@dataclass(frozen=True)
class ReferenceStudy:
    """The reference study's printed numbers, keyed by this project's names."""

    scores: pd.DataFrame
    """Printed scores: index = ordering (reference order), columns = benchmarks; NaN = 不适用."""
    change_pct: pd.DataFrame
    """The main table's printed change rates against the base, same shape as ``scores``."""
    sizes: pd.Series
    """The printed size on disk of each ordering (``"5.8G"``), empty for 不适用."""
    transitions: pd.DataFrame
    """One row per per-operation table row and benchmark: operation, before, after, row,
    benchmark, diff (printed absolute change, NaN where not printed), change_pct."""
    not_applicable: tuple[str, ...]
    """Orderings the reference could not run (printed 不适用, footnote ¹)."""


@dataclass(frozen=True)
class Cell:
    """A printed change that the printed scores cannot produce."""

    table: str  # "main", or the operation's table: "微调", "剪枝", "量化"
    row: str  # the row as printed, e.g. "微调 → 微调剪枝"
    column: str  # the column as printed, e.g. "stem 变化率%"
    printed: float
    low: float  # the range of values the printed scores allow
    high: float
    explanation: str = ""  # what the printed value does match, when something does

    def __str__(self) -> str:
        text = f"{self.table} | {self.row} | {self.column}: printed {self.printed:+.2f}, the printed scores give [{self.low:+.3f}, {self.high:+.3f}]"
        return f"{text}; {self.explanation}" if self.explanation else text


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Return every Markdown table in ``text`` as rows of stripped cells, header row first."""
    tables, current = [], []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def _number(cell: str) -> float:
    """Return a printed number (``+97.83%``, ``-2.08``, ``7.85``) as a float, NaN for an empty or 不适用 cell."""
    cell = cell.strip().rstrip("%")
    if cell in ("", labels.word("not_applicable", "zh")):
        return float("nan")
    return float(cell)


def _column_benchmark(header: str) -> tuple[str, str]:
    """Return ``(benchmark, kind)`` for a printed column name: ``stem 变化率%`` -> ``("stem", "change_pct")``."""
    by_name = {display_name(b): b for b in BENCHMARKS}
    name, _, kind = header.partition(" ")
    kinds = {"": "score", "变化": "diff", "变化率%": "change_pct"}
    if name not in by_name or kind not in kinds:
        raise ValueError(f"{REFERENCE_FILE}: unexpected column {header!r}")
    return by_name[name], kinds[kind]


@lru_cache(maxsize=None)
def load_reference(path: Path = REFERENCE_FILE) -> ReferenceStudy:
    """Return the reference study's printed tables, parsed from ``path``."""
    tables = markdown_tables(Path(path).read_text(encoding="utf-8"))
    main = next(t for t in tables if t[0][0] == labels.word("ordering", "zh"))
    scores, rates, sizes, not_applicable = {}, {}, {}, []
    for row in main[1:]:
        label = row[0].rstrip("¹")
        ordering = labels.ordering_from_label(label)
        if row[0].endswith("¹"):
            not_applicable.append(ordering)
        scores[ordering], rates[ordering] = {}, {}
        for header, cell in zip(main[0][1:], row[1:]):
            if header == labels.word("size", "zh"):
                sizes[ordering] = cell
                continue
            benchmark, kind = _column_benchmark(header)
            (scores if kind == "score" else rates)[ordering][benchmark] = _number(cell)
    order = [o for o in REFERENCE_ORDER if o in scores]

    rows = []
    for table in tables:
        if table[0][0] != labels.word("comparison", "zh"):
            continue
        for row in table[1:]:
            before_label, after_label = (part.strip() for part in row[0].split("→"))
            before, after = labels.state_from_label(before_label), labels.state_from_label(after_label)
            added = parse_ordering(after)[-1]
            if parse_ordering(after)[:-1] != parse_ordering(before):
                raise ValueError(f"{path}: row {row[0]!r} is not one operation added to a state")
            cells: dict[str, dict[str, float]] = {}
            for header, cell in zip(table[0][1:], row[1:]):
                benchmark, kind = _column_benchmark(header)
                cells.setdefault(benchmark, {})[kind] = _number(cell)
            for benchmark, values in cells.items():
                rows.append({
                    "operation": added, "before": before, "after": after, "row": row[0], "benchmark": benchmark,
                    "diff": values.get("diff", float("nan")), "change_pct": values.get("change_pct", float("nan")),
                })
    return ReferenceStudy(
        scores=pd.DataFrame.from_dict(scores, orient="index").loc[order, list(BENCHMARKS)],
        change_pct=pd.DataFrame.from_dict(rates, orient="index").loc[order, list(BENCHMARKS)],
        sizes=pd.Series(sizes).loc[order],
        transitions=pd.DataFrame(rows),
        not_applicable=tuple(not_applicable),
    )


def score_range(printed: float) -> tuple[float, float]:
    """Return the true values a printed score stands for (scores are never below 0)."""
    return max(printed - HALF_ULP, 0.0), printed + HALF_ULP


def diff_range(after: float, before: float) -> tuple[float, float]:
    """Return the range of ``after - before`` over the rounding intervals of both printed scores."""
    (a_lo, a_hi), (b_lo, b_hi) = score_range(after), score_range(before)
    return a_lo - b_hi, a_hi - b_lo


def change_rate_range(after: float, before: float) -> tuple[float, float]:
    """Return the range of the change rate (percent) over the rounding intervals of both printed scores.

    The rate ``after / before - 1`` grows with ``after`` and, since scores are not negative,
    shrinks as ``before`` grows, so its extremes sit at opposite corners. A printed base of
    0.00 could be any tiny positive value: every rate from -100% up is possible.
    """
    (a_lo, a_hi), (b_lo, b_hi) = score_range(after), score_range(before)
    if b_lo <= 0:
        return -100.0, float("inf")
    return (a_lo / b_hi - 1) * 100, (a_hi / b_lo - 1) * 100


def _consistent(printed: float, allowed: tuple[float, float]) -> bool:
    low, high = allowed
    return printed + HALF_ULP + _EPS >= low and printed - HALF_ULP - _EPS <= high


def _explain(printed: float, after: str, benchmark: str, scores: pd.DataFrame, kind: str, meant: str) -> str:
    """Return what the printed change does match, if anything: another 'from' state, or another printed score."""
    ranges = {"diff": diff_range, "change_pct": change_rate_range}[kind]
    matches = [
        state for state in scores.index
        if state not in (after, meant) and not np.isnan(scores.at[state, benchmark])
        and _consistent(printed, ranges(scores.at[after, benchmark], scores.at[state, benchmark]))
    ]
    if matches:
        names = ", ".join(f"{labels.state_label(s, 'zh')} ({s})" for s in matches)
        return f"it matches the change from {names} instead of from {labels.state_label(meant, 'zh')} ({meant})"
    # Otherwise: which printed scores of the 'after' state would have given it.
    before = scores.at[meant, benchmark]
    candidates = np.round(scores.at[after, benchmark] + np.arange(-0.5, 0.51, 0.01), 2)
    fits = [x for x in candidates if x >= 0 and _consistent(printed, ranges(x, before))]
    if fits:
        shown = ", ".join(f"{x:.2f}" for x in fits)
        return (f"it matches a {display_name(benchmark)} score of {shown} for {labels.ordering_label(after, 'zh')} "
                f"({after}), which the table prints as {scores.at[after, benchmark]:.2f}")
    return ""


def inconsistent_cells(reference: ReferenceStudy | None = None) -> list[Cell]:
    """Return the printed changes that the printed scores cannot produce, with the range they allow.

    Checks every change rate of the main table and every absolute change and change rate of the
    three per-operation tables. A per-operation row is checked against the states its label
    names (剪枝 → 剪枝微调 is P → P>F), using the main table's scores of those states.
    """
    ref = reference or load_reference()
    scores, cells = ref.scores, []
    for ordering in ref.change_pct.index:
        for benchmark in BENCHMARKS:
            printed = ref.change_pct.at[ordering, benchmark]
            if np.isnan(printed):
                continue
            allowed = change_rate_range(scores.at[ordering, benchmark], scores.at[BASE, benchmark])
            if not _consistent(printed, allowed):
                cells.append(Cell(
                    "main", labels.ordering_label(ordering, "zh"), f"{display_name(benchmark)} 变化率%",
                    printed, *allowed, _explain(printed, ordering, benchmark, scores, "change_pct", BASE),
                ))
    for row in ref.transitions.itertuples(index=False):
        after, before = scores.at[row.after, row.benchmark], scores.at[row.before, row.benchmark]
        for kind, ranges, suffix in (("diff", diff_range, "变化"), ("change_pct", change_rate_range, "变化率%")):
            printed = getattr(row, kind)
            if np.isnan(printed):
                continue
            allowed = ranges(after, before)
            if not _consistent(printed, allowed):
                cells.append(Cell(
                    labels.operation_name(row.operation, "zh"), row.row, f"{display_name(row.benchmark)} {suffix}",
                    printed, *allowed, _explain(printed, row.after, row.benchmark, scores, kind, row.before),
                ))
    return cells


def _size_bytes(printed: str) -> int | None:
    """Return the bytes a printed size such as ``5.8G`` stands for (binary units), None when blank."""
    match = re.fullmatch(r"([0-9.]+)\s*([KMGT])i?B?", printed.strip())
    if not match:
        return None
    return int(float(match[1]) * 1024 ** ("KMGT".index(match[2]) + 1))


def reference_as_study(reference: ReferenceStudy | None = None) -> Study:
    """Return the reference study as a ``Study`` of this package, its printed scores as results.

    No per-item scores exist, so tables made from it have no intervals; the orderings printed
    不适用 are failed results.
    """
    ref = reference or load_reference()
    results = {}
    for ordering in ref.scores.index:
        path = REFERENCE_FILE
        if ordering in ref.not_applicable:
            error = {"type": "NotApplicable", "message": "the reference study could not run this ordering (footnote ¹)"}
            results[ordering] = Result(path, ordering, 0, "failed", error, None, None, None, {}, None)
            continue
        benchmarks = {b: BenchmarkScore(score=float(ref.scores.at[ordering, b]), scoring="printed, rounded to 0.01", n_items=0, tasks={}) for b in BENCHMARKS}
        results[ordering] = Result(path, ordering, 0, "ok", None, _size_bytes(ref.sizes[ordering]), None, None, benchmarks, None)
    return Study("reference", REFERENCE_DIR, tuple(ref.scores.index), BENCHMARKS, {o: {0: r} for o, r in results.items()}, {})


def reproduced_changes(reference: ReferenceStudy | None = None) -> pd.DataFrame:
    """Return every printed change beside the value the report's own tables compute from the printed scores.

    Columns: table, before, after, benchmark, kind (``diff`` or ``change_pct``), printed, computed,
    low, high, consistent. ``computed`` comes from ``tables.main_table`` and
    ``tables.transition_tables`` fed with the reference as a study; low and high bound what the
    rounding of the printed scores allows.
    """
    from .estimates import estimate
    from .tables import main_table, transition_tables

    ref = reference or load_reference()
    est = estimate(reference_as_study(ref), ReportParams())
    main = main_table(est, "zh").set_index("ordering")
    per_operation = {op: t.set_index(["before", "after"]) for op, t in transition_tables(est, "zh").items()}
    scores, rows = ref.scores, []

    def add(table, before, after, benchmark, kind, printed, computed):
        if np.isnan(printed):
            return
        a, b = scores.at[after, benchmark], scores.at[before, benchmark]
        low, high = (diff_range if kind == "diff" else change_rate_range)(a, b)
        rows.append({"table": table, "before": before, "after": after, "benchmark": benchmark, "kind": kind,
                     "printed": printed, "computed": computed, "low": low, "high": high,
                     "consistent": _consistent(printed, (low, high))})

    for ordering in ref.change_pct.index:
        for benchmark in BENCHMARKS:
            computed = main.at[ordering, f"{benchmark}_change_pct"]
            add("main", BASE, ordering, benchmark, "change_pct", ref.change_pct.at[ordering, benchmark], computed)
    for row in ref.transitions.itertuples(index=False):
        table = per_operation[row.operation]
        if (row.before, row.after) not in table.index:
            raise ValueError(f"{REFERENCE_FILE}: row {row.row!r} is not a transition the report tabulates")
        for kind, column in (("diff", f"{row.benchmark}_diff"), ("change_pct", f"{row.benchmark}_change_pct")):
            add(row.operation, row.before, row.after, row.benchmark, kind, getattr(row, kind), table.at[(row.before, row.after), column])
    return pd.DataFrame(rows)
