"""Runs a whole study: the ordering notebook once per run with papermill, then the summary.

A run is one ordering with one seed of the study (``seeds: [0, 1]`` makes two runs of each
ordering; a study of one seed has one run per ordering, named after the ordering alone). A run
whose result is up to date (same final state, same evaluation suite, same seed, status ok) is
not run again, so a rerun with nothing changed does no model work and starts no notebook; a
failed run is rerun. Each executed notebook is written to a temporary path and renamed to
``outputs/<study>/notebooks/<ordering>.ipynb`` (``<ordering>.seed<N>.ipynb`` with several seeds).
A failed run is recorded and the others go on. Two runs of the same study at once: the second
stops with a message (a study lock).

The missing states and evaluations are made first: on a Ray cluster with ``executor: ray``
(``ray_cluster.run_on_ray``), else in this process (``in_process.run_in_process``; with vLLM one
engine per checkpoint shape); then the notebooks run and find them stored, one per core at once
(``notebooks.notebook_workers``), since they only read and draw. When a task of that phase
failed, the notebooks run one after another and the failing one meets the step and records it.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ..core import atomic
from ..core.operation import get_operation
from ..core.params import ParamsError
from ..core.plan import canonical_ordering
from .notebooks import notebook_workers, run_notebooks, run_summary
from .preflight import check_inputs, preflight


class StudyLocked(RuntimeError):
    pass


@contextmanager
def study_lock(study_dir: Path):
    """Hold the study's lock, or raise ``StudyLocked`` naming the process that holds it."""
    study_dir.mkdir(parents=True, exist_ok=True)
    path = study_dir / ".lock"
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise StudyLocked(f"study {study_dir.name!r} is already running ({holder}); wait for it to finish, "
                          f"or stop it, then run again (lock: {path})") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}")
    fh.flush()
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def run_study(params_file: str | Path, orderings: list[str] | None = None, log_output: bool = True,
              summary: bool = True) -> dict:
    """Run the study's orderings that are not up to date and return a run report."""
    from ..study.study import Study

    check_inputs(params_file)  # every missing input at once, before the study loads (a device it lacks included)
    study = Study(params_file)
    studies = study.variants()  # one per seed, and per family in a study of families
    todo = selected_orderings(study, orderings)
    # "orderings": one entry per run, keyed by the run's name (F>P>Q; F>P>Q.seed1 with several seeds;
    # gptq/F>P>Q in a study of families).
    report = {"study": study.params.study, "params_file": str(study.params_file), "executor": study.params.executor,
              "seeds": list(study.params.seeds), "families": list(study.families), "orderings": {},
              "steps_planned": len(study.plan.steps), "steps_naive": study.plan.naive_step_count}
    started = time.perf_counter()
    with study_lock(study.paths.dir):
        report |= check_and_announce(study, studies, todo)
        report |= make_missing_work(study, studies, todo, log_output)
        phase = report.get("pre_evaluation") or report.get("ray")
        report["orderings"] = run_ordering_notebooks(study, studies, todo, phase is not None and not phase["failed"],
                                                     log_output)
        report["seconds"] = round(time.perf_counter() - started, 2)
        report["steps_built"] = steps_built(report)
        atomic.write_json(study.paths.dir / "last_run.json", report)
        if summary:
            for family in study.for_each_family():  # a study of families: one summary each
                try:
                    print(f"[{study.params.study}] summary: {run_summary(params_file, family.family)}", flush=True)
                except Exception as exc:  # the results are safe; say why the tables are not there
                    print(f"[{study.params.study}] summary notebook failed: {exc}", file=sys.stderr, flush=True)
    failed = [o for o, r in report["orderings"].items() if r["status"] != "ok"]
    print(f"[{study.params.study}] done in {report['seconds']:.1f} s: "
          f"{len(report['orderings']) - len(failed)} ok, {len(failed)} failed{(' (' + ', '.join(failed) + ')') if failed else ''}; "
          f"{len(report['steps_built'])} operation steps built. Results: {study.paths.dir}", flush=True)
    return report


