"""Runs a whole study: the ordering notebook once per run with papermill, then the summary.

A run is one ordering with one seed of the study (``seeds: [0, 1]`` makes two runs of each
ordering; a study of one seed has one run per ordering, named after the ordering alone). A run
whose result is up to date (same final state, same evaluation suite, same seed, status ok) is
not run again, so a rerun with nothing changed does no model work and starts no notebook; a
failed run is rerun. Each executed notebook is written to a temporary path and renamed to
``outputs/<study>/notebooks/<ordering>.ipynb`` (``<ordering>.seed<N>.ipynb`` with several seeds).
A failed run is recorded and the others go on. Two runs of the same study at once: the second
stops with a message (a study lock).

With ``executor: ray`` the missing states and evaluations are made on a Ray cluster first
(``executors.run_on_ray``), and a vLLM study makes them in this process (``executors.run_in_process``:
one engine per checkpoint shape); then the same notebooks run and find them stored, one per core
at once (``notebook_workers``), since they only read and draw.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ..core import atomic, paths
from ..evaluation.backends import BackendError
from ..core.params import ParamsError
from ..core.plan import format_ordering, parse_ordering


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


def execute_notebook(template: Path, output: Path, parameters: dict, log_output: bool = True) -> None:
    """Execute ``template`` with papermill into ``output`` (atomically, even when it fails).

    Its progress bars print one line each (``notebook_output.papermill_progress``).
    """
    import papermill as pm

    from ..notebook.output import papermill_progress

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp.ipynb")
    try:
        with papermill_progress():
            pm.execute_notebook(str(template), str(tmp), parameters=parameters, kernel_name="python3",
                                cwd=str(paths.ROOT), log_output=log_output, progress_bar=False)
    finally:
        if tmp.exists():
            os.replace(tmp, output)


def run_study(params_file: str | Path, orderings: list[str] | None = None, log_output: bool = True,
              summary: bool = True) -> dict:
    """Run the study's orderings that are not up to date and return a run report."""
    from ..study.study import Study

    study = Study(params_file)
    studies = [study.for_seed(seed) for seed in study.params.seeds]
    todo = list(study.plan.orderings)
    if orderings:
        try:
            wanted = {format_ordering(parse_ordering(o)) for o in orderings}
        except ValueError as exc:
            raise ParamsError(f"--orderings: {exc}") from None
        unplanned = sorted(wanted - set(todo))
        if unplanned:
            raise ParamsError(f"--orderings {', '.join(unplanned)}: not in the study's plan ({study.params_file}: "
                              f"orderings = {', '.join(todo)})")
        todo = [o for o in todo if o in wanted]
    # "orderings": one entry per run, keyed by the run's name (F>P>Q, or F>P>Q.seed1 with several seeds).
    report = {"study": study.params.study, "params_file": str(study.params_file), "executor": study.params.executor,
              "seeds": list(study.params.seeds), "orderings": {},
              "steps_planned": len(study.plan.steps), "steps_naive": study.plan.naive_step_count}
    started = time.perf_counter()
    with study_lock(study.paths.dir):
        preflight(study)
        planned = planned_states(studies)  # after the checks: a state's key reads its data
        report |= {"states_planned": len(planned),
                   "states_shared": sorted(label for label, shared in planned.items() if shared)}
        print(f"[{study.params.study}] {len(todo)} orderings, {len(study.plan.steps)} operation steps "
              f"(instead of {study.plan.naive_step_count} without sharing); device {study.device}, dtype {study.dtype}",
              flush=True)
        if len(studies) > 1:
            print(f"[{study.params.study}] {len(studies)} seeds {list(study.params.seeds)}: {len(todo) * len(studies)} runs, "
                  f"{len(planned)} model states ({len(report['states_shared'])} shared by every seed)", flush=True)
        # Chosen once, for every state, before any work (backends.choose_engine).
        print(f"[{study.params.study}] evaluation engine: {study.engine.describe()}", flush=True)
        report["engine"] = {**study.engine.key(), "reason": study.engine.reason}
        if study.params.executor == "local" and study.engine.name == "vllm":
            from .executors import run_in_process

            # An engine start costs seconds to minutes and a notebook's kernel cannot keep one for
            # the next ordering: every missing state and evaluation here first, one engine per
            # checkpoint shape; the notebooks below then find them stored.
            report["pre_evaluation"] = run_in_process(studies, todo, show=lambda line: print(line, flush=True))
        if study.params.executor == "ray":
            from .executors import run_on_ray

            # Every missing state and evaluation first, independent branches at once; the notebooks
            # below then find them stored. A step that failed there fails again in its notebook,
            # which records it as the local executor would.
            report["ray"] = run_on_ray(studies, todo, log_to_driver=log_output, show=lambda line: print(line, flush=True))
        runs = [(seeded, ordering) for seeded in studies for ordering in todo]  # the first seed's study first
        pending = []
        for i, (seeded, ordering) in enumerate(runs, start=1):
            name = seeded.run_name(ordering)
            if seeded.is_up_to_date(ordering):
                print(f"[{study.params.study}] [{i}/{len(runs)}] {name}: up to date, not rerun", flush=True)
                report["orderings"][name] = {"ordering": ordering, "seed": seeded.seed, "status": "ok", "ran": False,
                                             "seconds": 0.0}
            else:
                pending.append((i, seeded, ordering))
        # Where every state and evaluation was made above, a notebook only reads and draws: several
        # run at once (``notebook_workers``). Otherwise (no such phase, or a task of it failed and
        # its notebooks will meet the step again) each builds its states, one after another.
        phase = report.get("pre_evaluation") or report.get("ray")
        premade = phase is not None and not phase["failed"]
        workers, threads = notebook_workers(len(pending)) if premade else (1, None)
        if workers > 1:
            print(f"[{study.params.study}] {len(pending)} notebooks, {workers} at a time ({threads} thread(s) each; "
                  "every state and evaluation is stored, so they only read and draw)", flush=True)
        for i, seeded, ordering, status, error, seconds in run_notebooks(
                pending, len(runs), study, workers, threads, log_output and workers == 1):
            name = seeded.run_name(ordering)
            result = seeded.load_result(ordering) or {}
            report["orderings"][name] = {"ordering": ordering, "seed": seeded.seed, "status": status, "ran": True,
                                         "seconds": round(seconds, 2), "steps": result.get("steps", []), "error": error}
            print(f"[{study.params.study}] [{i}/{len(runs)}] {name}: {status} in {seconds:.1f} s"
                  + (f" — {error}" if error else ""), flush=True)
        report["orderings"] = {seeded.run_name(o): report["orderings"][seeded.run_name(o)] for seeded, o in runs}
        report["seconds"] = round(time.perf_counter() - started, 2)
        # States by label (F>P.seed1 where the seed decides the state), each counted once.
        report["steps_built"] = sorted({s.get("label", s["state"]) for o in report["orderings"].values()
                                        for s in o.get("steps", []) if not s.get("reused")}
                                       | set(report.get("ray", {}).get("built", []))
                                       | set(report.get("pre_evaluation", {}).get("built", [])))
        atomic.write_json(study.paths.dir / "last_run.json", report)
        if summary:
            try:
                print(f"[{study.params.study}] summary: {run_summary(params_file)}", flush=True)
            except Exception as exc:  # the results are safe; say why the tables are not there
                print(f"[{study.params.study}] summary notebook failed: {exc}", file=sys.stderr, flush=True)
    failed = [o for o, r in report["orderings"].items() if r["status"] != "ok"]
    print(f"[{study.params.study}] done in {report['seconds']:.1f} s: "
          f"{len(report['orderings']) - len(failed)} ok, {len(failed)} failed{(' (' + ', '.join(failed) + ')') if failed else ''}; "
          f"{len(report['steps_built'])} operation steps built. Results: {study.paths.dir}", flush=True)
    return report


