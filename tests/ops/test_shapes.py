"""Every architecture the study claims: a SmolLM2-360M-shaped Llama through P, Q and F.

SmolLM2-360M has 15 attention heads in 5 key/value groups over a hidden size of 960, and
transformers' Llama config requires the hidden size to be a multiple of the head count: removing
2 of 5 groups (9 heads) gives a config it refuses. The shape here is the real one (two decoder
layers instead of 32, random weights), so the checks are the ones a real 360M model meets.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from orderstudy.checkpoints import models
from orderstudy.core.operation import get_operation
from orderstudy.operations import prune
from orderstudy.operations.finetune import FinetuneParams
from orderstudy.operations.prune import PruneParams
from orderstudy.operations.quantize import QuantizeParams

from .conftest import TOKENIZER_SOURCE, make_360m_shaped_model


@pytest.fixture(scope="module")
def model_360m(tmp_path_factory):
    if not (TOKENIZER_SOURCE / "tokenizer.json").is_file():
        pytest.skip(f"{TOKENIZER_SOURCE}: the default model's tokenizer is missing; run `make model`")
    return make_360m_shaped_model(tmp_path_factory.mktemp("m360") / "model")


def test_a_head_count_transformers_refuses_stops_before_any_work(model_360m, ctx, tmp_path):
    with pytest.raises(ValueError) as err:
        prune.apply(model_360m, tmp_path / "p", PruneParams(method="width", head_sparsity=0.3), ctx)
    message = str(err.value)
    assert "head_sparsity 0.3 keeps 9 of 15 attention heads (5 key/value groups of 3)" in message
    assert "hidden size (960) is not a multiple of the number of attention heads (9)" in message
    assert "Values this model accepts: 0 (15 heads kept), 0.2 (12 heads kept), 0.6 (6 heads kept), 0.8 (3 heads kept)" in message
    assert not (tmp_path / "p").exists()


def test_prune_quantize_fine_tune_a_360m_shaped_model(model_360m, ctx, tmp_path, run_logits):
    pruned = tmp_path / "P" / "model"
    record = get_operation("P").apply(model_360m, pruned, PruneParams(method="width", sparsity=0.3, head_sparsity=0.2), ctx)
    config = models.read_config(pruned)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (12, 4, 64)
    assert config["intermediate_size"] == 1792  # 2560 x 0.7, a multiple of 64
    # What was really removed, recorded beside what was asked.
    assert record["heads_removed_fraction"] == 0.2 and record["mlp_channels_removed_fraction"] == 0.3
    reloaded = AutoModelForCausalLM.from_pretrained(pruned, dtype=torch.float32)
    assert reloaded.model.layers[0].self_attn.q_proj.weight.shape == (12 * 64, 960)
    assert torch.isfinite(run_logits(reloaded)).all()

    quantized = tmp_path / "P>Q" / "model"
    get_operation("Q").apply(pruned, quantized, QuantizeParams(method="nf4", compute_dtype="float32"), ctx)
    assert models.quantization_config(quantized)["bnb_4bit_quant_type"] == "nf4"

    tuned = tmp_path / "P>Q>F" / "model"
    tuned.parent.mkdir()
    record = get_operation("F").apply(quantized, tuned, FinetuneParams(max_steps=1, batch_size=2, max_seq_len=96, lora_r=4,
                                                               validation_fraction=0.25), ctx)
    assert record["method"] == "qlora" and record["validation_loss_change"]["n"] == 3
    assert all(torch.isfinite(torch.tensor(record["train_losses"])))
    result = AutoModelForCausalLM.from_pretrained(tuned, dtype=torch.float32)
    assert result.config.num_attention_heads == 12 and torch.isfinite(run_logits(result)).all()


def test_orderstudy_check_stops_on_that_head_count_before_any_work(model_360m, tmp_path, outputs_dir, capsys):
    from orderstudy import cli

    params = tmp_path / "m360.yaml"
    params.write_text(f"study: m360\nmodel: {{source: {model_360m}}}\nprune: {{method: width, head_sparsity: 0.3}}\n",
                      encoding="utf-8")
    assert cli.main(["check", str(params)]) == 2
    err = capsys.readouterr().err
    assert f"{params}: key 'prune.head_sparsity': head_sparsity 0.3 keeps 9 of 15 attention heads" in err
    assert "0.2 (12 heads kept)" in err
    assert not (outputs_dir / "m360" / "states").exists()
