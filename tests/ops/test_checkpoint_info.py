"""``describe`` weighs each part from the files alone and agrees with the loaded model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from orderstudy.checkpoints import models
from orderstudy.checkpoints.inspect import describe
from orderstudy.checkpoints import storage

CHAINS = [(), ("Q:nf4",), ("Q:int8",), ("P:depth",), ("P:wanda-sparse",), ("Q:nf4", "F:adapter"), ("P:2:4", "Q:fp4")]


@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: ">".join(c) or "base")
def test_parts_add_up_to_the_files_and_the_model(states, chain):
    model_dir = states.get(*chain)
    info = describe(model_dir)
    weight_files = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))
    assert info["weights_bytes"] == weight_files
    model = storage.load(model_dir, "float32", "cpu")
    adapter = info["parts"].get("adapter", {}).get("parameters", 0)
    assert info["parameters"] + adapter == models.count_parameters(model)
    assert info["parts"]["lm_head"] == "tied"
    assert set(info["parts"]) >= {"embed_tokens", "layers", "norm", "lm_head"}
    assert info["parts"]["norm"]["parameters"] == 64


def test_zero_fraction_of_dense_weights_is_counted_exactly(states):
    info = describe(states.get("P:magnitude"))
    assert info["linear_zero_fraction"] == 0.5
    assert info["declared_sparsity"] == {"method": "magnitude", "pattern": "unstructured", "sparsity": 0.5,
                                         "layers": "decoder linear layers"}
    assert describe(states.get("P:width"))["linear_zero_fraction"] == 0.0


def test_zero_fraction_of_4bit_weights_is_where_they_dequantize_to_zero(states):
    model_dir = states.get("P:2:4", "Q:fp4")
    dense, _ = storage.load_dense(model_dir, "float32", "cpu")
    assert describe(model_dir)["linear_zero_fraction"] == pytest.approx(storage.zero_fraction(dense), abs=1e-9)
    # Quantizing alone rounds the smallest weights to NF4's zero code: zeros without any pruning.
    unpruned = describe(states.get("Q:nf4"))
    assert 0.01 < unpruned["linear_zero_fraction"] < 0.15 and unpruned["declared_sparsity"] is None


def test_formats_and_quantization_by_part(states):
    assert describe(states.get("P:wanda-sparse"))["format"] == "sparse"
    adapter = describe(states.get("Q:nf4", "F:adapter"))
    assert adapter["format"] == "quantized base + adapter"
    assert adapter["parts"]["layers"]["quantization"] == "nf4"
    assert adapter["parts"]["layers"]["dtypes"] == ["float32", "uint8"]
    assert adapter["parts"]["adapter"]["quantization"] is None
    assert adapter["parts"]["embed_tokens"]["quantization"] is None
    assert describe(states.get("Q:int8"))["parts"]["layers"]["quantization"] == "int8"


def test_the_base_in_bf16_weighs_two_bytes_a_value_whatever_it_is_stored_in(tiny_model, tmp_path):
    from orderstudy.checkpoints.inspect import bf16_weights_bytes, read_header

    model = models.load_dense(tiny_model, "float32", "cpu")
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    files = list(tiny_model.glob("*.safetensors"))
    stored_fp32 = sum(f.stat().st_size for f in files)
    stored_bf16 = sum(f.stat().st_size for f in (tmp_path / "bf16").glob("*.safetensors"))
    # The fp32 checkpoint counts as the bf16 one would: every value at 2 bytes, the headers as they are.
    values = sum(int(np.prod(meta["shape"])) for f in files for meta in read_header(f)[0].values())
    headers = sum(read_header(f)[2] for f in files)
    assert bf16_weights_bytes(tiny_model) == 2 * values + headers
    assert stored_fp32 == 4 * values + headers
    assert abs(bf16_weights_bytes(tiny_model) - stored_bf16) < 2_000  # only the headers differ a little
    assert bf16_weights_bytes(tmp_path / "bf16") == stored_bf16
