"""What every operation receives besides its own parameters, and helpers they share."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..checkpoints import models
from ..checkpoints.sparse_format import SPARSITY_CONFIG_KEY  # noqa: F401  (the operations import it from here)

@dataclass
class OperationContext:
    """The study-wide settings an operation runs under."""

    dtype: str = "bfloat16"
    device: str = "cpu"
    seed: int = 0
    # Where a fine-tune finds its training examples: a list of {"prompt", "answer", "id"} dicts.
    training_examples: list[dict] = field(default_factory=list)
    # Where pruning finds its calibration text (activation-aware scores, wanda, depth): the same
    # kind of {"prompt", "answer", "id"} dicts; by default the fine-tuning training examples,
    # never the evaluation sample.
    calibration_examples: list[dict] = field(default_factory=list)
    # What re-quantizing a calibrated (GPTQ) source needs, when pruning or a fine-tune with
    # merge: requantize quantizes it again: the study's quantize params (calibration sample size
    # and length) and the quantizer's calibration text, drawn as for Q itself.
    requantize_params: object | None = None
    requantize_examples: list[dict] = field(default_factory=list)
    # Whether training pairs and calibration text go through the chat template (the study's
    # top-level `chat_template`, which the evaluation reads too).
    chat_template: bool = True
    # Called with a message so notebooks can show progress.
    progress: Callable[[str], None] = print


def source_layout(model_dir: Path) -> str:
    """Return what an operation receives in ``model_dir``: one of ``core.operation.LAYOUTS``.

    ``standard`` (full-precision weights), ``sparse`` (values + bitmask), ``quantized``
    (bitsandbytes) or ``adapter`` (a LoRA adapter beside a quantized base).
    """
    from ..checkpoints import storage

    kind = storage.layout(model_dir)
    return "quantized" if kind == "standard" and models.is_quantized(model_dir) else kind


def load_tokenizer(model_dir: Path):
    """Return the tokenizer of ``model_dir``, loaded once per process for the same files.

    Every state of a study shares the base model's tokenizer, and loading SmolLM2's takes about a
    second (its 3.5 MB tokenizer.json is parsed twice); the cache key is the files' content.
    """
    digest = hashlib.sha256()
    for f in sorted(Path(model_dir).glob("*")):
        if f.is_file() and (f.name.startswith("tokenizer") or f.name.startswith("chat_template")
                            or f.name in ("special_tokens_map.json", "vocab.json", "merges.txt")):
            digest.update(f.name.encode())
            digest.update(f.read_bytes())
    key = digest.hexdigest()
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = models.load_tokenizer(model_dir)
    return _TOKENIZERS[key]


_TOKENIZERS: dict[str, object] = {}


def calibration_sample(examples: list[dict], samples: int, seed: int) -> list[dict]:
    """Return up to ``samples`` of ``examples``, a seeded draw: the calibration text an operation reads."""
    chosen = list(examples)
    random.Random(f"{seed}:calibration").shuffle(chosen)
    return chosen[:samples]


def calibration_sequences(tokenizer, examples: list[dict], seq_len: int, chat: bool = True) -> list[list[int]]:
    """Return each example's tokens, prompt then answer in the study's prompt format, cut to ``seq_len``.

    ``chat``: through the chat template, as the evaluation presents prompts (``prompts.prompt_ids``).
    """
    from ..core.prompts import prompt_ids

    return [(prompt_ids(tokenizer, ex["prompt"], chat)
             + tokenizer(ex["answer"], add_special_tokens=False)["input_ids"])[:seq_len] for ex in examples]


def bnb_config(quant: dict):
    """Return a ``BitsAndBytesConfig`` from a saved ``quantization_config`` dict."""
    from transformers import BitsAndBytesConfig

    cfg = {k: v for k, v in quant.items() if k not in ("quant_method", "_load_in_4bit", "_load_in_8bit")}
    return BitsAndBytesConfig(**cfg)


def quantization_name(quant: dict | None) -> str | None:
    """Return ``nf4``, ``fp4``, ``int8``, ``gptq`` or None (dense) for a saved ``quantization_config``.

    >>> quantization_name({"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}), quantization_name(None)
    ('nf4', None)
    >>> quantization_name({"quant_method": "gptq", "bits": 4})
    'gptq'
    """
    if quant is None:
        return None
    if quant.get("quant_method") == "gptq":
        return "gptq"
    if quant.get("load_in_8bit"):
        return "int8"
    return quant.get("bnb_4bit_quant_type", "4bit")
