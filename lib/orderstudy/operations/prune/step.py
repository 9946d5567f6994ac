"""The prune step: check, read calibration data, prune by ``prune.method``, save.

``prune.method`` chooses one well-known method:

- ``width`` (default): every decoder layer keeps its most important MLP intermediate channels and
  attention heads, heads removed in whole key/value groups so grouped-query attention stays
  valid. Every layer keeps the same numbers, so the result is a standard checkpoint of the same
  architecture with a smaller config (``intermediate_size``, ``num_attention_heads``,
  ``num_key_value_heads``; ``head_dim`` written out), really smaller on disk.
  ``mlp_channels`` does the MLP part only. Importance is weight magnitude, or activation-aware:
  the size of each channel's or group's contribution to the residual stream on calibration data.
- ``depth``: removes the decoder layers that change the hidden state least on calibration data
  (angular distance between a layer's input and output), updating ``num_hidden_layers``.
- ``magnitude`` / ``wanda``: zeroes the smallest ``|W|`` of every decoder linear layer, or the
  smallest ``|W| * ||X||`` in every output row (Wanda). ``2:4``: two zeros in every four
  consecutive weights of a row, scored by magnitude or activation (Wanda's score). These do not
  make a dense checkpoint smaller; ``storage: sparse`` saves values and a bitmask instead
  (``sparse_format``). The config records the sparsity (``orderstudy_sparsity``) so that a later
  fine-tune knows to keep it.

A quantized input is dequantized, pruned, and quantized again with its own settings (pruning
packed 4-bit weights corrupts them silently: ``tests/ops/test_traps.py`` shows it); a GPTQ input is
quantized again by GPTQ recalibrated on the pruned model (the record's ``requantization`` says so).
An adapter beside a quantized base is merged first.
"""

from __future__ import annotations

from pathlib import Path

from ...checkpoints import models, storage
from ..common import OperationContext, load_tokenizer, quantization_name
from ..quantize.requantize import requantize_like
from . import calibration
from .params import PruneParams
from .structured import model_shape, prune_depth, prune_width, width_shape_problem
from .unstructured import prune_weights


def apply(src: Path, dst: Path, params: PruneParams, ctx: OperationContext) -> dict:
    """Prune the checkpoint in ``src`` into ``dst`` and return what happened, for the record."""
    if params.method == "width":  # before any work: a shape transformers refuses would fail only at saving
        from transformers import AutoConfig

        problem = width_shape_problem(AutoConfig.from_pretrained(src), params)
        if problem:
            raise ValueError(f"prune: {problem}")
    model, source = storage.load_dense(src, ctx.dtype, ctx.device)
    shape_before = model_shape(model.config)
    params_before = models.count_parameters(model)
    info: dict = {"method": params.method}

    sequences: list[list[int]] = []
    pad_id = 0
    if params.needs_calibration:
        if not ctx.calibration_examples:
            raise ValueError(f"prune: method {params.method!r} (importance {params.importance!r}) needs calibration "
                             "examples, and OperationContext.calibration_examples is empty; check prune.calibration_data")
        tokenizer = load_tokenizer(src)
        pad_id = tokenizer.pad_token_id
        sequences = calibration.encode(tokenizer, ctx.calibration_examples, params.calibration_samples,
                                       params.calibration_seq_len, ctx.seed, ctx.chat_template)
        info["calibration"] = {"examples": len(sequences), "tokens": sum(len(s) for s in sequences),
                               "seq_len": params.calibration_seq_len, "chat_template": ctx.chat_template}

    if params.method in ("width", "mlp_channels"):
        model, details = prune_width(model, params, sequences, pad_id)
    elif params.method == "depth":
        model, details = prune_depth(model, params.sparsity, sequences, pad_id)
    else:
        details = prune_weights(model, params, sequences, pad_id)
    info.update(details)

    zeros = storage.zero_fraction(model)
    info.update({
        "shape_before": shape_before,
        "shape_after": model_shape(model.config),
        "intermediate_size_after": model.config.intermediate_size,
        "parameters_before": params_before,
        "parameters": models.count_parameters(model),
        "nonzero_parameters": sum(int((p != 0).sum()) for p in model.parameters()),
        "zero_fraction": round(zeros, 6),
        "source_layout": source["layout"],
        "dequantized_first": source["quantization"] is not None,
        "adapter_merged": source["adapter_merged"],
    })
    info.update(_save(model, src, dst, params, source["quantization"], ctx))
    return info


def _save(model, src: Path, dst: Path, params: PruneParams, quant: dict | None, ctx: OperationContext) -> dict:
    unstructured = params.method in ("magnitude", "wanda", "2:4")
    if quant is not None:
        # GPTQ is run again, calibrated on the pruned model; bitsandbytes rounds as it always does.
        requantized = requantize_like(model, quant, dst, ctx, tokenizer_from=src)
        out = {"storage": "quantized", "requantized_as": quantization_name(quant), "requantization": requantized}
        if params.storage == "sparse":
            out["storage_note"] = ("prune.storage 'sparse' does not apply to a quantized model: bitsandbytes packs "
                                   "every weight, zeros included, so the zeros do not make it smaller")
        return out
    storage.save(model, dst, tokenizer_from=src, sparse=params.storage == "sparse")
    out = {"storage": params.storage}
    if unstructured and params.storage == "dense":
        out["storage_note"] = ("dense storage: a zero takes as many bytes as any weight, so this checkpoint is as "
                               "large as an unpruned one; prune.storage: sparse stores values and a bitmask")
    return out
