"""Quantize (Q): bitsandbytes 4-bit (NF4 by default, or FP4) or 8-bit weights.

The result is a standard quantized checkpoint: ``config.json`` carries the
``quantization_config`` and ``from_pretrained`` alone reloads it with the same logits.
"""

from __future__ import annotations

from pathlib import Path

from .. import models
from ..params import QuantizeParams
from .common import OperationContext


def bnb_settings(params: QuantizeParams, study_dtype: str = "bfloat16"):
    """Return the ``BitsAndBytesConfig`` for ``params``."""
    from transformers import BitsAndBytesConfig

    skip = list(params.skip_modules) or None
    if params.method == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=params.method,
        bnb_4bit_use_double_quant=params.double_quant,
        bnb_4bit_compute_dtype=models.DTYPES[study_dtype if params.compute_dtype == "auto" else params.compute_dtype],
        llm_int8_skip_modules=skip,
    )


def apply(src: Path, dst: Path, params: QuantizeParams, ctx: OperationContext) -> dict:
    """Quantize the checkpoint in ``src`` into ``dst`` and return what happened, for the record."""
    from transformers import AutoModelForCausalLM

    if models.is_quantized(src):
        raise ValueError(f"{src}: the model is already quantized; an ordering applies Q once")
    model = AutoModelForCausalLM.from_pretrained(
        src, quantization_config=bnb_settings(params, ctx.dtype), dtype=models.DTYPES[ctx.dtype], device_map=ctx.device)
    models.save_model(model, models.load_tokenizer(src), dst)
    return {
        "method": params.method,
        "double_quant": params.double_quant,
        "compute_dtype": ctx.dtype if params.compute_dtype == "auto" else params.compute_dtype,
        "skip_modules": list(params.skip_modules),
        "parameters": models.count_parameters(model),
    }
