"""The command line: ``orderstudy run|summary|plan|check|estimate|backends PARAMS`` (or ``python -m orderstudy``).

``orderstudy report|lawbench|prepare ...`` hand their arguments to the report's, the LawBench
scorer's and the preparation's own command lines, so each keeps one parser and one ``--help``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .core import atomic
from .core.params import ParamsError, load_params
from .core.plan import ordering_argument
from .evaluation.backends import BackendError
from .evaluation.planning import GPUS, PlanningError
from .execution.notebooks import run_summary
from .execution.preflight import InputProblems, check_inputs, offline_hub, preflight
from .execution.runner import StudyLocked, print_plan, run_study
from .execution.threads import quiet_threads


# command -> (help line, the module whose ``main(argv, prog=...)`` takes the rest of the line).
FORWARDED = {
    "report": ("the report: build tables and figures, html, compare two studies, check-reference, write-notebook",
               "orderstudy.report.__main__"),
    "lawbench": ("LawBench's scorer: `lawbench score PREDICTIONS_DIR --out results.csv`",
                 "orderstudy.benchmarks.lawbench.cli"),
    "prepare": ("prepare inputs: model, tiny, data, all, or `prepare convert-finetune IN.jsonl OUT.jsonl`",
                "orderstudy.prepare"),
}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import importlib

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in FORWARDED:
        module = importlib.import_module(FORWARDED[argv[0]][1])
        return module.main(argv[1:], prog=f"orderstudy {argv[0]}")
    quiet_threads()
    parser = argparse.ArgumentParser(prog="orderstudy", description="Run an ordering study.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run every ordering that is not up to date, then the summary")
    p_run.add_argument("params")
    p_run.add_argument("--orderings", nargs="*", type=ordering_argument, metavar="ORDERING",
                       help='only these orderings, e.g. base F P-F F-P-Q (or FPQ; "F>P>Q" only in quotes, '
                            'as a shell reads a bare ">" as a redirection)')
    p_run.add_argument("--quiet", action="store_true", help="do not stream the notebooks' output")
    p_sum = sub.add_parser("summary", help="rebuild the summary notebook, tables and figures")
    p_sum.add_argument("params")
    p_plan = sub.add_parser("plan", help="print the plan: orderings, states, keys, what is up to date")
    p_plan.add_argument("params")
    p_check = sub.add_parser("check", help="validate a params file and its inputs, doing no work")
    p_check.add_argument("params")
    p_est = sub.add_parser("estimate", help="print the study's size and its time estimated from a short measurement "
                                            "(or, where its device, model or data are missing, from documented rates)")
    p_est.add_argument("params")
    p_est.add_argument("--items", type=int, default=16, help="prompts in the measured sample (default 16)")
    p_est.add_argument("--json", help="also write the figures to this JSON file")
    p_est.add_argument("--gpu", choices=sorted(GPUS), help="price the study from documented rates on this GPU "
                                                        "(default: measure here if every input is, else A100-80GB)")
    p_cmp = sub.add_parser("backends", help="check that the evaluation backends give the same greedy answers")
    p_cmp.add_argument("params")
    p_cmp.add_argument("--items", type=int, default=16, help="prompts in the sample (default 16)")
    for name, (help_line, _) in FORWARDED.items():
        sub.add_parser(name, help=help_line, add_help=False)  # listed here; parsed by its own module
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            run_study(args.params, args.orderings, log_output=not args.quiet)
        elif args.command == "summary":
            for family in load_params(args.params).families or (None,):  # a study of families: one summary each
                print(run_summary(args.params, family))
        elif args.command == "plan":
            print_plan(args.params)
        elif args.command == "check":
            return check(args.params)
        elif args.command == "estimate":
            result = estimate(args.params, args.items, args.gpu)
            if args.json:
                atomic.write_json(Path(args.json), result)
        elif args.command == "backends":
            from .evaluation import throughput
            from .study.study import Study

            study = Study(args.params)
            preflight(study)
            print(throughput.format_comparison(throughput.compare_backends(study, args.items)))
    except InputProblems as exc:
        report_problems(exc)
        return 2
    except (ParamsError, StudyLocked, BackendError, PlanningError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from .benchmarks.data import DataError
        from .checkpoints.models import ModelError

        if isinstance(exc, (DataError, ModelError)):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    return 0


def estimate(params_file: str, items: int, gpu: str | None) -> dict:
    """``orderstudy estimate``: measured on the study's device when every input is here, else from documented rates."""
    from .evaluation import planning, throughput
    from .study.study import Study

    with offline_hub():
        try:
            params = check_inputs(params_file, offline=True)
            missing = []
        except InputProblems as exc:
            params, missing = load_params(params_file), [p.line(exc.params_file) for p in exc.problems]
    if missing or gpu:
        import orderstudy.benchmarks  # noqa: F401  (registers the benchmarks whose items are counted)

        result = planning.plan_estimate(params, gpu or planning.DEFAULT_GPU, planning.local_tokenizer(params))
        print(planning.format_plan_estimate(params_file, result, missing or [f"--gpu {gpu} asked for"]))
        return result
    study = Study(params_file)
    preflight(study)
    result = throughput.estimate(study, items)
    print(throughput.format_estimate(study, result))
    return result


def check(params_file: str) -> int:
    """``orderstudy check``: every missing input at once, then the checks that read them; offline, no work done."""
    from .study.study import Study

    with offline_hub():  # a hub id is looked up in the local cache only: no request, no retry
        try:
            check_inputs(params_file, offline=True)
        except InputProblems as exc:
            report_problems(exc)
            return 2
        study = Study(params_file)
        preflight(study)
    print(f"{study.params_file}: OK ({len(study.plan.orderings)} orderings, {len(study.plan.steps)} steps)")
    return 0


def report_problems(exc: InputProblems) -> None:
    """Print each missing input on its own line (the params file, the key, what is expected), then their count."""
    for problem in exc.problems:
        print(f"error: {problem.line(exc.params_file)}", file=sys.stderr)
    print(f"{exc.params_file}: {len(exc.problems)} problem(s) with the study's inputs; nothing was run", file=sys.stderr)
