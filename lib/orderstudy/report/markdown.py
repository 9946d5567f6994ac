"""The report's tables printed as Markdown, laid out like the reference study's.

Numbers are printed the way the reference prints them: scores with two decimals, change rates
with two decimals, a sign and a percent sign (``+97.83%``), sizes in binary units. Each value is
followed by its interval in brackets, and ``*`` marks a change whose interval excludes zero.
With several seeds a score is the mean over seeds followed by ``±`` its standard deviation over
them, and a difference by ``sd`` its standard deviation over them. A row that cannot be computed
prints N/A (不适用) in every cell and carries a footnote with the reason, as the reference does
for the two orderings it could not run; a benchmark whose items are too few for an interval gets
one footnote under the table saying so and what it would need.
"""

from __future__ import annotations

import math

import pandas as pd

from ..core.params import ReportParams
from ..core.plan import BASE
from . import labels
from .load import NOT_RUN, from_base, unit

_SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def is_missing(value) -> bool:
    """Return whether a table cell holds no value: None, pandas' NA or a float NaN."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def format_size(size_bytes) -> str:
    """Return a size in binary units: ``6227702579`` -> ``5.8 GiB``, ``272600000`` -> ``260.0 MiB``."""
    if is_missing(size_bytes):
        return ""
    size = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def digits(benchmark: str) -> int:
    """Return the decimals a benchmark's numbers are printed with: 2 for percent and points, 3 for a divergence in nats."""
    return 2 if unit(benchmark) == "%" else 3


def _interval(low, high, signed: bool, places: int = 2) -> str:
    if is_missing(low) or is_missing(high):
        return ""
    spec = f"+.{places}f" if signed else f".{places}f"
    return f" [{low:{spec}}, {high:{spec}}]"


def format_score(score, low=math.nan, high=math.nan, seed_sd=math.nan, places: int = 2) -> str:
    """Return ``15.53 [12.10, 18.95]``, or ``15.53 ±0.40 [12.10, 18.95]`` with a spread over seeds (parts left out when missing)."""
    if is_missing(score):
        return ""
    spread = "" if is_missing(seed_sd) else f" ±{seed_sd:.{places}f}"
    return f"{score:.{places}f}{spread}{_interval(low, high, signed=False, places=places)}"


def format_change(value, low=math.nan, high=math.nan, significant=None, *, percent: bool, seed_sd=math.nan,
                  adjusted=None, places: int = 2) -> str:
    """Return a signed change with its interval: ``+97.83% [+50.12, +140.20]*``, or ``-2.08 [-3.10, -1.05] sd 0.40``.

    ``adjusted``: the mark after the multiplicity adjustment; ``*†`` when it holds too.
    """
    if is_missing(value):
        return ""
    mark = ("*" if significant is True else "") + ("†" if adjusted is True else "")
    places = 2 if percent else places   # a change rate is always in percent
    spread = "" if is_missing(seed_sd) else f" sd {seed_sd:.{places}f}"
    return f"{value:+.{places}f}{'%' if percent else ''}{_interval(low, high, signed=True, places=places)}{mark}{spread}"


def pipe_table(header: list[str], rows: list[list[str]]) -> str:
    """Return a Markdown pipe table, columns padded to line up in a plain-text editor."""
    widths = [max(_width(cell) for cell in column) for column in zip(header, *rows)]
    lines = [header, ["-" * max(w, 3) for w in widths], *rows]
    return "\n".join("| " + " | ".join(_pad(cell, w) for cell, w in zip(line, widths)) + " |" for line in lines) + "\n"


