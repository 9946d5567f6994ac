"""Two studies' main tables side by side (say, the same orderings at two pruning ratios).

For every ordering of either study: its status, scores, change rates against its own base, and
size in study A and in study B, and the score difference B - A. The difference is a point value:
the two studies' models are different models, and their items may differ, so no paired interval
is claimed across studies; each study's own report has its intervals.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..core.atomic import write_text
from . import labels, markdown
from .build import Report, csv_text, make_report, resolve_source
from .changes import reference_rank


@dataclass
class StudyComparison:
    """The side-by-side table of two studies, as data and as Markdown."""

    a: Report
    b: Report
    a_source: str
    b_source: str
    table: pd.DataFrame
    markdown: str
    files: dict[str, Path]


def _name(report: Report, source: str) -> str:
    return f"{report.study.name} ({source})"


def side_by_side(a: Report, b: Report, language: str = "en") -> pd.DataFrame:
    """Return one row per ordering of either study with columns ``<metric>_a``, ``<metric>_b`` and ``<b>_diff`` (B - A)."""
    benchmarks = [x for x in a.study.benchmarks if x in b.study.benchmarks]
    orderings = sorted(set(a.study.orderings) | set(b.study.orderings), key=lambda o: (reference_rank(o), o))
    metrics = ["status", *benchmarks, *(f"{x}_change_pct" for x in benchmarks), "size_bytes"]
    rows = []
    for ordering in orderings:
        row = {"ordering": ordering, "label": labels.ordering_label(ordering, language)}
        for suffix, report in (("a", a), ("b", b)):
            found = report.main[report.main["ordering"] == ordering]
            for metric in metrics:
                missing = "not planned" if metric == "status" else math.nan
                row[f"{metric}_{suffix}"] = found.iloc[0][metric] if len(found) else missing
        for x in benchmarks:
            row[f"{x}_diff"] = row[f"{x}_b"] - row[f"{x}_a"]
        rows.append(row)
    frame = pd.DataFrame(rows)
    for suffix in ("a", "b"):
        frame[f"size_bytes_{suffix}"] = frame[f"size_bytes_{suffix}"].astype("Int64")
    return frame


def side_by_side_markdown(frame: pd.DataFrame, benchmarks, a_name: str, b_name: str, language: str = "en") -> str:
    """Return the side-by-side table as Markdown, a caption naming A and B first."""
    header = [labels.word("ordering", language)]
    for x in benchmarks:
        name = labels.benchmark_name(x)
        header += [f"{name} A", f"{name} B", f"{name} B − A"]
    for x in benchmarks:
        name = labels.benchmark_name(x)
        header += [f"{name} {labels.word('change_pct', language)} A", f"{name} {labels.word('change_pct', language)} B"]
    header += [f"{labels.word('size', language)} A", f"{labels.word('size', language)} B"]

    def cell(row, metric: str, side: str, kind: str) -> str:
        status = row[f"status_{side}"]
        if status == "failed":
            return labels.word("not_applicable", language)
        if status != "ok":
            return labels.word("not_run", language)
        value = row[f"{metric}_{side}"]
        if kind == "score":
            return markdown.format_score(value)
        if kind == "size":
            return markdown.format_size(value)
        return markdown.format_change(value, percent=True)

    rows = []
    for _, row in frame.iterrows():
        cells = [row["label"]]
        for x in benchmarks:
            cells += [cell(row, x, "a", "score"), cell(row, x, "b", "score"), markdown.format_change(row[f"{x}_diff"], percent=False)]
        for x in benchmarks:
            cells += [cell(row, f"{x}_change_pct", side, "pct") for side in ("a", "b")]
        cells += [cell(row, "size_bytes", side, "size") for side in ("a", "b")]
        rows.append(cells)
    caption = f"A = {a_name}\n\nB = {b_name}\n\n"
    return caption + markdown.pipe_table(header, rows)


def compare_studies(
    a: str | os.PathLike,
    b: str | os.PathLike,
    *,
    out_dir: str | os.PathLike | None = None,
    language: str | None = None,
    outputs_dir: str | os.PathLike | None = None,
) -> StudyComparison:
    """Return two studies' main tables side by side; with ``out_dir``, also write ``compare.csv`` and ``compare.md`` there.

    ``a`` and ``b``: params files or study output directories. ``language``: default A's.
    """
    source_a, source_b = resolve_source(a, outputs_dir=outputs_dir), resolve_source(b, outputs_dir=outputs_dir)
    language = labels.check_language(language or source_a.params.language)
    report_a, report_b = make_report(source_a, language), make_report(source_b, language)
    frame = side_by_side(report_a, report_b, language)
    benchmarks = [x for x in report_a.study.benchmarks if x in report_b.study.benchmarks]
    text = side_by_side_markdown(frame, benchmarks, _name(report_a, str(a)), _name(report_b, str(b)), language)
    files = {}
    if out_dir is not None:
        out = Path(out_dir)
        files["compare.csv"] = write_text(out / "compare.csv", csv_text(frame))
        files["compare.md"] = write_text(out / "compare.md", text)
    return StudyComparison(report_a, report_b, str(a), str(b), frame, text, files)
