"""The Ray executor's plan and guards, without a cluster: which tasks, waiting for which."""

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from orderstudy.core import atomic
from orderstudy.execution.ray_cluster import ExecutorError, _check_resources, build_state, worker_spec
from orderstudy.execution.tasks import dependents, plan_tasks
from orderstudy.core.params import ParamsError
from orderstudy.core.plan import REFERENCE_ORDER, parent
from orderstudy.study.study import Study


def _params(tmp_path, model_dir, extra="", name="graph.yaml"):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"instruction": "回答：", "question": f"问题{i}", "answer": "答案。"},
                                        ensure_ascii=False) + "\n" for i in range(4)), encoding="utf-8")
    path = tmp_path / name
    path.write_text(f"study: graph\ndtype: float32\nmodel: {{source: {model_dir}}}\nfinetune: {{data: {train}}}\n"
                    f"evaluation: {{benchmarks: [mmlu_law], mmlu_items_per_subject: 1}}\n{extra}", encoding="utf-8")
    return path


@pytest.fixture
def study(tmp_path, tiny_model_dir, outputs_dir, mmlu_dir):
    return Study(_params(tmp_path, tiny_model_dir, "executor: ray\n"))


def _fake_build(name, out_dir, parent_dir):
    out_dir.mkdir(parents=True)
    (out_dir / "config.json").write_text('{"model_type": "llama"}')
    save_file({"w": torch.zeros(4)}, out_dir / "model.safetensors")
    return {"parameters": 4}


def _ids(tasks):
    return [t.id for t in tasks]


def test_nothing_built_gives_one_build_per_state_after_its_parent_and_one_evaluation_per_ordering(study):
    tasks = plan_tasks(study, REFERENCE_ORDER)
    builds = [t for t in tasks if t.kind == "build"]
    evaluations = [t for t in tasks if t.kind == "evaluate"]
    assert [t.name for t in builds] == study.plan.states and len(builds) == 16
    assert [t.name for t in evaluations] == list(REFERENCE_ORDER)
    for t in builds:
        assert t.depends_on == ((f"build {parent(t.name)}",) if parent(t.name) else ())
        assert t.key == study.store.key(t.name)
    for t in evaluations:
        assert t.depends_on == (f"build {t.name}",)
    # Submitted in this order, every task comes after those it waits for.
    position = {t.id: i for i, t in enumerate(tasks)}
    assert all(position[d] < position[t.id] for t in tasks for d in t.depends_on)
    # Independent branches: after the base, F, P and Q wait for nothing but it.
    assert {t.name for t in builds if t.depends_on == ("build base",)} == {"F", "P", "Q"}


def test_a_study_that_counts_flips_evaluates_the_base_before_any_other_state(tmp_path, tiny_model_dir, outputs_dir,
                                                                               mmlu_dir, lawbench_dir):
    path = _params(tmp_path, tiny_model_dir, "executor: ray\n", name="flips.yaml")
    path.write_text(path.read_text().replace("benchmarks: [mmlu_law]", "benchmarks: [mmlu_law, flip]"))
    tasks = plan_tasks(Study(path), ["F", "base", "P>Q"])
    evaluations = [t for t in tasks if t.kind == "evaluate"]
    assert [t.name for t in evaluations] == ["base", "F", "P>Q"]
    assert evaluations[0].depends_on == ("build base",)
    assert [t.depends_on for t in evaluations[1:]] == [("build F", "evaluate base"), ("build P>Q", "evaluate base")]


