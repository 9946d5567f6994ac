"""One study's whole report: read its results, make every table and figure, write them to disk.

``build_report(source)`` is the one call the summary notebook, the Makefile and the command line
make. ``source`` is a params file (``params/demo.yaml``) or a study's output directory
(``outputs/demo``). It writes, under ``outputs/<study>/``::

    tables/main.csv, main.md                 one row per ordering (main.csv's columns are a contract)
    tables/finetune|prune|quantize.csv, .md  the effect of each operation on each state
    tables/order_effects.csv, .md            the same operations in another order
    tables/interactions.csv, .md             X then Y beyond X and Y alone: s(X>Y) - s(X) - s(Y) + s(base)
    tables/power.csv, .md                    per benchmark, the smallest change the study can detect
    tables/claims.csv, .md                   the literature's claims about order, tested (claims.yaml)
    figures/change_heatmap.png, .svg
    figures/score_vs_size.png, .svg
    figures/operation_effects.png, .svg
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..core import paths as project_paths
from ..core.atomic import write_text
from ..core.params import ReportParams, load_params
from ..core.paths import StudyPaths
from . import figures as figs
from . import labels, markdown
from .claims import claims_markdown, claims_table, load_claims
from .estimates import Estimates, estimate
from .interactions import interaction_markdown, interaction_table
from .load import Study, load_study
from .power import power_markdown, power_table
from .tables import main_table, order_effect_table, transition_tables

FIGURE_NAMES = ("change_heatmap", "score_vs_size", "operation_effects")


@dataclass(frozen=True)
class StudySource:
    """Where a study's results are and how to report them."""

    paths: StudyPaths
    params: ReportParams
    orderings: tuple[str, ...] | None  # planned orderings; None = the reference 16 plus any found
    benchmarks: tuple[str, ...] | None  # None = those found in the results
    origin: str  # what the user passed, for messages and captions
    seeds: tuple[int, ...] | None = None  # the study's seeds; None = those the result files say


@dataclass
class Report:
    """A study's tables (data frames and Markdown) and the files written from them."""

    study: Study
    estimates: Estimates = field(repr=False)
    language: str
    main: pd.DataFrame = field(repr=False)
    transitions: dict[str, pd.DataFrame] = field(repr=False)  # keyed by operation letter: F, P, Q
    order_effects: pd.DataFrame = field(repr=False)
    power: pd.DataFrame = field(repr=False)
    claims: pd.DataFrame = field(repr=False)
    markdown: dict[str, str] = field(repr=False)  # keyed main, F, P, Q, order_effects, power, claims
    files: dict[str, Path] = field(default_factory=dict)  # file name -> path, e.g. "main.csv"
    interactions: pd.DataFrame | None = field(default=None, repr=False)  # one row per X>Y (interactions.py)
    marks: dict[str, str] = field(default_factory=dict)  # benchmark -> the mark its name carries ("lawbench": "‡")
    family: str | None = None  # in a study of families, the one reported (its outputs/<study>/<family>/)

    @property
    def figures(self) -> dict[str, Path]:
        """Return the PNG of each figure, by figure name."""
        return {name: self.files[f"{name}.png"] for name in FIGURE_NAMES if f"{name}.png" in self.files}


