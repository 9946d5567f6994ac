"""Quantize (Q): bitsandbytes 4-bit (NF4 by default, or FP4) or 8-bit (LLM.int8) weights.

The result is a standard quantized checkpoint: ``config.json`` carries the
``quantization_config`` and ``from_pretrained`` alone reloads it with the same logits. Double
quantization (of the 4-bit block scales) and the compute dtype are parameters, and so are the
linear modules that stay in full precision (the output head by default; bitsandbytes never
quantizes the embedding). A sparse-format input is quantized from its dense weights: bitsandbytes
packs every weight, so the zeros survive (NF4, FP4 and int8 all have an exact zero) but no longer
save space.

The record says how far each quantized weight is from the weight it replaced: the relative error
``||W - deq(Q(W))||_F / ||W||_F`` of every quantized linear layer, measured on the saved codes
before the model ever runs (running it would repack 4-bit weights, and LoRA gradients through them would be wrong).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ...checkpoints import models
from ...checkpoints.numerics import pin_bnb_cpu_path
from .params import QuantizeParams
from ...checkpoints import storage
from ..common import OperationContext


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
        bnb_4bit_compute_dtype=models.DTYPES[compute_dtype(params, study_dtype)],
        llm_int8_skip_modules=skip,
    )


def compute_dtype(params: QuantizeParams, study_dtype: str) -> str:
    """Return the dtype 4-bit matmuls compute in: the parameter, or the study's dtype for ``auto``."""
    return study_dtype if params.compute_dtype == "auto" else params.compute_dtype


def quantize_model(src: Path, params: QuantizeParams, ctx: OperationContext):
    """Return the model in ``src`` quantized in memory (never run: running it repacks 4-bit weights)."""
    from transformers import AutoModelForCausalLM

    if models.is_quantized(src):
        raise ValueError(f"{src}: the model is already quantized; an ordering applies Q once")
    kind = storage.layout(src)
    settings = bnb_settings(params, ctx.dtype)
    load = dict(quantization_config=settings, dtype=models.DTYPES[ctx.dtype], device_map=ctx.device)
    if kind == "standard":
        model = AutoModelForCausalLM.from_pretrained(src, **load)
    else:
        # bitsandbytes quantizes while loading: a sparse checkpoint goes through a dense copy.
        dense, _ = storage.load_dense(src, ctx.dtype, ctx.device)
        with tempfile.TemporaryDirectory(prefix="orderstudy-dense-") as tmp:
            dense.save_pretrained(tmp, safe_serialization=True)
            del dense
            model = AutoModelForCausalLM.from_pretrained(tmp, **load)
    pin_bnb_cpu_path(model)  # run, it computes as the saved checkpoint reloaded does (numerics.py)
    return model


def apply(src: Path, dst: Path, params: QuantizeParams, ctx: OperationContext) -> dict:
    """Quantize the checkpoint in ``src`` into ``dst`` and return what happened, for the record."""
    import bitsandbytes as bnb

    model = quantize_model(src, params, ctx)
    model.save_pretrained(dst, safe_serialization=True)
    storage.copy_tokenizer(src, dst)
    quantized = [n for n, m in model.named_modules() if isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))]
    errors = weight_errors(model, src, ctx)
    return {
        "method": params.method,
        "double_quant": params.double_quant if params.method != "int8" else None,
        "compute_dtype": compute_dtype(params, ctx.dtype) if params.method != "int8" else None,
        "skip_modules": list(params.skip_modules),
        "quantized_modules": len(quantized),
        "source_layout": storage.layout(src),
        "parameters": models.count_parameters(model),
        "weight_error": {"metric": "||W - deq(Q(W))||_F / ||W||_F", "by_module": errors,
                         "mean": round(sum(errors.values()) / len(errors), 6) if errors else None,
                         "max": max(errors.values()) if errors else None},
    }


def dequantized_weight(module):
    """Return the full-precision weight a bitsandbytes 4-bit or 8-bit linear layer computes with (float32)."""
    import bitsandbytes as bnb

    weight = module.weight
    if isinstance(module, bnb.nn.Linear4bit):
        return bnb.functional.dequantize_4bit(weight.data, weight.quant_state).float()
    # LLM.int8: one scale a row, int8 codes in [-127, 127].
    return weight.data.float() * weight.SCB.float()[:, None] / 127.0


def weight_errors(model, src: Path, ctx: OperationContext) -> dict[str, float]:
    """Return ``{module name: ||W - deq(Q(W))||_F / ||W||_F}`` for every quantized linear layer of ``model``.

    ``W`` is the source checkpoint's weight as the study loads it (any layout, in its dtype).
    """
    import bitsandbytes as bnb
    import torch

    reference, _ = storage.load_dense(src, ctx.dtype, ctx.device)
    source = dict(reference.named_modules())
    errors = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)):
                original = source[name].weight.float()
                error = torch.linalg.norm(original - dequantized_weight(module)) / torch.linalg.norm(original)
                errors[name] = round(float(error), 6)
    del reference
    return errors
