"""What every operation receives besides its own parameters, and helpers they share."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import models

# A config.json attribute written by unstructured and 2:4 pruning and carried by every later
# checkpoint (quantizing and fine-tuning keep the config): which weights were made zero and how.
# A fine-tune reads it to know that merging its adapter must not undo the zeros.
SPARSITY_CONFIG_KEY = "orderstudy_sparsity"


@dataclass
class OperationContext:
    """The study-wide settings an operation runs under."""

    dtype: str = "bfloat16"
    device: str = "cpu"
    seed: int = 0
    # Where a fine-tune finds its training examples: a list of {"prompt", "answer", "id"} dicts.
    training_examples: list[dict] = field(default_factory=list)
    # Where pruning finds its calibration text (activation-aware scores, wanda, depth): the same
    # kind of {"prompt", "answer", "id"} dicts; by default the fine-tuning training examples,
    # never the evaluation sample.
    calibration_examples: list[dict] = field(default_factory=list)
    # Called with a message so notebooks can show progress.
    progress: Callable[[str], None] = print


def bnb_config(quant: dict):
    """Return a ``BitsAndBytesConfig`` from a saved ``quantization_config`` dict."""
    from transformers import BitsAndBytesConfig

    cfg = {k: v for k, v in quant.items() if k not in ("quant_method", "_load_in_4bit", "_load_in_8bit")}
    return BitsAndBytesConfig(**cfg)


def quantization_name(quant: dict | None) -> str | None:
    """Return ``nf4``, ``fp4``, ``int8`` or None (dense) for a saved ``quantization_config``.

    >>> quantization_name({"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}), quantization_name(None)
    ('nf4', None)
    """
    if quant is None:
        return None
    if quant.get("load_in_8bit"):
        return "int8"
    return quant.get("bnb_4bit_quant_type", "4bit")


def requantize_like(model, tokenizer, quant: dict, dst: Path, ctx: OperationContext) -> None:
    """Quantize a dense in-memory ``model`` with the saved settings ``quant`` and save it to ``dst``.

    bitsandbytes quantizes while loading, so the dense model goes through a temporary checkpoint.
    """
    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory(dir=Path(dst).parent, prefix=".dense-") as tmp:
        models.save_model(model, tokenizer, Path(tmp))
        quantized = AutoModelForCausalLM.from_pretrained(
            tmp, quantization_config=bnb_config(quant),
            dtype=models.DTYPES[ctx.dtype], device_map=ctx.device)
        models.save_model(quantized, tokenizer, dst)
