"""Fine-tune (F): LoRA supervised fine-tuning with peft; QLoRA on a quantized model.

The loss is on the answer tokens only (prompt tokens are masked with -100). A held-out part of the
training data gives a validation loss before training, after it, and on the saved result.

On a quantized model this is QLoRA, and the model is loaded fresh from disk for training: once
bitsandbytes has run a 4-bit model in eval mode without gradients on a CPU with AVX512-BF16 (any
evaluation does this) it repacks the weights for its inference kernel, and LoRA gradients
computed afterwards are silently wrong (``tests/ops/test_traps.py`` shows it). ``trainable_model`` refuses a model
in that state. What becomes of the adapter is ``finetune.merge``:

- ``dequantize`` (default): merged into the dequantized weights; the result is full precision.
- ``requantize``: merged, then quantized again with the source's settings; the model stays small.
  A GPTQ source is quantized again by GPTQ, calibrated on the merged model.
- ``adapter``: kept beside the quantized base, in the same directory (``adapter_config.json`` and
  ``adapter_model.safetensors`` next to the base's files); ``from_pretrained`` alone loads both.

On a full-precision model the adapter is always merged. Merging writes dense deltas into every
weight and so undoes unstructured or 2:4 sparsity; with ``keep_sparsity`` (default)
the weights that were zero before the merge are zeroed again, and a sparse-format source gives a
sparse-format result. Without it, the record and the config say the sparsity is gone.
"""

from __future__ import annotations

import math
import random
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ...checkpoints import models
from ...core import prompts
from .params import FinetuneParams
from ...checkpoints import storage
from ..common import SPARSITY_CONFIG_KEY, OperationContext, load_tokenizer, quantization_name
from ..quantize.requantize import requantize_like

# The confidence of the interval on the change of the held-out loss (``loss_change``).
CONFIDENCE = 0.95


def encode_example(tokenizer, prompt: str, answer: str, max_len: int, chat: bool = True) -> dict | None:
    """Return input ids and labels (prompt masked with -100) for one pair within ``max_len`` tokens.

    The answer and its EOS are always whole; a prompt too long for them is cut in the middle
    (``prompts.encode_pair``). Returns ``None`` when the answer leaves no room for the prompt.
    """
    return prompts.encode_pair(tokenizer, prompt, answer, max_len, chat)


def example_task(example: dict) -> str:
    """Return the task a training pair comes from: its ``task``, else the part of its id before '/'.

    >>> example_task({"id": "3-2/17"}), example_task({"id": "train.jsonl:4", "task": "train.jsonl"})
    ('3-2', 'train.jsonl')
    """
    return example.get("task") or str(example["id"]).split("/")[0]


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


