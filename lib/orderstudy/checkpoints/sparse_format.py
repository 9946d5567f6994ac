"""A checkpoint whose size on disk reflects its zeros: nonzero values plus a packed bitmask.

Unstructured and 2:4 pruning leave a dense checkpoint exactly as large as before: a zero takes as
many bytes as any other weight. With ``prune.storage: sparse`` a pruned model is saved instead as

    config.json, generation_config.json, tokenizer files   as in any checkpoint
    sparse_model.safetensors   for each sparse weight ``W``: ``W.sparse_values`` (the nonzero
                               entries in row-major order, in the model's dtype) and
                               ``W.sparse_mask`` (one bit per entry, packed 8 to a byte);
                               every other tensor as it is
    sparse_format.json         the marker: format name and version

A weight is stored sparse only where that is smaller (at a 50% sparsity in float32, 2.1 bytes a
weight instead of 4). The shapes of the sparse weights are in the safetensors header's metadata,
so the sizes can be read without loading anything. ``from_pretrained`` cannot read this directory
(there is no ``model.safetensors``: it fails loudly rather than loading something else);
``load_sparse`` restores the model exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

# A config.json attribute written by unstructured and 2:4 pruning and carried by every later
# checkpoint (quantizing and fine-tuning keep the config): which weights were made zero and how.
# A fine-tune reads it to know that merging its adapter must not undo the zeros.
SPARSITY_CONFIG_KEY = "orderstudy_sparsity"

MARKER = "sparse_format.json"
WEIGHTS_FILE = "sparse_model.safetensors"
FORMAT_NAME = "orderstudy-sparse-bitmask"
FORMAT_VERSION = 1
VALUES_SUFFIX = ".sparse_values"
MASK_SUFFIX = ".sparse_mask"
SHAPES_METADATA_KEY = "sparse_shapes"


def is_sparse_checkpoint(model_dir: Path) -> bool:
    """Return whether ``model_dir`` holds a checkpoint in this sparse format."""
    return (Path(model_dir) / MARKER).is_file()


def pack(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(values, packed_mask)`` for a weight: its nonzero entries and a bitmask of them.

    >>> values, mask = pack(torch.tensor([[0.0, 2.0, 0.0, 3.0]]))
    >>> values.tolist(), mask.tolist()
    ([2.0, 3.0], [80])
    """
    flat = weight.detach().reshape(-1)
    nonzero = flat != 0
    packed = np.packbits(nonzero.cpu().numpy())
    return flat[nonzero].contiguous(), torch.from_numpy(packed)


