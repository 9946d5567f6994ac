"""GPTQ (GPTQModel) as a method of Q: a standard checkpoint, reloaded with the same logits, and every
other step after it (P re-runs GPTQ on the pruned model, F's three merge policies)."""

from __future__ import annotations

from importlib.metadata import version

import pytest
import torch
from gptqmodel.nn_modules.qlinear import BaseQuantLinear
from transformers import AutoModelForCausalLM

from orderstudy.checkpoints import equivalent, gptq, models, storage
from orderstudy.checkpoints.inspect import describe
from orderstudy.operations.common import source_layout
from orderstudy.operations.quantize import QuantizeParams

from .conftest import EXAMPLES


def _fresh(model_dir):
    gptq.prepare_library()
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).eval()


def test_gptq_reloads_with_from_pretrained_alone_and_the_same_logits(states, tiny_model, run_logits):
    result = states.get("Q:gptq")
    assert source_layout(result) == "quantized"
    first, second = _fresh(result), _fresh(result)
    assert isinstance(first.model.layers[0].mlp.up_proj, BaseQuantLinear)
    assert isinstance(first.model.embed_tokens, torch.nn.Embedding)
    assert torch.equal(run_logits(first), run_logits(second))
    # A 4-bit model close to its source (measured on the tiny model: 0.10 relative logit error).
    reference = run_logits(storage.load(tiny_model, "float32", "cpu"))
    assert float((run_logits(first) - reference).norm() / reference.norm()) < 0.25


def test_the_record_names_the_library_the_settings_and_the_calibration_items(states):
    record = states.record("Q:gptq")
    assert record["library"] == "GPTQModel" and record["library_version"] == version("gptqmodel")
    assert (record["bits"], record["group_size"], record["desc_act"]) == (4, 32, False)
    assert record["quantized_modules"] == 3 * 7
    calibration = record["calibration"]
    assert calibration["examples"] == 6 == len(calibration["item_ids"])
    assert set(calibration["item_ids"]) <= {ex["id"] for ex in EXAMPLES}
    assert 6 < calibration["tokens"] <= 6 * 48
    # Each layer's error read from the saved codes (measured: 0.10-0.13 at 4 bits, groups of 32).
    assert 0.02 < record["weight_error"]["mean"] < 0.2
    quant = models.quantization_config(states.get("Q:gptq"))
    assert quant["quant_method"] == "gptq" and quant["bits"] == 4 and quant["group_size"] == 32


def test_the_decoder_weighs_under_a_third_of_its_bf16_size_on_disk(states, tiny_model):
    before, after = describe(tiny_model), describe(states.get("Q:gptq"))
    assert after["parameters"] == before["parameters"]            # packed codes count as their weights
    assert after["parts"]["layers"]["quantization"] == "gptq"
    layers_bf16 = before["parts"]["layers"]["parameters"] * 2
    assert after["parts"]["layers"]["bytes"] < layers_bf16 / 3     # 4-bit codes plus a scale per 32
    # The embedding stays in the study's dtype (float32 here): it is most of the tiny model.
    assert after["parts"]["embed_tokens"] == before["parts"]["embed_tokens"]
    assert after["weights_bytes"] < before["weights_bytes"]


def test_eight_bits_with_act_order(states, tiny_model, run_logits):
    result = states.get("Q:gptq-8bit")
    record = states.record("Q:gptq-8bit")
    assert (record["bits"], record["desc_act"]) == (8, True)
    assert record["weight_error"]["mean"] < states.record("Q:gptq")["weight_error"]["mean"] / 4
    # Measured: the 8-bit logits 0.009 from the source's (relative), the 4-bit ones 0.10.
    reference = run_logits(storage.load(tiny_model, "float32", "cpu"))
    assert float((run_logits(_fresh(result)) - reference).norm() / reference.norm()) < 0.03


def test_dequantized_weights_are_what_the_kernel_computes(states, run_logits):
    result = states.get("Q:gptq")
    dense, facts = storage.load_dense(result, "bfloat16", "cpu")
    assert not gptq.quant_layers(dense) and facts["quantization"]["quant_method"] == "gptq"
    kernel = _fresh(result)
    a, b = run_logits(dense), run_logits(kernel)
    assert float((a - b).abs().max()) < 0.05 * float(b.abs().max())
    # Once the CPU kernel ran, its codes are repacked: dequantizing that model is refused.
    with pytest.raises(gptq.RepackedError):
        gptq.dequantized_weight(kernel.model.layers[0].mlp.up_proj)


