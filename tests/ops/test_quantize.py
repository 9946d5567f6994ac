"""Each quantization method saves a checkpoint that ``from_pretrained`` alone reloads, same logits."""

from __future__ import annotations

import bitsandbytes as bnb
import pytest
import torch
from transformers import AutoModelForCausalLM

from orderstudy.checkpoints import models, numerics
from orderstudy.checkpoints.inspect import describe
from orderstudy.checkpoints import storage
from orderstudy.operations.quantize import bnb as quantize
from orderstudy.operations.quantize import QuantizeParams


QUANTIZATION_ERROR = {"nf4": 0.2, "fp4": 0.3, "int8": 0.03}


@pytest.mark.parametrize("method", ["nf4", "fp4", "int8"])
@pytest.mark.parametrize("source", [(), ("P:2:4-sparse",)], ids=["dense", "sparse-format"])
def test_reloads_with_from_pretrained_alone_and_the_same_logits(states, step_params, ctx, tmp_path, run_logits,
                                                                method, source):
    src = states.get(*source)
    _, params = step_params[f"Q:{method}"]
    model = quantize.quantize_model(src, params, ctx)
    before = run_logits(model)
    model.save_pretrained(tmp_path / "q")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "q", dtype=torch.float32)
    # Both on bitsandbytes' reference CPU kernel, the path the study pins (tests/test_numerics.py):
    # on an AVX512-BF16 CPU bitsandbytes alone repacks after a first forward and computes otherwise.
    numerics.pin_bnb_cpu_path(reloaded)
    assert torch.equal(run_logits(reloaded), before)
    # And it is a quantized model close to the dense one it came from (measured on the tiny
    # model's logits: nf4 0.12, fp4 0.21, int8 0.012 relative error).
    reference = run_logits(storage.load(src, "float32", "cpu"))
    assert float((before - reference).norm() / reference.norm()) < QUANTIZATION_ERROR[method]


@pytest.mark.parametrize("method,layer_type", [("nf4", bnb.nn.Linear4bit), ("fp4", bnb.nn.Linear4bit),
                                               ("int8", bnb.nn.Linear8bitLt)])
def test_the_saved_settings_are_the_asked_ones(states, method, layer_type):
    result = states.get(f"Q:{method}")
    quant = models.quantization_config(result)
    model = AutoModelForCausalLM.from_pretrained(result, dtype=torch.float32)
    assert isinstance(model.model.layers[0].mlp.up_proj, layer_type)
    assert not isinstance(model.lm_head, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))
    assert isinstance(model.model.embed_tokens, torch.nn.Embedding)
    record = states.record(f"Q:{method}")
    assert record["quantized_modules"] == 3 * 7
    if method == "int8":
        assert quant["load_in_8bit"] and record["double_quant"] is None
    else:
        assert quant["bnb_4bit_quant_type"] == method
        assert quant["bnb_4bit_use_double_quant"] == (method == "nf4")  # fp4's test params turn it off
        assert quant["bnb_4bit_compute_dtype"] == "float32"


@pytest.mark.parametrize("method,largest", [("nf4", 0.15), ("int8", 0.02)])
def test_the_record_gives_each_layers_weight_error_as_the_saved_checkpoint_has_it(states, tiny_model, method, largest):
    record = states.record(f"Q:{method}")["weight_error"]
    errors = record["by_module"]
    reloaded = AutoModelForCausalLM.from_pretrained(states.get(f"Q:{method}"), dtype=torch.float32)
    source = dict(storage.load(tiny_model, "float32", "cpu").named_modules())
    quantized = {n: m for n, m in reloaded.named_modules() if isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))}
    assert set(errors) == set(quantized) and len(errors) == 3 * 7
    for name, module in quantized.items():
        w = source[name].weight.float()
        measured = float(torch.linalg.norm(w - quantize.dequantized_weight(module)) / torch.linalg.norm(w))
        assert errors[name] == pytest.approx(measured, abs=2e-6)
    # Measured on the tiny model: nf4 about 9%, int8 about 0.6% of each weight matrix's norm.
    assert 0 < record["mean"] <= record["max"] < largest


def test_sizes_by_part(states, tiny_model):
    base = describe(tiny_model)["parts"]
    nf4 = describe(states.get("Q:nf4"))["parts"]
    int8 = describe(states.get("Q:int8"))["parts"]
    assert nf4["embed_tokens"] == base["embed_tokens"]          # the embedding stays as it was
    assert nf4["lm_head"] == "tied"
    # 4 bits a weight plus block scales, against 32 bits: about 1/7 after the norms and statistics.
    assert nf4["layers"]["bytes"] < 0.2 * base["layers"]["bytes"]
    assert 0.25 < int8["layers"]["bytes"] / base["layers"]["bytes"] < 0.3
    assert nf4["layers"]["parameters"] == int8["layers"]["parameters"] == base["layers"]["parameters"]


def test_skip_modules_keeps_those_layers_in_full_precision(tiny_model, ctx, tmp_path):
    params = QuantizeParams(method="nf4", skip_modules=("lm_head", "down_proj"), compute_dtype="float32")
    record = quantize.apply(tiny_model, tmp_path / "q", params, ctx)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "q", dtype=torch.float32)
    assert type(model.model.layers[0].mlp.down_proj) is torch.nn.Linear
    assert isinstance(model.model.layers[0].mlp.up_proj, bnb.nn.Linear4bit)
    assert record["quantized_modules"] == 3 * 6


def test_a_quantized_model_is_not_quantized_twice(states, ctx, tmp_path):
    with pytest.raises(ValueError, match="already quantized"):
        quantize.apply(states.get("Q:nf4"), tmp_path / "q", QuantizeParams(), ctx)
