"""Prune (P): structured removal of MLP intermediate channels.

Every decoder layer keeps the same number of channels, chosen by an importance score, so the
result is a standard checkpoint of the same architecture with a smaller
``config.intermediate_size`` that ``from_pretrained`` loads with no extra code, and really is
smaller on disk. A quantized input is dequantized, pruned, and quantized again with its own
settings (pruning packed 4-bit weights corrupts them silently: FACTS.md, trap 2).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import models
from ..params import PruneParams
from .common import OperationContext, requantize_like


def kept_channels(intermediate_size: int, sparsity: float, multiple_of: int) -> int:
    """Return how many MLP channels each layer keeps, rounded to ``multiple_of``, at least one.

    >>> kept_channels(1536, 0.5, 8)
    768
    >>> kept_channels(1536, 0.3, 64)
    1088
    """
    keep = round(intermediate_size * (1.0 - sparsity) / multiple_of) * multiple_of
    return max(multiple_of if multiple_of <= intermediate_size else 1, min(intermediate_size, keep))


def channel_importance(mlp) -> torch.Tensor:
    """Return one magnitude score per intermediate channel of a gated MLP.

    A channel is a row of ``gate_proj`` and ``up_proj`` and a column of ``down_proj``; its score is
    the product of the L2 norms of its gate and up rows and its down column, so a channel whose
    input or output path is small scores low.
    """
    gate = mlp.gate_proj.weight.float().norm(dim=1)
    up = mlp.up_proj.weight.float().norm(dim=1)
    down = mlp.down_proj.weight.float().norm(dim=0)
    return gate * up * down


def prune_mlp_channels(model, keep: int) -> list[int]:
    """Prune every layer's MLP to its ``keep`` most important channels, in place.

    Returns the number of channels each layer had before. Updates ``config.intermediate_size``.
    """
    before = []
    for layer in model.model.layers:
        mlp = layer.mlp
        before.append(mlp.gate_proj.out_features)
        idx = torch.topk(channel_importance(mlp), keep).indices.sort().values
        mlp.gate_proj = _take_rows(mlp.gate_proj, idx)
        mlp.up_proj = _take_rows(mlp.up_proj, idx)
        mlp.down_proj = _take_cols(mlp.down_proj, idx)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = keep
    model.config.intermediate_size = keep
    return before


def _take_rows(linear: torch.nn.Linear, idx: torch.Tensor) -> torch.nn.Linear:
    new = torch.nn.Linear(linear.in_features, len(idx), bias=linear.bias is not None,
                          dtype=linear.weight.dtype, device=linear.weight.device)
    with torch.no_grad():
        new.weight.copy_(linear.weight[idx])
        if linear.bias is not None:
            new.bias.copy_(linear.bias[idx])
    return new


def _take_cols(linear: torch.nn.Linear, idx: torch.Tensor) -> torch.nn.Linear:
    new = torch.nn.Linear(len(idx), linear.out_features, bias=linear.bias is not None,
                          dtype=linear.weight.dtype, device=linear.weight.device)
    with torch.no_grad():
        new.weight.copy_(linear.weight[:, idx])
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    return new


def apply(src: Path, dst: Path, params: PruneParams, ctx: OperationContext) -> dict:
    """Prune the checkpoint in ``src`` into ``dst`` and return what happened, for the record."""
    source_quant = models.quantization_config(src)
    model = models.load_dense(src, ctx.dtype, ctx.device)
    tokenizer = models.load_tokenizer(src)
    params_before = models.count_parameters(model)
    intermediate = model.config.intermediate_size
    keep = kept_channels(intermediate, params.sparsity, params.multiple_of)
    prune_mlp_channels(model, keep)
    info = {
        "method": params.method,
        "importance": params.importance,
        "intermediate_size_before": intermediate,
        "intermediate_size_after": keep,
        "parameters_before": params_before,
        "parameters": models.count_parameters(model),
        "dequantized_first": source_quant is not None,
    }
    if source_quant is None:
        models.save_model(model, tokenizer, dst)
    else:
        requantize_like(model, tokenizer, source_quant, dst, ctx)
    return info
