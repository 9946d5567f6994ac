"""Executes notebooks with papermill: the ordering notebook once per run, one or several at a time, and the summary.

Each executed notebook is written to a temporary path and renamed to its place, even when it
fails. A run whose notebook fails has a failed result (the notebook's own, or one written here
when its kernel died) and the others go on.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ..core import atomic, paths


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
        return {"params_file": str(study.params_file), "ordering": ordering, "seed": seeded.seed,
                **({"family": seeded.family} if seeded.family else {})}

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


def record_failure(study, ordering: str, exc: Exception) -> str:
    """Make sure a failed ordering has a failed result; return a one-line reason."""
    result = study.load_result(ordering)
    if result and result.get("status") == "failed" and result.get("result_key") == study.result_key(ordering):
        return f"{result['error']['type']}: {result['error']['message']}".splitlines()[0][:300]
    # The notebook could not record it (the kernel died, e.g. killed for memory): record it here.
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    tb = getattr(exc, "traceback", None)
    failed = study.result_record(ordering, [], status="failed", error={
        "type": ename, "message": evalue,
        "traceback": "\n".join(tb) if isinstance(tb, list) else str(exc),
        "step": "notebook"})
    study.write_result(ordering, failed)
    return f"{ename}: {evalue}".splitlines()[0][:300]


def run_summary(params_file: str | Path, family: str | None = None) -> Path:
    """Execute the summary notebook for a study, or one family of it (tables, figures); return the executed notebook.

    Result files made by other params than ``params_file``'s are left out of its tables; each is
    named on stderr with the reason, as the notebook's first lines name them.
    """
    from ..report import execute_summary
    from ..report.load import left_out_lines, load_study
    from ..study.study import Study, current_result_keys

    keys, unchecked = current_result_keys(params_file, family)
    if keys is None:
        print(f"warning: the results were not checked against {params_file} ({unchecked})", file=sys.stderr)
    else:
        study = Study(params_file, family=family)
        found = load_study(study.family_paths, study.plan.orderings, tuple(study.params.evaluation.benchmarks),
                           tuple(study.params.seeds), keys)
        for line in left_out_lines(found):
            print(line, file=sys.stderr)
    return execute_summary(params_file, family=family)
