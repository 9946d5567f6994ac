"""Runs a study's operation steps and evaluations on a Ray cluster, independent branches at once.

The states of a study form a tree (each state has one parent: ``F>P`` is made from ``F``) and
each ordering's evaluation hangs off its final state. ``run_on_ray`` submits one Ray task per
missing state, waiting for its parent's task, and one per missing evaluation, waiting for its
state's task; Ray runs whatever is ready at the same time, each task on its own GPU when the
study runs on CUDA. A task builds or evaluates through ``Study.get_state`` and
``Study.evaluate_state``, exactly as a notebook does, so the state store on the shared outputs
directory (atomic renames, sha256 manifests, locks) stays the one source of truth: the ordering
notebooks that run afterwards find every state and evaluation stored and only write results.

With several seeds, each seed's states are tasks of their own (``build F>P.seed1``) and a state
every seed shares (one key: no stochastic step decided it) is one task (``build Q>P``), as is its
evaluation; a task runs as the seed it was planned for.
"""

from __future__ import annotations

import gc
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from ..core import paths
from ..core.params import ParamsError, StudyParams
from ..core.plan import make_plan, parent, prefixes

# Environment variables a worker needs to see the same files as the driver (when set here).
PASSED_ENV = ("HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


class ExecutorError(RuntimeError):
    """A Ray worker that would not make the states the driver expects, with what to change."""


@dataclass(frozen=True)
class Task:
    """One unit of work for the cluster: build a state, or evaluate an ordering's final state."""

    id: str                          # "build F>P" or "evaluate F>P" ("build F>P.seed1" with several seeds)
    kind: Literal["build", "evaluate"]
    name: str                        # the state built, or the ordering evaluated
    key: str                         # the state's key, checked again on the worker
    depends_on: tuple[str, ...]      # ids of the tasks that must finish first
    seed: int = 0                    # the seed whose study makes it


def plan_tasks(studies, orderings: list[str] | tuple[str, ...]) -> list[Task]:
    """Return the tasks that make what ``orderings`` still miss, each after the tasks it waits for.

    ``studies``: the study, or one per seed (``Study.for_seed``). A run whose result is up to date
    needs nothing; a state already in the store, or an evaluation already stored, is not a task,
    and a state every seed shares is one task. A build waits for its parent's build when the
    parent is missing too; an evaluation waits for the build of the state it evaluates (or, when
    that is stored but a state before it is not, for that one's).
    """
    studies = list(studies) if isinstance(studies, (list, tuple)) else [studies]
    builds: dict[str, Task] = {}
    evaluations: dict[str, Task] = {}
    for study in studies:
        todo = [o for o in orderings if not study.is_up_to_date(o)]
        if not todo:
            continue
        states = make_plan(todo).states  # parents before children
        missing = {s for s in states if not study.store.is_complete(study.store.state(s), verify_hashes=False)}

        def after(state: str) -> tuple[str, ...]:
            # Getting a state gets its prefixes first: wait for the deepest one still missing
            # (which itself waits for the ones before it).
            waits = [s for s in prefixes(state) if s in missing]
            return (f"build {study.store.label(waits[-1])}",) if waits else ()

        for s in states:
            key = study.store.key(s)
            if s in missing and key not in builds:
                builds[key] = Task(f"build {study.store.label(s)}", "build", s, key,
                                   after(parent(s)) if parent(s) else (), study.seed)
        for o in todo:
            key = study.store.key(o)
            if key not in evaluations and (o in missing or study.stored_evaluation(study.store.state(o)) is None):
                evaluations[key] = Task(f"evaluate {study.store.label(o)}", "evaluate", o, key, after(o), study.seed)
    # Every build before every evaluation, parents before children: each task after what it waits for.
    return sorted(builds.values(), key=lambda t: len(prefixes(t.name))) + list(evaluations.values())


def dependents(tasks: list[Task], task_id: str) -> set[str]:
    """Return the ids of every task that waits, directly or not, for ``task_id``."""
    out: set[str] = set()
    for t in tasks:  # in dependency order, so one pass finds every level
        if task_id in t.depends_on or out.intersection(t.depends_on):
            out.add(t.id)
    return out


# -- the driver -------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to make the same study as the driver (picklable, a few hundred bytes)."""

    params_file: str
    params: StudyParams
    study_dir: str
    device: str
    dtype: str
    torch_threads: int
    seed: int = 0  # the seed whose states and evaluations the worker makes


def runtime_env(study) -> dict:
    """Return the Ray runtime environment: the driver's code, outputs, root and cache paths."""
    import orderstudy

    lib = str(Path(orderstudy.__file__).resolve().parents[1])
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != lib]
    env = {"ORDERSTUDY_ROOT": str(paths.ROOT), "ORDERSTUDY_OUTPUTS": str(study.paths.dir.parent),
           "ORDERSTUDY_CACHE": str(paths.CACHE_DIR), "PYTHONPATH": os.pathsep.join([lib, *inherited])}
    env.update({name: os.environ[name] for name in PASSED_ENV if name in os.environ})
    return {"env_vars": env}