def resolve_source(source: str | os.PathLike, *, outputs_dir: str | os.PathLike | None = None,
                   family: str | None = None) -> StudySource:
    """Return where a study (or one family of a study of families) is, from a params file or an output directory.

    A directory is taken as ``outputs/<study>`` (its name is the study's name, its ``results/``
    the result files), or as one family's ``outputs/<study>/<family>`` (beside the study's
    ``states/``), and reported with the default report parameters; a file is a params file. A
    study of families (``quantize.method: [nf4, gptq]``) is reported one family at a time:
    ``family`` names it (default: the first).
    """
    path = project_paths.resolve(source)
    if path.is_dir():
        if not (path / "results").is_dir():
            families = sorted(d.name for d in path.iterdir() if (d / "results").is_dir()) if (path / "states").is_dir() else []
            hint = (f"; it is a study of families: pass one of {', '.join(str(path / f) for f in families)}" if families
                    else "; pass a params file or outputs/<study>")
            raise FileNotFoundError(f"{path}: not a study output directory (it has no results/ folder){hint}")
        if (path.parent / "states").is_dir() and not (path / "states").is_dir():  # outputs/<study>/<family>
            return StudySource(StudyPaths(path.parent.name, path.parent.parent, path.name), ReportParams(), None, None,
                               str(source))
        return StudySource(StudyPaths(path.name, path.parent), ReportParams(), None, None, str(source))
    params = load_params(path)
    if params.families:
        family = family or params.families[0]
        if family not in params.families:
            raise ValueError(f"{path}: family {family!r} is not one of the study's families ({', '.join(params.families)})")
        params = params.for_family(family)
    elif family:
        raise ValueError(f"{path}: family {family!r}: the study has one family (no operation's method is a list)")
    outputs = project_paths.resolve(outputs_dir) if outputs_dir else None
    return StudySource(
        StudyPaths(params.study, outputs, family or None), params.report, tuple(params.ordering_list),
        tuple(params.evaluation.benchmarks), str(source), tuple(params.seeds),
    )


def make_report(source: StudySource, language: str | None = None, current_keys: dict[str, str] | None = None) -> Report:
    """Return the report of a study, computed in memory (nothing written).

    ``current_keys``: the current params' result keys (``Study.current_result_keys``); results
    made by other params are then left out of every table, and the main table says which.
    """
    language = labels.check_language(language or source.params.language)
    study = load_study(source.paths, source.orderings, source.benchmarks, source.seeds, current_keys)
    # LawBench's name carries ‡ in every table and figure when some of its tasks are not LawBench's.
    written = study.project_written_tasks() if "lawbench" in study.benchmarks else {}
    marks = {"lawbench": "‡"} if written else {}
    with labels.marked_benchmarks(marks):
        report = _tables(source, study, language, written)
    report.marks = marks
    report.family = source.paths.family
    return report


def _tables(source: StudySource, study: Study, language: str, written: dict[str, str]) -> Report:
    """Return the report's tables and their texts (``make_report``), benchmark names marked as the caller set them."""
    est = estimate(study, source.params)
    main = main_table(est, language)
    transitions = transition_tables(est, language)
    order_effects = order_effect_table(est, language)
    power = power_table(est)
    claims = claims_table(est, load_claims(source.params.claims_file), language)
    notes = est.interval_notes()
    aggregations = {b: next((r.benchmarks[b].aggregation for r in study.results.values() if r.ok and b in r.benchmarks), "")
                    for b in study.benchmarks}
    texts = {"main": markdown.main_markdown(main, study.benchmarks, language, source.params, notes, aggregations)}
    for op, table in transitions.items():
        texts[op] = markdown.transition_markdown(table, op, study.benchmarks, language, source.params, notes)
    texts["order_effects"] = markdown.order_effect_markdown(order_effects, study.benchmarks, language, source.params,
                                                            notes, len(study.seeds))
    # Scores of capped tasks are bounded by their ceiling: every table says so, and main.csv lists them.
    capped = study.capped_tasks()
    texts = {name: text + markdown.capped_note(capped, language) for name, text in texts.items()}
    if study.left_out:
        texts["main"] = markdown.left_out_note(study.left_out, language) + texts["main"]
    main["capped_tasks"] = "; ".join(f"{b}:{t}" for b, tasks in capped.items() for t in tasks)
    texts["power"] = power_markdown(power, language, source.params.confidence, source.params.power)
    interactions = interaction_table(est, language)
    texts["interactions"] = interaction_markdown(interactions, study.benchmarks, language, source.params, notes)
    texts["claims"] = claims_markdown(claims, study.benchmarks, language, source.params.confidence,
                                      source.params.multiplicity)
    texts = with_project_written_tasks(study, main, texts, written, language)
    return Report(study, est, language, main, transitions, order_effects, power, claims, texts,
                  interactions=interactions)