def test_stored_states_evaluations_and_results_are_not_tasks(study):
    for name in ("F>P", "Q"):
        study.store.get(name, _fake_build)  # builds base and F too
    f = study.store.state("F")
    atomic.write_json(f.dir / "evals" / f"{study.suite.key}.json", {"suite": study.suite.key, "state": f.key})
    atomic.write_json(study.paths.result("Q"), study.result_record("Q", [], status="ok", error=None))
    tasks = {t.id: t for t in plan_tasks(study, REFERENCE_ORDER)}
    assert {t.name for t in tasks.values() if t.kind == "build"} == set(study.plan.states) - {"base", "F", "F>P", "Q"}
    assert {t.name for t in tasks.values() if t.kind == "evaluate"} == set(REFERENCE_ORDER) - {"F", "Q"}
    assert tasks["build F>P>Q"].depends_on == ()   # its parent is stored
    assert tasks["build F>Q"].depends_on == ()
    assert tasks["build P>F"].depends_on == ("build P",)
    assert tasks["evaluate F>P"].depends_on == () and tasks["evaluate base"].depends_on == ()
    assert tasks["evaluate Q>F>P"].depends_on == ("build Q>F>P",)
    # A subset of orderings asks only for what those orderings need.
    assert _ids(plan_tasks(study, ["base", "F>P"])) == ["evaluate base", "evaluate F>P"]
    assert plan_tasks(study, ["Q"]) == []


def test_a_missing_state_before_a_stored_one_is_waited_for(study):
    study.store.get("F>P", _fake_build)
    shutil.rmtree(study.store.state("base").dir)  # getting F>P will rebuild the base first
    tasks = {t.id: t for t in plan_tasks(study, ["F>P", "F>P>Q"])}
    assert list(tasks) == ["build base", "build F>P>Q", "evaluate F>P", "evaluate F>P>Q"]
    assert tasks["build F>P>Q"].depends_on == ("build base",)
    assert tasks["evaluate F>P"].depends_on == ("build base",)
    assert tasks["evaluate F>P>Q"].depends_on == ("build F>P>Q",)


def test_a_failed_task_stops_exactly_what_waits_for_it(study):
    tasks = plan_tasks(study, REFERENCE_ORDER)
    assert dependents(tasks, "build F>P") == {"build F>P>Q", "evaluate F>P", "evaluate F>P>Q"}
    after_f = dependents(tasks, "build F")
    assert {t.name for t in tasks if t.id in after_f and t.kind == "build"} == {"F>P", "F>Q", "F>P>Q", "F>Q>P"}
    assert "build P>F" not in after_f and "evaluate base" not in after_f
    assert dependents(tasks, "evaluate F") == set()


def test_executor_settings_change_no_key(tmp_path, tiny_model_dir, outputs_dir, mmlu_dir):
    local = Study(_params(tmp_path, tiny_model_dir, name="local.yaml"))
    on_ray = Study(_params(tmp_path, tiny_model_dir, name="ray.yaml", extra=(
        "executor: ray\nray: {address: 'ray://head:10001', gpus_per_task: 0.5, cpus_per_task: 4}\n")))
    assert (local.params.executor, on_ray.params.executor) == ("local", "ray")
    assert [local.store.key(s) for s in local.plan.states] == [on_ray.store.key(s) for s in on_ray.plan.states]
    assert local.suite.key == on_ray.suite.key
    assert [local.result_key(o) for o in REFERENCE_ORDER] == [on_ray.result_key(o) for o in REFERENCE_ORDER]
    assert local.params.hash() == on_ray.params.hash()


def test_a_worker_that_would_make_other_states_refuses(study):
    spec = worker_spec(study)
    assert spec.torch_threads == torch.get_num_threads() and spec.device == "cpu"
    with pytest.raises(ExecutorError, match="computes key .* for F, the driver 0000"):
        build_state(spec, "F", "0000")
    with pytest.raises(ExecutorError, match="resolves .*'dtype': 'float32'.*the driver .*'dtype': 'bfloat16'"):
        build_state(spec.__class__(**{**spec.__dict__, "dtype": "bfloat16"}), "base", study.store.key("base"))
    assert not study.paths.states.exists()  # refused before any work