def _width(text: str) -> int:
    # A CJK character takes two columns in a monospaced editor, as in the reference's own padding.
    return sum(2 if "\u2e80" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


class _Footnotes:
    """Numbers the reasons for N/A cells: ¹, ², ... in the order they appear."""

    def __init__(self):
        self.texts: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return str(self.texts.index(text) + 1).translate(_SUPERSCRIPTS)

    def render(self) -> str:
        return "".join(f"{str(i).translate(_SUPERSCRIPTS)} {text}\n" for i, text in enumerate(self.texts, 1))


def _legend(language: str, params: ReportParams, family: str = "") -> str:
    """Return the legend under a table; ``family`` (``base``, ``operation``, ``order``, ...) names the marks' family."""
    adjusted = ""
    if family and params.multiplicity != "none":
        adjusted = " " + adjusted_legend(language, params.multiplicity, family)
    return (
        labels.word("interval_note", language).format(confidence=params.confidence)
        + " "
        + labels.word("significant", language).format(confidence=params.confidence)
        + adjusted
        + "\n"
    )


def adjusted_legend(language: str, method: str, family: str) -> str:
    """Return the legend's sentence on ``†``: which adjustment, within which family (``multiplicity.py``)."""
    return labels.word("adjusted_mark", language).format(method=labels.word(f"method_{method}", language),
                                                         family=labels.word(f"family_{family}", language))


def _benchmark_notes(notes: _Footnotes, interval_notes: dict[str, str] | None, language: str) -> None:
    """Add one footnote per benchmark that has no intervals, first, so they read before the rows' notes."""
    for benchmark, reason in (interval_notes or {}).items():
        notes.mark(labels.word("no_interval", language).format(benchmark=labels.benchmark_name(benchmark), reason=reason))


def capped_note(capped: dict, language: str = "en") -> str:
    """Return the line every table carries when tasks were capped (``Study.capped_tasks``), else ""."""
    if not capped:
        return ""
    tasks = "; ".join(
        labels.word("capped_task", language).format(
            benchmark=labels.benchmark_name(benchmark), task=task, tokens=score.max_new_tokens,
            ceiling="?" if score.ceiling_pct is None else f"{score.ceiling_pct:.2f}")
        for benchmark, entries in capped.items() for task, score in entries.items())
    return "\n" + labels.word("capped_note", language).format(tasks=tasks) + "\n"


def left_out_note(left_out: dict, language: str = "en") -> str:
    """Return the warning the main table opens with when result files were left out (``Study.left_out``), else ""."""
    if not left_out:
        return ""
    lines = [labels.word("left_out_note", language).format(n=len(left_out))]
    lines += [f"- `{path.name}`: {reason}" for path, reason in sorted(left_out.items())]
    return "\n".join(lines) + "\n\n"


def project_written_note(written: dict[str, str], total: int, language: str = "en") -> str:
    """Return the line every table showing LawBench carries when some of its tasks are not LawBench's (``Study.project_written_tasks``), else ""."""
    if not written:
        return ""
    return "\n" + labels.word("project_written_note", language).format(n=len(written), total=total, tasks=", ".join(written)) + "\n"


def lawbench_both_ways(rows: list[tuple[str, float, float]], total: int, own: int, language: str = "en") -> str:
    """Return LawBench's score per ordering over all its tasks and over LawBench's own only: rows of (label, all, own)."""
    head = [labels.word("ordering", language), labels.word("lawbench_all", language).format(total=total),
            labels.word("lawbench_own", language).format(own=own)]
    lines = ["", labels.word("lawbench_both_ways", language).format(total=total, own=own) + ":", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += [f"| {label} | {_pct(a)} | {_pct(b)} |" for label, a, b in rows]
    return "\n".join(lines) + "\n"


def _pct(value: float) -> str:
    return "N/A" if math.isnan(value) else f"{value:.2f}"


def _failure_text(row, language: str) -> str:
    """Return the footnote of a failed ordering: which ordering, at which step, why."""
    name = f"{row['label']} ({row['ordering']})"
    error = row.get("error") or ""
    return f"{name}: {labels.word('failed', language)}: {error}" if error else f"{name}: {labels.word('failed', language)}"


def main_markdown(main: pd.DataFrame, benchmarks, language: str = "en", params: ReportParams | None = None,
                  interval_notes: dict[str, str] | None = None, aggregations: dict[str, str] | None = None) -> str:
    """Return the main table as Markdown: scores, change rates against the base, sizes, compression.

    ``interval_notes``: benchmark -> why it has no intervals (``Estimates.interval_notes``);
    ``aggregations``: benchmark -> how its score aggregates its tasks (the result files say it).
    """
    params = params or ReportParams()
    na, notes = labels.word("not_applicable", language), _Footnotes()
    _benchmark_notes(notes, interval_notes, language)
    names = [labels.benchmark_name(b) for b in benchmarks]
    for i, b in enumerate(benchmarks):
        if b in (interval_notes or {}):
            names[i] += notes.mark(labels.word("no_interval", language).format(benchmark=names[i], reason=interval_notes[b]))
    header = (
        [labels.word("ordering", language)] + names
        + [f"{n} {labels.word('change_pct', language)}" for n, b in zip(names, benchmarks) if not from_base(b)]
        + [labels.word("weights", language), labels.word("size", language), labels.word("compression", language)]
    )
    rated = [b for b in benchmarks if not from_base(b)]   # a fidelity score is itself the change from the base
    rows = []
    for _, row in main.iterrows():
        label = row["label"]
        if row["status"] != "ok":
            filler = na if row["status"] == "failed" else labels.word("not_run", language)
            if row["status"] == "failed":
                label += notes.mark(_failure_text(row, language))
            rows.append([label] + [filler] * (len(header) - 1))
            continue
        scores = [format_score(row[b], row[f"{b}_ci_low"], row[f"{b}_ci_high"], row.get(f"{b}_seed_sd", math.nan), digits(b))
                  for b in benchmarks]
        if row["ordering"] == BASE:
            changes = ["0.00%"] * len(rated)  # as the reference prints it
        else:
            changes = [
                format_change(row[f"{b}_change_pct"], row[f"{b}_change_ci_low"], row[f"{b}_change_ci_high"],
                              row[f"{b}_change_significant"], percent=True,
                              adjusted=row.get(f"{b}_change_significant_{params.multiplicity}")) or na
                for b in rated
            ]
        if row.get("note"):
            label += notes.mark(f"{row['label']} ({row['ordering']}): {row['note']}")
        ratio, basis = row["compression_ratio"], row.get("compression_basis", "")
        shown = "" if is_missing(ratio) else f"×{ratio:.2f}"
        if shown and basis and basis != "weights vs base in bf16":
            shown += notes.mark(labels.word("compression_old", language))
        rows.append([label] + scores + changes
                    + [format_size(row.get("weights_bytes")), format_size(row["size_bytes"]), shown])
    parts = "; ".join(f"{labels.benchmark_name(b)} {labels.aggregation(how, language)}"
                      for b, how in (aggregations or {}).items() if how)
    aggregated = labels.word("aggregation_note", language).format(parts=parts) + "\n" if parts else ""
    return (pipe_table(header, rows) + "\n" + notes.render() + _legend(language, params, "base") + aggregated
            + labels.word("size_note", language) + "\n")


def _pair_rows(frame: pd.DataFrame, benchmarks, language: str, columns, notes: _Footnotes, name_of,
               method: str = "none") -> list[list[str]]:
    na = labels.word("not_applicable", language)
    rows = []
    for _, row in frame.iterrows():
        label = row["label"]
        if row.get("note"):
            label += notes.mark(row["note"])
        filler = na if row["status"] != NOT_RUN else labels.word("not_run", language)
        cells = []
        for b in benchmarks:
            for kind in columns:
                if kind == "diff":
                    text = format_change(row[f"{b}_diff"], row[f"{b}_diff_ci_low"], row[f"{b}_diff_ci_high"],
                                         row.get(f"{b}_diff_significant"), percent=False,
                                         seed_sd=row.get(f"{b}_seed_sd", math.nan),
                                         adjusted=row.get(f"{b}_diff_significant_{method}"), places=digits(b))
                else:
                    text = format_change(row[f"{b}_change_pct"], row[f"{b}_change_ci_low"], row[f"{b}_change_ci_high"],
                                         row[f"{b}_change_significant"], percent=True,
                                         adjusted=row.get(f"{b}_change_significant_{method}"))
                cells.append(text or filler)
        rows.append([label] + name_of(row) + cells)
    return rows


def transition_markdown(frame: pd.DataFrame, operation: str, benchmarks, language: str = "en",
                        params: ReportParams | None = None, interval_notes: dict[str, str] | None = None) -> str:
    """Return one per-operation table (S → S+operation) as Markdown, in the reference's layout."""
    params, notes = params or ReportParams(), _Footnotes()
    _benchmark_notes(notes, interval_notes, language)
    header = [labels.word("comparison", language)]
    for b in benchmarks:
        name = labels.benchmark_name(b)
        header += [f"{name} {labels.word('change', language)}", f"{name} {labels.word('change_pct', language)}"]
    rows = _pair_rows(frame, benchmarks, language, ("diff", "change_pct"), notes, lambda row: [], params.multiplicity)
    caption = labels.operation_title(operation, language)
    return f"{caption}\n\n" + pipe_table(header, rows) + "\n" + notes.render() + _legend(language, params, "operation")


def order_effect_markdown(frame: pd.DataFrame, benchmarks, language: str = "en", params: ReportParams | None = None,
                          interval_notes: dict[str, str] | None = None, seeds: int = 1) -> str:
    """Return the order-effect table as Markdown: for each pair A, B the score difference B − A.

    ``seeds``: how many seeds the study has; with several, a line under the table says how the
    order effects are weighed against the seed-to-seed spread, and with one that it is not measured.
    """
    params, notes = params or ReportParams(), _Footnotes()
    _benchmark_notes(notes, interval_notes, language)
    header = [labels.word("pair", language), labels.word("differs_by", language)]
    header += [f"{labels.benchmark_name(b)} {labels.word('diff', language)}" for b in benchmarks]
    rows = _pair_rows(frame, benchmarks, language, ("diff",), notes, lambda row: [row["differs_by"]], params.multiplicity)
    caption = labels.word("order_effects", language)
    model = labels.word("seed_model" if seeds > 1 else "one_seed", language).format(seeds=seeds)
    return (f"{caption}\n\n" + pipe_table(header, rows) + "\n" + notes.render() + _legend(language, params, "order")
            + model + "\n")
