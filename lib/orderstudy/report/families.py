"""The order effects of a study's families side by side: does an order effect hold for every method?

A study of families (``quantize.method: [nf4, gptq]``) runs the same orderings once per method of
one operation, on the same evaluation items, from one state store (a state without that operation
is the same state in every family). For every pair of orderings that apply the same operations in
another order and include the operation the families differ in (``Q>P`` against ``P>Q``), the
table gives, per benchmark:

- each family's order effect ``B − A``, its paired interval and marks, as that family's own
  report's order-effects table gives them (``tables.order_effect_table``);
- the difference between two families' effects, ``(B − A)_second − (B − A)_first``: a contrast of
  four models scored on the same items, ``x_{B,2} − x_{A,2} − x_{B,1} + x_{A,1}`` item by item,
  with the paired t interval of ``intervals.contrast_interval`` (each task its own variance, the
  seeds' own spread with several seeds), as the interactions are. A mark here says the order
  effect depends on the method; the differences of a benchmark are one family for the ``†`` mark;
- a verdict: whether the effect holds (is marked after its family's adjustment, ``†``, in the
  same direction) in every family, in some only, in opposite directions, or in none.

Pairs without the operation (``F>P`` against ``P>F``) are the same states in every family and
are left out: their effects are equal by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import write_text
from ..core.params import load_params
from ..core.plan import parse_ordering
from . import labels, multiplicity
from .build import csv_text, resolve_source
from .estimates import Estimates, estimate
from .intervals import Estimate, contrast_interval
from .load import load_study
from .tables import adjusted_columns, order_effect_table

# The verdicts of a pair on a benchmark, from each family's mark and sign.
VERDICTS = ("holds in every family", "holds in some families only", "opposite directions", "in no family",
            "no interval")


@dataclass
class FamilyComparison:
    """The families' order effects side by side, as data and as Markdown, and the files written."""

    families: tuple[str, ...]
    operation: str
    table: pd.DataFrame
    markdown: str
    files: dict[str, Path]


def _same_items(a: Estimates, b: Estimates, benchmark: str) -> bool:
    da, db = a.items.get(benchmark), b.items.get(benchmark)
    if da is None or db is None:
        return False
    x, y = da.design, db.design
    return (x.tasks == y.tasks and np.array_equal(x.task_of, y.task_of) and np.allclose(x.weights, y.weights)
            and x.continuous == y.continuous)


def effect_difference(first: Estimates, second: Estimates, a: str, b: str, benchmark: str) -> tuple[Estimate, str]:
    """Return ``(B − A)`` in ``second`` less ``(B − A)`` in ``first`` with its paired interval, and a note ("" when none).

    In the benchmark's unit (points for a proportion). The four models are scored on the same items
    (and seeds), so the contrast is formed item by item; a benchmark without intervals gives the
    point value alone.
    """
    runs = ((second, b), (second, a), (first, b), (first, a))
    coefficients = (1.0, -1.0, -1.0, 1.0)
    missing = [reason for est, o in runs if (reason := est.why_missing(o, benchmark))]
    if missing:
        return Estimate(math.nan), "; ".join(dict.fromkeys(missing))
    seeds = tuple(sorted(set.intersection(*(set(est.study.ok_seeds(o)) for est, o in runs))))
    if not seeds:
        return Estimate(math.nan), "no seed finished for every run compared"
    value = sum(c * float(np.mean([est.study.runs[o][s].score(benchmark) for s in seeds]))
                for c, (est, o) in zip(coefficients, runs))
    if first.no_interval_reason(benchmark):
        return Estimate(value), ""
    if not _same_items(first, second, benchmark):
        return Estimate(value), "no interval: the families were not scored on the same items"
    arms = [est.arm(o, benchmark, seeds) for est, o in runs]
    if any(x is None for x in arms):
        return Estimate(value), "no interval: per-item scores missing"
    found = contrast_interval(first.items[benchmark].design, arms, coefficients, first.confidence)
    shift = value - found.value  # centred on the reported scores (LawBench 2-1 is corpus-level)
    return Estimate(value, found.low + shift, found.high + shift, found.se, found.df, found.significant, found.p), ""