def worker_spec(study) -> WorkerSpec:
    import torch

    settings = study.params.ray
    # On CPU the worker computes with as many threads as an in-process run would, so its numbers
    # are bit-identical to the local executor's; on a GPU it needs only the CPUs it was given.
    threads = torch.get_num_threads() if study.device == "cpu" else max(1, int(settings.cpus_per_task))
    return WorkerSpec(str(study.params_file), study.params, str(study.paths.dir), study.device, study.dtype, threads,
                      study.seed)


def run_on_ray(studies, orderings: list[str] | tuple[str, ...], log_to_driver: bool = True,
               show: Callable = print) -> dict:
    """Build and evaluate on Ray whatever ``orderings`` miss; return the phase's report.

    ``studies``: the study, or one per seed. A task that fails is reported (and its dependents are
    not run), never raised: the ordering's notebook then meets the same step and records the
    failure as it does with the local executor.
    """
    studies = list(studies) if isinstance(studies, (list, tuple)) else [studies]
    study = studies[0]
    settings = study.params.ray
    tag = f"[{study.params.study}] ray"
    tasks = plan_tasks(studies, orderings)
    report: dict = {"address": settings.address, "tasks": [], "built": [], "evaluated": [], "failed": [],
                    "seconds": 0.0}
    if not tasks:
        show(f"{tag}: every state and evaluation needed is already stored; nothing to run")
        return report
    import ray

    started = time.perf_counter()
    phase_t0 = time.time()
    _connect(ray, settings.address, runtime_env(study), log_to_driver, show, tag)
    report["init_seconds"] = round(time.perf_counter() - started, 2)
    try:
        report["cluster"] = _check_resources(study, ray.cluster_resources(), len(ray.nodes()))
        n_build = sum(t.kind == "build" for t in tasks)
        gpus = settings.gpus_per_task if study.device == "cuda" else 0
        show(f"{tag}: {n_build} states to build, {len(tasks) - n_build} evaluations, on a cluster of "
             f"{report['cluster']['nodes']} node(s), {report['cluster']['CPU']:g} CPUs, {report['cluster']['GPU']:g} GPUs "
             f"({settings.cpus_per_task:g} CPU and {gpus:g} GPU a task; started in {report['init_seconds']:.1f} s)")
        specs = {seeded.seed: worker_spec(seeded) for seeded in studies}
        remote = {"build": ray.remote(build_state), "evaluate": ray.remote(evaluate_ordering)}
        refs: dict[str, object] = {}
        for t in tasks:
            refs[t.id] = remote[t.kind].options(name=t.id, num_cpus=settings.cpus_per_task, num_gpus=gpus,
                                                max_retries=0).remote(specs[t.seed], t.name, t.key,
                                                                      *[refs[d] for d in t.depends_on])
        task_of = {refs[t.id]: t for t in tasks}
        pending = [refs[t.id] for t in tasks]
        blocked: set[str] = set()
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            t = task_of[ready[0]]
            try:
                entry = {**ray.get(ready[0]), "status": "ok", "error": None}
            except Exception as exc:  # the task's own error, or a worker that died
                if t.id in blocked:
                    entry = {"status": "not run", "error": "a task it waits for failed"}
                else:
                    entry = {"status": "failed", "error": _reason(exc)}
                    blocked |= dependents(tasks, t.id)
                entry.update({"start_s": None, "seconds": None, "host": None, "pid": None})
            else:
                entry["start_s"] = round(entry.pop("started_at") - phase_t0, 2)
            entry = {"id": t.id, "kind": t.kind, "name": t.name, "key": t.key,
                     "end_s": round(time.time() - phase_t0, 2), **entry}
            report["tasks"].append(entry)
            # By label, as last_run.json's steps_built: F>P.seed1 where the seed decides the state.
            if entry["status"] == "ok" and t.kind == "build" and not entry["reused"]:
                report["built"].append(t.id.removeprefix("build "))
            if entry["status"] == "ok" and t.kind == "evaluate" and not entry["reused"]:
                report["evaluated"].append(t.id.removeprefix("evaluate "))
            if entry["status"] != "ok":
                report["failed"].append(t.id)
            show(f"{tag} [{len(report['tasks'])}/{len(tasks)}] {_describe(entry)}")
    finally:
        ray.shutdown()  # stops a cluster started for this run; leaves a joined one running
    report["seconds"] = round(time.perf_counter() - started, 2)
    show(f"{tag}: {len(report['built'])} states built, {len(report['evaluated'])} evaluations, "
         f"{len(report['failed'])} failed or not run, in {report['seconds']:.1f} s")
    return report


