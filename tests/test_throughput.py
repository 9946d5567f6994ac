"""The study's size and time estimate, the backend agreement check, and the generation benchmark,
run for real on the smoke study's tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from orderstudy.core import paths

SMOKE = paths.PARAMS_DIR / "smoke.yaml"


def _run(args, tmp_path, timeout=600):
    env = dict(os.environ, ORDERSTUDY_OUTPUTS=str(tmp_path / "outputs"))
    return subprocess.run([sys.executable, *args], cwd=paths.ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_estimate_counts_the_smoke_study_and_times_it(tmp_path, default_model_dir, lawbench_dir, mmlu_dir):
    out = _run(["-m", "orderstudy", "estimate", str(SMOKE), "--items", "4", "--json", str(tmp_path / "est.json")], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    est = json.loads((tmp_path / "est.json").read_text())
    size = est["size"]
    # 16 orderings share 15 steps; with smoke.yaml's two seeds, the 11 states a fine-tune decided
    # are made once per seed: 26 steps (F 10, P 8, Q 8), 27 states to evaluate (66 runs' steps without sharing).
    assert size["orderings"] == 16 and size["seeds"] == 2 and size["evaluations"] == 27
    assert size["steps"] == {"F": 10, "P": 8, "Q": 8, "total": 26, "without_sharing": 66}
    # smoke.yaml: 13 LawBench tasks x 1 item, 2 questions per MMLU subject (19 STEM, 3 law).
    assert size["items"] == {"lawbench": 13, "stem": 38, "mmlu_law": 6}
    assert size["per_model"]["generation_requests"] == 13
    assert size["per_model"]["max_new_tokens"] == 13 * 8
    assert size["per_model"]["loglikelihood_requests"] == 44 * 4
    assert size["study"]["max_new_tokens"] == 27 * 13 * 8
    m = est["measured"]
    assert m["generation"]["prompts"] == 4 and m["generation"]["new_tokens_per_s"] > 0
    assert m["loglikelihood"]["requests"] == 16 and m["train_step_s"] > 0
    s = est["estimated_seconds"]
    assert s["total"] == pytest.approx(s["evaluations"] + s["fine_tuning"] + s["checkpoints"], abs=0.2)
    assert "operation steps                          26" in out.stdout and "total" in out.stdout


def test_transformers_batching_keeps_greedy_answers_and_vllm_says_why_not(tmp_path, default_model_dir, lawbench_dir,
                                                                           mmlu_dir):
    out = _run(["-m", "orderstudy", "backends", str(SMOKE), "--items", "6"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    # Rows: "hf, batch 1", then "hf, batch N" at the evaluation's batch size (the CPU cap, 8); columns: prompts, identical, new tok/s.
    rows = {line[:16].strip(): line[16:].split() for line in out.stdout.splitlines() if line.startswith("hf, batch")}
    assert list(rows) == ["hf, batch 1", "hf, batch 8"]
    # Left padding in length-sorted batches changes no greedy answer of the six.
    assert [r[:2] for r in rows.values()] == [["6", "6"], ["6", "6"]]
    assert "vllm not compared: no vLLM build for cpu is installed here" in out.stdout


@pytest.mark.e2e
def test_generation_benchmark_prints_a_row_per_run(tmp_path, default_model_dir, lawbench_dir, mmlu_dir):
    out = _run(["benchmarks/bench_generation.py", str(SMOKE), "--items", "4", "--batch-sizes", "1,4",
                "--json", str(tmp_path / "bench.json")], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    bench = json.loads((tmp_path / "bench.json").read_text())
    ran = [r for r in bench["rows"] if "skipped" not in r]
    assert [(r["backend"], r["batch_size"]) for r in ran] == [("hf", 1), ("hf", 4)]
    assert all(r["prompts"] == 4 and r["new_tokens"] > 0 and r["new_tokens_per_s"] > 0 for r in ran)
    assert [r["backend"] for r in bench["rows"] if "skipped" in r] == ["vllm"]
    assert "estimated_s" in bench["study_time"] and "whole study: not run yet" in out.stdout
