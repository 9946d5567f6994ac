"""The interaction of two operations: what applying X then Y does beyond what X and Y do alone.

For two operations X and Y the interaction is ``Δ(X→Y) − Δ(X) − Δ(Y)``, the change of ``X>Y``
against the base less the changes of ``X`` and of ``Y`` alone, in scores
``s(X>Y) − s(X) − s(Y) + s(base)``. Zero: the two effects add up; negative: the damage compounds
(the second operation hurts more on a model the first has changed; Harma et al., arXiv:2405.20935,
find that the errors of sparsity and quantization compound); positive: the second undoes part
of the first, or cannot add to it.

The four states are scored on the same items (and, with several seeds, the same seeds), so the
interval is paired: the contrast ``x_{X>Y,i} − x_{X,i} − x_{Y,i} + x_{base,i}`` is formed item by
item and its mean gets the paired t interval of ``intervals.contrast_interval`` (clustered by
item, each task its own variance, with the seeds' own spread), for 0/1, partial-credit and
continuous item values alike. The interactions of a benchmark are one family, adjusted by
``report.multiplicity`` (``multiplicity.py``).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from ..core.plan import BASE, format_ordering
from . import intervals, labels, multiplicity
from .intervals import Estimate
from .load import NOT_RUN
from .tables import adjusted_columns


def interaction_orderings(orderings) -> list[tuple[str, str]]:
    """Return every ``(X, Y)`` whose states ``X>Y``, ``X``, ``Y`` and the base are all among ``orderings``.

    >>> interaction_orderings(["base", "F", "P", "F>P", "P>F", "Q"])
    [('F', 'P'), ('P', 'F')]
    """
    present = set(orderings)
    ops = labels.operation_letters()
    return [(x, y) for x, y in itertools.permutations(ops, 2)
            if {BASE, x, y, format_ordering((x, y))} <= present]


def interaction(est, x: str, y: str, benchmark: str) -> tuple[Estimate, int, str]:
    """Return the interaction of ``x`` then ``y`` on ``benchmark`` (its unit: points for a proportion), seeds, note."""
    states = (format_ordering((x, y)), x, y, BASE)
    coefficients = (1.0, -1.0, -1.0, 1.0)
    missing = [reason for o in states if (reason := est.why_missing(o, benchmark))]
    if missing:
        return Estimate(math.nan), 0, "; ".join(missing)
    seeds = tuple(sorted(set.intersection(*(set(est.study.ok_seeds(o)) for o in states))))
    if not seeds:
        return Estimate(math.nan), 0, "no seed finished for every state compared"
    value = sum(c * float(np.mean([est.study.runs[o][s].score(benchmark) for s in seeds]))
                for c, o in zip(coefficients, states))
    arms = [est.arm(o, benchmark, seeds) for o in states]
    if any(a is None for a in arms):
        return Estimate(value), len(seeds), "no interval: per-item scores missing"
    reason = est.no_interval_reason(benchmark)
    if reason:
        return Estimate(value), len(seeds), ""
    found = intervals.contrast_interval(est.items[benchmark].design, arms, coefficients, est.confidence)
    # Centred on the reported scores (LawBench 2-1 is corpus-level), the items' interval around it.
    shift = value - found.value
    return Estimate(value, found.low + shift, found.high + shift, found.se, found.df, found.significant, found.p), \
        len(seeds), ""


def interaction_table(est, language: str = "en") -> pd.DataFrame:
    """Return one row per pair of operations (X, Y): per benchmark the interaction with its interval, raw and adjusted marks."""
    rows = []
    for x, y in interaction_orderings(est.study.orderings):
        ordering = format_ordering((x, y))
        statuses = {est.study.status(o) for o in (ordering, x, y, BASE)}
        row = {"first": x, "second": y, "ordering": ordering, "label": labels.ordering_label(ordering, language),
               "status": next((s for s in ("failed", NOT_RUN) if s in statuses), "ok")}
        notes = []
        for b in est.study.benchmarks:
            found, seeds, note = interaction(est, x, y, b)
            row |= {f"{b}_interaction": found.value, f"{b}_interaction_ci_low": found.low,
                    f"{b}_interaction_ci_high": found.high, f"{b}_interaction_significant": found.significant,
                    f"{b}_interaction_p": found.p, f"{b}_seeds": seeds}
            if note:
                notes.append((b, note))
        same = len({n for _, n in notes}) == 1 and len(notes) == len(est.study.benchmarks)
        row["note"] = notes[0][1] if same else "; ".join(f"{b}: {n}" for b, n in notes)
        rows.append(row)
    columns = ["first", "second", "ordering", "label", "status"]
    for b in est.study.benchmarks:
        columns += [f"{b}_interaction", f"{b}_interaction_ci_low", f"{b}_interaction_ci_high",
                    f"{b}_interaction_significant", f"{b}_interaction_p", f"{b}_seeds"]
    frame = pd.DataFrame(rows, columns=columns + ["note"])
    method = est.params.multiplicity
    for b in est.study.benchmarks:  # one family per benchmark
        frame = multiplicity.add_adjusted(frame, f"{b}_interaction_p", f"{b}_interaction_significant", method,
                                          1 - est.confidence)
    for column in frame.columns:
        if "_significant" in column:
            frame[column] = frame[column].astype("boolean")
    return frame[adjusted_columns(columns, method) + ["note"]]


def interaction_markdown(frame: pd.DataFrame, benchmarks, language: str = "en", params=None,
                         interval_notes: dict[str, str] | None = None) -> str:
    """Return the interactions table as Markdown: a row per X → Y, the interaction per benchmark."""
    from ..core.params import ReportParams
    from .markdown import _Footnotes, _benchmark_notes, adjusted_legend, digits, format_change, pipe_table

    params, notes = params or ReportParams(), _Footnotes()
    _benchmark_notes(notes, interval_notes, language)
    na, method = labels.word("not_applicable", language), params.multiplicity
    header = [labels.word("interaction_pair", language)]
    header += [f"{labels.benchmark_name(b)} {labels.word('interaction_col', language)}" for b in benchmarks]
    rows = []
    for _, row in frame.iterrows():
        label = row["label"]
        if row.get("note"):
            label += notes.mark(row["note"])
        filler = na if row["status"] != NOT_RUN else labels.word("not_run", language)
        cells = [format_change(row[f"{b}_interaction"], row[f"{b}_interaction_ci_low"], row[f"{b}_interaction_ci_high"],
                               row[f"{b}_interaction_significant"], percent=False,
                               adjusted=row.get(f"{b}_interaction_significant_{method}"), places=digits(b)) or filler
                 for b in benchmarks]
        rows.append([label] + cells)
    caption = labels.word("interactions", language)
    legend = labels.word("interaction_legend", language).format(confidence=params.confidence)
    if method != "none":
        legend += " " + adjusted_legend(language, method, "interaction")
    return f"{caption}\n\n" + pipe_table(header, rows) + "\n" + notes.render() + legend + "\n"