def _connect(ray, address: str | None, env: dict, log_to_driver: bool, show: Callable, tag: str,
             attempts: int = 3) -> None:
    """Join the cluster at ``address``, or start one on this machine for the run (``None``)."""
    if address is not None:
        ray.init(address=address, runtime_env=env, log_to_driver=log_to_driver)
        return
    for attempt in range(1, attempts + 1):
        try:
            # "local": a new cluster, even where RAY_ADDRESS or an earlier `ray start` is around
            # (address=None would join those).
            ray.init(address="local", include_dashboard=False, runtime_env=env, log_to_driver=log_to_driver)
            return
        except Exception as exc:
            # Ray gives its processes a fixed 30 s to come up: a busy machine can miss that.
            if attempt == attempts or "timed out during startup" not in str(exc):
                raise
            ray.shutdown()
            show(f"{tag}: the local Ray cluster did not start in time ({exc}); trying again ({attempt + 1}/{attempts})")


def _check_resources(study, resources: dict, nodes: int) -> dict:
    """Return the cluster's size; raise ``ParamsError`` if a task could never be scheduled on it."""
    settings = study.params.ray
    cluster = {"nodes": nodes, "CPU": resources.get("CPU", 0.0), "GPU": resources.get("GPU", 0.0)}
    where = settings.address or "this machine"
    if settings.cpus_per_task > cluster["CPU"]:
        raise ParamsError(f"{study.params_file}: key 'ray.cpus_per_task': each task asks for {settings.cpus_per_task:g} "
                          f"CPUs but the Ray cluster on {where} has {cluster['CPU']:g}; lower it")
    if study.device == "cuda" and settings.gpus_per_task > cluster["GPU"]:
        raise ParamsError(f"{study.params_file}: key 'ray.gpus_per_task': each task asks for {settings.gpus_per_task:g} "
                          f"GPUs but the Ray cluster on {where} has {cluster['GPU']:g}; lower it, or start the "
                          "cluster's nodes on GPU machines")
    return cluster


