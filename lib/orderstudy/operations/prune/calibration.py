"""Calibration data for pruning, and the statistics that activation-aware methods read from it.

Calibration text is the fine-tuning kind of example (a prompt and its answer in the model's chat
format), by default the fine-tuning training data itself, never the evaluation sample. The
statistics are gathered in one pass over the unpruned model (not layer by layer as SparseGPT
does): padding tokens never count.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from ...checkpoints.storage import decoder_linears
from ..common import calibration_sample, calibration_sequences

BATCH_SIZE = 8


def encode(tokenizer, examples: list[dict], samples: int, seq_len: int, seed: int, chat: bool = True) -> list[list[int]]:
    """Return up to ``samples`` token sequences of at most ``seq_len``: prompt and answer, in the study's prompt format.

    ``chat``: through the chat template, as the evaluation presents prompts (``prompts.prompt_ids``).
    The draw and the encoding are the ones every calibrated operation shares (``operations.common``).
    """
    return calibration_sequences(tokenizer, calibration_sample(examples, samples, seed), seq_len, chat)


def batches(sequences: list[list[int]], pad_id: int) -> Iterator[dict]:
    """Yield right-padded ``input_ids`` and ``attention_mask`` batches of ``BATCH_SIZE``."""
    for start in range(0, len(sequences), BATCH_SIZE):
        chunk = sequences[start:start + BATCH_SIZE]
        width = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, s in enumerate(chunk):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        yield {"input_ids": ids, "attention_mask": mask}


@contextmanager
def _hooks(handles: list) -> Iterator[None]:
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _run(model, sequences: list[list[int]], pad_id: int, current_mask: dict) -> int:
    """Run the model over the calibration batches; return the number of real tokens seen."""
    device = next(model.parameters()).device
    tokens = 0
    with torch.no_grad():
        for batch in batches(sequences, pad_id):
            current_mask["mask"] = batch["attention_mask"].bool().to(device)
            tokens += int(batch["attention_mask"].sum())
            model(**{k: v.to(device) for k, v in batch.items()}, use_cache=False)
    return tokens


def input_norms(model, sequences: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Return ``{linear name: L2 norm of each input feature over the calibration tokens}``.

    This is Wanda's ``||X_j||``: a weight ``W_ij`` matters in proportion to ``|W_ij| * ||X_j||``.
    """
    current: dict = {}
    sums: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(module, args):
            x = args[0][current["mask"]].float()          # (real tokens, in_features)
            sums[name] = sums.get(name, 0) + (x * x).sum(dim=0)
        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in decoder_linears(model).items()]
    with _hooks(handles):
        _run(model, sequences, pad_id, current)
    return {name: s.sqrt() for name, s in sums.items()}


def channel_and_head_outputs(model, sequences: list[list[int]], pad_id: int, head_dim: int,
                             heads_per_group: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Return per layer the L2 norm over calibration tokens of each MLP channel's and each key/value
    group's contribution to the residual stream.

    An MLP channel ``c`` adds ``a_c * W_down[:, c]``, so its contribution's norm is
    ``||a_c|| * ||W_down[:, c]||``. A key/value group adds ``x_g @ W_o[:, g].T`` (``x_g``: the
    attention output of its query heads), measured directly.
    """
    current: dict = {}
    layers = model.model.layers
    channel_sq = [None] * len(layers)
    group_sq = [None] * len(layers)

    def mlp_hook(i):
        def record(module, args):
            a = args[0][current["mask"]].float()
            channel_sq[i] = (0 if channel_sq[i] is None else channel_sq[i]) + (a * a).sum(dim=0)
        return record

    def attn_hook(i):
        def record(module, args):
            x = args[0][current["mask"]].float()           # (tokens, heads * head_dim)
            w = module.weight.float()                      # (hidden, heads * head_dim)
            width = heads_per_group * head_dim
            groups = x.shape[1] // width
            out = torch.stack([
                (x[:, g * width:(g + 1) * width] @ w[:, g * width:(g + 1) * width].T).pow(2).sum()
                for g in range(groups)])
            group_sq[i] = (0 if group_sq[i] is None else group_sq[i]) + out
        return record

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.mlp.down_proj.register_forward_pre_hook(mlp_hook(i)))
        handles.append(layer.self_attn.o_proj.register_forward_pre_hook(attn_hook(i)))
    with _hooks(handles):
        _run(model, sequences, pad_id, current)
    channels = [sq.sqrt() * layer.mlp.down_proj.weight.float().norm(dim=0) for sq, layer in zip(channel_sq, layers)]
    groups = [sq.sqrt() for sq in group_sq]
    return channels, groups


def layer_angular_distances(model, sequences: list[list[int]], pad_id: int) -> list[float]:
    """Return per decoder layer the mean angular distance between its input and output hidden states.

    ``arccos(cos(h_in, h_out)) / pi`` per token, averaged over the calibration tokens: 0 for a layer
    that leaves the hidden state's direction unchanged (ShortGPT's "block influence" ranks layers
    the same way, as ``1 - cos``).
    """
    current: dict = {}
    layers = model.model.layers
    inputs: dict[int, torch.Tensor] = {}
    totals = [0.0] * len(layers)

    def pre(i):
        def record(module, args, kwargs):
            inputs[i] = (args[0] if args else kwargs["hidden_states"]).detach()
        return record

    def post(i):
        def record(module, args, kwargs, output):
            out = output[0] if isinstance(output, tuple) else output
            mask = current["mask"]
            cos = torch.nn.functional.cosine_similarity(inputs.pop(i)[mask].float(), out[mask].float(), dim=-1)
            totals[i] += float(torch.arccos(cos.clamp(-1.0, 1.0)).sum() / torch.pi)
        return record

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_pre_hook(pre(i), with_kwargs=True))
        handles.append(layer.register_forward_hook(post(i), with_kwargs=True))
    with _hooks(handles):
        tokens = _run(model, sequences, pad_id, current)
    return [t / max(tokens, 1) for t in totals]
