"""The ways a model state lies on disk, and how an operation reads any of them.

A state's checkpoint is one of three layouts:

- ``standard``: a Hugging Face checkpoint, dense or bitsandbytes-quantized (its ``config.json``
  carries the ``quantization_config``); ``from_pretrained`` alone loads it.
- ``adapter``: a quantized base checkpoint with a PEFT LoRA adapter beside it
  (``adapter_config.json`` + ``adapter_model.safetensors`` in the same directory), written by a
  fine-tune with ``merge: adapter``. ``from_pretrained`` alone loads it too: transformers sees the
  adapter next to a complete model and loads the base from the directory, then the adapter on it.
- ``sparse``: values plus a bitmask (``sparse_format``), written by unstructured or 2:4 pruning
  with ``storage: sparse``; ``sparse_format.load_sparse`` loads it.

``load`` returns a model ready to run from any layout; ``load_dense`` returns full-precision weights
with any adapter merged in, which is what pruning, merging and quantizing need.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from . import models
from . import sparse_format

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

# The linear layers of a decoder layer, by the names Llama-style models give them.
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


def layout(model_dir: Path) -> str:
    """Return ``standard``, ``adapter`` or ``sparse`` for the checkpoint in ``model_dir``."""
    model_dir = Path(model_dir)
    if sparse_format.is_sparse_checkpoint(model_dir):
        return "sparse"
    if (model_dir / ADAPTER_CONFIG).is_file():
        return "adapter"
    models.read_config(model_dir)  # raises, naming the directory, when it is no checkpoint at all
    return "standard"


def load(model_dir: Path, dtype: str, device: str):
    """Return the model in ``model_dir`` (any layout) ready to run, in eval mode.

    Quantized models stay quantized; an adapter is loaded on its base (by ``from_pretrained``).
    """
    if layout(model_dir) == "sparse":
        return sparse_format.load_sparse(model_dir, dtype, device)
    return models.load_model(model_dir, dtype, device)


def load_dense(model_dir: Path, dtype: str, device: str) -> tuple[object, dict]:
    """Return ``(model, facts)``: full-precision weights of ``model_dir`` in any layout.

    A quantized model is dequantized (pruning packed 4-bit weights corrupts them silently:
    ``tests/ops/test_traps.py`` shows it); an adapter is merged into its dequantized base. ``facts`` says what was
    done: the source's ``layout``, its ``quantization`` config (or None) and ``adapter_merged``.
    """
    kind = layout(model_dir)
    quant = models.quantization_config(model_dir)
    if kind == "sparse":
        model = sparse_format.load_sparse(model_dir, dtype, device)
    elif kind == "adapter":
        model = _merged_adapter(model_dir, dtype, device)
    else:
        model = models.load_dense(model_dir, dtype, device)
    return model, {"layout": kind, "quantization": quant, "adapter_merged": kind == "adapter"}


@contextmanager
def base_view(model_dir: Path) -> Iterator[Path]:
    """Yield a temporary directory of links to every file of an adapter-layout directory but the adapter's.

    ``from_pretrained`` on the directory itself would load the adapter too.
    """
    with tempfile.TemporaryDirectory(prefix="orderstudy-base-") as tmp:
        for f in Path(model_dir).iterdir():
            if f.is_file() and f.name not in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
                os.symlink(f.resolve(), Path(tmp) / f.name)
        yield Path(tmp)


def _merged_adapter(model_dir: Path, dtype: str, device: str):
    from peft import PeftModel

    with base_view(model_dir) as base_dir:
        base = models.load_dense(base_dir, dtype, device)
    merged = PeftModel.from_pretrained(base, str(model_dir)).merge_and_unload()
    merged.to(models.DTYPES[dtype])
    return merged


def decoder_linears(model) -> dict[str, torch.nn.Module]:
    """Return ``{name: module}`` for every linear projection inside the decoder layers."""
    wanted = ATTENTION_PROJECTIONS + MLP_PROJECTIONS
    return {name: module for name, module in model.named_modules()
            if ".layers." in name and name.rsplit(".", 1)[-1] in wanted and hasattr(module, "weight")}


def zero_fraction(model) -> float:
    """Return the fraction of exactly-zero weights over the decoder's linear layers."""
    zeros = total = 0
    for module in decoder_linears(model).values():
        zeros += int((module.weight == 0).sum())
        total += module.weight.numel()
    return zeros / max(total, 1)


def save(model, dst: Path, tokenizer_from: Path, sparse: bool = False) -> None:
    """Save ``model`` to ``dst`` (standard, or the sparse format if ``sparse``) with the tokenizer of ``tokenizer_from``."""
    if sparse:
        sparse_format.save_sparse(model, dst)
    else:
        Path(dst).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(dst, safe_serialization=True)
    copy_tokenizer(tokenizer_from, dst)


# Files of a checkpoint directory that are not its tokenizer.
MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors.index.json", ADAPTER_CONFIG,
               sparse_format.MARKER, "README.md", "quantize_config.json", "quant_log.csv"}  # the last two: GPTQModel's


def copy_tokenizer(src: Path, dst: Path) -> None:
    """Copy the tokenizer files of checkpoint ``src`` into ``dst`` byte for byte.

    Cheaper than loading and saving the tokenizer, and exactly the same tokenizer afterwards.
    """
    Path(dst).mkdir(parents=True, exist_ok=True)
    for f in Path(src).iterdir():
        if f.is_file() and f.name not in MODEL_FILES and f.suffix not in (".safetensors", ".bin", ".pt"):
            shutil.copy2(f, Path(dst) / f.name)
