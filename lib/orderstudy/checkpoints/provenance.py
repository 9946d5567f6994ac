"""Where the base model comes from, and whether its weights are already on a 4-bit grid.

Every result and the base state's record say what the base model was made from: a GGUF file (its
name, sha256 and GGUF file type), a checkpoint directory (the sha256 of its weight files, and what
``prepare`` made it from when it made it), or a hub id (the revision asked for and the commit
loaded). ``weight_grid`` measures, on the saved base, how many distinct values each block of 32
consecutive weights of the decoder's linear layers takes.

The default model, SmolLM2-135M-Instruct, ships offline only as a Q4_1 GGUF file: dequantized, its
linear weights sit on Q4_1's grid (``scale x q + minimum`` with q in 0..15), at most 16 distinct
values in every block of 32 (measured on all 3,317,760 blocks: tests/test_provenance.py). Q (NF4)
then re-quantizes weights that are already 4-bit, so Q's effect in the demo is smaller than on a
model trained and shipped in 16-bit: the report's header says so (``describe``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..core import paths
from ..core.results import describe_provenance as describe  # noqa: F401  (the report reads it from core)

# Written by ``prepare`` beside a checkpoint it made from another format (the default model).
PROVENANCE_FILE = "orderstudy_provenance.json"
GRID_BLOCK = 32                  # GGUF's block of weights sharing one scale (Q4_0, Q4_1, Q8_0, ...)
GRID_LEVELS = 16                 # a 4-bit grid has 16 levels
GRID_MAX_WEIGHTS = 200_000_000   # enough evidence; a 70B model is not read whole for it
MUTED_Q_NOTE = ("the base's linear weights are already on a 4-bit grid (at most 16 distinct values per block of 32): "
                "Q (NF4) re-quantizes 4-bit weights, so Q's effect here is smaller than on a 16-bit model")


def sha256_file(path: Path) -> str:
    """Return the sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def gguf_file_type(path: Path) -> str | None:
    """Return a GGUF file's ``general.file_type`` by name (``MOSTLY_Q4_1``), None if it has none."""
    import gguf

    field = gguf.GGUFReader(str(path)).fields.get("general.file_type")
    if field is None:
        return None
    value = int(field.parts[field.data[0]][0])
    try:
        return gguf.LlamaFileType(value).name
    except ValueError:
        return str(value)


def gguf_provenance(path: Path) -> dict:
    """Return the provenance of a GGUF file: name, bytes, sha256 and file type."""
    path = Path(path)
    return {"format": "gguf", "file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path),
            "gguf_file_type": gguf_file_type(path)}


def source_provenance(source: str, gguf_file: str | None, revision: str | None, hub_commit: str | None = None) -> dict:
    """Return where ``model.source`` comes from, before any conversion (see the module's docstring)."""
    local = paths.resolve(source)
    if source.endswith(".gguf") or gguf_file:
        return {"source": source, **gguf_provenance(local if source.endswith(".gguf") else local / gguf_file)}
    if local.exists():
        weights = sorted(f for f in local.iterdir() if f.suffix in (".safetensors", ".bin"))
        out = {"source": source, "format": "safetensors" if any(f.suffix == ".safetensors" for f in weights) else "pytorch",
               "weights_sha256": {f.name: sha256_file(f) for f in weights}}
        made = local / PROVENANCE_FILE
        if made.is_file():
            out["made_from"] = json.loads(made.read_text(encoding="utf-8"))
        return out
    return {"source": source, "format": "hub", "revision": revision, "commit": hub_commit}


def weight_grid(model_dir: Path) -> dict:
    """Return the most distinct values any block of 32 consecutive weights takes in the decoder's
    linear layers of the checkpoint in ``model_dir`` (up to ``GRID_MAX_WEIGHTS`` weights, in layer order).

    ``on_4bit_grid`` is true when no block has more than 16: the weights were quantized to 4 bits
    before (a 16-bit model's blocks take 32 distinct values almost always).
    """
    import numpy as np
    import torch
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    names = []
    for f in files:
        with safe_open(f, "pt") as st:
            names += [(f, k) for k in st.keys() if ".layers." in k and k.endswith("_proj.weight")]
    names.sort(key=lambda fk: (int(fk[1].split(".layers.")[1].split(".")[0]), fk[1]))
    worst, blocks, weights = 0, 0, 0
    for f, key in names:
        if weights >= GRID_MAX_WEIGHTS:
            break
        with safe_open(f, "pt") as st:
            tensor = st.get_tensor(key)
        if tensor.dim() != 2 or tensor.shape[1] % GRID_BLOCK or not tensor.is_floating_point():
            continue
        bits = {1: "int8", 2: "int16", 4: "int32", 8: "int64"}[tensor.element_size()]
        # Compare bit patterns: a sort of small integers in numpy (torch sorts 32-wide rows ~50x slower here).
        values = tensor.contiguous().view(getattr(torch, bits)).reshape(-1, GRID_BLOCK).numpy()
        ordered = np.sort(values, axis=1)
        distinct = (ordered[:, 1:] != ordered[:, :-1]).sum(axis=1) + 1
        worst = max(worst, int(distinct.max()))
        blocks += len(distinct)
        weights += tensor.numel()
    return {"block": GRID_BLOCK, "blocks_checked": blocks, "weights_checked": weights,
            "max_distinct_values": worst or None, "on_4bit_grid": bool(blocks) and worst <= GRID_LEVELS}


def base_provenance(source: str, gguf_file: str | None, revision: str | None, saved_dir: Path,
                    hub_commit: str | None = None) -> dict:
    """Return the base state's provenance: where it comes from and what its saved weights look like."""
    out = source_provenance(source, gguf_file, revision, hub_commit)
    out["weight_grid"] = weight_grid(saved_dir)
    if out["weight_grid"]["on_4bit_grid"]:
        out["note"] = MUTED_Q_NOTE
    return out