def with_project_written_tasks(study: Study, main: pd.DataFrame, texts: dict[str, str], written: dict[str, str],
                               language: str) -> dict[str, str]:
    """Return the tables' texts with LawBench's project-written tasks marked wherever LawBench's score shows.

    Every table with a LawBench column says which tasks are not LawBench's; the main table also
    gives LawBench's score both ways (all tasks, LawBench's own only), and main.csv names them.
    """
    main["lawbench_project_written_tasks"] = "; ".join(written)
    if not written:
        return texts
    total = max((len(r.benchmarks["lawbench"].tasks) for r in study.results.values() if r.ok and "lawbench" in r.benchmarks),
                default=0)
    note = markdown.project_written_note(written, total, language)
    texts = {name: text + note for name, text in texts.items()}
    rows = [(row["label"], study.score(row["ordering"], "lawbench"), study.lawbench_own_score(row["ordering"], set(written)))
            for _, row in main.iterrows() if study.status(row["ordering"]) == "ok"]
    texts["main"] += markdown.lawbench_both_ways(rows, total, total - len(written), language)
    return texts


def csv_text(frame: pd.DataFrame) -> str:
    """Return a table as CSV: six significant digits, empty cells for missing values."""
    return frame.to_csv(index=False, float_format="%.6g", lineterminator="\n")


def write_tables(report: Report, tables_dir: Path) -> dict[str, Path]:
    """Write every table as CSV and Markdown under ``tables_dir``; return the paths by file name."""
    frames = {"main": report.main, **{labels.operation_section(op): t for op, t in report.transitions.items()},
              "order_effects": report.order_effects, "power": report.power, "claims": report.claims,
              "interactions": report.interactions}
    texts = {"main": report.markdown["main"], **{labels.operation_section(op): report.markdown[op] for op in report.transitions},
             "order_effects": report.markdown["order_effects"], "power": report.markdown["power"],
             "claims": report.markdown["claims"], "interactions": report.markdown["interactions"]}
    written = {}
    for name, frame in frames.items():
        written[f"{name}.csv"] = write_text(tables_dir / f"{name}.csv", csv_text(frame))
        written[f"{name}.md"] = write_text(tables_dir / f"{name}.md", texts[name])
    return written


def write_figures(report: Report, figures_dir: Path) -> dict[str, Path]:
    """Draw and save the three figures as PNG and SVG under ``figures_dir``; return the paths by file name."""
    benchmarks = report.study.benchmarks
    with labels.marked_benchmarks(report.marks):
        drawn = {
            "change_heatmap": figs.change_heatmap(report.main, benchmarks, report.language),
            "score_vs_size": figs.score_size_figure(report.main, benchmarks, report.language),
            "operation_effects": figs.operation_effects_figure(report.transitions, benchmarks, report.language),
        }
    written = {}
    for name, fig in drawn.items():
        for fmt, path in figs.save_figure(fig, figures_dir, name).items():
            written[f"{name}.{fmt}"] = path
    return written


def build_report(
    source: str | os.PathLike,
    *,
    language: str | None = None,
    outputs_dir: str | os.PathLike | None = None,
    figures: bool = True,
    current_keys: dict[str, str] | None = None,
    family: str | None = None,
) -> Report:
    """Return a study's report after writing its tables (and figures) under ``outputs/<study>/``.

    ``source``: a params file or a study output directory. ``language``: ``en`` or ``zh``
    (default: the params file's ``report.language``). ``outputs_dir``: where studies' outputs
    live (default: ``outputs/``, or ``$ORDERSTUDY_OUTPUTS``). ``current_keys``: see ``make_report``.
    ``family``: in a study of families, the family reported (under ``outputs/<study>/<family>/``).
    """
    where = resolve_source(source, outputs_dir=outputs_dir, family=family)
    report = make_report(where, language, current_keys)
    report.files.update(write_tables(report, where.paths.tables))
    if figures:
        report.files.update(write_figures(report, where.paths.figures))
    return report