def _reason(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc  # a RayTaskError carries the task's own exception
    return f"{type(cause).__name__}: {cause}".strip().splitlines()[0][:300]


def _describe(entry: dict) -> str:
    if entry["status"] == "not run":
        return f"{entry['id']}: not run, {entry['error']}"
    if entry["status"] == "failed":
        return f"{entry['id']}: FAILED — {entry['error']}"
    done = {"build": "built", "evaluate": "evaluated"}[entry["kind"]]
    what = "already stored" if entry["reused"] else f"{done} in {entry['seconds']:.1f} s"
    return f"{entry['id']}: {what} (host {entry['host']}, pid {entry['pid']})"


# -- the workers ------------------------------------------------------------------------------

def build_state(spec: WorkerSpec, name: str, key: str, *parents: dict) -> dict:
    """Return what getting state ``name`` took on this worker: built, or found already stored."""
    started_at, t0 = time.time(), time.perf_counter()
    study = _worker_study(spec, name, key)
    _, reused = study.get_state(name, show=print)
    study.finetune_probes(name, show=print)  # an F state's probes, for its notebooks to read
    _release_memory(study)
    return _finished(started_at, t0, reused)


def evaluate_ordering(spec: WorkerSpec, ordering: str, key: str, *state: dict) -> dict:
    """Return what evaluating the ordering's final state took on this worker (stored in the store)."""
    started_at, t0 = time.time(), time.perf_counter()
    study = _worker_study(spec, ordering, key)
    found, _ = study.get_state(ordering, show=print)  # checks its files against the manifest
    scores = study.evaluate_state(found, show=print)
    _release_memory(study)
    return _finished(started_at, t0, scores["reused"])


def _worker_study(spec: WorkerSpec, name: str, key: str):
    """Return the driver's study as this worker sees it; raise if it would make other states."""
    import torch

    from ..study.study import Study

    torch.set_num_threads(spec.torch_threads)
    study = Study(spec.params_file, params=spec.params, seed=spec.seed)
    here = {"device": study.device, "dtype": study.dtype, "outputs": str(study.paths.dir)}
    driver = {"device": spec.device, "dtype": spec.dtype, "outputs": spec.study_dir}
    if here != driver:
        raise ExecutorError(f"the Ray worker on {platform.node()} resolves {here}, the driver {driver}: set device "
                            "and dtype explicitly in the params file, and give every node the same outputs "
                            "directory (ORDERSTUDY_OUTPUTS on a shared filesystem)")
    if study.store.key(name) != key:
        import orderstudy

        raise ExecutorError(f"the Ray worker on {platform.node()} computes key {study.store.key(name)} for {name}, "
                            f"the driver {key}: the worker runs other code or reads other data "
                            f"(orderstudy at {Path(orderstudy.__file__).parent}, cache {paths.CACHE_DIR})")
    return study


def _release_memory(study) -> None:
    # A worker process runs many tasks; give back what the last model held.
    gc.collect()
    if study.device == "cuda":
        import torch

        torch.cuda.empty_cache()


def _finished(started_at: float, t0: float, reused: bool) -> dict:
    return {"started_at": started_at, "seconds": round(time.perf_counter() - t0, 2), "reused": reused,
            "host": platform.node(), "pid": os.getpid()}


# -- in process: every missing state, then every missing evaluation on engines kept across states --

def run_in_process(studies, orderings: list[str] | tuple[str, ...], show: Callable = print) -> dict:
    """Build and evaluate in this process whatever ``orderings`` miss; return the phase's report.

    ``studies``: the study, or one per seed (each task runs as the seed it was planned for; the
    engines serve every seed).

    The same tasks as on Ray (``plan_tasks``), one after another: every missing state (parents
    first; an F state with its probes, ``Study.finetune_probes``), then every missing evaluation,
    grouped by checkpoint shape so that one vLLM engine per shape takes each state's weights in
    turn (``backends.VllmEngines``) instead of one engine start per state. The ordering notebooks then find every state and evaluation stored. A task that
    fails is reported (and the tasks waiting for it are not run), never raised: the ordering's
    notebook meets the same step and records the failure.
    """
    from ..evaluation import backends
    from ..evaluation.backends import shape_of

    studies = list(studies) if isinstance(studies, (list, tuple)) else [studies]
    study = studies[0]
    by_seed = {seeded.seed: seeded for seeded in studies}
    tag = f"[{study.params.study}] pre-evaluation"
    tasks = plan_tasks(studies, orderings)
    report: dict = {"tasks": [], "built": [], "evaluated": [], "failed": [], "seconds": 0.0}
    if not tasks:
        show(f"{tag}: every state and evaluation needed is already stored; nothing to run")
        return report
    started = time.perf_counter()
    blocked: set[str] = set()

    def run(t: Task, work: Callable[[], bool]) -> None:
        t0 = time.perf_counter()
        if t.id in blocked:
            entry = {"status": "not run", "error": "a task it waits for failed", "reused": None}
        else:
            try:
                entry = {"status": "ok", "error": None, "reused": work()}
            except Exception as exc:
                entry = {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300], "reused": None}
                blocked.update(dependents(tasks, t.id))
        entry = {"id": t.id, "kind": t.kind, "name": t.name, "key": t.key, "seconds": round(time.perf_counter() - t0, 2),
                 **entry}
        report["tasks"].append(entry)
        if entry["status"] == "ok" and not entry["reused"]:
            # By label, as last_run.json's steps_built: F>P.seed1 where the seed decides the state.
            report["built" if t.kind == "build" else "evaluated"].append(t.id.split(" ", 1)[1])
        if entry["status"] != "ok":
            report["failed"].append(t.id)
        show(f"{tag} [{len(report['tasks'])}/{len(tasks)}] {_describe({**entry, 'host': platform.node(), 'pid': os.getpid()})}")

    def build(t: Task) -> bool:
        reused = by_seed[t.seed].get_state(t.name, show=show)[1]
        by_seed[t.seed].finetune_probes(t.name, show=show)  # an F state's probes, for its notebooks to read
        return reused

    for t in [t for t in tasks if t.kind == "build"]:
        run(t, lambda t=t: build(t))
    evaluations = [t for t in tasks if t.kind == "evaluate"]

    def shape(t: Task) -> str:
        state = by_seed[t.seed].store.state(t.name)
        return shape_of(state.model_dir) if (state.model_dir / "config.json").is_file() else ""

    # Sorted by shape (stable: the plan's order within a shape), so each engine starts once.
    evaluations.sort(key=shape)
    engines = backends.VllmEngines(study.dtype, study.device, study.params.evaluation)
    try:
        for t in evaluations:
            run(t, lambda t=t: by_seed[t.seed].evaluate_state(by_seed[t.seed].get_state(t.name, show=show)[0], show=show,
                                                              engines=engines)["reused"])
    finally:
        engines.close()
    report["engines"] = engines.stats()
    report["seconds"] = round(time.perf_counter() - started, 2)
    show(f"{tag}: {len(report['built'])} states built, {len(report['evaluated'])} evaluations "
         f"({engines.starts} engine start(s), {engines.swaps} weight swap(s)), {len(report['failed'])} failed or "
         f"not run, in {report['seconds']:.1f} s")
    return report