# bfloat16: the study's dtype on a CPU with AVX512-BF16; float32: on one without (dtype auto), whose
# evaluations take the same two paths.
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_a_cpu_evaluation_scores_the_dense_equivalent_and_records_its_agreement(states, dtype):
    result = states.get("Q:gptq")
    sequences = [[1, 504, 3165, 314, 260, 1345, 28, 2119, 30, 2]]
    model, record = equivalent.evaluation_model(result, dtype, "cpu", "equivalent", sequences)
    assert not gptq.quant_layers(model) and next(model.parameters()).dtype == getattr(torch, dtype)
    assert record["evaluated_as"].startswith("evaluation-equivalent dense model")
    assert "GPTQModel" in record["gptq_kernel"]
    assert record["vs_gptq_kernel"]["greedy_token_agreement"] >= 0.9
    kernel, own = equivalent.evaluation_model(result, dtype, "cpu", "bitsandbytes", sequences)
    assert gptq.quant_layers(kernel) and own["evaluated_as"].startswith("GPTQModel's own kernel")
    # vLLM on CUDA reads GPTQ itself; on a CPU it is given the dense copy.
    assert equivalent.copy_kind(result, "cuda") is None and "GPTQ" in equivalent.copy_kind(result, "cpu")


def test_pruning_after_gptq_requantizes_with_gptq_recalibrated_on_the_pruned_model(states):
    result = states.get("Q:gptq", "P:width")
    record = states.record("Q:gptq", "P:width")
    assert record["dequantized_first"] and record["requantized_as"] == "gptq"
    again = record["requantization"]
    assert again["calibrated"] and again["library"] == "GPTQModel" and again["group_size"] == 32
    assert again["calibration"]["examples"] == 6
    config = models.read_config(result)
    assert config["quantization_config"]["quant_method"] == "gptq" and config["intermediate_size"] == 64
    model = _fresh(result)
    assert isinstance(model.model.layers[0].mlp.down_proj, BaseQuantLinear)
    assert model.model.layers[0].mlp.down_proj.in_features == 64


@pytest.mark.parametrize("step,quantized,layout", [("F", False, "standard"), ("F:requantize", True, "standard"),
                                                   ("F:adapter", True, "adapter")])
def test_finetuning_after_gptq_follows_the_three_merge_policies(states, run_logits, step, quantized, layout):
    result = states.get("Q:gptq", step)
    record = states.record("Q:gptq", step)
    assert record["method"] == "qlora" and record["base_quantization"] == "gptq"
    assert models.is_quantized(result) == quantized and storage.layout(result) == layout
    if step == "F:requantize":
        assert record["requantization"]["calibrated"] and record["requantization"]["method"] == "gptq"
    loaded = storage.load(result, "bfloat16", "cpu")
    base = storage.load(states.get("Q:gptq"), "bfloat16", "cpu")
    assert not torch.equal(run_logits(loaded), run_logits(base))   # the fine-tune changed the model
    assert all(abs(x) < 20 for x in record["train_losses"])


def test_gptq_keys_are_rejected_for_bitsandbytes_and_the_other_way():
    with pytest.raises(ValueError, match="quantize.group_size applies to method 'gptq' only"):
        QuantizeParams(method="nf4", group_size=64)
    with pytest.raises(ValueError, match="quantize.double_quant applies to bitsandbytes"):
        QuantizeParams(method="gptq", double_quant=False)
    assert QuantizeParams(method="gptq").needs_calibration and not QuantizeParams().needs_calibration


def test_groups_that_do_not_divide_a_layer_are_refused_before_any_work(tiny_model, ctx, tmp_path):
    from orderstudy.operations.quantize import SPEC
    from orderstudy.operations.quantize.gptq import apply

    config = models.read_config(tiny_model)                      # hidden 64, MLP 128
    params = QuantizeParams(method="gptq", group_size=128)       # quantizes, but no CPU or CUDA kernel runs it
    problem = SPEC.check_source(lambda: config, params)
    assert problem.startswith("key 'quantize.group_size': quantize.group_size 128 does not divide")
    assert "set group_size to 64" in problem
    assert SPEC.check_source(lambda: config, QuantizeParams(method="gptq", group_size=32)) is None
    with pytest.raises(ValueError, match="hidden_size\\) = 64"):
        apply(tiny_model, tmp_path / "q", params, ctx)
    assert not (tmp_path / "q").exists()


def test_unstructured_zeros_mostly_survive_gptq_run_again_and_the_record_counts_them(states):
    record = states.record("Q:gptq", "P:magnitude")
    assert record["zero_fraction"] == 0.5 and record["requantized_as"] == "gptq"
    # GPTQ's error feedback moves a few zeros off the zero point (measured: 0.490 of the weights stay zero).
    kept = record["requantization"]["linear_zero_fraction"]
    dense, _ = storage.load_dense(states.get("Q:gptq", "P:magnitude"), "float32", "cpu")
    assert kept == pytest.approx(storage.zero_fraction(dense), abs=1e-6)
    assert 0.4 < kept < 0.5
