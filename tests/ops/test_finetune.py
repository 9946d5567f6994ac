"""LoRA on the answer tokens; what becomes of the adapter on a quantized model; steps or epochs."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from orderstudy.checkpoints import models
from orderstudy.core import prompts
from orderstudy.checkpoints.inspect import describe
from orderstudy.checkpoints import storage
from orderstudy.operations.finetune import training as finetune
from orderstudy.operations.finetune import FinetuneParams


def test_prompt_tokens_are_masked_and_answer_tokens_are_learned(tiny_model):
    tokenizer = models.load_tokenizer(tiny_model)
    example = finetune.encode_example(tokenizer, "劳动合同试用期最长不得超过几个月？", "六个月。", 256)
    prompt = prompts.prompt_ids(tokenizer, "劳动合同试用期最长不得超过几个月？", chat=True)
    n = len(prompt)
    assert example["input_ids"][:n] == prompt and example["prompt_cut_chars"] == 0
    assert example["labels"][:n] == [-100] * n
    assert example["labels"][n:] == example["input_ids"][n:]
    assert tokenizer.decode(example["input_ids"][n:]) == "六个月。" + tokenizer.eos_token
    assert "<|im_start|>assistant" in tokenizer.decode(prompt)  # the chat template was applied
    # Without the chat template: the plain prompt, as lm-eval gives it to the model, then the answer.
    plain = finetune.encode_example(tokenizer, "劳动合同试用期最长不得超过几个月？", "六个月。", 256, chat=False)
    n_plain = plain["labels"].count(-100)
    assert plain["input_ids"][:n_plain] == tokenizer("劳动合同试用期最长不得超过几个月？")["input_ids"]
    assert tokenizer.decode(plain["input_ids"][n_plain:]) == "六个月。" + tokenizer.eos_token
    assert "<|im_start|>" not in tokenizer.decode(plain["input_ids"][:-1])


def test_a_long_prompt_is_cut_in_the_middle_and_the_answer_always_ends_with_eos(tiny_model):
    """On today's main a 300-token prompt at max_seq_len 256 lost the answer's end, EOS included."""
    tokenizer = models.load_tokenizer(tiny_model)
    instruction = "请你根据下面的案情，判断被告人的罪名。"
    facts = "".join(f"第{i}段案情：被告人甲于某日在某地实施了盗窃行为，数额较大。" for i in range(40))
    question = "\n问题：甲构成什么罪？请只回答罪名。"
    prompt = instruction + facts + question
    answer = "盗窃罪。" * 3
    assert len(prompts.prompt_ids(tokenizer, prompt, chat=True)) > 256
    example = finetune.encode_example(tokenizer, prompt, answer, 256)
    ids, labels = example["input_ids"], example["labels"]
    assert len(ids) <= 256 and example["prompt_cut_chars"] > 0
    n_answer = sum(label != -100 for label in labels)
    assert ids[-1] == tokenizer.eos_token_id and tokenizer.decode(ids[-n_answer:-1]) == answer  # whole answer + EOS
    text = tokenizer.decode(ids[:-n_answer])
    # The chat template is whole; the instruction's head and the question's tail are kept, the middle goes.
    assert text.count("<|im_start|>") == 3 and text.rstrip().endswith("<|im_start|>assistant")
    assert instruction in text and question.strip() in text and "第39段" in text and "第20段" not in text
    # An answer that leaves no room for the prompt is dropped, not cut.
    assert finetune.encode_example(tokenizer, prompt, "盗窃罪。" * 200, 256) is None


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


def test_the_record_has_pairs_per_task_and_a_paired_interval_on_the_held_out_loss(states, tiny_model, ctx):
    from scipy import stats

    record = states.record("F")
    result = states.get("F")
    tokenizer = models.load_tokenizer(tiny_model)
    encoded, _ = finetune.encode_training(tokenizer, ctx.training_examples, 96, chat=True)
    _, val = finetune.split_examples(encoded, 0.25, ctx.seed)
    # Per held-out pair: its mean loss over its answer tokens, before (the base) and after (the merged result).
    before = [t / n for t, n in finetune.answer_losses(storage.load(tiny_model, "float32", "cpu"), val, tokenizer.pad_token_id, 1, "cpu")]
    after = [t / n for t, n in finetune.answer_losses(storage.load(result, "float32", "cpu"), val, tokenizer.pad_token_id, 1, "cpu")]
    change = record["validation_loss_change"]
    assert change["n"] == len(val) == 3 and change["unit"].startswith("held-out pair")
    assert change["mean_before"] == pytest.approx(sum(before) / 3, rel=1e-4)
    assert change["mean_after"] == pytest.approx(sum(after) / 3, rel=1e-4)
    low, high = stats.ttest_rel(after, before).confidence_interval(0.95)
    assert (change["ci_low"], change["ci_high"]) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))
    assert record["validation_lowered"] == change["significant_decrease"] == (high < 0)
    assert (finetune.finetune_warning(record) is None) == record["validation_lowered"]
    # Every pair is accounted for, per task: the conftest pairs are all task "ex".
    assert record["pairs_by_task"] == {"ex": {"given": 12, "answer_too_long": 0, "prompt_cut": record["prompts_cut"],
                                              "train": 9, "validation": 3}}


def test_a_fine_tune_that_did_not_lower_the_loss_is_flagged():
    flat = finetune.loss_change([(2.0, 1), (3.0, 1), (4.0, 1)], [(2.1, 1), (2.8, 1), (4.0, 1)])
    assert flat["mean_difference"] == pytest.approx(-0.1 / 3, abs=1e-6) and flat["ci_low"] < 0 < flat["ci_high"]
    assert not flat["significant_decrease"]
    step = {"state": "Q>F", "operation": "F", "train_losses": [2.0], "validation_loss_change": flat, "validation_lowered": False}
    warning = finetune.finetune_warning(step)
    assert "(Q>F) did not lower the held-out loss significantly" in warning and "over 3 held-out pairs" in warning
    lowered = finetune.loss_change([(2.0, 4), (3.0, 2), (4.0, 1)], [(1.0, 4), (2.0, 2), (3.5, 1)])  # per pair: means of its tokens
    assert lowered["mean_before"] == pytest.approx((0.5 + 1.5 + 4.0) / 3) and lowered["significant_decrease"]
    assert finetune.finetune_warning(dict(step, validation_loss_change=lowered)) is None
    one = finetune.loss_change([(2.0, 1)], [(1.0, 1)])
    assert one["ci_low"] is None and not one["significant_decrease"]
    assert "too few to tell" in finetune.finetune_warning(dict(step, validation_loss_change=one))
    assert finetune.finetune_warning({"state": "P", "operation": "P"}) is None