# At most this many ordering notebooks at once (``notebook_workers``).
MAX_NOTEBOOK_WORKERS = 4


class NotebookFailed(Exception):
    """A notebook that failed in a worker process, as papermill described it (name, value, traceback lines)."""

    def __init__(self, ename: str, evalue: str, traceback: list[str] | None):
        super().__init__(ename, evalue, traceback)  # the arguments again: it is pickled back from the worker
        self.ename, self.evalue, self.traceback = ename, evalue, traceback

    def __str__(self) -> str:
        return f"{self.ename}: {self.evalue}"


def notebook_workers(pending: int, cores: int | None = None) -> tuple[int, int]:
    """Return ``(notebooks at once, torch threads each)`` for notebooks that only read stored work.

    Such a notebook spends its seconds starting a kernel, importing and drawing, each on one core:
    one notebook per core (at most ``MAX_NOTEBOOK_WORKERS``), the cores shared out as torch threads
    so that the kernels do not oversubscribe them.

    >>> notebook_workers(16, cores=2), notebook_workers(16, cores=16), notebook_workers(1, cores=8)
    ((2, 1), (4, 4), (1, 8))
    """
    cores = cores or len(os.sched_getaffinity(0))
    workers = max(1, min(cores, MAX_NOTEBOOK_WORKERS, pending))
    return workers, max(1, cores // workers)


def run_notebooks(pending, total: int, study, workers: int, threads: int | None, log_output: bool):
    """Execute the ordering notebooks of ``pending`` (``(i, seeded study, ordering)``); yield each as it ends.

    Yields ``(i, seeded, ordering, status, error, seconds)``. With one worker they run here one
    after another, in order; with more, in that many worker processes (each kernel with
    ``threads`` torch threads), yielded as they finish. A failed notebook is recorded
    (``record_failure``) and the others go on; an interrupt stops them all.
    """
    def params_of(seeded, ordering):
        return {"params_file": str(study.params_file), "ordering": ordering, "seed": seeded.seed}

    if workers == 1:
        for i, seeded, ordering in pending:
            print(f"[{study.params.study}] [{i}/{total}] {seeded.run_name(ordering)}: running notebook", flush=True)
            t0 = time.perf_counter()
            status, error = "ok", None
            try:
                execute_notebook(paths.ORDERING_NOTEBOOK, seeded.notebook_path(ordering), params_of(seeded, ordering),
                                 log_output)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # papermill's execution error, or a kernel that died
                status, error = "failed", record_failure(seeded, ordering, exc)
            yield i, seeded, ordering, status, error, time.perf_counter() - t0
        return

    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # spawn: a fresh interpreter per worker (no torch state forked from this process).
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {}
        for i, seeded, ordering in pending:
            future = pool.submit(_notebook_in_worker, str(paths.ORDERING_NOTEBOOK), str(seeded.notebook_path(ordering)),
                                 params_of(seeded, ordering), threads)
            futures[future] = (i, seeded, ordering)
        print(f"[{study.params.study}] running {len(pending)} notebooks: "
              + ", ".join(seeded.run_name(o) for _, seeded, o in pending), flush=True)
        remaining = set(futures)
        while remaining:
            done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: futures[f][0]):
                i, seeded, ordering = futures[future]
                try:
                    failure, seconds = future.result()
                except Exception as exc:  # the worker process itself died
                    failure, seconds = exc, 0.0
                status, error = ("ok", None) if failure is None else ("failed", record_failure(seeded, ordering, failure))
                yield i, seeded, ordering, status, error, seconds
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _notebook_in_worker(template: str, output: str, parameters: dict, threads: int) -> tuple[NotebookFailed | None, float]:
    """Execute one notebook in a worker process; return ``(failure or None, seconds)`` (never raise papermill's error)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the kernel papermill starts inherits it
    t0 = time.perf_counter()
    try:
        execute_notebook(Path(template), Path(output), parameters, log_output=False)
    except Exception as exc:  # papermill's execution error, or a kernel that died: ``record_failure`` reads it
        return NotebookFailed(getattr(exc, "ename", type(exc).__name__), str(getattr(exc, "evalue", exc)),
                              getattr(exc, "traceback", None)), time.perf_counter() - t0
    return None, time.perf_counter() - t0


def planned_states(studies) -> dict[str, bool]:
    """Return every model state the seeds' runs need, by label (``F>P.seed1``), and whether every seed shares it.

    A state no stochastic step decides has one key for every seed: one state, shared.
    """
    by_key: dict[str, list[str]] = {}
    for seeded in studies:
        for state in seeded.plan.states:
            by_key.setdefault(seeded.store.key(state), []).append(seeded.store.label(state))
    return {labels[0]: len(labels) > 1 or len(studies) == 1 for labels in by_key.values()}


def record_failure(study, ordering: str, exc: Exception) -> str:
    """Make sure a failed ordering has a failed result; return a one-line reason."""
    result = study.load_result(ordering)
    if result and result.get("status") == "failed" and result.get("result_key") == study.result_key(ordering):
        return f"{result['error']['type']}: {result['error']['message']}".splitlines()[0][:300]
    # The notebook could not record it (the kernel died, e.g. killed for memory): record it here.
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    tb = getattr(exc, "traceback", None)
    failed = study._result(ordering, [], status="failed", error={
        "type": ename, "message": evalue,
        "traceback": "\n".join(tb) if isinstance(tb, list) else str(exc),
        "step": "notebook"})
    atomic.write_json(study.result_path(ordering), failed)
    return f"{ename}: {evalue}".splitlines()[0][:300]


def run_summary(params_file: str | Path) -> Path:
    """Execute the summary notebook for a study (tables, figures); return the executed notebook."""
    from ..report import execute_summary

    return execute_summary(params_file)


def preflight(study) -> None:
    """Check, before any work, what would otherwise fail late: model, data, disk space."""
    from ..checkpoints import models

    m = study.params.model
    src = paths.resolve(m.source)
    if (m.source.endswith(".gguf") or m.gguf_file) and not (src.is_file() or (src / (m.gguf_file or "")).is_file()):
        raise ParamsError(f"{study.params_file}: key 'model.source': GGUF file {src} not found")
    if not m.source.endswith(".gguf") and not m.gguf_file and (src.exists() or not models._looks_like_hub_id(m.source)):
        if not (src / "config.json").is_file():
            raise ParamsError(f"{study.params_file}: key 'model.source': {src} is not a checkpoint directory "
                              "(no config.json); for the default model run `make model`")
        try:
            models.check_checkpoint(src)
        except models.ModelError as exc:
            raise ParamsError(f"{study.params_file}: key 'model.source': {exc}") from None
    if study.params.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise ParamsError(f"{study.params_file}: key 'executor': 'ray' needs the ray package, which is not installed "
                          "here (it is pinned in requirements.txt: pip install -r requirements.txt)")
    study.check_sources()  # a pruned shape transformers would refuse stops here, not after the work
    study.suite  # samples the benchmarks now: a missing or malformed data file stops the run here
    if study.trains:
        study.training_examples  # a missing or malformed training file stops it here too
    if study.calibrates:
        study.calibration_examples
    need = estimate_disk_bytes(study)
    free = shutil.disk_usage(study.paths.dir).free
    if need > free:
        raise ParamsError(f"{study.params_file}: the planned checkpoints need about {need / 2**30:.1f} GiB "
                          f"but {study.paths.dir} has {free / 2**30:.1f} GiB free; free space or run fewer orderings")


def estimate_disk_bytes(study) -> int:
    """Return a generous estimate of the bytes the study's missing states will take."""
    from ..checkpoints import models

    base = study.store.state("base")
    if study.store.is_complete(base, verify_hashes=False):
        base_bytes = base.record()["size_bytes"]
    else:
        src = paths.resolve(study.params.model.source)
        base_bytes = models.dir_size_bytes(src) if src.exists() else 0
    missing = set()
    for seed in study.params.seeds:  # each seed's own states; a shared state counts once
        seeded = study.for_seed(seed)
        missing |= {seeded.store.key(s) for s in seeded.plan.states
                    if not seeded.store.is_complete(seeded.store.state(s), verify_hashes=False)}
    return base_bytes * len(missing)