def unpack(values: torch.Tensor, packed_mask: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """Return the dense weight of ``shape`` that ``pack`` stored as ``values`` and a bitmask.

    >>> unpack(torch.tensor([2.0, 3.0]), torch.tensor([80], dtype=torch.uint8), [1, 4]).tolist()
    [[0.0, 2.0, 0.0, 3.0]]
    """
    numel = int(np.prod(shape))
    nonzero = torch.from_numpy(np.unpackbits(packed_mask.numpy(), count=numel).astype(bool))
    if int(nonzero.sum()) != values.numel():
        raise ValueError(f"sparse weight of shape {shape}: the mask marks {int(nonzero.sum())} nonzero entries "
                         f"but {values.numel()} values are stored; the file is damaged")
    dense = torch.zeros(numel, dtype=values.dtype)
    dense[nonzero] = values
    return dense.reshape(shape)


def sparse_bytes(numel: int, nonzero: int, element_bytes: int) -> int:
    """Return the bytes a weight takes stored as values plus bitmask.

    >>> sparse_bytes(1024, 512, 4), 1024 * 4
    (2176, 4096)
    """
    return nonzero * element_bytes + (numel + 7) // 8


def save_sparse(model, out_dir: Path, tokenizer=None) -> dict:
    """Save ``model`` (and ``tokenizer``, if given) in the sparse format in ``out_dir``; return what was stored.

    Every 2-D weight of a decoder layer is stored sparse when that is smaller than dense. Tied
    weights are stored once (the output head tied to the embedding is restored by ``load_sparse``).
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:
            continue  # a tied weight: stored under its first name only
        seen.add(tensor.data_ptr())
        tensor = tensor.detach().cpu().contiguous()
        if tensor.dim() == 2 and ".layers." in name:
            nonzero = int((tensor != 0).sum())
            if sparse_bytes(tensor.numel(), nonzero, tensor.element_size()) < tensor.numel() * tensor.element_size():
                tensors[name + VALUES_SUFFIX], tensors[name + MASK_SUFFIX] = pack(tensor)
                shapes[name] = list(tensor.shape)
                continue
        tensors[name] = tensor
    save_file(tensors, out_dir / WEIGHTS_FILE, metadata={"format": "pt", SHAPES_METADATA_KEY: json.dumps(shapes)})
    model.config.save_pretrained(out_dir)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out_dir)
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    (out_dir / MARKER).write_text(json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION,
                                              "weights": WEIGHTS_FILE, "sparse_tensors": len(shapes)}, indent=1))
    return {"sparse_tensors": len(shapes), "dense_tensors": len(tensors) - 2 * len(shapes)}


def load_state_dict(model_dir: Path) -> dict[str, torch.Tensor]:
    """Return the dense state dict stored in a sparse-format directory."""
    from safetensors import safe_open

    model_dir = Path(model_dir)
    marker = json.loads((model_dir / MARKER).read_text())
    if marker.get("format") != FORMAT_NAME or marker.get("version") != FORMAT_VERSION:
        raise ValueError(f"{model_dir / MARKER}: format {marker.get('format')!r} version {marker.get('version')!r}; "
                         f"this code reads {FORMAT_NAME!r} version {FORMAT_VERSION}")
    path = model_dir / marker["weights"]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the weights named by {MARKER} are missing")
    with safe_open(path, framework="pt") as f:
        shapes = json.loads((f.metadata() or {}).get(SHAPES_METADATA_KEY, "{}"))
        state = {}
        for key in f.keys():
            if key.endswith(VALUES_SUFFIX) or key.endswith(MASK_SUFFIX):
                continue
            state[key] = f.get_tensor(key)
        for name, shape in shapes.items():
            state[name] = unpack(f.get_tensor(name + VALUES_SUFFIX), f.get_tensor(name + MASK_SUFFIX), shape)
    return state


def load_sparse(model_dir: Path, dtype: str = "bfloat16", device: str = "cpu"):
    """Return the model stored in the sparse-format ``model_dir``, dense in memory, in eval mode."""
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig
    from transformers.initialization import no_init_weights

    from .models import DTYPES

    model_dir = Path(model_dir)
    if not is_sparse_checkpoint(model_dir):
        raise FileNotFoundError(f"{model_dir}: no {MARKER}; not a sparse-format checkpoint")
    config = AutoConfig.from_pretrained(model_dir)
    with no_init_weights():  # every weight is overwritten just below
        model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[dtype])
    model.tie_weights()
    state = {k: v.to(DTYPES[dtype]) if v.is_floating_point() else v for k, v in load_state_dict(model_dir).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(_tied_names(model))
    really_missing = [k for k in missing if k not in tied]
    if really_missing or unexpected:
        raise ValueError(f"{model_dir / WEIGHTS_FILE}: does not match config.json "
                         f"(missing {really_missing[:3]}, unexpected {unexpected[:3]})")
    model.tie_weights()
    if (model_dir / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(model_dir)
    model.to(device)
    model.eval()
    return model


def _tied_names(model) -> list[str]:
    """Return the state-dict names of weights that share storage with an earlier one."""
    seen: set[int] = set()
    tied = []
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:
            tied.append(name)
        seen.add(tensor.data_ptr())
    return tied
