"""The device check (scripts/device_check.sh), run here on the CPU in this environment.

On the GPU machine it runs from the kit (.device/kit); here `--env` takes this environment and the
repository's cache instead and DEVICE_CHECK_ALLOW_CPU=1 lets it run without CUDA. Everything else
is the same script: the stages, their time limits, the figures printed and the files for $OUT.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from orderstudy.checkpoints import models
from orderstudy.core import paths
from orderstudy.core.params import load_params

SCRIPT = paths.ROOT / "scripts" / "device_check.sh"


def _run(tmp_path, *args: str, timeout: int):
    out = tmp_path / "OUT"
    env = {**os.environ, "OUT": str(out), "DEVICE_CHECK_ALLOW_CPU": "1", "DEVICE_CHECK_PYTHON": sys.executable,
           "PYTHONPATH": "", "TMPDIR": str(tmp_path)}
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(SCRIPT), "--env", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return proc, out, time.monotonic() - t0


def _stages(stdout: str) -> dict[str, str]:
    """Return ``{stage: how it ended}`` from the summary the script prints last."""
    summary = stdout.rsplit("== summary", 1)[1]
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^   (\w+) +(ok|TIMED OUT|FAILED[^\d]*|skipped[^\d]*)", summary, re.M)}


def _lead_pieces_missing() -> set[str]:
    """The stages whose programs are not in this tree yet (the benchmark and `orderstudy estimate`)."""
    missing = set()
    if not (paths.ROOT / "benchmarks" / "bench_generation.py").is_file():
        missing.add("bench")
    helptext = subprocess.run([sys.executable, "-m", "orderstudy", "--help"], capture_output=True, text=True).stdout
    if "estimate" not in helptext:
        missing.add("estimate")
    return missing


@pytest.mark.e2e
def test_device_check_runs_every_stage_and_prints_the_figures(tmp_path, lawbench_dir, mmlu_dir, default_model_dir):
    proc, out, seconds = _run(tmp_path, "--orderings", "base", "--items", "4", timeout=600)
    stdout = proc.stdout
    stages = _stages(stdout)
    missing = _lead_pieces_missing()
    assert {s for s, how in stages.items() if how != "ok"} == missing, stdout[-4000:]
    assert proc.returncode == (1 if missing else 0)
    assert {"machine", "prepare", "smoke", "results"} <= set(stages)
    assert seconds < 460
    # The figures: the machine, each ordering's status and timings, the main table.
    assert "CUDA available: False" in stdout and "bitsandbytes NF4 round trip and matmul on cpu" in stdout
    # dtype auto: bfloat16 on a CPU with AVX512-BF16, float32 on one without (models.resolve_dtype).
    dtype = models.resolve_dtype("auto", "cpu")
    assert re.search(rf"^base +ok +cpu +{dtype} +[\d.]+ +[\d.]+ +[\d.]+  lawbench=", stdout, re.M), stdout[-4000:]
    # LawBench at one item a task has no interval (and says why below the table); stem has one.
    assert re.search(r"^\| base model +\| [\d.]+ +\| [\d.]+ \[[\d.]+, [\d.]+\]", stdout, re.M), stdout[-4000:]
    assert "LawBench‡: 13 of its 13 tasks have fewer than 2 items" in stdout and "| quantize" in stdout  # Q: not run
    if "bench" not in missing:  # the benchmark's table: one row per batch size, new tokens per second
        bench = json.loads((out / "bench.json").read_text())
        assert [r["batch_size"] for r in bench["rows"]][0] == 1 and len(bench["rows"]) == 2
        assert all(r["backend"] == "hf" and r["new_tokens"] > 0 and r["new_tokens_per_s"] > 0 for r in bench["rows"])
        assert re.search(r"^hf +1 +dynamic +4 ", stdout, re.M), stdout[-3000:]
    # What comes back from the device: flat files with plain names, at most 8.
    files = sorted(p.name for p in out.iterdir())
    assert all(p.is_file() for p in out.iterdir()) and len(files) <= 8
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files)
    expected = {"device_check.log", "env.txt", "machine.json", "last_run.json", "main.md", "orderings.json"}
    expected |= {f"{stage}.json" for stage in ("bench", "estimate") if stage not in missing}
    assert expected == set(files)
    orderings = json.loads((out / "orderings.json").read_text())["orderings"]
    assert [(o["ordering"], o["status"], o["device"]) for o in orderings] == [("base", "ok", "cpu")]
    assert json.loads((out / "machine.json").read_text())["packages"]["bitsandbytes"]["version"] == "0.50.2"
    assert "nvidia-smi" in (out / "env.txt").read_text()
    assert (out / "device_check.log").read_text().rstrip().endswith(stdout.rstrip().splitlines()[-1])


def test_device_check_ends_inside_its_budget_with_what_it_got(tmp_path):
    # 8 s: less than this environment takes to import torch, transformers, lm-eval and datasets and
    # make the tiny model, so a stage is cut or skipped; the run still ends and says so.
    proc, out, seconds = _run(tmp_path, "--budget-s", "8", timeout=120)
    assert seconds < 8 + 10 + 15  # the budget, timeout's grace before SIGKILL, bash and tee
    assert proc.returncode == 1
    stages = _stages(proc.stdout)
    assert "TIMED OUT" in stages.values() or any(h.startswith("skipped") for h in stages.values()), proc.stdout
    assert "device check: NOT ok (exit 1)" in (out / "device_check.log").read_text()


def test_device_check_without_cuda_stops_with_a_clear_message(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine may have a GPU")
    env = {**os.environ, "OUT": str(tmp_path / "OUT"), "DEVICE_CHECK_PYTHON": sys.executable, "PYTHONPATH": "",
           "TMPDIR": str(tmp_path)}
    env.pop("DEVICE_CHECK_ALLOW_CPU", None)
    proc = subprocess.run(["bash", str(SCRIPT), "--env"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stdout[-3000:]
    assert "FAILED: torch sees no CUDA device on this machine" in proc.stdout
    assert "smoke" not in _stages(proc.stdout)  # nothing ran that would not have tested the GPU


def test_a_kit_that_is_not_there_is_named(tmp_path):
    env = {**os.environ, "DEVICE_CHECK_KIT": str(tmp_path / "nokit"), "TMPDIR": str(tmp_path)}
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"{tmp_path / 'nokit'}/site.tar.xz is missing: run `make device-kit`" in proc.stdout


def test_derived_params_point_at_this_runs_model_and_data_and_change_nothing_else(tmp_path):
    spec = importlib.util.spec_from_file_location("device_check", paths.ROOT / "scripts" / "device_check.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    src = paths.ROOT / "params" / "smoke.yaml"
    out = tmp_path / "smoke.yaml"
    check.derive_params(src, out, tmp_path / "models" / "tiny", tmp_path / "data", "cuda")
    derived, original = load_params(out), load_params(src)
    assert derived.model.source == str(tmp_path / "models" / "tiny")
    assert derived.evaluation.lawbench_data == str(tmp_path / "data" / "lawbench")
    assert derived.evaluation.mmlu_data == str(tmp_path / "data" / "mmlu")
    assert derived.device == "cuda" and original.device == "auto"
    assert derived.seeds == original.seeds[:1]  # one run per ordering, as the device budget is sized
    unchanged = {"device": True, "seeds": True, "model": {"source"}, "evaluation": {"lawbench_data", "mmlu_data"}}
    assert derived.model_dump(exclude=unchanged) == original.model_dump(exclude=unchanged)