def answer_token_losses(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the loss of every answer token of ``batch`` and where they are: ``(losses, counted)``.

    Both are ``(batch, positions)``: position ``j`` is the ``j``-th position whose next token is an
    answer token in some row, ``counted`` says in which rows it is (elsewhere the loss is 0). The
    vocabulary projection and the loss are computed at those positions only (the model's own
    ``logits_to_keep``), not at every prompt token: the same losses, and on a CPU about a tenth
    less time per training step for a 135M model with 49,152 tokens in its vocabulary (measured
    on the demo's shapes; ``tests/ops/test_finetune_answer_loss.py`` checks the equality).
    """
    targets = batch["labels"][:, 1:]
    keep = (targets != -100).any(dim=0).nonzero().squeeze(1)  # the position predicting token t+1 is t
    if accepts_logits_to_keep(model):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep).logits
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, keep]
    picked = targets[:, keep]
    losses = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), picked, ignore_index=-100, reduction="none")
    return losses, picked != -100


def accepts_logits_to_keep(model) -> bool:
    """Whether the causal LM under ``model`` (a peft wrapper or not) takes ``logits_to_keep`` (transformers' models do)."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


def answer_losses(model, examples: list[dict], pad_id: int, batch_size: int, device: str) -> list[tuple[float, int]]:
    """Return per example its summed answer-token loss and its answer-token count (no gradients)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(examples[start:start + batch_size], pad_id).items()}
            losses, counted = answer_token_losses(model, batch)
            out += [(float(losses[i][counted[i]].sum()), int(counted[i].sum())) for i in range(len(losses))]
    return out


def mean_loss(model, examples: list[dict], pad_id: int, batch_size: int, device: str) -> float | None:
    """Return the token-weighted mean loss of ``model`` on ``examples`` (no gradients)."""
    if not examples:
        return None
    return token_mean(answer_losses(model, examples, pad_id, batch_size, device))


def token_mean(losses: list[tuple[float, int]]) -> float:
    """Return the loss per answer token over all examples of ``answer_losses``' output."""
    return sum(total for total, _ in losses) / max(sum(n for _, n in losses), 1)


def loss_change(before: list[tuple[float, int]], after: list[tuple[float, int]], confidence: float = CONFIDENCE) -> dict:
    """Return the change of the held-out loss with a paired t interval, one unit per held-out pair.

    Each pair's loss is the mean over its answer tokens; the interval is on the mean of the
    per-pair differences (after minus before). Tokens of one answer are not independent draws,
    so they are not the unit: a pair is. ``significant_decrease`` means the whole interval is
    below zero.
    """
    from scipy import stats

    b = [total / max(n, 1) for total, n in before]
    a = [total / max(n, 1) for total, n in after]
    diffs = [y - x for x, y in zip(b, a)]
    n = len(diffs)
    mean = sum(diffs) / n if n else None
    out = {"unit": "held-out pair (mean loss over its answer tokens)", "n": n, "confidence": confidence,
           "mean_before": round(sum(b) / n, 6) if n else None, "mean_after": round(sum(a) / n, 6) if n else None,
           "mean_difference": round(mean, 6) if n else None, "ci_low": None, "ci_high": None,
           "method": "paired t interval on the per-pair differences"}
    if n >= 2:
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
        half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
        out.update(ci_low=round(mean - half, 6), ci_high=round(mean + half, 6))
    out["significant_decrease"] = out["ci_high"] is not None and out["ci_high"] < 0
    return out


def finetune_warning(step: dict) -> str | None:
    """Return a warning when a fine-tuning step did not lower the held-out loss significantly, else None.

    ``step`` is a fine-tuning record (``record["info"]``) or an ordering's step summary
    (``result["steps"][i]``); any other step gives None.
    """
    if step.get("operation", "F") != "F" or "train_losses" not in step:
        return None
    change = step.get("validation_loss_change")
    where = f" ({step['state']})" if step.get("state") else ""
    if change is None:
        return (f"Fine-tuning{where}: no interval on the held-out loss was recorded (a state built by an older "
                "version); whether it trained is unknown.")
    if change["significant_decrease"]:
        return None
    level = f"{100 * change['confidence']:g}%"
    if change["ci_low"] is None:
        return (f"Fine-tuning{where}: only {change['n']} held-out pair(s), too few to tell whether it lowered the "
                "validation loss; read what follows F in this ordering as the effect of a fine-tune of unknown effect.")
    return (f"Fine-tuning{where} did not lower the held-out loss significantly: {change['mean_before']:.3f} → "
            f"{change['mean_after']:.3f} per pair on average over {change['n']} held-out pairs, change "
            f"{change['mean_difference']:+.3f} ({level} interval {change['ci_low']:+.3f} to {change['ci_high']:+.3f}). "
            "Differences after F in this ordering measure a fine-tune that did not measurably train.")


def split_examples(examples: list[dict], validation_fraction: float, seed: int) -> tuple[list, list]:
    """Return (train, validation) lists: a seeded shuffle, the validation part held out."""
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    n_val = int(round(len(shuffled) * validation_fraction))
    return shuffled[n_val:], shuffled[:n_val]


def training_steps(params: FinetuneParams, train_examples: int) -> int:
    """Return the optimizer steps: ``max_steps``, or enough for ``epochs`` passes over the data.

    >>> training_steps(FinetuneParams(epochs=2.0, batch_size=4), 10)
    5
    >>> training_steps(FinetuneParams(max_steps=7), 10)
    7
    """
    if params.epochs is None:
        return params.max_steps
    return max(1, math.ceil(params.epochs * train_examples / params.batch_size))


def repacked_4bit_modules(model) -> list[str]:
    """Return the names of 4-bit layers whose weights bitsandbytes repacked for CPU inference.

    bitsandbytes does this on the first eval-mode forward pass without gradients on a CPU with
    AVX512-BF16, and LoRA gradients through such a layer are wrong.
    """
    return [name for name, module in model.named_modules()
            if getattr(getattr(getattr(module, "weight", None), "quant_state", None), "packing_format_for_cpu", False)]


def trainable_model(src: Path, params: FinetuneParams, ctx: OperationContext):
    """Return the model in ``src``, loaded fresh from disk, with new LoRA adapters, in train mode."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = storage.load(src, ctx.dtype, ctx.device)
    repacked = repacked_4bit_modules(model)
    if repacked:
        raise RuntimeError(f"{src}: {len(repacked)} 4-bit layers (e.g. {repacked[0]}) were repacked for inference "
                           "before training; LoRA gradients would be wrong. Load the model fresh.")
    if models.is_quantized(src):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    torch.manual_seed(ctx.seed)
    lora = LoraConfig(r=params.lora_r, lora_alpha=params.lora_alpha, lora_dropout=params.lora_dropout,
                      target_modules=list(params.target_modules), task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    model.train()
    return model


def validation_losses(model_dir: Path, examples: list[dict], pad_id: int, batch_size: int,
                      ctx: OperationContext) -> list[tuple[float, int]]:
    """Return ``answer_losses`` on ``examples`` of the model in ``model_dir``, on its own copy.

    The copy is evaluated and dropped: evaluating the 4-bit model that is about to be trained
    would trigger trap 1.
    """
    if not examples:
        return []
    model = storage.load(model_dir, ctx.dtype, ctx.device)
    losses = answer_losses(model, examples, pad_id, batch_size, ctx.device)
    del model
    return losses


def train(model, examples: list[dict], steps: int, params: FinetuneParams, ctx: OperationContext, pad_id: int) -> list[float]:
    """Train ``model`` for ``steps`` AdamW steps on seeded shuffles of ``examples``; return the losses."""
    from tqdm.auto import tqdm

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.learning_rate)
    rng = random.Random(ctx.seed)
    order: list[int] = []
    losses = []
    for _ in tqdm(range(steps), desc="fine-tune (LoRA)", leave=False):
        if len(order) < params.batch_size:
            epoch = list(range(len(examples)))
            rng.shuffle(epoch)
            order += epoch
        batch_idx, order = order[:params.batch_size], order[params.batch_size:]
        batch = {k: v.to(ctx.device) for k, v in collate([examples[i] for i in batch_idx], pad_id).items()}
        token_losses, counted = answer_token_losses(model, batch)
        loss = token_losses.sum() / counted.sum()  # the mean over answer tokens, as transformers' own loss
        value = loss.detach().item()
        if not math.isfinite(value):
            raise FloatingPointError(f"fine-tune: the training loss became {value} at step {len(losses) + 1}")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(round(value, 5))
    return losses


def zero_masks(model) -> dict[str, torch.Tensor]:
    """Return ``{linear name: where its weight is exactly zero}`` for the decoder's linear layers."""
    return {name: module.weight == 0 for name, module in storage.decoder_linears(model).items()}


def reapply_zeros(model, masks: dict[str, torch.Tensor]) -> None:
    """Zero again, in place, the weights that ``masks`` (from ``zero_masks``) marks."""
    linears = storage.decoder_linears(model)
    with torch.no_grad():
        for name, mask in masks.items():
            linears[name].weight[mask] = 0


def encode_training(tokenizer, examples: list[dict], max_len: int, chat: bool) -> tuple[list[dict], dict[str, dict]]:
    """Return the encoded pairs that fit (each with its ``task``) and what became of the pairs per task.

    Per task: ``given`` pairs, ``answer_too_long`` (dropped: the answer leaves no room for the
    prompt), ``prompt_cut`` (trained with the middle of the prompt cut out), and the ``train`` and
    ``validation`` counts, filled in once the encoded pairs are split.
    """
    encoded, pairs = [], {}
    for x in examples:
        task = example_task(x)
        counts = pairs.setdefault(task, {"given": 0, "answer_too_long": 0, "prompt_cut": 0, "train": 0, "validation": 0})
        counts["given"] += 1
        e = encode_example(tokenizer, x["prompt"], x["answer"], max_len, chat)
        if e is None:
            counts["answer_too_long"] += 1
            continue
        counts["prompt_cut"] += bool(e["prompt_cut_chars"])
        encoded.append({"input_ids": e["input_ids"], "labels": e["labels"], "task": task})
    return encoded, pairs


def apply(src: Path, dst: Path, params: FinetuneParams, ctx: OperationContext) -> dict:
    """Fine-tune the checkpoint in ``src`` with LoRA into ``dst`` and return what happened."""
    kind = storage.layout(src)
    if kind == "adapter":
        raise ValueError(f"{src}: this model already carries a fine-tuning adapter; an ordering applies F once")
    quant = models.quantization_config(src)
    tokenizer = load_tokenizer(src)
    encoded, pairs = encode_training(tokenizer, ctx.training_examples, params.max_seq_len, ctx.chat_template)
    if len(encoded) < 2:
        raise ValueError(f"fine-tune: only {len(encoded)} training example(s) fit in finetune.max_seq_len="
                         f"{params.max_seq_len} with their whole answer; raise it or give more data")
    train_part, val = split_examples(encoded, params.validation_fraction, ctx.seed)
    for part, name in ((train_part, "train"), (val, "validation")):
        for e in part:
            pairs[e["task"]][name] += 1
    pad_id = tokenizer.pad_token_id
    steps = training_steps(params, len(train_part))

    before = validation_losses(src, val, pad_id, params.batch_size, ctx)
    model = trainable_model(src, params, ctx)
    trainable_count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    started = time.perf_counter()
    losses = train(model, train_part, steps, params, ctx, pad_id)
    train_seconds = time.perf_counter() - started
    model.eval()
    after = answer_losses(model, val, pad_id, params.batch_size, ctx.device)
    change = loss_change(before, after)

    policy = params.merge if quant is not None else "merge"
    with tempfile.TemporaryDirectory(dir=Path(dst).parent, prefix=".adapter-") as adapter_dir:
        model.save_pretrained(adapter_dir)
        del model
        if policy == "adapter":
            outcome = _keep_adapter(src, dst, Path(adapter_dir), ctx)
        else:
            outcome = _merge(src, dst, Path(adapter_dir), kind, quant, policy, params, ctx)

    # The saved result, loaded fresh, where saving changed the trained model (requantizing,
    # re-zeroing); otherwise it computes what was trained, merged or not, and None is recorded.
    changed = outcome.pop("changed_by_saving")
    val_result = token_mean(validation_losses(dst, val, pad_id, params.batch_size, ctx)) if changed and val else None
    return {
        "method": "qlora" if quant is not None else "lora",
        "base_quantization": quantization_name(quant),
        "merge": policy,
        "result_quantized": models.is_quantized(dst),
        "result_layout": storage.layout(dst),
        "train_examples": len(train_part),
        "validation_examples": len(val),
        "examples_too_long": len(ctx.training_examples) - len(encoded),  # no room for the answer: left out
        "prompts_cut": sum(p["prompt_cut"] for p in pairs.values()),
        "pairs_by_task": pairs,
        "chat_template": ctx.chat_template,
        "max_seq_len": params.max_seq_len,
        "steps": steps,
        "epochs": round(steps * params.batch_size / len(train_part), 3),
        "train_losses": losses,
        # Per answer token over the held-out pairs; the interval is per pair (validation_loss_change).
        "validation_loss_before": token_mean(before) if val else None,
        "validation_loss_after": token_mean(after) if val else None,
        "validation_loss_result": val_result,
        "validation_loss_change": change,
        "validation_lowered": change["significant_decrease"],
        "trainable_parameters": trainable_count,
        "train_seconds": round(train_seconds, 2),
        **outcome,
    }


def _keep_adapter(src: Path, dst: Path, adapter_dir: Path, ctx: OperationContext) -> dict:
    """Write the quantized base and the adapter side by side in ``dst``."""
    shutil.copytree(src, dst)
    for name in (storage.ADAPTER_CONFIG, storage.ADAPTER_WEIGHTS):
        shutil.copy2(adapter_dir / name, dst / name)
    model = storage.load(dst, ctx.dtype, ctx.device)
    adapter = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    parameters = models.count_parameters(model)
    del model
    out = {"parameters": parameters, "adapter_parameters": adapter, "changed_by_saving": False}
    sparsity = models.read_config(src).get(SPARSITY_CONFIG_KEY)
    if sparsity:
        out["sparsity"] = {"source": sparsity, "kept": "in the base only: the adapter's update is dense"}
    return out


def _merge(src: Path, dst: Path, adapter_dir: Path, kind: str, quant: dict | None, policy: str,
           params: FinetuneParams, ctx: OperationContext) -> dict:
    """Merge the adapter into the source's full-precision weights and save the result in ``dst``."""
    from peft import PeftModel

    base, _ = storage.load_dense(src, ctx.dtype, ctx.device)
    sparsity = getattr(base.config, SPARSITY_CONFIG_KEY, None)
    masks = zero_masks(base) if sparsity and params.keep_sparsity else None
    before = storage.zero_fraction(base) if sparsity else None
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.to(models.DTYPES[ctx.dtype])
    out: dict = {"parameters": models.count_parameters(merged),
                 "changed_by_saving": policy == "requantize" or masks is not None}
    if sparsity:
        after_merge = storage.zero_fraction(merged)
        if masks is not None:
            reapply_zeros(merged, masks)
        else:
            delattr(merged.config, SPARSITY_CONFIG_KEY)  # the zeros are gone: the config must not claim them
        out["sparsity"] = {"source": sparsity, "kept": masks is not None,
                           "zero_fraction_before_merge": round(before, 6),
                           "zero_fraction_after_merge": round(after_merge, 6),
                           "zero_fraction_result": round(storage.zero_fraction(merged), 6)}
    if policy == "requantize":
        out["requantization"] = requantize_like(merged, quant, dst, ctx, tokenizer_from=src)
    else:
        storage.save(merged, dst, tokenizer_from=src, sparse=kind == "sparse" and masks is not None)
    return out
