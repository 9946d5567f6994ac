"""Runs a study's operation steps and evaluations on a Ray cluster, independent branches at once.

``run_on_ray`` submits one Ray task per missing state, waiting for its parent's task, and one per
missing evaluation, waiting for its state's task (``tasks.plan_tasks``); Ray runs whatever is
ready at the same time, each task on its own GPU when the study runs on CUDA. A task builds or
evaluates through ``Study.get_state`` and ``Study.evaluate_state``, exactly as a notebook does,
so the state store on the shared outputs directory (atomic renames, sha256 manifests, locks)
stays the one source of truth: the ordering notebooks that run afterwards find every state and
evaluation stored and only write results.
"""

from __future__ import annotations

import gc
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..core import paths
from ..core.params import ParamsError, StudyParams
from .tasks import TaskLog, plan_tasks

# Environment variables a worker needs to see the same files as the driver (when set here).
PASSED_ENV = ("HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


class ExecutorError(RuntimeError):
    """A Ray worker that would not make the states the driver expects, with what to change."""


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
    family: str | None = None  # the family whose states and evaluations it makes (a study of families)


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
    return WorkerSpec(str(study.params_file), study.source_params, str(study.paths.dir), study.device, study.dtype,
                      threads, study.seed, study.family)


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

    def stamp(reported: dict | None, _seconds: float) -> dict:
        # The worker's own time and place; when it started and ended on the phase's clock (phase_t0, below).
        end_s = round(time.time() - phase_t0, 2)
        if reported is None:
            return {"end_s": end_s, "start_s": None, "seconds": None, "host": None, "pid": None}
        started_at = reported.pop("started_at")
        return {"end_s": end_s, **reported, "start_s": round(started_at - phase_t0, 2)}

    log = TaskLog(tasks, tag, show, stamp, reason=_reason, address=settings.address)
    report = log.report
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
        specs = {(seeded.family, seeded.seed): worker_spec(seeded) for seeded in studies}
        remote = {"build": ray.remote(build_state), "evaluate": ray.remote(evaluate_ordering)}
        refs: dict[str, object] = {}
        for t in tasks:
            refs[t.id] = remote[t.kind].options(name=t.id, num_cpus=settings.cpus_per_task, num_gpus=gpus,
                                                max_retries=0).remote(specs[t.run], t.name, t.key,
                                                                      *[refs[d] for d in t.depends_on])
        task_of = {refs[t.id]: t for t in tasks}
        pending = [refs[t.id] for t in tasks]
        while pending:
            # As they end. A task waiting for a failed one fails on the cluster without running
            # (Ray passes its argument's error on); the log records it as not run. Every outcome
            # is fetched, so that Ray reports no error as unhandled.
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                outcome = ray.get(ready[0])
            except Exception as exc:  # the task's own error, or a worker that died
                outcome = exc
            log.take(task_of[ready[0]], lambda: _returned(outcome))
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


def _returned(outcome):
    """Return what a task returned, or raise the error it ended with."""
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def _reason(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc  # a RayTaskError carries the task's own exception
    return f"{type(cause).__name__}: {cause}".strip().splitlines()[0][:300]


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
    study = Study(spec.params_file, params=spec.params, seed=spec.seed, family=spec.family)
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
