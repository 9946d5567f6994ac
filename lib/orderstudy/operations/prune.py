"""Prune (P): structured width or depth pruning, or unstructured / 2:4 sparsity.

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
packed 4-bit weights corrupts them silently: ``tests/ops/test_traps.py`` shows it); an adapter beside a quantized
base is merged first.
"""

from __future__ import annotations

import copy
import math
from decimal import Decimal
from pathlib import Path

import torch

from ..checkpoints import models
from ..core.params import PruneParams
from . import calibration
from ..checkpoints import storage
from .common import SPARSITY_CONFIG_KEY, OperationContext, load_tokenizer, quantization_name, requantize_like


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
        requantize_like(model, quant, dst, ctx, tokenizer_from=src)
        out = {"storage": "quantized", "requantized_as": quantization_name(quant)}
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


def model_shape(config) -> dict:
    """Return the sizes that structured pruning changes."""
    return {"layers": config.num_hidden_layers, "attention_heads": config.num_attention_heads,
            "key_value_heads": config.num_key_value_heads, "intermediate_size": config.intermediate_size}


# -- width ------------------------------------------------------------------------------------

def round_half_up(value: float | Decimal) -> int:
    """Return ``value`` rounded to the nearest integer, halves up, reading the float as written.

    Python's ``round`` rounds halves to even (``round(0.5) == 0``, ``round(1.5) == 2``), so a
    sparsity would remove a group at some halves and not at others; and ``2 * 0.15`` is
    ``0.30000000000000004`` in binary. The value is taken as its shortest decimal (``repr``).

    >>> round_half_up(0.5), round_half_up(1.5), round_half_up(2.5), round_half_up(0.49)
    (1, 2, 3, 0)
    """
    exact = value if isinstance(value, Decimal) else Decimal(repr(value))
    return math.floor(exact + Decimal("0.5"))


def kept_channels(intermediate_size: int, sparsity: float, multiple_of: int) -> int:
    """Return how many MLP channels each layer keeps: ``intermediate_size x (1 - sparsity)`` rounded
    half up to a multiple of ``multiple_of``, at least one multiple (or one channel).

    >>> kept_channels(1536, 0.5, 8)
    768
    >>> kept_channels(1536, 0.3, 64)
    1088
    >>> kept_channels(160, 0.5, 16)   # 80 channels = 5 multiples of 16, exactly
    80
    >>> kept_channels(176, 0.5, 16)   # 88 = 5.5 multiples: rounded up to 6
    96
    """
    keep = round_half_up(Decimal(intermediate_size) * (1 - Decimal(repr(sparsity))) / multiple_of) * multiple_of
    return max(multiple_of if multiple_of <= intermediate_size else 1, min(intermediate_size, keep))


def kept_groups(groups: int, head_sparsity: float) -> int:
    """Return how many key/value groups each layer keeps: ``groups x head_sparsity`` removed, rounded
    half up (``round_half_up``), at least one group kept.

    On Qwen2.5-1.5B's 2 groups, 0.25 and 0.3 both remove one group (half the heads), 0.2 none.

    >>> kept_groups(3, 0.3), kept_groups(3, 0.0), kept_groups(2, 0.9)
    (2, 3, 1)
    >>> kept_groups(2, 0.25), kept_groups(2, 0.3), kept_groups(2, 0.2), kept_groups(5, 0.3)
    (1, 1, 2, 3)
    """
    return max(1, groups - round_half_up(groups * Decimal(repr(head_sparsity))))