# Idle OpenMP threads spin briefly before they sleep: 10,000 spins in libgomp (its own default is
# 300,000; 0 is OMP_WAIT_POLICY=PASSIVE), 1 ms in Intel's OpenMP. See ``quiet_threads``.
SHORT_SPIN = {"GOMP_SPINCOUNT": "10000", "KMP_BLOCKTIME": "1"}
# What a user may have set to choose for themselves; ``quiet_threads`` then sets nothing.
THREAD_VARIABLES = ("OMP_WAIT_POLICY", *SHORT_SPIN)


def quiet_threads() -> None:
    """Make idle OpenMP threads spin only briefly before they sleep, in this process and the kernels it starts.

    torch computes on every core by default and its OpenMP threads spin while they wait for each
    other. On cores other work also uses, a spinning thread burns the time slice its partner needs:
    measured on 2 shared cores (load 9), generation with 2 threads ran at 1.6 new tokens/s, with
    1 thread 3.7, with 2 passive threads 3.5. Sleeping at once (``OMP_WAIT_POLICY=PASSIVE``)
    costs an idle machine instead: every operator wakes its threads, and on the same idle 2 cores
    (AVX512-BF16) a LoRA step of SmolLM2-135M took 3.28 s passive, 2.91 s with a short spin
    (``GOMP_SPINCOUNT=10000``), 2.83 s with libgomp's default, and greedy decoding ran at 16.7,
    22.2 and 19.5 new tokens/s. Beside one busy process per core the same step took 2.0x, 2.5x
    and 3.9x as long. So the study spins briefly (``SHORT_SPIN``; ``KMP_BLOCKTIME=1`` ms for an
    Intel OpenMP build), unless the user set ``OMP_WAIT_POLICY`` or either variable. It must be
    set before torch loads its OpenMP runtime: the first thing the command line does.
    ``make bench`` measures the three settings on a busy machine.
    """
    if not set(THREAD_VARIABLES) & set(os.environ):
        os.environ.update(SHORT_SPIN)


def print_plan(params_file) -> None:
    from ..study.study import Study

    study = Study(params_file)
    studies = [study.for_seed(seed) for seed in study.params.seeds]
    planned = planned_states(studies)
    print(f"study {study.params.study}: {len(study.plan.orderings)} orderings, {len(study.plan.steps)} steps "
          f"(naive {study.plan.naive_step_count})"
          + (f"; seeds {list(study.params.seeds)}: {len(planned)} states, "
             f"{sum(planned.values())} shared by every seed" if len(studies) > 1 else ""))
    seen = set()
    for seeded in studies:
        for s in seeded.plan.states:
            st = seeded.store.state(s)
            if st.key in seen:
                continue
            seen.add(st.key)
            shared = "  (every seed)" if len(studies) > 1 and not seeded.store.seeded(s) else ""
            print(f"  state {seeded.store.label(s):14s} {st.key}  "
                  f"{'built' if seeded.store.is_complete(st, verify_hashes=False) else 'missing'}{shared}")
    for seeded in studies:
        for o in seeded.plan.orderings:
            print(f"  run {seeded.run_name(o):14s} {'up to date' if seeded.is_up_to_date(o) else 'to run'}")