def verdict(effects: list[tuple[float, bool | None]]) -> str:
    """Return whether an order effect holds in every family, from each family's ``(effect, marked)`` (the adjusted mark).

    >>> verdict([(-3.0, True), (-1.5, True)]), verdict([(-3.0, True), (0.5, False)])
    ('holds in every family', 'holds in some families only')
    >>> verdict([(-3.0, True), (2.0, True)]), verdict([(1.0, False), (0.2, False)]), verdict([(1.0, None), (0.2, False)])
    ('opposite directions', 'in no family', 'no interval')
    """
    if any(marked is None for _, marked in effects):
        return VERDICTS[4]
    signs = {math.copysign(1, value) for value, marked in effects if marked}
    if len(signs) > 1:
        return VERDICTS[2]
    held = sum(bool(marked) for _, marked in effects)
    return VERDICTS[0] if held == len(effects) else VERDICTS[1] if held else VERDICTS[3]


def family_table(estimates: dict[str, Estimates], operation: str, language: str = "en") -> pd.DataFrame:
    """Return one row per order pair with ``operation`` and benchmark: each family's effect, the difference, the verdict.

    ``estimates``: each family's, in the study's order of families; the differences are each later
    family's against the first.
    """
    families = tuple(estimates)
    first = estimates[families[0]]
    effects = {f: order_effect_table(est, language) for f, est in estimates.items()}
    method = first.params.multiplicity
    rows = []
    for _, pair in effects[families[0]].iterrows():
        a, b = pair["a"], pair["b"]
        if operation not in parse_ordering(a):
            continue
        for bench in first.study.benchmarks:
            row = {"a": a, "b": b, "label": pair["label"], "differs_by": pair["differs_by"], "benchmark": bench}
            marks, notes = [], []
            for f in families:
                found = effects[f].set_index(["a", "b"]).loc[(a, b)]
                row |= {f"{f}_diff": found[f"{bench}_diff"], f"{f}_diff_ci_low": found[f"{bench}_diff_ci_low"],
                        f"{f}_diff_ci_high": found[f"{bench}_diff_ci_high"],
                        f"{f}_diff_significant": found[f"{bench}_diff_significant"],
                        f"{f}_diff_significant_{method}": found.get(f"{bench}_diff_significant_{method}", pd.NA)}
                # The verdict reads the mark that survives the family's own adjustment (the raw one without any).
                marked = found[f"{bench}_diff_significant" + (f"_{method}" if method != "none" else "")]
                marks.append((found[f"{bench}_diff"], None if marked is pd.NA or marked is None else bool(marked)))
                if found["status"] != "ok":  # its own table's notes are on change rates, which this one has not
                    notes.append(f"{f}: {found['status']}")
            for f in families[1:]:
                diff, note = effect_difference(first, estimates[f], a, b, bench)
                row |= {f"{f}_vs_{families[0]}": diff.value, f"{f}_vs_{families[0]}_ci_low": diff.low,
                        f"{f}_vs_{families[0]}_ci_high": diff.high,
                        f"{f}_vs_{families[0]}_significant": diff.significant, f"{f}_vs_{families[0]}_p": diff.p}
                if note:
                    notes.append(note)
            row["verdict"] = verdict(marks)
            row["note"] = "; ".join(dict.fromkeys(notes))
            rows.append(row)
    columns = ["a", "b", "label", "differs_by", "benchmark"]
    for f in families:  # each followed by its adjusted mark (adjusted_columns)
        columns += [f"{f}_diff", f"{f}_diff_ci_low", f"{f}_diff_ci_high", f"{f}_diff_significant"]
    versus = []
    for f in families[1:]:
        name = f"{f}_vs_{families[0]}"
        versus.append(name)
        columns += [name, f"{name}_ci_low", f"{name}_ci_high", f"{name}_significant", f"{name}_p"]
    # Every column with its adjusted sibling: the families' own adjusted marks are in the rows already,
    # the differences' are added below.
    frame = pd.DataFrame(rows, columns=adjusted_columns(columns, method) + ["verdict", "note"])
    for name in versus:  # the differences on one benchmark are one family: adjusted benchmark by benchmark
        adjusted = [multiplicity.add_adjusted(frame[frame["benchmark"] == bench].copy(), f"{name}_p",
                                              f"{name}_significant", method, 1 - first.confidence)
                    for bench in first.study.benchmarks]
        for column in (multiplicity.column(f"{name}_p", method), multiplicity.column(f"{name}_significant", method)):
            if method != "none" and adjusted:
                frame[column] = pd.concat([part[column] for part in adjusted]).reindex(frame.index)
    for column in frame.columns:
        if "_significant" in column:
            frame[column] = frame[column].astype("boolean")
    return frame