def test_a_task_the_cluster_cannot_hold_is_an_error_naming_the_key(study):
    assert _check_resources(study, {"CPU": 2.0}, 1) == {"nodes": 1, "CPU": 2.0, "GPU": 0.0}
    tight = Study(study.params_file, params=study.params.model_copy(
        update={"ray": study.params.ray.model_copy(update={"cpus_per_task": 4.0})}))
    with pytest.raises(ParamsError, match=r"key 'ray.cpus_per_task': each task asks for 4 CPUs but the Ray cluster on "
                                          r"this machine has 2"):
        _check_resources(tight, {"CPU": 2.0}, 1)


def test_with_two_seeds_shared_states_are_one_task_and_seeded_ones_one_per_seed(tmp_path, tiny_model_dir, outputs_dir,
                                                                                 mmlu_dir):
    from orderstudy.execution.runner import planned_states

    first = Study(_params(tmp_path, tiny_model_dir, "executor: ray\nseeds: [0, 1]\n"))
    studies = [first.for_seed(0), first.for_seed(1)]
    tasks = plan_tasks(studies, REFERENCE_ORDER)
    builds = {t.id: t for t in tasks if t.kind == "build"}
    evaluations = {t.id: t for t in tasks if t.kind == "evaluate"}
    shared = {"base", "P", "Q", "P>Q", "Q>P"}
    seeded = [s for s in REFERENCE_ORDER if s not in shared]
    assert set(builds) == {f"build {s}" for s in shared} | {f"build {s}.seed{n}" for s in seeded for n in (0, 1)}
    assert len(builds) == 5 + 2 * 11 and len(evaluations) == 5 + 2 * 11
    assert builds["build P>F.seed1"].depends_on == ("build P",) and builds["build P>F.seed1"].seed == 1
    assert builds["build F>P.seed1"].depends_on == ("build F.seed1",)
    assert evaluations["evaluate Q>P"].depends_on == ("build Q>P",)
    assert builds["build F.seed0"].key != builds["build F.seed1"].key
    position = {t.id: i for i, t in enumerate(tasks)}
    assert all(position[d] < position[t.id] for t in tasks for d in t.depends_on)
    assert worker_spec(studies[1]).seed == 1
    planned = planned_states(studies)
    assert len(planned) == 27 and {label for label, every in planned.items() if every} == shared


def test_a_seed_the_params_do_not_list_is_refused(study):
    with pytest.raises(ParamsError, match=r"key 'seeds': seed 3 was asked for, but the study's seeds are \[0\]"):
        Study(study.params_file, seed=3)


def test_the_task_log_records_each_outcome_and_runs_nothing_that_waits_for_a_failure():
    from orderstudy.execution.tasks import Task, TaskLog

    tasks = [Task("build base", "build", "base", "k0", ()), Task("build F", "build", "F", "k1", ("build base",)),
             Task("build F>P", "build", "F>P", "k2", ("build F",)), Task("build P", "build", "P", "k3", ("build base",)),
             Task("evaluate F>P", "evaluate", "F>P", "k2", ("build F>P",)),
             Task("evaluate P", "evaluate", "P", "k3", ("build P",))]
    shown, called = [], []

    def outcome(t, reused=False, error=None):
        def run():
            called.append(t.id)
            if error:
                raise error
            return {"reused": reused}
        return run

    log = TaskLog(tasks, "[s] phase", shown.append,
                  lambda reported, seconds: {"seconds": 0.5, "reused": reported["reused"] if reported else None},
                  address="here")
    log.take(tasks[0], outcome(tasks[0], reused=True))
    log.take(tasks[1], outcome(tasks[1], error=ValueError("no pair fits\nin 16 tokens")))
    for t in tasks[2:]:
        log.take(t, outcome(t))
    assert called == ["build base", "build F", "build P", "evaluate P"]  # F>P's build and evaluation never ran
    report = log.report
    assert list(report) == ["address", "tasks", "built", "evaluated", "failed", "seconds"]
    assert [(e["id"], e["status"], e["error"], e["reused"]) for e in report["tasks"]] == [
        ("build base", "ok", None, True), ("build F", "failed", "ValueError: no pair fits", None),
        ("build F>P", "not run", "a task it waits for failed", None), ("build P", "ok", None, False),
        ("evaluate F>P", "not run", "a task it waits for failed", None), ("evaluate P", "ok", None, False)]
    assert report["built"] == ["P"] and report["evaluated"] == ["P"]  # the base was found stored
    assert report["failed"] == ["build F", "build F>P", "evaluate F>P"]
    assert shown[1] == "[s] phase [2/6] build F: FAILED — ValueError: no pair fits"
    assert shown[2] == "[s] phase [3/6] build F>P: not run, a task it waits for failed"
    assert shown[0].startswith("[s] phase [1/6] build base: already stored (host ")  # this process's host
    assert shown[3].startswith("[s] phase [4/6] build P: built in 0.5 s (host ")