def selected_orderings(study, orderings: list[str] | None) -> list[str]:
    """Return the orderings to run, in the plan's order: all of them, or those ``--orderings`` names."""
    todo = list(study.plan.orderings)
    if not orderings:
        return todo
    try:
        wanted = {canonical_ordering(o) for o in orderings}  # F-P-Q, FPQ, F>P>Q: the same ordering
    except ValueError as exc:
        raise ParamsError(f"--orderings: {exc}") from None
    unplanned = sorted(wanted - set(todo))
    if unplanned:
        raise ParamsError(f"--orderings {', '.join(unplanned)}: not in the study's plan ({study.params_file}: "
                          f"orderings = {', '.join(todo)})")
    return [o for o in todo if o in wanted]


def check_and_announce(study, studies, todo: list[str]) -> dict:
    """Check the study's inputs and print what it will do; return the run report's plan and engine fields."""
    preflight(study)
    planned = planned_states(studies)  # after the checks: a state's key reads its data
    fields = {"states_planned": len(planned), "states_shared": sorted(label for label, shared in planned.items() if shared)}
    print(f"[{study.params.study}] {len(todo)} orderings, {len(study.plan.steps)} operation steps "
          f"(instead of {study.plan.naive_step_count} without sharing); device {study.device}, dtype {study.dtype}",
          flush=True)
    if study.families:
        op = get_operation(study.family_operation)
        print(f"[{study.params.study}] {len(study.families)} families ({op.section}.method: {', '.join(study.families)}): "
              f"{len(todo) * len(studies)} runs, {len(planned)} model states; a state without {op.letter} is shared "
              "by every family and built once", flush=True)
    elif len(studies) > 1:
        print(f"[{study.params.study}] {len(studies)} seeds {list(study.params.seeds)}: {len(todo) * len(studies)} runs, "
              f"{len(planned)} model states ({len(fields['states_shared'])} shared by every seed)", flush=True)
    # Chosen once, for every state, before any work (backends.choose_engine).
    print(f"[{study.params.study}] evaluation engine: {study.engine.describe()}", flush=True)
    fields["engine"] = {**study.engine.key(), "reason": study.engine.reason}
    return fields


def make_missing_work(study, studies, todo: list[str], log_output: bool) -> dict:
    """Make the missing states and evaluations before the notebooks where the study asks for it.

    Returns the phase's report under its name (``pre_evaluation`` for the local executor, ``ray``
    for the Ray executor).
    """
    if study.params.executor == "local":
        from .in_process import run_in_process

        # Every missing state and evaluation here first (with vLLM, one engine per checkpoint
        # shape); the notebooks then find them stored and run several at once.
        return {"pre_evaluation": run_in_process(studies, todo, show=lambda line: print(line, flush=True))}
    if study.params.executor == "ray":
        from .ray_cluster import run_on_ray

        # Every missing state and evaluation first, independent branches at once; the notebooks
        # then find them stored. A step that failed there fails again in its notebook, which
        # records it as the local executor would.
        return {"ray": run_on_ray(studies, todo, log_to_driver=log_output,
                                  show=lambda line: print(line, flush=True))}
    return {}


