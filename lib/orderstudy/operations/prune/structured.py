"""Structured pruning: width (MLP channels and whole key/value groups of heads), MLP channels only, depth.

Every layer keeps the same numbers, so the result is a standard checkpoint of the same
architecture with a smaller config, really smaller on disk.
"""

from __future__ import annotations

import copy
import math
from decimal import Decimal

import torch

from . import calibration
from .params import PruneParams
from .records import width_record


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