def width_config(config, params: PruneParams):
    """Return the config of ``config``'s model after width pruning with ``params`` (nothing is pruned)."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    groups = config.num_key_value_heads
    per_group = config.num_attention_heads // groups
    keep_groups = kept_groups(groups, params.head_sparsity) if params.method == "width" else groups
    new_config = copy.deepcopy(config)
    new_config.intermediate_size = kept_channels(config.intermediate_size, params.sparsity, params.multiple_of)
    new_config.num_key_value_heads = keep_groups
    new_config.num_attention_heads = keep_groups * per_group
    new_config.head_dim = head_dim  # written out: hidden_size / heads no longer gives it
    return new_config


def width_shape_problem(config, params: PruneParams) -> str | None:
    """Return why transformers would refuse the width-pruned config, with the head_sparsity values it
    accepts, or None when it accepts it (or the method removes no heads).

    Llama's config, for one, requires ``hidden_size`` to be a multiple of the number of attention
    heads, although the attention itself needs no such thing once ``head_dim`` is written out: a
    SmolLM2-360M shape (hidden 960, 15 heads in 5 groups) with head_sparsity 0.3 keeps 9 heads
    and could not be saved or loaded. The study stops before any work instead of pruning to another
    fraction than the one asked: a different fraction is a different experiment, and the params file
    should say which one runs.
    """
    if params.method != "width" or not hasattr(config, "validate"):
        return None
    error = _config_error(width_config(config, params))
    if error is None:
        return None
    groups = config.num_key_value_heads
    per_group = config.num_attention_heads // groups
    valid = []
    for removed in range(groups):
        fraction = removed / groups
        trial = params.model_copy(update={"head_sparsity": fraction})
        if _config_error(width_config(config, trial)) is None:
            valid.append(f"{fraction:g} ({(groups - removed) * per_group} heads kept)")
    kept = kept_groups(groups, params.head_sparsity) * per_group
    return (f"head_sparsity {params.head_sparsity:g} keeps {kept} of {config.num_attention_heads} attention heads "
            f"({config.num_key_value_heads} key/value groups of {per_group}), and transformers refuses that config: "
            f"{error}. Values this model accepts: {', '.join(valid) or 'none but 0'}")


def _config_error(config) -> str | None:
    try:
        config.validate()
    except Exception as exc:  # transformers' strict dataclass validation: the cause says which rule
        cause = exc.__cause__ or exc
        return str(cause).strip().splitlines()[-1].strip()
    return None


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


def group_importance(attn, head_dim: int, heads_per_group: int) -> torch.Tensor:
    """Return one magnitude score per key/value group: the norms of its value path.

    A group's output is its value rows (``v_proj``) carried by its query heads' columns of
    ``o_proj``; the score is the product of their Frobenius norms.
    """
    v = attn.v_proj.weight.float().reshape(-1, head_dim, attn.v_proj.weight.shape[1])
    width = heads_per_group * head_dim
    o = attn.o_proj.weight.float()
    groups = v.shape[0]
    return torch.stack([v[g].norm() * o[:, g * width:(g + 1) * width].norm() for g in range(groups)])


def prune_width(model, params: PruneParams, sequences: list[list[int]], pad_id: int):
    """Return ``(pruned model, details)``: every layer keeps its best MLP channels and key/value groups."""
    config = model.config
    problem = width_shape_problem(config, params)
    if problem:
        raise ValueError(f"prune: {problem}")
    new_config = width_config(config, params)
    head_dim = new_config.head_dim
    groups = config.num_key_value_heads
    per_group = config.num_attention_heads // groups
    keep_channels = new_config.intermediate_size
    keep_groups = new_config.num_key_value_heads

    if params.importance == "activation":
        channel_scores, group_scores = calibration.channel_and_head_outputs(model, sequences, pad_id, head_dim, per_group)
    else:
        channel_scores = [channel_importance(layer.mlp) for layer in model.model.layers]
        group_scores = [group_importance(layer.self_attn, head_dim, per_group) for layer in model.model.layers]

    state = model.state_dict()
    kept_group_ids = []
    kept_channel_ids = []
    for i in range(len(model.model.layers)):
        prefix = f"model.layers.{i}."
        channels = torch.topk(channel_scores[i], keep_channels).indices.sort().values
        kept_channel_ids.append(channels)
        for name in ("gate_proj", "up_proj"):
            _take(state, f"{prefix}mlp.{name}", rows=channels)
        _take(state, f"{prefix}mlp.down_proj", cols=channels)
        if keep_groups < groups:
            kept = torch.topk(group_scores[i], keep_groups).indices.sort().values
            kept_group_ids.append(kept.tolist())
            q_idx = torch.cat([torch.arange(g * per_group * head_dim, (g + 1) * per_group * head_dim) for g in kept.tolist()])
            kv_idx = torch.cat([torch.arange(g * head_dim, (g + 1) * head_dim) for g in kept.tolist()])
            _take(state, f"{prefix}self_attn.q_proj", rows=q_idx)
            _take(state, f"{prefix}self_attn.k_proj", rows=kv_idx)
            _take(state, f"{prefix}self_attn.v_proj", rows=kv_idx)
            _take(state, f"{prefix}self_attn.o_proj", cols=q_idx)

    details = {
        "importance": params.importance,
        "mlp_channels_kept": keep_channels,
        "key_value_groups_kept": keep_groups,
        "heads_removed_per_layer": (groups - keep_groups) * per_group,
        # What was really removed, after rounding to multiples and whole groups (the params ask for
        # sparsity and head_sparsity; these are what they became on this model).
        "mlp_channels_removed_fraction": round(1 - keep_channels / config.intermediate_size, 6),
        "heads_removed_fraction": round((groups - keep_groups) / groups, 6),
    }
    if kept_group_ids:
        details["kept_groups_by_layer"] = kept_group_ids
    details.update(width_record(channel_scores, kept_channel_ids, group_scores))
    return rebuild(model, new_config, state), details


def _take(state: dict, module: str, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> None:
    """Keep only ``rows`` (output features, with the bias) or ``cols`` (input features) of a linear layer."""
    weight = state[f"{module}.weight"]
    state[f"{module}.weight"] = weight[rows].clone() if rows is not None else weight[:, cols].clone()
    bias = state.get(f"{module}.bias")
    if bias is not None and rows is not None:
        state[f"{module}.bias"] = bias[rows].clone()


def rebuild(model, config, state: dict):
    """Return a fresh model of ``config``'s (smaller) shape holding ``state``: a standard model again."""
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    with no_init_weights():  # every weight is overwritten just below
        new = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    new.load_state_dict(state, strict=True)
    new.tie_weights()
    new.generation_config = model.generation_config
    new.to(model.device)
    new.eval()
    return new


