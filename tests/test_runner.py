"""The runner: papermill per ordering, only what a change affects reruns, locks, failures."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from orderstudy.core import paths
from orderstudy.execution.runner import StudyLocked, run_study, study_lock


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def tiny_params(tmp_path, tiny_model_dir, outputs_dir, mmlu_dir):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"instruction": "回答：", "question": f"问题{i}", "answer": "答案。"}, ensure_ascii=False) + "\n"
                             for i in range(8)), encoding="utf-8")
    text = f"""
study: tinyrun
dtype: float32
model: {{source: {tiny_model_dir}}}
orderings: [base, F, P, P>F]
finetune: {{data: {train}, max_steps: 1, batch_size: 2, max_seq_len: 64}}
prune: {{sparsity: 0.5}}
evaluation: {{benchmarks: [mmlu_law], mmlu_items_per_subject: 1}}
"""
    return _write(tmp_path / "tinyrun.yaml", text), text


@pytest.mark.e2e
def test_changing_one_parameter_reruns_exactly_what_depends_on_it(tiny_params, outputs_dir):
    params_file, text = tiny_params
    first = run_study(params_file, log_output=False, summary=False)
    assert {o: r["status"] for o, r in first["orderings"].items()} == dict.fromkeys(["base", "F", "P", "P>F"], "ok")
    assert sorted(first["steps_built"]) == ["F", "P", "P>F", "base"]
    nb = outputs_dir / "tinyrun" / "notebooks" / "P-F.ipynb"
    assert "papermill" in nb.read_text()

    _write(params_file, text.replace("sparsity: 0.5", "sparsity: 0.25"))
    second = run_study(params_file, log_output=False, summary=False)
    ran = {o for o, r in second["orderings"].items() if r["ran"]}
    assert ran == {"P", "P>F"}
    assert sorted(second["steps_built"]) == ["P", "P>F"]
    # The old states stay (until `make clean`): both prune results exist side by side.
    states = [p for p in (outputs_dir / "tinyrun" / "states").iterdir() if p.is_dir()]
    assert len(states) == 6


def test_a_second_run_of_the_same_study_stops_with_a_clear_message(tiny_params, outputs_dir):
    params_file, _ = tiny_params
    with study_lock(outputs_dir / "tinyrun"):
        with pytest.raises(StudyLocked, match="study 'tinyrun' is already running"):
            run_study(params_file, log_output=False)
        env = {**os.environ, "ORDERSTUDY_OUTPUTS": str(outputs_dir)}
        proc = subprocess.run([sys.executable, "-m", "orderstudy", "run", str(params_file)], cwd=paths.ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "already running" in proc.stderr
    assert not (outputs_dir / "tinyrun" / "states").exists()


@pytest.mark.parametrize("edit,expected", [
    ("model: {{source: /nonexistent/model}}", "neither an existing directory or .gguf file"),
    ("model: {{source: {tiny}}}\ndevice: cuda", "no CUDA device"),
])
def test_bad_inputs_stop_before_any_work(tmp_path, tiny_model_dir, outputs_dir, mmlu_dir, edit, expected):
    text = "study: bad\n" + edit.format(tiny=tiny_model_dir) + "\nevaluation: {benchmarks: [mmlu_law], mmlu_items_per_subject: 1}\n"
    params_file = _write(tmp_path / "bad.yaml", text)
    env = {**os.environ, "ORDERSTUDY_OUTPUTS": str(outputs_dir)}
    proc = subprocess.run([sys.executable, "-m", "orderstudy", "run", str(params_file)], cwd=paths.ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert expected in proc.stderr
    assert not (outputs_dir / "bad" / "states").exists()


@pytest.mark.parametrize("model, expected", [
    ("{{source: /nonexistent/model}}", "key 'model.source': '/nonexistent/model' is neither an existing directory or .gguf file"),
    ("{{source: {empty}}}", "key 'model.source': {empty} is not a checkpoint directory (no config.json)"),
    ("{{source: /nonexistent/m.gguf}}", "key 'model.source': GGUF file /nonexistent/m.gguf does not exist"),
    ("{{source: {tiny}, gguf_file: m.gguf}}", "key 'model.gguf_file': {tiny}/m.gguf does not exist"),
])
def test_the_checks_find_the_model_where_loading_looks_for_it(tmp_path, tiny_model_dir, outputs_dir, mmlu_dir, model,
                                                             expected):
    """The checks before any work read the model source as the study loads it (``models.locate_source``)."""
    from orderstudy.core.params import ParamsError
    from orderstudy.execution.preflight import preflight
    from orderstudy.study.study import Study

    (tmp_path / "empty").mkdir()
    where = {"empty": tmp_path / "empty", "tiny": tiny_model_dir}
    params_file = _write(tmp_path / "model.yaml", f"study: model\nmodel: {model.format(**where)}\n"
                         "evaluation: {benchmarks: [mmlu_law], mmlu_items_per_subject: 1}\n")
    with pytest.raises(ParamsError) as raised:
        preflight(Study(params_file))
    assert str(raised.value).startswith(f"{params_file}: {expected.format(**where)}")
    assert not (outputs_dir / "model" / "states").exists()


def test_missing_benchmark_data_is_reported_before_any_work(tmp_path, tiny_model_dir, outputs_dir):
    params_file = _write(tmp_path / "nodata.yaml", f"study: nodata\nmodel: {{source: {tiny_model_dir}}}\n"
                         f"evaluation: {{benchmarks: [lawbench], lawbench_data: {tmp_path / 'nowhere'}}}\n")
    env = {**os.environ, "ORDERSTUDY_OUTPUTS": str(outputs_dir)}
    proc = subprocess.run([sys.executable, "-m", "orderstudy", "check", str(params_file)], cwd=paths.ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"{params_file}: key 'evaluation.lawbench_data': {tmp_path / 'nowhere'} does not exist" in proc.stderr


def test_a_corrupt_model_checkpoint_is_reported_before_any_work(tmp_path, tiny_model_dir, outputs_dir, mmlu_dir):
    import shutil

    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    params_file = _write(tmp_path / "corrupt.yaml", f"study: corrupt\nmodel: {{source: {broken}}}\n"
                         "evaluation: {benchmarks: [mmlu_law], mmlu_items_per_subject: 1}\n")
    with pytest.raises(Exception, match="truncated safetensors file"):
        run_study(params_file, log_output=False)
    assert not (outputs_dir / "corrupt" / "states").exists()


@pytest.mark.e2e
def test_a_failed_ordering_is_recorded_the_others_go_on_and_only_it_reruns(tiny_params, outputs_dir):
    params_file, text = tiny_params
    # No training pair fits in 16 tokens: every ordering with F fails, the others must not.
    _write(params_file, text.replace("max_seq_len: 64", "max_seq_len: 16"))
    first = run_study(params_file, log_output=False)
    status = {o: r["status"] for o, r in first["orderings"].items()}
    assert status == {"base": "ok", "F": "failed", "P": "ok", "P>F": "failed"}
    result = json.loads((outputs_dir / "tinyrun" / "results" / "P-F.json").read_text())
    assert result["status"] == "failed" and result["error"]["step"] == "P>F"
    assert "max_seq_len" in result["error"]["message"] and "Traceback" in result["error"]["traceback"]
    assert [s["state"] for s in result["steps"]] == ["base", "P"]  # the steps taken before it failed
    notebook = (outputs_dir / "tinyrun" / "notebooks" / "P-F.ipynb").read_text()
    assert "max_seq_len" in notebook  # the error is in the executed notebook too
    # ... in the section of the step that failed: the sections before it show their step, the
    # ones after it never ran.
    cells = [c for c in nbformat.reads(notebook, as_version=4).cells if c.cell_type == "code"]
    failed = next(i for i, c in enumerate(cells) if any(o.output_type == "error" for o in c.outputs))
    assert cells[failed].source.startswith("step = run.step(2)")
    assert "Prune (P)" in json.dumps([c.outputs for c in cells[:failed]])
    assert all(c.execution_count is None and not c.outputs for c in cells[failed + 1:])
    main = (outputs_dir / "tinyrun" / "tables" / "main.md").read_text()
    assert "N/A" in main and "max_seq_len" in main

    _write(params_file, text)  # fixed: only the two failed orderings run again
    second = run_study(params_file, log_output=False, summary=False)
    assert {o for o, r in second["orderings"].items() if r["ran"]} == {"F", "P>F"}
    assert all(r["status"] == "ok" for r in second["orderings"].values())


def test_too_little_disk_for_the_planned_checkpoints_stops_before_any_work(tiny_params, outputs_dir, monkeypatch):
    import shutil
    from collections import namedtuple

    from orderstudy.core.params import ParamsError
    from orderstudy.execution.preflight import estimate_disk_bytes
    from orderstudy.study.study import Study

    params_file, _ = tiny_params
    study = Study(params_file)
    need = estimate_disk_bytes(study)
    tiny_bytes = sum(f.stat().st_size for f in Path(study.params.model.source).rglob("*") if f.is_file())
    assert need == tiny_bytes * 4  # base, F, P, P>F: none built yet
    # A nearly full disk cannot be made here for real; the runner asks shutil how much is free.
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - need // 2, need // 2))
    with pytest.raises(ParamsError, match="the planned checkpoints need about"):
        run_study(params_file, log_output=False)
    assert not (outputs_dir / "tinyrun" / "states").exists()


@pytest.mark.parametrize("user_setting, expected", [
    ({}, {"GOMP_SPINCOUNT": "10000", "KMP_BLOCKTIME": "1", "OMP_WAIT_POLICY": None}),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": None, "KMP_BLOCKTIME": None, "OMP_WAIT_POLICY": "PASSIVE"}),
    ({"GOMP_SPINCOUNT": "0"}, {"GOMP_SPINCOUNT": "0", "KMP_BLOCKTIME": None, "OMP_WAIT_POLICY": None}),
])
def test_idle_openmp_threads_spin_briefly_unless_the_user_chose(user_setting, expected):
    """The command line sets a short spin before torch loads OpenMP; a user's own setting is left alone."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    probe = ("import json, os; from orderstudy.execution.threads import quiet_threads; quiet_threads(); import torch; "
             "print(json.dumps({k: os.environ.get(k) for k in ('GOMP_SPINCOUNT', 'KMP_BLOCKTIME', 'OMP_WAIT_POLICY')}))")
    out = subprocess.run([sys.executable, "-c", probe], env=env | user_setting, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected


@pytest.mark.e2e
def test_notebooks_of_premade_states_run_two_at_a_time_and_a_failure_is_still_recorded(tiny_params, outputs_dir):
    """After an in-process (vLLM) or Ray phase the notebooks only read: two run at once, in worker processes."""
    from datetime import datetime

    from orderstudy.execution.in_process import run_in_process
    from orderstudy.execution.notebooks import notebook_workers, run_notebooks
    from orderstudy.study.study import Study

    params_file, text = tiny_params
    _write(params_file, text.replace("max_seq_len: 64", "max_seq_len: 16"))  # no training pair fits: F fails
    study = Study(params_file)
    orderings = list(study.plan.orderings)
    pre = run_in_process([study], orderings, show=lambda *a: None)
    assert sorted(pre["failed"]) == ["build F", "build P>F", "evaluate F", "evaluate P>F"]
    assert notebook_workers(len(orderings), cores=2) == (2, 1)
    ran = list(run_notebooks([(i, study, o) for i, o in enumerate(orderings, 1)], len(orderings), study, 2, 1, False))
    assert {o: status for _, _, o, status, _, _ in ran} == {"base": "ok", "F": "failed", "P": "ok", "P>F": "failed"}
    error = next(e for _, _, o, _, e, _ in ran if o == "P>F")
    assert "max_seq_len" in error
    result = json.loads((outputs_dir / "tinyrun" / "results" / "P-F.json").read_text())
    assert result["status"] == "failed" and result["error"]["step"] == "P>F" and "Traceback" in result["error"]["traceback"]
    assert json.loads((outputs_dir / "tinyrun" / "results" / "P.json").read_text())["evaluation"]["reused"]
    # Two at a time: some two notebooks' executions overlap.
    spans = []
    for o in orderings:
        meta = nbformat.read(outputs_dir / "tinyrun" / "notebooks" / f"{o.replace('>', '-')}.ipynb", as_version=4).metadata
        spans.append((datetime.fromisoformat(meta.papermill.start_time), datetime.fromisoformat(meta.papermill.end_time)))
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1:])
