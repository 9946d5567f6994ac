"""The tasks that make what a study's runs still miss, and the log that records them as they end.

The states of a study form a tree (each state has one parent: ``F>P`` is made from ``F``) and
each ordering's evaluation hangs off its final state. ``plan_tasks`` turns what is missing into
one task per state to build, waiting for its parent's, and one per evaluation, waiting for its
state's. An executor runs them (``ray_cluster.run_on_ray`` on a cluster, independent branches at
once; ``in_process.run_in_process`` here, one after another) and hands each outcome to a
``TaskLog``, which records it, skips what waits for a failed task and prints one line.

With several seeds, each seed's states are tasks of their own (``build F>P.seed1``) and a state
every seed shares (one key: no stochastic step decided it) is one task (``build Q>P``), as is its
evaluation; a task runs as the seed it was planned for.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, replace
from typing import Callable, Literal

from ..core.plan import BASE, make_plan, parent, prefixes


@dataclass(frozen=True)
class Task:
    """One unit of work: build a state, or evaluate an ordering's final state."""

    id: str                          # "build F>P" or "evaluate F>P" ("build F>P.seed1" with several seeds)
    kind: Literal["build", "evaluate"]
    name: str                        # the state built, or the ordering evaluated
    key: str                         # the state's key, checked again where the task runs
    depends_on: tuple[str, ...]      # ids of the tasks that must finish first
    seed: int = 0                    # the seed whose study makes it
    family: str | None = None        # the family whose study makes it (a study of families)

    @property
    def run(self) -> tuple[str | None, int]:
        """Return ``(family, seed)``: which of the studies given to ``plan_tasks`` makes it."""
        return self.family, self.seed


def plan_tasks(studies, orderings: list[str] | tuple[str, ...]) -> list[Task]:
    """Return the tasks that make what ``orderings`` still miss, each after the tasks it waits for.

    ``studies``: the study, or one per seed (``Study.for_seed``) and family (``Study.for_family``).
    A run whose result is up to date needs nothing; a state already in the store, or an evaluation
    already stored, is not a task, and a state every seed (or every family) shares is one task. A build waits for its parent's build when the
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
                                   after(parent(s)) if parent(s) else (), study.seed, study.family)
        for o in todo:
            key = study.store.key(o)
            if key not in evaluations and (o in missing or study.stored_evaluation(study.store.state(o)) is None):
                evaluations[key] = Task(f"evaluate {study.store.label(o)}", "evaluate", o, key, after(o), study.seed,
                                        study.family)
    # A benchmark that compares a state's answers with the base's (flip) needs the base's evaluation first.
    base_evaluation = next((t.id for t in evaluations.values() if t.name == BASE), None)
    if base_evaluation and any(_needs_base_answers(study) for study in studies):
        evaluations = {k: t if t.name == BASE else replace(t, depends_on=t.depends_on + (base_evaluation,))
                       for k, t in evaluations.items()}
    base_first = sorted(evaluations.values(), key=lambda t: t.name != BASE)
    # Every build before every evaluation, parents before children: each task after what it waits for.
    return sorted(builds.values(), key=lambda t: len(prefixes(t.name))) + base_first


def _needs_base_answers(study) -> bool:
    """Return whether the study's evaluation compares each state's answers with the base's (``flip``)."""
    from ..core.benchmark import get_benchmark

    ev = study.params.evaluation
    return any(get_benchmark(b).request_type(ev) == "agreement" for b in ev.benchmarks)


def dependents(tasks: list[Task], task_id: str) -> set[str]:
    """Return the ids of every task that waits, directly or not, for ``task_id``."""
    out: set[str] = set()
    for t in tasks:  # in dependency order, so one pass finds every level
        if task_id in t.depends_on or out.intersection(t.depends_on):
            out.add(t.id)
    return out


def one_line_reason(exc: BaseException) -> str:
    """Return an error as one short line: ``Type: message`` (its first line, at most 300 characters)."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


class TaskLog:
    """The report of one phase of tasks, filled in as each task ends (``take``).

    ``report``: ``tasks`` (one entry each, in the order they ended), ``built`` and ``evaluated``
    (by label, as ``last_run.json``'s ``steps_built``: ``F>P.seed1`` where the seed decides the
    state; what was found already stored is not listed), ``failed`` (the ids of tasks that failed
    or were not run) and ``seconds``, after the fields given. A task that fails is recorded, never
    raised, and every task waiting for it is recorded as not run without being run.

    ``stamp(reported, seconds)`` returns an entry's executor-specific fields: ``reported`` is what
    the task returned (None when it failed or was not run), ``seconds`` how long ``take`` waited
    for it. ``reason`` turns an error into the entry's one-line ``error``.
    """

    def __init__(self, tasks: list[Task], tag: str, show: Callable, stamp: Callable[[dict | None, float], dict],
                 reason: Callable[[BaseException], str] = one_line_reason, **fields):
        self.tasks, self.tag, self.show, self.stamp, self.reason = tasks, tag, show, stamp, reason
        self.report: dict = {**fields, "tasks": [], "built": [], "evaluated": [], "failed": [], "seconds": 0.0}
        self.blocked: set[str] = set()

    def take(self, t: Task, outcome: Callable[[], dict]) -> None:
        """Record task ``t``: ``outcome()`` returns what it reported (``reused`` at least) or raises its error.

        ``outcome`` is not called for a task that waits for a failed one: where calling it runs the
        task, that task does not run.
        """
        t0 = time.perf_counter()
        reported = None
        if t.id in self.blocked:
            status, error = "not run", "a task it waits for failed"
        else:
            try:
                reported = outcome()
                status, error = "ok", None
            except Exception as exc:  # the task's own error, or a worker that died
                status, error = "failed", self.reason(exc)
                self.blocked |= dependents(self.tasks, t.id)
        entry = {"id": t.id, "kind": t.kind, "name": t.name, "key": t.key, "status": status, "error": error,
                 **self.stamp(reported, time.perf_counter() - t0)}
        report = self.report
        report["tasks"].append(entry)
        if status == "ok" and not entry["reused"]:
            report["built" if t.kind == "build" else "evaluated"].append(t.id.split(" ", 1)[1])
        if status != "ok":
            report["failed"].append(t.id)
        # An entry without a host ran in this process.
        self.show(f"{self.tag} [{len(report['tasks'])}/{len(self.tasks)}] "
                  f"{describe({'host': platform.node(), 'pid': os.getpid(), **entry})}")


def describe(entry: dict) -> str:
    """Return a task's entry as the line shown when it ends."""
    if entry["status"] == "not run":
        return f"{entry['id']}: not run, {entry['error']}"
    if entry["status"] == "failed":
        return f"{entry['id']}: FAILED — {entry['error']}"
    done = {"build": "built", "evaluate": "evaluated"}[entry["kind"]]
    what = "already stored" if entry["reused"] else f"{done} in {entry['seconds']:.1f} s"
    return f"{entry['id']}: {what} (host {entry['host']}, pid {entry['pid']})"