# -- depth ------------------------------------------------------------------------------------

def prune_depth(model, sparsity: float, sequences: list[list[int]], pad_id: int):
    """Return ``(pruned model, details)`` without the layers of least angular distance on calibration data."""
    n_layers = model.config.num_hidden_layers
    n_remove = min(n_layers - 1, round(n_layers * sparsity))
    distances = calibration.layer_angular_distances(model, sequences, pad_id)
    removed = sorted(sorted(range(n_layers), key=lambda i: distances[i])[:n_remove])
    kept = [i for i in range(n_layers) if i not in removed]
    renumber = {old: new for new, old in enumerate(kept)}

    state = {}
    for key, tensor in model.state_dict().items():
        if key.startswith("model.layers."):
            index = int(key.split(".")[2])
            if index not in renumber:
                continue
            key = f"model.layers.{renumber[index]}." + key.split(".", 3)[3]
        state[key] = tensor
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = len(kept)
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[i] for i in kept]
    details = {"score": "angular distance between a layer's input and output hidden states",
               "layers_removed": removed, "angular_distances": [round(d, 5) for d in distances]}
    return rebuild(model, config, state), details


# -- unstructured and 2:4 ---------------------------------------------------------------------

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

def width_record(channel_scores: list[torch.Tensor], kept_channels: list[torch.Tensor],
                 group_scores: list[torch.Tensor]) -> dict:
    """Return which MLP channels each layer kept (bitmasks) and the importance scores, compactly.

    ``kept_channels_by_layer`` holds one bitmask a layer (``mask_text``; 192 bytes of text for
    1,536 channels); the channel scores are kept as a histogram, the few group scores in full.
    """
    size = int(channel_scores[0].numel())
    masks = [torch.zeros(size, dtype=torch.bool).index_fill_(0, ids.cpu(), True) for ids in kept_channels]
    histogram = ScoreHistogram()
    for scores, mask in zip(channel_scores, masks):
        histogram.add(scores, mask)
    return {
        "kept_channels_by_layer": {"size": size, "encoding": MASK_ENCODING, "layers": [mask_text(m) for m in masks]},
        "channel_score_histogram": histogram.record(),
        "group_scores_by_layer": [[float(f"{v:.6g}") for v in scores.float().tolist()] for scores in group_scores],
    }


MASK_ENCODING = "base64 of numpy.packbits (big-endian bit order), one bit a channel, 1 = kept"


def mask_text(mask: torch.Tensor) -> str:
    """Return a boolean mask as compact text (``MASK_ENCODING``).

    >>> mask_text(torch.tensor([True, False, True, True, False, False, False, False, True]))
    'sIA='
    """
    import base64

    import numpy as np

    return base64.b64encode(np.packbits(mask.cpu().numpy().astype(np.uint8)).tobytes()).decode("ascii")


def mask_from_text(text: str, size: int):
    """Return the boolean numpy mask of ``size`` bits that ``mask_text`` wrote.

    >>> mask_from_text("sIA=", 9).astype(int).tolist()
    [1, 0, 1, 1, 0, 0, 0, 0, 1]
    """
    import base64

    import numpy as np

    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8), count=size).astype(bool)


class ScoreHistogram:
    """A histogram of importance scores over fixed log10 bins, counted apart for what was kept and removed.

    Scores of every magnitude fit: the bins run from 1e-12 to 1e12 (``BINS`` a decade), anything
    outside counts in the first or last bin, and a score of zero in the first. The record keeps
    only the bins from the first to the last that hold a count (a few dozen numbers).
    """

    LOW, HIGH, BINS = -12.0, 12.0, 40

    def __init__(self):
        n = int((self.HIGH - self.LOW) * self.BINS)
        self.kept = torch.zeros(n, dtype=torch.long)
        self.removed = torch.zeros(n, dtype=torch.long)

    def add(self, scores: torch.Tensor, kept: torch.Tensor) -> None:
        """Count ``scores`` (any shape) into the bins, by the boolean ``kept`` of the same shape."""
        logs = torch.log10(scores.detach().float().flatten().cpu().clamp_min(10.0 ** self.LOW))
        index = ((logs - self.LOW) * self.BINS).floor().long().clamp(0, self.kept.numel() - 1)
        mask = kept.flatten().cpu()
        self.kept += torch.bincount(index[mask], minlength=self.kept.numel())
        self.removed += torch.bincount(index[~mask], minlength=self.kept.numel())

    def record(self) -> dict:
        """Return the bins that hold a count: ``log10_edges`` (one more than the counts), ``kept``, ``removed``."""
        used = torch.nonzero(self.kept + self.removed).flatten()
        if used.numel() == 0:
            return {"log10_edges": [], "kept": [], "removed": []}
        first, last = int(used[0]), int(used[-1]) + 1
        edges = [round(self.LOW + i / self.BINS, 4) for i in range(first, last + 1)]
        return {"log10_edges": edges, "kept": self.kept[first:last].tolist(), "removed": self.removed[first:last].tolist()}
