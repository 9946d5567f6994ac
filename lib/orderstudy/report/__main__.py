"""Command line of the report: ``python -m orderstudy.report COMMAND ...`` (``--help`` lists them)."""

from __future__ import annotations

import argparse
import sys

import matplotlib

matplotlib.use("Agg")  # the command line never has a display


def _families(source, family: str | None) -> tuple:
    """Return the families to report: the one asked for, else every family of a study of families, else (None,)."""
    from pathlib import Path

    from ..core import paths
    from ..core.params import load_params

    if family or not paths.resolve(source).is_file():
        return (family,)
    return load_params(Path(source)).families or (None,)


def _build(args) -> int:
    from .build import build_report
    from .families import compare_families

    for family in _families(args.source, args.family):
        report = build_report(args.source, language=args.language, outputs_dir=args.outputs_dir,
                              figures=not args.no_figures, family=family)
        print(report.markdown["main"])
        for path in report.files.values():
            print(f"wrote {path}")
    if len(_families(args.source, None)) > 1:  # a study of families: their order effects side by side
        comparison = compare_families(args.source, language=args.language, outputs_dir=args.outputs_dir)
        print(comparison.markdown)
        for path in comparison.files.values():
            print(f"wrote {path}")
    return 0


def _html(args) -> int:
    from .notebook import build_html

    for family in _families(args.params_file, args.family):
        print(f"wrote {build_html(args.params_file, language=args.language, compare_with=args.compare_with, outputs_dir=args.outputs_dir, family=family)}")
    return 0


def _compare(args) -> int:
    from .compare import compare_studies

    comparison = compare_studies(args.a, args.b, out_dir=args.out, language=args.language, outputs_dir=args.outputs_dir)
    print(comparison.markdown)
    for path in comparison.files.values():
        print(f"wrote {path}")
    return 0


def _check_reference(args) -> int:
    from .reference import inconsistent_cells, reproduced_changes

    checked = reproduced_changes()
    cells = inconsistent_cells()
    print(f"{len(checked)} printed changes checked against the printed scores; {len(cells)} cannot be reproduced:")
    for cell in cells:
        print(f"  {cell}")
    return 0


def _calibrate(args) -> int:
    from .build import resolve_source
    from .calibrate import calibration_table, calibration_text
    from .estimates import estimate
    from .load import load_study

    source = resolve_source(args.source, outputs_dir=args.outputs_dir, family=args.family)
    study = load_study(source.paths, source.orderings, source.benchmarks, source.seeds)
    frame = calibration_table(estimate(study, source.params), studies=args.studies, seed=args.seed)
    print(calibration_text(frame, source.params.confidence), end="")
    return 0


def _write_notebook(args) -> int:
    from .notebook import write_summary_notebook

    print(f"wrote {write_summary_notebook()}")
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m orderstudy.report") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--language", choices=("en", "zh"), help="default: the params file's report.language")
        p.add_argument("--outputs-dir", help="where study outputs live (default: outputs/)")

    def family(p):
        p.add_argument("--family", help="a study of families (quantize.method: [nf4, gptq]): only this one "
                                        "(default: each; calibrate: the first)")

    p = commands.add_parser("build", help="write a study's tables and figures under outputs/<study>/")
    p.add_argument("source", help="a params file or an outputs/<study> directory")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    common(p)
    family(p)
    p.set_defaults(run=_build)

    p = commands.add_parser("html", help="run the summary notebook and export outputs/<study>/report.html")
    p.add_argument("params_file")
    p.add_argument("--compare-with", help="another params file or study directory to show beside this one")
    common(p)
    family(p)
    p.set_defaults(run=_html)

    p = commands.add_parser("compare", help="two studies' main tables side by side (CSV + Markdown)")
    p.add_argument("a", help="params file or outputs/<study> directory")
    p.add_argument("b", help="params file or outputs/<study> directory")
    p.add_argument("--out", required=True, help="directory for compare.csv and compare.md")
    common(p)
    p.set_defaults(run=_compare)

    p = commands.add_parser("check-reference", help="print the reference study's changes that its own scores cannot give")
    p.set_defaults(run=_check_reference)

    p = commands.add_parser("calibrate", help="simulate studies shaped like a finished one: do its intervals hold?")
    p.add_argument("source", help="a params file or an outputs/<study> directory")
    p.add_argument("--studies", type=int, default=400, help="simulated studies per benchmark (default 400)")
    p.add_argument("--seed", type=int, default=0, help="the simulation's random seed (default 0)")
    p.add_argument("--outputs-dir", help="where study outputs live (default: outputs/)")
    family(p)
    p.set_defaults(run=_calibrate)

    p = commands.add_parser("write-notebook", help="regenerate notebooks/summary.ipynb from orderstudy.report.notebook")
    p.set_defaults(run=_write_notebook)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
