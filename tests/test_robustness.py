"""Nothing finished is lost, and the same params give the same results."""

import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import save_file

from orderstudy.core import paths
from orderstudy.study.study import Study

KILLED_BUILD = """
import sys, time
from pathlib import Path
import torch
from safetensors.torch import save_file
from orderstudy.core.params import StudyParams
from orderstudy.study.store import StateStore

def build(name, out_dir, parent_dir):
    out_dir.mkdir(parents=True)
    (out_dir / "config.json").write_text("{}")
    if name == "P":
        with open(out_dir / "model.safetensors", "wb") as f:
            f.write(b"x" * 1000)
            f.flush()
            Path(sys.argv[2]).write_text("writing")
            time.sleep(60)  # killed here, in the middle of writing the checkpoint
    else:
        save_file({"w": torch.zeros(4)}, out_dir / "model.safetensors")
    return {"parameters": 1}

params = StudyParams.model_validate({"study": "k", "model": {"source": "x/y"}})
StateStore(Path(sys.argv[1]), params, "float32", "cpu").get("P", build)
"""


def test_a_study_killed_while_writing_a_checkpoint_resumes_cleanly(tmp_path):
    from orderstudy.core.params import StudyParams
    from orderstudy.study.store import StateStore

    root, flag = tmp_path / "states", tmp_path / "flag"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(root), str(flag)], cwd=paths.ROOT)
    deadline = time.time() + 60
    while not flag.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert flag.exists(), "the build never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    store = StateStore(root, StudyParams.model_validate({"study": "k", "model": {"source": "x/y"}}), "float32", "cpu")
    assert store.is_complete(store.state("base"))       # finished before the kill: kept
    assert not store.state("P").dir.exists()            # never half there
    assert list(root.glob(f".{store.key('P')}.*.tmp"))  # the killed build's temporary directory

    def build(name, out_dir, parent_dir):
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")
        save_file({"w": torch.ones(4)}, out_dir / "model.safetensors")
        return {"parameters": 1}

    state, reused = store.get("P", build)
    assert not reused and store.is_complete(state)
    assert not list(root.glob(f".{store.key('P')}.*.tmp"))  # cleaned up on resume
    assert store.get("base", build)[1]                     # the finished parent was reused


@pytest.fixture
def tiny_params_file(tmp_path, tiny_model_dir, mmlu_dir, lawbench_dir):
    p = tmp_path / "repro.yaml"
    p.write_text(f"""
study: repro
seed: 3
dtype: float32
model: {{source: {tiny_model_dir}}}
orderings: [base, Q>F, F>P>Q]
finetune: {{data: lawbench, train_items_per_task: 3, max_steps: 2, batch_size: 2, max_seq_len: 128, lora_dropout: 0.1}}
prune: {{method: width, importance: activation, calibration_samples: 4, calibration_seq_len: 64}}
evaluation:
  benchmarks: [lawbench, mmlu_law]
  lawbench_tasks: ['1-1', '2-4']
  lawbench_items_per_task: 1
  max_new_tokens: 4
  mmlu_items_per_subject: 1
""", encoding="utf-8")
    return p


def _run_all(params_file, outputs, monkeypatch):
    monkeypatch.setattr(paths, "OUTPUTS_DIR", outputs)
    study = Study(params_file)
    results = {o: study.run_ordering(o, show=lambda *a: None) for o in study.plan.orderings}
    manifests = {s: study.store.state(s).record()["manifest"] for s in study.plan.states}
    return results, manifests


def test_the_same_params_give_the_same_results_exactly(tiny_params_file, tmp_path, monkeypatch):
    first, first_files = _run_all(tiny_params_file, tmp_path / "a", monkeypatch)
    second, second_files = _run_all(tiny_params_file, tmp_path / "b", monkeypatch)
    for ordering in first:
        assert first[ordering]["status"] == "ok"
        assert first[ordering]["benchmarks"] == second[ordering]["benchmarks"]
        assert first[ordering]["state_key"] == second[ordering]["state_key"]
    # Bit-identical checkpoints: training order, dropout and calibration sampling are seeded.
    assert first_files == second_files
    items_a = json.loads((tmp_path / "a" / "repro" / first["F>P>Q"]["items_file"]).read_text())
    items_b = json.loads((tmp_path / "b" / "repro" / second["F>P>Q"]["items_file"]).read_text())
    assert items_a == items_b
    # The versions really installed, read independently of store.versions().
    assert first["base"]["versions"] == {
        "python": platform.python_version(),
        **{pkg: importlib.metadata.version(pkg) for pkg in ("torch", "transformers", "peft", "bitsandbytes", "lm_eval",
                                                             "orderstudy")}}
    assert first["base"]["versions"]["torch"] == torch.__version__
    assert first["base"]["params_hash"] == second["base"]["params_hash"] and first["base"]["device"] == "cpu"


def test_a_package_not_installed_is_recorded_as_none_not_as_a_truthy_word(monkeypatch):
    from orderstudy.study import store

    real = importlib.metadata.version

    def version(pkg):
        if pkg == "peft":
            raise importlib.metadata.PackageNotFoundError(pkg)
        return real(pkg)

    monkeypatch.setattr(importlib.metadata, "version", version)
    found = store.versions()
    assert found["peft"] is None
    assert found["torch"] == real("torch") and found["python"] == platform.python_version()
