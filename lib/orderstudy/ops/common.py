"""What every operation receives besides its own parameters, and helpers they share."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import models


@dataclass
class OperationContext:
    """The study-wide settings an operation runs under."""

    dtype: str = "bfloat16"
    device: str = "cpu"
    seed: int = 0
    # Where a fine-tune finds its training examples: a list of {"prompt", "answer", "id"} dicts.
    training_examples: list[dict] = field(default_factory=list)
    # Called with (step, total, message) so notebooks can show progress.
    progress: Callable[[str], None] = print


def bnb_config(quant: dict, device: str):
    """Return a ``BitsAndBytesConfig`` from a saved ``quantization_config`` dict."""
    from transformers import BitsAndBytesConfig

    cfg = {k: v for k, v in quant.items() if k not in ("quant_method", "_load_in_4bit", "_load_in_8bit")}
    return BitsAndBytesConfig(**cfg)


def requantize_like(model, tokenizer, quant: dict, dst: Path, ctx: OperationContext) -> None:
    """Quantize a dense in-memory ``model`` with the saved settings ``quant`` and save it to ``dst``.

    bitsandbytes quantizes while loading, so the dense model goes through a temporary checkpoint.
    """
    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory(dir=Path(dst).parent, prefix=".dense-") as tmp:
        models.save_model(model, tokenizer, Path(tmp))
        quantized = AutoModelForCausalLM.from_pretrained(
            tmp, quantization_config=bnb_config(quant, ctx.device),
            dtype=models.DTYPES[ctx.dtype], device_map=ctx.device)
        models.save_model(quantized, tokenizer, dst)
