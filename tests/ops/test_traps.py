"""The three silent traps of bitsandbytes and peft: each shown real, and each avoided.

1. A 4-bit model that ran an eval-mode forward pass without gradients on a CPU with AVX512-BF16
   has its weights repacked for bitsandbytes' inference kernel, and LoRA gradients computed
   afterwards are wrong. (The study's loader now keeps 4-bit layers off that kernel altogether,
   issue 16; the guard in ``finetune.trainable_model`` stays.) This CPU may lack AVX512-BF16, so the tests make bitsandbytes take the
   path it takes on such a CPU: ``Linear4bit`` asks ``has_avx512bf16()`` when it is built, and the
   tests answer yes. Everything after that is bitsandbytes' own code.
2. torch's pruning utilities applied to a ``Linear4bit`` prune the packed bytes, not the weights.
3. Merging a LoRA adapter writes dense deltas into every weight: it destroys sparsity.
"""

from __future__ import annotations

import bitsandbytes as bnb
import pytest
import torch
from bitsandbytes.functional import dequantize_4bit

from orderstudy.checkpoints import models
from orderstudy.checkpoints import storage
from orderstudy.operations import prune
from orderstudy.operations.prune import structured, unstructured
from orderstudy.operations.finetune import training as finetune


@pytest.fixture
def avx512bf16_path(monkeypatch):
    """Make every ``Linear4bit`` built from now on take bitsandbytes' AVX512-BF16 CPU path."""
    monkeypatch.setattr(bnb.nn.modules, "has_avx512bf16", lambda: True)


def lora_gradients(model, tokenizer, examples: list[dict]) -> torch.Tensor:
    """Return the LoRA gradients of one training batch, flattened in name order."""
    encoded = [e for e in (finetune.encode_example(tokenizer, x["prompt"], x["answer"], 96)
                           for x in examples[:4]) if e]
    batch = finetune.collate(encoded, tokenizer.pad_token_id)
    model(**batch).loss.backward()
    grads = [p.grad.flatten() for _, p in sorted(model.named_parameters()) if p.requires_grad and p.grad is not None]
    return torch.cat(grads)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def evaluate_once(model_dir) -> object:
    """Return the model in ``model_dir``, loaded by bitsandbytes alone, after one eval-mode forward without gradients.

    Not the study's loader: ``models.load_model`` pins bitsandbytes' reference kernel, so a model it
    loads never repacks (tests/ops/test_numerics.py); the trap is shown on bitsandbytes' own behaviour.
    """
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, device_map="cpu").eval()
    with torch.no_grad():
        model(input_ids=torch.tensor([[1, 504, 3165, 314]]))
    return model



