"""Fine-tune (F): LoRA supervised fine-tuning with peft, merged into the weights afterwards.

The loss is on the answer tokens only (prompt tokens are masked). On a quantized model this is
QLoRA: the model is loaded fresh from disk first, because once bitsandbytes has run a 4-bit model
in eval mode without gradients it repacks the weights and later LoRA gradients are silently wrong
(FACTS.md, trap 1). The adapter is then merged into the dequantized weights (``merge:
dequantize``, what most published studies did): the result is a full-precision model, and its
record says so.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from pathlib import Path

import torch

from .. import models
from ..params import FinetuneParams
from .common import OperationContext


def encode_example(tokenizer, prompt: str, answer: str, max_len: int) -> dict | None:
    """Return input ids and labels (prompt masked with -100) for one chat-formatted pair.

    Returns ``None`` when the prompt alone leaves no room for the answer within ``max_len``.
    """
    prompt_ids = chat_prompt_ids(tokenizer, prompt)
    answer_ids = tokenizer(answer + (tokenizer.eos_token or ""), add_special_tokens=False)["input_ids"]
    if len(prompt_ids) >= max_len:
        return None
    ids = (prompt_ids + answer_ids)[:max_len]
    labels = ([-100] * len(prompt_ids) + answer_ids)[:max_len]
    return {"input_ids": ids, "labels": labels}


def chat_prompt_ids(tokenizer, prompt: str) -> list[int]:
    """Return the token ids of ``prompt`` as a user turn, ready for the assistant's answer."""
    if tokenizer.chat_template:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    return tokenizer(prompt + "\n", add_special_tokens=True)["input_ids"]


def collate(batch: list[dict], pad_id: int) -> dict:
    """Return right-padded tensors for a batch of encoded examples."""
    width = max(len(x["input_ids"]) for x in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, x in enumerate(batch):
        n = len(x["input_ids"])
        ids[i, :n] = torch.tensor(x["input_ids"])
        labels[i, :n] = torch.tensor(x["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def mean_loss(model, examples: list[dict], pad_id: int, batch_size: int, device: str) -> float | None:
    """Return the token-weighted mean loss of ``model`` on ``examples`` (no gradients)."""
    if not examples:
        return None
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(examples[start:start + batch_size], pad_id).items()}
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += float(model(**batch).loss) * n
            tokens += n
    return total / max(tokens, 1)


def split_examples(examples: list[dict], validation_fraction: float, seed: int) -> tuple[list, list]:
    """Return (train, validation) lists: a seeded shuffle, the validation part held out."""
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    n_val = int(round(len(shuffled) * validation_fraction))
    return shuffled[n_val:], shuffled[:n_val]


def apply(src: Path, dst: Path, params: FinetuneParams, ctx: OperationContext) -> dict:
    """Fine-tune the checkpoint in ``src`` with LoRA into ``dst`` and return what happened."""
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
    from tqdm.auto import tqdm

    quant = models.quantization_config(src)
    tokenizer = models.load_tokenizer(src)
    encoded = [e for e in (encode_example(tokenizer, x["prompt"], x["answer"], params.max_seq_len)
                           for x in ctx.training_examples) if e is not None]
    if len(encoded) < 2:
        raise ValueError(f"fine-tune: only {len(encoded)} training example(s) fit in finetune.max_seq_len="
                         f"{params.max_seq_len}; raise it or give more data")
    train, val = split_examples(encoded, params.validation_fraction, ctx.seed)
    pad_id = tokenizer.pad_token_id

    # The validation loss before training runs on its own fresh copy: evaluating the 4-bit model
    # that is about to be trained would trigger trap 1.
    before_model = models.load_model(src, ctx.dtype, ctx.device)
    val_before = mean_loss(before_model, val, pad_id, params.batch_size, ctx.device)
    del before_model

    torch.manual_seed(ctx.seed)
    model = models.load_model(src, ctx.dtype, ctx.device)
    if quant is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = LoraConfig(r=params.lora_r, lora_alpha=params.lora_alpha, lora_dropout=params.lora_dropout,
                      target_modules=list(params.target_modules), task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.learning_rate)
    rng = random.Random(ctx.seed)
    order: list[int] = []
    losses = []
    started = time.perf_counter()
    for _ in tqdm(range(params.max_steps), desc="fine-tune (LoRA)", leave=False):
        if len(order) < params.batch_size:
            epoch = list(range(len(train)))
            rng.shuffle(epoch)
            order += epoch
        batch_idx, order = order[:params.batch_size], order[params.batch_size:]
        batch = {k: v.to(ctx.device) for k, v in collate([train[i] for i in batch_idx], pad_id).items()}
        loss = model(**batch).loss
        if not math.isfinite(float(loss)):
            raise FloatingPointError(f"fine-tune: the training loss became {float(loss)} at step {len(losses) + 1}")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(round(float(loss), 5))
    train_seconds = time.perf_counter() - started
    model.eval()
    val_after = mean_loss(model, val, pad_id, params.batch_size, ctx.device)

    if quant is None:
        merged = model.merge_and_unload()
    else:
        # merge: dequantize — the adapter goes into the dequantized weights it was trained on.
        with tempfile.TemporaryDirectory(dir=Path(dst).parent, prefix=".adapter-") as adapter_dir:
            model.save_pretrained(adapter_dir)
            del model
            base = models.load_dense(src, ctx.dtype, ctx.device)
            merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged.to(models.DTYPES[ctx.dtype])
    models.save_model(merged, tokenizer, dst)
    return {
        "method": "qlora" if quant is not None else "lora",
        "merge": params.merge if quant is not None else "merge",
        "result_quantized": False,
        "train_examples": len(train),
        "validation_examples": len(val),
        "steps": params.max_steps,
        "train_losses": losses,
        "validation_loss_before": val_before,
        "validation_loss_after": val_after,
        "trainable_parameters": sum(p.numel() for p in trainable),
        "parameters": models.count_parameters(merged),
        "train_seconds": round(train_seconds, 2),
    }
