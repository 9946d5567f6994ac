"""Quantize a dense model again with a quantized source's saved settings: P and F after Q.

bitsandbytes rounds the new weights as it rounded the old; GPTQ runs again, calibrated on the new
model (``gptq.requantize``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ...checkpoints import models
from ..common import OperationContext, bnb_config, quantization_name


def requantize_like(model, quant: dict, dst: Path, ctx: OperationContext, tokenizer_from: Path) -> dict:
    """Quantize a dense in-memory ``model`` with the saved settings ``quant``, save it to ``dst``, and
    return the record of that quantization.

    bitsandbytes quantizes while loading, so the dense model goes through a temporary checkpoint.
    GPTQ is run again, calibrated on ``model`` itself (``quantize.gptq.requantize``): its rounding
    fits the activations of the model it now quantizes. The tokenizer is copied from ``tokenizer_from``.
    """
    from transformers import AutoModelForCausalLM

    from ...checkpoints.storage import copy_tokenizer

    if quantization_name(quant) == "gptq":
        from .gptq import requantize

        return requantize(model, quant, dst, ctx, tokenizer_from)

    with tempfile.TemporaryDirectory(dir=Path(dst).parent, prefix=".dense-") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        quantized = AutoModelForCausalLM.from_pretrained(
            tmp, quantization_config=bnb_config(quant),
            dtype=models.DTYPES[ctx.dtype], device_map=ctx.device)
        quantized.save_pretrained(dst, safe_serialization=True)
    copy_tokenizer(tokenizer_from, dst)
    return {"method": quantization_name(quant), "calibrated": False}