def with_lora(model, params, seed: int):
    """Return ``model`` prepared for k-bit training with a seeded, dropout-free LoRA adapter, in train mode."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    torch.manual_seed(seed)
    model = get_peft_model(model, LoraConfig(r=params.lora_r, lora_alpha=params.lora_alpha, lora_dropout=0.0,
                                             target_modules=list(params.target_modules), task_type="CAUSAL_LM"))
    model.train()
    return model


def test_trap1_evaluating_a_4bit_model_first_corrupts_lora_gradients(states, avx512bf16_path, step_params, ctx):
    src = states.get("Q:nf4")
    _, params = step_params["F"]
    tokenizer = models.load_tokenizer(src)
    reference = lora_gradients(finetune.trainable_model(src, params, ctx), tokenizer, ctx.training_examples)

    evaluated = evaluate_once(src)
    assert finetune.repacked_4bit_modules(evaluated), "bitsandbytes did not repack: the trap cannot show here"
    corrupted = lora_gradients(with_lora(evaluated, params, ctx.seed), tokenizer, ctx.training_examples)
    # Measured: 0.92 on SmolLM2; the gradients are not merely noisy, they are wrong.
    assert relative_error(corrupted, reference) > 0.3


def test_trap1_finetune_gets_the_gradients_of_a_fresh_load(states, avx512bf16_path, step_params, ctx):
    src = states.get("Q:nf4")
    _, params = step_params["F"]
    tokenizer = models.load_tokenizer(src)
    val = [e for e in (finetune.encode_example(tokenizer, x["prompt"], x["answer"], 96) for x in ctx.training_examples[:3]) if e]

    from transformers import AutoModelForCausalLM

    fresh = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, device_map="cpu")
    reference = lora_gradients(with_lora(fresh, params, ctx.seed), tokenizer, ctx.training_examples)

    # The operation's own sequence: the validation loss first (an evaluation), then the model to train.
    assert finetune.token_mean(finetune.validation_losses(src, val, tokenizer.pad_token_id, 2, ctx)) > 0
    ours = lora_gradients(finetune.trainable_model(src, params, ctx), tokenizer, ctx.training_examples)
    assert relative_error(ours, reference) < 1e-5


def test_trap1_trainable_model_refuses_a_repacked_model(states, avx512bf16_path, monkeypatch, step_params, ctx):
    src = states.get("Q:nf4")
    evaluated = evaluate_once(src)
    monkeypatch.setattr(storage, "load", lambda *args: evaluated)
    with pytest.raises(RuntimeError, match="repacked for inference before training; LoRA gradients would be wrong"):
        finetune.trainable_model(src, step_params["F"][1], ctx)


def test_trap1_whole_finetune_is_the_same_on_an_avx512bf16_path(states, tmp_path, monkeypatch, step_params, ctx):
    """The operation trains the same with and without the repacking path: it never trains an evaluated model."""
    src = states.get("Q:nf4")
    _, params = step_params["F"]
    plain = finetune.apply(src, tmp_path / "plain", params, ctx)
    monkeypatch.setattr(bnb.nn.modules, "has_avx512bf16", lambda: True)
    repacking = finetune.apply(src, tmp_path / "repacking", params, ctx)
    assert repacking["train_losses"] == pytest.approx(plain["train_losses"], rel=1e-6)
    a = storage.load_dense(tmp_path / "plain", "float32", "cpu")[0].state_dict()
    b = storage.load_dense(tmp_path / "repacking", "float32", "cpu")[0].state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6


def test_trap2_torch_pruning_a_4bit_layer_corrupts_it_silently(states):
    import torch.nn.utils.prune as torch_prune

    model = storage.load(states.get("Q:nf4"), "float32", "cpu")
    layer = model.model.layers[0].mlp.up_proj
    state = layer.weight.quant_state
    weight = dequantize_4bit(layer.weight.data, state).float()
    intended = weight.clone()
    intended.view(-1)[unstructured.smallest(weight.abs().flatten(), weight.numel() // 2)] = 0

    torch_prune.l1_unstructured(layer, "weight", amount=0.5)  # no error ...
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=torch.tensor([[1, 2, 3]])).logits).all()  # ... and it still runs
    got = dequantize_4bit(layer.weight.data.contiguous(), state).float()
    assert relative_error(got, intended) > 0.5          # but the weights are not the pruned ones
    assert float((got == 0).float().mean()) < 0.2       # nor half zero


@pytest.mark.parametrize("method", ["wanda", "width"])
def test_trap2_pruning_a_quantized_checkpoint_equals_dequantize_then_prune(states, method, step_params, ctx):
    quantized = states.get("Q:nf4")
    result = states.get("Q:nf4", f"P:{method}")
    assert models.quantization_config(result)["bnb_4bit_quant_type"] == "nf4"

    # By hand: dequantize, prune the full-precision weights with the same method.
    dense, _ = storage.load_dense(quantized, "float32", "cpu")
    _, params = step_params[f"P:{method}"]
    tokenizer = models.load_tokenizer(quantized)
    from orderstudy.operations.prune import calibration

    sequences = calibration.encode(tokenizer, ctx.calibration_examples, params.calibration_samples,
                                   params.calibration_seq_len, ctx.seed) if params.needs_calibration else []
    if method == "width":
        dense, _ = structured.prune_width(dense, params, sequences, tokenizer.pad_token_id)
    else:
        unstructured.prune_weights(dense, params, sequences, tokenizer.pad_token_id)
    expected = storage.decoder_linears(dense)

    got = storage.decoder_linears(storage.load_dense(result, "float32", "cpu")[0])
    assert got.keys() == expected.keys()
    errors = [relative_error(got[k].weight.float(), expected[k].weight.float()) for k in expected]
    # Quantizing the pruned weights again costs at most NF4's own rounding error (~0.1); the
    # direct route above is off by more than 0.5.
    assert max(errors) < 0.12
    if method == "wanda":
        for k in expected:
            assert torch.equal(got[k].weight == 0, expected[k].weight == 0) or \
                float(((got[k].weight == 0) != (expected[k].weight == 0)).float().mean()) < 0.1


def test_trap3_merging_an_adapter_destroys_sparsity(states):
    from peft import LoraConfig, get_peft_model

    model = storage.load(states.get("P:wanda"), "float32", "cpu")
    assert storage.zero_fraction(model) == pytest.approx(0.5, abs=0.01)
    torch.manual_seed(0)
    wrapped = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "up_proj", "down_proj"],
                                               init_lora_weights="gaussian"))
    for name, p in wrapped.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.01)  # as after a few training steps
    merged = wrapped.merge_and_unload()
    assert storage.zero_fraction(merged) < 0.3   # the merged layers lost every zero


def test_trap3_finetune_keeps_exactly_the_zeros_of_its_source(states):
    source = storage.decoder_linears(storage.load(states.get("P:wanda"), "float32", "cpu"))
    result_dir = states.get("P:wanda", "F")
    result = storage.decoder_linears(storage.load(result_dir, "float32", "cpu"))
    record = states.record("P:wanda", "F")
    assert record["sparsity"]["kept"] is True
    assert record["sparsity"]["zero_fraction_after_merge"] < 0.3      # the merge undid them ...
    assert record["sparsity"]["zero_fraction_result"] == pytest.approx(0.5, abs=0.01)  # ... and they came back
    changed = 0
    for name, module in source.items():
        assert torch.equal(result[name].weight == 0, module.weight == 0), name
        changed += int((result[name].weight != module.weight).sum())
    assert changed > 0  # the fine-tune did change the weights that remain


def test_trap3_sparsity_dropped_on_request_is_recorded(states):
    record = states.record("P:wanda", "F:drop-sparsity")
    result = states.get("P:wanda", "F:drop-sparsity")
    assert record["sparsity"]["kept"] is False
    assert record["sparsity"]["zero_fraction_result"] < 0.3
    assert "orderstudy_sparsity" not in models.read_config(result)


def test_trap3_requantized_finetune_keeps_the_zeros(states):
    from orderstudy.checkpoints.inspect import describe

    result = states.get("P:wanda", "Q:nf4", "F:requantize")
    info = describe(result)
    assert info["parts"]["layers"]["quantization"] == "nf4"
    assert info["linear_zero_fraction"] >= 0.5
