"""Unstructured pruning: magnitude and Wanda zeros in every decoder linear layer, and 2:4 sparsity."""

from __future__ import annotations

import torch

from ...checkpoints import storage
from ..common import SPARSITY_CONFIG_KEY
from . import calibration
from .params import PruneParams
from .records import ScoreHistogram


def prune_weights(model, params: PruneParams, sequences: list[list[int]], pad_id: int) -> dict:
    """Zero weights of every decoder linear layer in place; return the details for the record."""
    wanda_score = params.method == "wanda" or (params.method == "2:4" and params.importance == "activation")
    norms = calibration.input_norms(model, sequences, pad_id) if wanda_score else {}
    sparsity = 0.5 if params.method == "2:4" else params.sparsity
    kept_by_module, histogram = {}, ScoreHistogram()
    with torch.no_grad():
        for name, module in storage.decoder_linears(model).items():
            weight = module.weight
            score = weight.abs().float()
            if wanda_score:
                score = score * norms[name].to(score.device)[None, :]
            if params.method == "magnitude":
                mask = smallest(score.flatten(), int(weight.numel() * sparsity)).reshape(weight.shape)
            elif params.method == "wanda":
                mask = smallest_per_row(score, int(weight.shape[1] * sparsity))
            else:
                mask = two_of_four(score, name)
            weight[mask] = 0
            kept_by_module[name] = round(1.0 - float(mask.float().mean()), 6)
            histogram.add(score, ~mask)
    pattern = "2:4" if params.method == "2:4" else "unstructured"
    setattr(model.config, SPARSITY_CONFIG_KEY, {"method": params.method, "pattern": pattern, "sparsity": sparsity,
                                                "layers": "decoder linear layers"})
    score_name = "|W| x input norm (Wanda)" if wanda_score else "|W|"
    return {"pattern": pattern, "target_sparsity": sparsity, "score": score_name,
            **({"importance": params.importance} if params.method == "2:4" else {}),
            "kept_fraction_by_module": kept_by_module, "score_histogram": histogram.record()}


def smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Return a boolean mask of the ``k`` smallest entries of a 1-D tensor.

    >>> smallest(torch.tensor([3.0, 1.0, 2.0, 0.5]), 2).tolist()
    [False, True, False, True]
    """
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k > 0:
        mask[torch.topk(scores, k, largest=False).indices] = True
    return mask


def smallest_per_row(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Return a boolean mask of the ``k`` smallest entries of every row.

    >>> smallest_per_row(torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]]), 1).tolist()
    [[False, True, False], [True, False, False]]
    """
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k > 0:
        mask.scatter_(1, torch.topk(scores, k, dim=1, largest=False).indices, True)
    return mask


def two_of_four(scores: torch.Tensor, name: str = "weight") -> torch.Tensor:
    """Return a boolean mask of the two smallest entries in every four consecutive ones of a row.

    >>> two_of_four(torch.tensor([[4.0, 1.0, 3.0, 2.0]])).tolist()
    [[False, True, False, True]]
    """
    rows, cols = scores.shape
    if cols % 4:
        raise ValueError(f"{name}: 2:4 sparsity needs the input size to be a multiple of 4, got {cols}")
    quads = scores.reshape(rows, cols // 4, 4)
    mask = torch.zeros_like(quads, dtype=torch.bool)
    mask.scatter_(2, torch.topk(quads, 2, dim=2, largest=False).indices, True)
    return mask.reshape(rows, cols)


# -- what the record keeps for the notebook's figures -----------------------------------------
