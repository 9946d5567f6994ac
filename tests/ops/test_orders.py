"""Any operation after any other: every method after every kind of state the other operations make.

Each chain is applied to the tiny model (prefixes shared across tests) and its result checked for
what it must be whatever came before: it loads and runs, its record's parameter count is the one
its files hold, its quantization, shape and sparsity are what the chain implies.
"""

from __future__ import annotations

import pytest
import torch

from orderstudy.checkpoints import models
from orderstudy.checkpoints.inspect import describe
from orderstudy.checkpoints import storage

PRUNE_METHODS = ["width", "width-activation", "mlp_channels", "depth", "magnitude", "wanda", "2:4",
                 "wanda-sparse", "2:4-sparse"]
UNSTRUCTURED = {"magnitude", "wanda", "2:4", "wanda-sparse", "2:4-sparse", "magnitude-sparse"}
QUANT_METHODS = ["nf4", "fp4", "int8"]
MERGE_POLICIES = ["F", "F:requantize", "F:adapter"]

# Each method on the base model is tested in test_prune.py; here, after the other operations.
PRUNE_CHAINS = (
    [("Q:nf4", f"P:{m}") for m in PRUNE_METHODS]
    + [("F", f"P:{m}") for m in PRUNE_METHODS]
    + [("Q:nf4", "F:adapter", f"P:{m}") for m in PRUNE_METHODS]
    + [("Q:int8", "P:width"), ("Q:int8", "P:wanda"), ("Q:fp4", "P:depth"), ("Q:fp4", "F:requantize", "P:2:4"),
       ("F", "Q:int8", "P:mlp_channels")]
)
QUANT_CHAINS = (
    [(f"P:{m}", f"Q:{q}") for m in PRUNE_METHODS for q in QUANT_METHODS]
    + [("F", f"Q:{q}") for q in QUANT_METHODS]
    + [("P:wanda-sparse", "F", "Q:nf4"), ("F", "P:depth", "Q:fp4"), ("P:width", "F", "Q:int8")]
)
FINETUNE_CHAINS = (
    [("F",)]
    + [(f"P:{m}", "F") for m in PRUNE_METHODS]
    + [(q, f) for q in ("Q:nf4", "Q:fp4", "Q:int8") for f in MERGE_POLICIES]
    + [("P:width", "Q:nf4", f) for f in MERGE_POLICIES]
    + [("Q:nf4", "P:wanda", f) for f in MERGE_POLICIES]
    + [("P:2:4-sparse", "Q:int8", "F:requantize")]
)


def chain_id(chain: tuple) -> str:
    return ">".join(chain)


def expected_quantization(chain: tuple) -> str | None:
    """Return the quantization the result of ``chain`` must have, from its step names."""
    quant = None
    for step in chain:
        if step.startswith("Q:"):
            quant = step[2:]
        elif step in ("F", "F:drop-sparsity"):
            quant = None          # merged into dequantized weights (or a dense model)
    return quant


def check_result(states, chain: tuple) -> dict:
    """Check what the result of ``chain`` must be whatever the order; return its description."""
    model_dir = states.get(*chain)
    record = states.record(*chain)
    info = describe(model_dir)

    model = storage.load(model_dir, "float32", "cpu")
    with torch.no_grad():
        out = model(input_ids=torch.tensor([[1, 504, 3165, 314, 260]])).logits
    assert out.shape == (1, 5, model.config.vocab_size) and torch.isfinite(out).all()

    adapter = info["parts"].get("adapter", {}).get("parameters", 0)
    assert record["parameters"] == info["parameters"] + adapter == models.count_parameters(model)

    quant = expected_quantization(chain)
    layers = info["parts"]["layers"]
    assert layers["quantization"] == quant, f"{chain_id(chain)}: layers stored as {layers['quantization']}"
    keeps_adapter = chain[-1] == "F:adapter" and any(s.startswith("Q:") for s in chain)
    assert (info["format"] == "quantized base + adapter") == keeps_adapter

    config = models.read_config(model_dir)
    pruned = next((s[2:] for s in chain if s.startswith("P:")), None)
    if pruned in ("width", "width-activation"):
        assert (config["num_attention_heads"], config["num_key_value_heads"], config["intermediate_size"]) == (2, 1, 64)
        assert config["head_dim"] == 16
    elif pruned == "mlp_channels":
        assert (config["num_attention_heads"], config["intermediate_size"]) == (4, 96)
    elif pruned == "depth":
        assert config["num_hidden_layers"] == 2
    elif pruned in UNSTRUCTURED:
        # The zeros survive quantizing (NF4, FP4 and int8 have an exact zero) and fine-tuning
        # (the merge is re-zeroed); 2:4 and the others remove half.
        assert info["linear_zero_fraction"] >= 0.5 - 1e-6, f"{chain_id(chain)}: {info['linear_zero_fraction']}"
        assert info["declared_sparsity"]["sparsity"] == 0.5
    if pruned is None or pruned not in UNSTRUCTURED:
        assert info["declared_sparsity"] is None
    return info


@pytest.mark.parametrize("chain", PRUNE_CHAINS, ids=chain_id)
def test_every_prune_method_after_every_other_operation(states, chain):
    info = check_result(states, chain)
    record = states.record(*chain)
    assert record["dequantized_first"] == any(s.startswith("Q:") for s in chain[:-1])
    assert record["adapter_merged"] == ("F:adapter" in chain)
    if chain[-1].endswith("-sparse"):
        expected_format = "huggingface" if record["dequantized_first"] else "sparse"
        assert info["format"] == expected_format


@pytest.mark.parametrize("chain", QUANT_CHAINS, ids=chain_id)
def test_every_quantize_method_after_every_other_operation(states, chain):
    info = check_result(states, chain)
    parent = describe(states.get(*chain[:-1]))
    assert info["parameters"] == parent["parameters"]
    assert info["parts"]["layers"]["bytes"] < parent["parts"]["layers"]["bytes"]
    assert info["format"] == "huggingface"  # from_pretrained alone reloads it


@pytest.mark.parametrize("chain", FINETUNE_CHAINS, ids=chain_id)
def test_every_merge_policy_after_every_other_operation(states, chain):
    info = check_result(states, chain)
    record = states.record(*chain)
    source_quantized = any(s.startswith("Q:") for s in chain[:-1])
    assert record["method"] == ("qlora" if source_quantized else "lora")
    policy = {"F": "dequantize", "F:requantize": "requantize", "F:adapter": "adapter"}[chain[-1]]
    assert record["merge"] == (policy if source_quantized else "merge")
    assert record["steps"] == 1 and len(record["train_losses"]) == 1
    assert record["validation_loss_before"] > 0 and record["validation_loss_after"] > 0
    assert (record["validation_loss_result"] is not None) == (policy == "requantize" and source_quantized
                                                              or "sparsity" in record and record["sparsity"]["kept"] is True)
    if source_quantized and policy == "adapter":
        assert info["format"] == "quantized base + adapter"
        assert record["adapter_parameters"] == info["parts"]["adapter"]["parameters"] > 0
    if chain[:-1] and chain[-2].endswith("-sparse") and not source_quantized:
        assert info["format"] == "sparse"  # the zeros were kept, so the storage was too
