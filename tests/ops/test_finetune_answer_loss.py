"""The training loss is computed at the answer positions only, and equals transformers' own loss there."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from orderstudy.checkpoints import models
from orderstudy.checkpoints import storage
from orderstudy.operations.finetune import training as finetune

PAIRS = [("What does habeas corpus protect against?", "Unlawful detention by the state."),
         ("劳动合同试用期最长不得超过几个月？请详细说明理由并引用法条。", "六个月。")]


def batch_of_two(tiny_model) -> tuple[dict, object]:
    tokenizer = models.load_tokenizer(tiny_model)
    examples = [finetune.encode_example(tokenizer, p, a, 256) for p, a in PAIRS]
    assert len(examples[0]["input_ids"]) != len(examples[1]["input_ids"])  # one row is padded
    return finetune.collate(examples, tokenizer.pad_token_id), tokenizer


def lora(model):
    torch.manual_seed(0)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                                            target_modules=["q_proj", "v_proj", "down_proj"]))


def test_the_answer_only_loss_and_its_gradients_equal_transformers_loss(tiny_model):
    batch, _ = batch_of_two(tiny_model)
    grads = []
    for own in (False, True):
        model = lora(storage.load(tiny_model, "float32", "cpu"))
        model.train()
        if own:
            token_losses, counted = finetune.answer_token_losses(model, batch)
            # Fewer positions than the sequence: the vocabulary projection skipped the prompt.
            assert token_losses.shape[1] < batch["input_ids"].shape[1] - 1
            assert int(counted.sum()) == int((batch["labels"][:, 1:] != -100).sum())
            loss = token_losses.sum() / counted.sum()
        else:
            loss = model(**batch).loss
        loss.backward()
        grads.append((float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
    (reference, ref_grads), (ours, our_grads) = grads
    assert ours == pytest.approx(reference, rel=1e-6)
    assert ref_grads.keys() == our_grads.keys() and len(our_grads) == 3 * 3 * 2  # A and B of 3 modules in 3 layers
    for name in ref_grads:
        torch.testing.assert_close(our_grads[name], ref_grads[name], rtol=1e-4, atol=1e-7)


def test_a_model_without_logits_to_keep_gets_the_same_losses(tiny_model):
    """The fallback for a causal LM whose forward has no ``logits_to_keep``: whole logits, then the positions."""
    batch, _ = batch_of_two(tiny_model)
    model = storage.load(tiny_model, "float32", "cpu")

    class NoLogitsToKeep(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    wrapped = NoLogitsToKeep(model)
    assert finetune.accepts_logits_to_keep(model) and not finetune.accepts_logits_to_keep(wrapped)
    with torch.no_grad():
        kept, counted = finetune.answer_token_losses(model, batch)
        whole, counted_whole = finetune.answer_token_losses(wrapped, batch)
    assert torch.equal(counted, counted_whole)
    torch.testing.assert_close(kept, whole, rtol=1e-5, atol=1e-6)