def family_markdown(frame: pd.DataFrame, families: tuple[str, ...], operation: str, benchmarks,
                    language: str = "en", params=None, interval_notes: dict[str, str] | None = None) -> str:
    """Return the families' order effects as Markdown: a row per pair and benchmark.

    ``interval_notes``: why a benchmark has no intervals (``Estimates.interval_notes``), footnoted first.
    """
    from ..core.params import ReportParams
    from .markdown import _Footnotes, _benchmark_notes, adjusted_legend, digits, format_change, pipe_table

    params, notes = params or ReportParams(), _Footnotes()
    _benchmark_notes(notes, interval_notes, language)
    method = params.multiplicity
    first = families[0]
    header = [labels.word("order_pair", language), labels.word("benchmark", language)]
    header += [f"{f}: B − A" for f in families] + [f"{f} − {first}" for f in families[1:]]
    header.append(labels.word("family_verdict", language))
    rows = []
    for _, row in frame.iterrows():
        places = digits(row["benchmark"])
        label = row["label"] + (notes.mark(row["note"]) if row["note"] else "")
        cells = [label, labels.benchmark_name(row["benchmark"])]
        for f in families:
            cells.append(format_change(row[f"{f}_diff"], row[f"{f}_diff_ci_low"], row[f"{f}_diff_ci_high"],
                                       row[f"{f}_diff_significant"], percent=False,
                                       adjusted=row.get(f"{f}_diff_significant_{method}"), places=places) or "N/A")
        for f in families[1:]:
            name = f"{f}_vs_{first}"
            cells.append(format_change(row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"],
                                       row[f"{name}_significant"], percent=False,
                                       adjusted=row.get(f"{name}_significant_{method}"), places=places) or "N/A")
        cells.append(labels.word(f"family_verdict_{VERDICTS.index(row['verdict'])}", language))
        rows.append(cells)
    op = labels.operation_name(operation, language)
    caption = labels.word("families_title", language).format(operation=op, families=", ".join(families))
    legend = labels.word("families_legend", language).format(confidence=params.confidence, first=first)
    if method != "none":
        legend += " " + adjusted_legend(language, method, "families")
    return f"{caption}\n\n" + pipe_table(header, rows) + "\n" + notes.render() + legend + "\n"


def compare_families(params_file, *, language: str | None = None, outputs_dir=None,
                     current_keys: dict[str, dict[str, str] | None] | None = None,
                     write: bool = True) -> FamilyComparison | None:
    """Return the families' order effects side by side for a study of families (None for a study of one).

    Each family's results are read as its own report reads them; ``current_keys``: per family, the
    current params' result keys (``study.current_result_keys(params_file, family)``), so that
    results made by other params stay out. Written, with ``write``, to
    ``outputs/<study>/tables/families.csv`` and ``families.md``.
    """
    params = load_params(params_file)
    if not params.families:
        return None
    language = labels.check_language(language or params.report.language)
    estimates = {}
    for family in params.families:
        source = resolve_source(params_file, outputs_dir=outputs_dir, family=family)
        keys = (current_keys or {}).get(family)
        study = load_study(source.paths, source.orderings, source.benchmarks, source.seeds, keys)
        estimates[family] = estimate(study, source.params)
    operation = params.family_operation
    frame = family_table(estimates, operation, language)
    first = estimates[params.families[0]]
    text = family_markdown(frame, params.families, operation, first.study.benchmarks, language, params.report,
                           first.interval_notes())
    files = {}
    if write:
        tables = resolve_source(params_file, outputs_dir=outputs_dir).paths.study_dir / "tables"
        files = {"families.csv": write_text(tables / "families.csv", csv_text(frame)),
                 "families.md": write_text(tables / "families.md", text)}
    return FamilyComparison(tuple(params.families), operation, frame, text, files)
