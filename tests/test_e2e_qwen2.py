"""End-to-end tier on the reference study's model family: the smoke study on a tiny random Qwen2.

Qwen2 has what the tiny Llama lacks: biases on the q/k/v projections (width pruning must cut them
with their rows) and an output head not tied to the embedding (quantization keeps it apart,
pruning and merging must carry it). Seven orderings run through papermill as in test_e2e.py
(every operation alone, on a quantized state, after a quantized and pruned one, and last after
the other two), on the cheapest evaluation that still runs each scoring path
(params/smoke-qwen2.yaml); every check is in one test so the study runs once.
"""

import csv
import json
import os
import subprocess
import sys
import time

import pytest
from safetensors import safe_open

from orderstudy.core import paths
from orderstudy.core.plan import REFERENCE_ORDER, prefixes

pytestmark = pytest.mark.e2e
ORDERINGS = ("base", "F", "P", "Q", "Q>F", "P>Q>F", "F>P>Q")


def _tensors(model_dir):
    out = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        with safe_open(f, "pt") as st:
            out.update({k: st.get_slice(k).get_shape() for k in st.keys()})
    return out


def test_the_smoke_study_runs_on_a_tiny_qwen2_model(tmp_path, default_model_dir, lawbench_dir, mmlu_dir):
    from orderstudy.prepare import prepare_tiny_qwen2

    prepare_tiny_qwen2()
    out = tmp_path / "outputs"
    env = {**os.environ, "ORDERSTUDY_OUTPUTS": str(out)}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "orderstudy", "run", "params/smoke-qwen2.yaml", "--quiet",
                           "--orderings", *(o.replace(">", "-") for o in ORDERINGS)],
                          cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=3600)
    print(f"smoke-qwen2 study: {time.perf_counter() - started:.0f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    d = out / "smoke-qwen2"
    run = json.loads((d / "last_run.json").read_text())
    assert [o for o in run["orderings"]] == [o for o in REFERENCE_ORDER if o in ORDERINGS]
    assert sorted(run["steps_built"]) == sorted({s for o in ORDERINGS for s in prefixes(o)})  # 9 states, base included
    assert not {o: r["error"] for o, r in run["orderings"].items() if r["status"] != "ok"}
    with open(d / "tables" / "main.csv", encoding="utf-8") as f:
        status = {r["ordering"]: r["status"] for r in csv.DictReader(f)}
    assert list(status) == list(REFERENCE_ORDER)
    assert {o: s for o, s in status.items() if s == "ok"} == dict.fromkeys(ORDERINGS, "ok")

    results = {o: json.loads((d / "results" / f"{paths.ordering_filename(o)}.json").read_text()) for o in ORDERINGS}
    for ordering, result in results.items():
        model_dir = d / "states" / result["state_key"] / "model"
        config = json.loads((model_dir / "config.json").read_text())
        tensors = _tensors(model_dir)
        assert config["model_type"] == "qwen2" and config["tie_word_embeddings"] is False, ordering
        # The output head is its own tensor in every state (never quantized: skip_modules), the embedding apart.
        assert "lm_head.weight" in tensors and "model.embed_tokens.weight" in tensors, ordering
        heads, groups, head_dim = config["num_attention_heads"], config["num_key_value_heads"], config.get("head_dim", 16)
        # The biases are cut with their rows: as many as the heads and groups the config says.
        if result["quantized"]:
            assert any(k.endswith("q_proj.weight.quant_state.bitsandbytes__nf4") for k in tensors), ordering
        assert tensors["model.layers.0.self_attn.q_proj.bias"] == [heads * head_dim], ordering
        assert tensors["model.layers.0.self_attn.k_proj.bias"] == [groups * head_dim], ordering
        assert tensors["model.layers.0.self_attn.v_proj.bias"] == [groups * head_dim], ordering
        pruned = "P" in ordering.split(">")
        assert (heads, groups) == ((2, 1) if pruned else (4, 2)), ordering
        assert result["provenance"]["format"] == "safetensors" and not result["provenance"]["weight_grid"]["on_4bit_grid"]
    for ordering in ("F", "Q>F", "P>Q>F"):
        step = results[ordering]["steps"][-1]
        assert step["pairs_by_task"]["2-4"]["given"] == 8 and "validation_lowered" in step
    p = results["P"]["steps"][-1]  # activation-aware width: calibration through the biased projections
    assert p["heads_removed_fraction"] == 0.5 and p["calibration_data"]["source"].startswith("finetune")