def test_a_ray_phase_records_what_the_workers_report_and_what_a_failure_stops(study, monkeypatch):
    """run_on_ray's bookkeeping against a stand-in for Ray that runs no model work."""
    import sys
    import types

    from orderstudy.execution.ray_cluster import run_on_ray

    class Ref:
        def __init__(self, task_id, deps):
            self.task_id, self.deps = task_id, deps

    class TaskError(Exception):
        def __init__(self, cause):
            super().__init__(str(cause))
            self.cause = cause

    fails = {"build F": RuntimeError("out of memory")}

    fetched = []

    def get(ref):
        fetched.append(ref.task_id)
        if any(isinstance(d, Ref) and d.task_id in fails for d in ref.deps):  # Ray passes a dependency's error on
            fails[ref.task_id] = RuntimeError("a dependency failed")
        if ref.task_id in fails:
            raise TaskError(fails[ref.task_id])
        return {"started_at": 1000.5, "seconds": 2.25, "reused": ref.task_id == "build base", "host": "node-1", "pid": 42}

    def remote(fn):
        def options(name, **settings):
            return types.SimpleNamespace(remote=lambda *args: Ref(name, args[3:]))
        return types.SimpleNamespace(options=options)

    fake = types.SimpleNamespace(init=lambda **kw: None, shutdown=lambda: None, nodes=lambda: [{}],
                                 cluster_resources=lambda: {"CPU": 2.0}, remote=remote, get=get,
                                 wait=lambda pending, num_returns: (pending[:1], pending[1:]))
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr("time.time", lambda: 1000.0)
    report = run_on_ray(study, ["base", "F", "F>P", "P"], show=lambda *a: None)
    tasks = {t["id"]: t for t in report["tasks"]}
    assert list(tasks) == ["build base", "build F", "build P", "build F>P", "evaluate base", "evaluate F",
                           "evaluate F>P", "evaluate P"]
    assert tasks["build P"] == {"id": "build P", "kind": "build", "name": "P", "key": study.store.key("P"),
                                "status": "ok", "error": None, "end_s": 0.0, "seconds": 2.25, "reused": False,
                                "host": "node-1", "pid": 42, "start_s": 0.5}
    assert tasks["build F"] == {"id": "build F", "kind": "build", "name": "F", "key": study.store.key("F"),
                                "status": "failed", "error": "RuntimeError: out of memory", "end_s": 0.0,
                                "start_s": None, "seconds": None, "host": None, "pid": None}
    assert {i: t["status"] for i, t in tasks.items() if t["status"] != "ok"} == {
        "build F": "failed", "build F>P": "not run", "evaluate F": "not run", "evaluate F>P": "not run"}
    assert report["failed"] == ["build F", "build F>P", "evaluate F", "evaluate F>P"]
    assert report["built"] == ["P"] and report["evaluated"] == ["base", "P"]
    assert report["address"] is None and report["cluster"] == {"nodes": 1, "CPU": 2.0, "GPU": 0.0}
    assert sorted(fetched) == sorted(tasks)  # every outcome fetched, the failures' too: none left unhandled
