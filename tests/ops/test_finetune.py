"""LoRA on the answer tokens; what becomes of the adapter on a quantized model; steps or epochs."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from orderstudy import models
from orderstudy.checkpoint_info import describe
from orderstudy.ops import finetune, storage
from orderstudy.params import FinetuneParams


def test_prompt_tokens_are_masked_and_answer_tokens_are_learned(tiny_model):
    tokenizer = models.load_tokenizer(tiny_model)
    example = finetune.encode_example(tokenizer, "劳动合同试用期最长不得超过几个月？", "六个月。", 256)
    prompt = finetune.chat_prompt_ids(tokenizer, "劳动合同试用期最长不得超过几个月？")
    n = len(prompt)
    assert example["input_ids"][:n] == prompt
    assert example["labels"][:n] == [-100] * n
    assert example["labels"][n:] == example["input_ids"][n:]
    assert tokenizer.decode(example["input_ids"][n:]) == "六个月。" + tokenizer.eos_token
    assert "<|im_start|>assistant" in tokenizer.decode(prompt)  # the chat template was applied
    assert finetune.encode_example(tokenizer, "x " * 300, "y", 64) is None  # no room for the answer


def test_the_loss_counts_answer_tokens_only(tiny_model):
    """Changing the prompt changes the loss only through the context, never as a target."""
    tokenizer = models.load_tokenizer(tiny_model)
    model = storage.load(tiny_model, "float32", "cpu")
    example = finetune.encode_example(tokenizer, "What does habeas corpus protect against?", "Unlawful detention.", 256)
    batch = finetune.collate([example], tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(**batch).logits[0, :-1]
    targets = torch.tensor(example["labels"][1:])
    answer = targets != -100
    by_hand = torch.nn.functional.cross_entropy(logits[answer], targets[answer])
    assert finetune.mean_loss(model, [example], tokenizer.pad_token_id, 1, "cpu") == pytest.approx(float(by_hand), rel=1e-5)


def test_steps_or_epochs():
    assert finetune.training_steps(FinetuneParams(epochs=1.5, batch_size=4), 10) == 4
    assert finetune.training_steps(FinetuneParams(), 10) == 20
    with pytest.raises(ValueError, match="either finetune.max_steps or finetune.epochs"):
        FinetuneParams(max_steps=3, epochs=1.0)


def test_lora_on_a_dense_model_is_merged(states, tiny_model):
    record = states.record("F")
    result = states.get("F")
    assert record["method"] == "lora" and record["merge"] == "merge" and not record["result_quantized"]
    assert record["parameters"] == models.count_parameters(storage.load(tiny_model, "float32", "cpu"))
    # Rank 4 on all seven projections of 3 layers: r * (in + out) each.
    per_layer = 4 * ((64 + 64) + 2 * (64 + 32) + (64 + 64) + 2 * (64 + 128) + (128 + 64))
    assert record["trainable_parameters"] == 3 * per_layer == 12288
    assert not (result / "adapter_config.json").exists()
    base = storage.decoder_linears(storage.load(tiny_model, "float32", "cpu"))
    tuned = storage.decoder_linears(storage.load(result, "float32", "cpu"))
    assert all(not torch.equal(base[k].weight, tuned[k].weight) for k in base)  # every target module moved


def test_qlora_dequantize_gives_full_precision(states):
    record = states.record("Q:nf4", "F")
    info = describe(states.get("Q:nf4", "F"))
    assert record["method"] == "qlora" and record["merge"] == "dequantize" and not record["result_quantized"]
    assert info["parts"]["layers"]["quantization"] is None and info["parts"]["layers"]["dtypes"] == ["float32"]


def test_qlora_requantize_stays_small_with_the_source_settings(states):
    source = models.quantization_config(states.get("Q:nf4"))
    result = states.get("Q:nf4", "F:requantize")
    assert models.quantization_config(result) == source
    assert describe(result)["parts"]["layers"]["bytes"] == pytest.approx(
        describe(states.get("Q:nf4"))["parts"]["layers"]["bytes"], rel=0.01)
    record = states.record("Q:nf4", "F:requantize")
    assert record["merge"] == "requantize" and record["result_quantized"]
    # Quantizing the merged weights again changes the model a little: measured, not assumed.
    assert record["validation_loss_result"] == pytest.approx(record["validation_loss_after"], rel=0.05)
    assert record["validation_loss_result"] != record["validation_loss_after"]


def test_qlora_adapter_is_kept_beside_the_quantized_base(states, run_logits):
    source = states.get("Q:nf4")
    result = states.get("Q:nf4", "F:adapter")
    record = states.record("Q:nf4", "F:adapter")
    assert record["merge"] == "adapter" and record["result_layout"] == "adapter"
    assert json.loads((result / "adapter_config.json").read_text())["r"] == 4
    # The base is the source's, byte for byte.
    assert (result / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
    # from_pretrained alone loads base and adapter; it is the same model PEFT builds by hand.
    from peft import PeftModel

    alone = AutoModelForCausalLM.from_pretrained(result, dtype=torch.float32)
    with storage.base_view(result) as base_dir:
        by_hand = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), str(result))
    assert torch.equal(run_logits(alone), run_logits(by_hand))
    assert not torch.equal(run_logits(alone), run_logits(storage.load(source, "float32", "cpu")))
    assert record["validation_loss_result"] is None  # the saved state is the trained model itself


def test_fine_tuning_lowers_the_validation_loss(tiny_model, ctx, tmp_path):
    params = FinetuneParams(max_steps=6, batch_size=4, max_seq_len=96, lora_r=8, lora_dropout=0.0,
                            validation_fraction=0.25, learning_rate=2e-2)
    record = finetune.apply(tiny_model, tmp_path / "f", params, ctx)
    assert record["validation_loss_after"] < record["validation_loss_before"]
    # The merged model computes what was trained: its loss is the trained model's.
    merged = storage.load(tmp_path / "f", "float32", "cpu")
    tokenizer = models.load_tokenizer(tmp_path / "f")
    val = [finetune.encode_example(tokenizer, x["prompt"], x["answer"], 96) for x in ctx.training_examples]
    _, val = finetune.split_examples([e for e in val if e], params.validation_fraction, ctx.seed)
    assert finetune.mean_loss(merged, val, tokenizer.pad_token_id, 4, "cpu") == pytest.approx(
        record["validation_loss_after"], rel=1e-4)
    assert record["validation_loss_result"] is None
    assert record["train_losses"][-1] < record["train_losses"][0]


def test_a_model_with_an_adapter_is_not_fine_tuned_again(states, step_params, ctx, tmp_path):
    with pytest.raises(ValueError, match="applies F once"):
        finetune.apply(states.get("Q:nf4", "F:adapter"), tmp_path / "f", step_params["F"][1], ctx)
