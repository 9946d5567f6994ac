"""Makes a study's missing states and evaluations in this process, before the ordering notebooks.

A study with the local executor makes every missing state and evaluation here first, on either
engine; the ordering notebooks then find them stored, only read and draw, and run several at once
(``notebooks.notebook_workers``). With vLLM this also keeps one engine per checkpoint shape across
states (an engine start costs seconds to minutes, and a notebook's kernel cannot keep one for the
next ordering); with transformers it saves each notebook the model work and lets the notebooks'
fixed costs (a kernel, imports, figures) overlap.
"""

from __future__ import annotations

import time
from typing import Callable

from .tasks import Task, TaskLog, plan_tasks


def run_in_process(studies, orderings: list[str] | tuple[str, ...], show: Callable = print) -> dict:
    """Build and evaluate in this process whatever ``orderings`` miss; return the phase's report.

    ``studies``: the study, or one per seed and family (each task runs as the seed and family it
    was planned for; the engines serve them all).

    The same tasks as on Ray (``plan_tasks``), one after another: every missing state (parents
    first; an F state with its probes, ``Study.finetune_probes``), then every missing evaluation,
    grouped by checkpoint shape so that one vLLM engine per shape takes each state's weights in
    turn (``backends.VllmEngines``) instead of one engine start per state. The ordering notebooks
    then find every state and evaluation stored. On transformers each evaluation loads its state
    as a notebook would (``Study.evaluate_state``). A task that fails is reported (and the tasks
    waiting for it are not run), never raised: the ordering's notebook meets the same step and
    records the failure.
    """
    from ..evaluation import backends
    from ..evaluation.backends import shape_of

    studies = list(studies) if isinstance(studies, (list, tuple)) else [studies]
    study = studies[0]
    by_run = {(seeded.family, seeded.seed): seeded for seeded in studies}
    tag = f"[{study.params.study}] pre-evaluation"
    tasks = plan_tasks(studies, orderings)
    log = TaskLog(tasks, tag, show, lambda reported, seconds: {
        "seconds": round(seconds, 2), "reused": reported["reused"] if reported else None})
    report = log.report
    if not tasks:
        show(f"{tag}: every state and evaluation needed is already stored; nothing to run")
        return report
    started = time.perf_counter()

    def build(t: Task) -> dict:
        reused = by_run[t.run].get_state(t.name, show=show)[1]
        by_run[t.run].finetune_probes(t.name, show=show)  # an F state's probes, for its notebooks to read
        return {"reused": reused}

    def evaluate(t: Task) -> dict:
        seeded = by_run[t.run]
        return {"reused": seeded.evaluate_state(seeded.get_state(t.name, show=show)[0], show=show,
                                                engines=engines)["reused"]}

    for t in [t for t in tasks if t.kind == "build"]:
        log.take(t, lambda: build(t))
    evaluations = [t for t in tasks if t.kind == "evaluate"]

    def shape(t: Task) -> str:
        state = by_run[t.run].store.state(t.name)
        return shape_of(state.model_dir) if (state.model_dir / "config.json").is_file() else ""

    engines = None
    if study.engine.name == "vllm":
        # Sorted by shape (stable: the plan's order within a shape), so each engine starts once.
        evaluations.sort(key=shape)
        engines = backends.VllmEngines(study.dtype, study.device, study.params.evaluation)
    try:
        for t in evaluations:
            log.take(t, lambda: evaluate(t))
    finally:
        if engines is not None:
            engines.close()
    report["seconds"] = round(time.perf_counter() - started, 2)
    how = ""
    if engines is not None:
        report["engines"] = engines.stats()
        how = f" ({engines.starts} engine start(s), {engines.swaps} weight swap(s))"
    show(f"{tag}: {len(report['built'])} states built, {len(report['evaluated'])} evaluations{how}, "
         f"{len(report['failed'])} failed or not run, in {report['seconds']:.1f} s")
    return report