def run_ordering_notebooks(study, studies, todo: list[str], premade: bool, log_output: bool) -> dict:
    """Run the notebook of every run that is not up to date; return each run's entry by run name, in plan order.

    ``premade``: every state and evaluation was made before (``make_missing_work``), so a
    notebook only reads and draws and several run at once (``notebook_workers``). Otherwise (no
    such phase, or a task of it failed and its notebooks will meet the step again) each builds
    its states, one after another.
    """
    runs = [(seeded, ordering) for seeded in studies for ordering in todo]  # the first family's, first seed's first
    entries: dict[str, dict] = {}
    pending = []
    for i, (seeded, ordering) in enumerate(runs, start=1):
        name = seeded.run_name(ordering)
        if seeded.is_up_to_date(ordering):
            print(f"[{study.params.study}] [{i}/{len(runs)}] {name}: up to date, not rerun", flush=True)
            entries[name] = {"ordering": ordering, "seed": seeded.seed, "family": seeded.family, "status": "ok",
                             "ran": False, "seconds": 0.0}
        else:
            pending.append((i, seeded, ordering))
    workers, threads = notebook_workers(len(pending)) if premade else (1, None)
    if workers > 1:
        print(f"[{study.params.study}] {len(pending)} notebooks, {workers} at a time ({threads} thread(s) each; "
              "every state and evaluation is stored, so they only read and draw)", flush=True)
    for i, seeded, ordering, status, error, seconds in run_notebooks(
            pending, len(runs), study, workers, threads, log_output and workers == 1):
        name = seeded.run_name(ordering)
        result = seeded.load_result(ordering) or {}
        entries[name] = {"ordering": ordering, "seed": seeded.seed, "family": seeded.family, "status": status, "ran": True,
                         "seconds": round(seconds, 2), "steps": result.get("steps", []), "error": error}
        print(f"[{study.params.study}] [{i}/{len(runs)}] {name}: {status} in {seconds:.1f} s"
              + (f" — {error}" if error else ""), flush=True)
    return {seeded.run_name(o): entries[seeded.run_name(o)] for seeded, o in runs}


def steps_built(report: dict) -> list[str]:
    """Return the states the run built, by label (``F>P.seed1`` where the seed decides the state), each once."""
    return sorted({s.get("label", s["state"]) for o in report["orderings"].values()
                   for s in o.get("steps", []) if not s.get("reused")}
                  | set(report.get("ray", {}).get("built", []))
                  | set(report.get("pre_evaluation", {}).get("built", [])))


def planned_states(studies) -> dict[str, bool]:
    """Return every model state the runs need, by label (``F>P.seed1``, ``Q>P.gptq``), and whether it is shared.

    A state no stochastic step decides has one key for every seed: one state, shared; in a study
    of families, so does a state without the operation the families differ in.
    """
    by_key: dict[str, list[str]] = {}
    for seeded in studies:
        for state in seeded.plan.states:
            by_key.setdefault(seeded.store.key(state), []).append(seeded.store.label(state))
    return {labels[0]: len(labels) > 1 or len(studies) == 1 for labels in by_key.values()}


def print_plan(params_file) -> None:
    from ..study.study import Study

    study = Study(params_file)
    studies = study.variants()
    planned = planned_states(studies)
    seeds = len(study.params.seeds) > 1
    print(f"study {study.params.study}: {len(study.plan.orderings)} orderings, {len(study.plan.steps)} steps "
          f"(naive {study.plan.naive_step_count})"
          + (f"; families {', '.join(study.families)}" if study.families else "")
          + (f"; seeds {list(study.params.seeds)}" if seeds else "")
          + (f": {len(planned)} states, {sum(planned.values())} shared" if len(studies) > 1 else ""))
    seen = set()
    for seeded in studies:
        for s in seeded.plan.states:
            st = seeded.store.state(s)
            if st.key in seen:
                continue
            seen.add(st.key)
            shared = " and ".join(
                [f"every {kind}" for kind, shares in (
                    ("family", study.families and not seeded.store.of_family(s)),
                    ("seed", seeds and not seeded.store.seeded(s))) if shares])
            shared = f"  ({shared})" if shared else ""
            print(f"  state {seeded.store.label(s):14s} {st.key}  "
                  f"{'built' if seeded.store.is_complete(st, verify_hashes=False) else 'missing'}{shared}")
    for seeded in studies:
        for o in seeded.plan.orderings:
            print(f"  run {seeded.run_name(o):14s} {'up to date' if seeded.is_up_to_date(o) else 'to run'}")
