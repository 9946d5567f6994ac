"""The report: finished result files turned into tables, intervals, figures and one HTML page.

Entry points (the Makefile's ``summary`` and ``report`` targets call the first and the last):

- ``build_report(params_file)``: tables (CSV, Markdown) and figures under ``outputs/<study>/``.
- ``compare_studies(a, b, out_dir=...)``: two studies' main tables side by side.
- ``inconsistent_cells()``: the reference study's printed changes its printed scores cannot give.
- ``build_html(params_file)``: run ``notebooks/summary.ipynb`` and export ``outputs/<study>/report.html``.

Modules, one idea each: ``load`` (result files and their contract), ``intervals`` (intervals,
paired tests and power from per-item scores, and why those), ``estimates`` (scores, intervals,
comparisons over items and seeds), ``changes`` (which states are compared), ``tables``,
``markdown``, ``power`` (the smallest change the study can detect), ``claims`` (the literature's
claims about order, from ``claims.yaml``, tested), ``labels`` (English and the reference's
Chinese), ``figures``, ``reference``, ``compare``, ``build``, ``notebook``.
"""

from .build import Report, build_report, make_report, resolve_source
from .compare import compare_studies
from .load import ResultFileError, load_result, load_study
from .notebook import build_html, execute_summary, export_html
from .reference import inconsistent_cells, load_reference

__all__ = [
    "Report",
    "ResultFileError",
    "build_html",
    "build_report",
    "compare_studies",
    "execute_summary",
    "export_html",
    "inconsistent_cells",
    "load_reference",
    "load_result",
    "load_study",
    "make_report",
    "resolve_source",
]
