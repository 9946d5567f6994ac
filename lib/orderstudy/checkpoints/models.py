"""Loading, saving and weighing model checkpoints.

A model state on disk is a standard Hugging Face checkpoint directory: dense ones load with
``from_pretrained`` alone, and so do bitsandbytes- and GPTQ-quantized ones (their ``config.json``
carries a ``quantization_config``). Nothing here knows about orderings or caching.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from . import gptq

log = logging.getLogger(__name__)

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class ModelError(RuntimeError):
    """A model source or checkpoint that cannot be used, with what to do about it."""


def resolve_device(requested: str) -> str:
    """Return the torch device to use for ``requested`` (``cpu``, ``cuda`` or ``auto``)."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelError("device: 'cuda' was asked for, but torch sees no CUDA device here; set device: cpu or auto in the params file")
    return requested


def cpu_has_native_bf16() -> bool:
    """Return whether this CPU computes bf16 natively (AVX512-BF16 or AMX), from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(requested: str, device: str) -> str:
    """Return the dtype name to use for ``requested`` (``auto`` or a dtype name) on ``device``."""
    if requested != "auto":
        return requested
    if device == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if cpu_has_native_bf16() else "float32"


def dir_size_bytes(path: Path) -> int:
    """Return the bytes on disk of every file under ``path`` (the real checkpoint size)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def read_config(model_dir: Path) -> dict:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ModelError(f"{model_dir}: no config.json; this is not a Hugging Face checkpoint directory")
    return json.loads(path.read_text())


def check_checkpoint(model_dir: Path) -> None:
    """Raise ``ModelError`` unless ``model_dir`` holds a readable config and all its weight files."""
    model_dir = Path(model_dir)
    try:
        read_config(model_dir)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{model_dir / 'config.json'}: not valid JSON ({exc}); the checkpoint is corrupt") from None
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = set(json.loads(index.read_text())["weight_map"].values())
        missing = sorted(s for s in shards if not (model_dir / s).is_file())
        if missing:
            raise ModelError(f"{model_dir}: incomplete checkpoint, missing weight shard(s) {missing}")
    elif not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("*.bin")):
        raise ModelError(f"{model_dir}: no weight files (*.safetensors or *.bin); the checkpoint is incomplete")
    for f in model_dir.glob("*.safetensors"):
        expected = _safetensors_size(f)
        if expected != f.stat().st_size:
            raise ModelError(f"{f}: truncated safetensors file ({f.stat().st_size} bytes, its header says "
                             f"{expected}); the checkpoint is corrupt or incomplete")


def _safetensors_size(path: Path) -> int | None:
    """Return the file size a safetensors header implies (header + the end of the last tensor)."""
    with open(path, "rb") as fh:
        head = fh.read(8)  # a safetensors file starts with its header's length, then the header
        if len(head) < 8:
            return None
        header_len = int.from_bytes(head, "little")
        try:
            header = json.loads(fh.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
    return 8 + header_len + max(ends, default=0)


def quantization_config(model_dir: Path) -> dict | None:
    """Return the quantization config of a checkpoint (bitsandbytes' or GPTQ's), ``None`` for a dense one."""
    return read_config(model_dir).get("quantization_config")


def is_quantized(model_dir: Path) -> bool:
    return quantization_config(model_dir) is not None


def load_tokenizer(model_dir: Path, **kwargs):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, **kwargs)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(model_dir: Path, dtype: str = "bfloat16", device: str = "cpu"):
    """Return the model in ``model_dir`` in eval mode, quantized ones as they were saved.

    A 4-bit model is kept on bitsandbytes' reference CPU kernel (``numerics.pin_bnb_cpu_path``).
    """
    from transformers import AutoModelForCausalLM

    from .numerics import pin_bnb_cpu_path

    if gptq.is_gptq(quantization_config(model_dir)):
        gptq.prepare_library()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=DTYPES[dtype], device_map=device)
    model.eval()
    # One numerics for a 4-bit model on every CPU and every forward (numerics.py, issue 16).
    pin_bnb_cpu_path(model)
    return model


def load_dense(model_dir: Path, dtype: str = "bfloat16", device: str = "cpu"):
    """Return the model in ``model_dir`` with full-precision weights, dequantizing if needed.

    Pruning and merging need real weights: torch's utilities on packed 4-bit weights corrupt them
    without an error (``tests/ops/test_traps.py`` shows it).
    """
    model = load_model(model_dir, dtype, device)
    if getattr(model, "hf_quantizer", None) is not None:
        if gptq.is_gptq(quantization_config(model_dir)):
            model = gptq.dequantize(model, DTYPES[dtype])   # transformers has no dequantize for GPTQ
        else:
            model = model.dequantize()
        forget_quantization(model)
        # Parameters only: ``model.to`` casts the buffers too, and a loaded model keeps its rotary
        # frequencies in float32 (cast to bf16 they moved a pruned NF4 state's logits by up to 47,
        # measured on the demo; the same model saved and reloaded: identical to bitsandbytes').
        for param in model.parameters():
            if param.is_floating_point():
                param.data = param.data.to(DTYPES[dtype])
    return model


def forget_quantization(model) -> None:
    """Drop a model's quantization config so it saves (and reloads) as a dense checkpoint."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    model.hf_quantizer = None
    for flag in ("is_quantized", "is_loaded_in_4bit", "is_loaded_in_8bit"):
        if getattr(model, flag, False):
            setattr(model, flag, False)
    # transformers up to 5.20 (the vLLM extra's) remembers the quantizer's deserializer among the
    # weight conversions of from_pretrained and fails to save when it tries to reverse it; the
    # weights are dense now, so there is nothing of it left to reverse.
    conversions = getattr(model, "_weight_conversions", None)
    if conversions:
        model._weight_conversions = [c for c in conversions if _reversible(c)]


def _reversible(conversion) -> bool:
    try:
        conversion.reverse_transform()
    except NotImplementedError:
        return False
    return True


def save_model(model, tokenizer, out_dir: Path) -> Path:
    """Save ``model`` and ``tokenizer`` as a standard checkpoint (safetensors) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def count_parameters(model) -> int:
    """Return the number of logical parameters (a packed 4-bit weight counts its unpacked size)."""
    total = 0
    for p in model.parameters():
        state = getattr(p, "quant_state", None)
        total += int(torch.Size(state.shape).numel()) if state is not None else p.numel()
    return total


def gguf_to_checkpoint(gguf_path: Path, out_dir: Path, dtype: str = "bfloat16") -> Path:
    """Return ``out_dir`` holding the GGUF model dequantized into a safetensors checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..core import atomic

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise ModelError(f"{gguf_path}: GGUF file not found")
    kwargs = {"gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=DTYPES[dtype], **kwargs)
    forget_quantization(model)
    with atomic.directory(Path(out_dir)) as tmp:
        save_model(model, tokenizer, tmp)
    return Path(out_dir)


def materialize_source(source: str, gguf_file: str | None, revision: str | None, dtype: str, out_dir: Path) -> dict:
    """Save the base model named by a params file into ``out_dir``; return ``{"parameters", "hub_commit"}``.

    ``hub_commit`` is the commit transformers loaded for a hub id (None for local sources).

    ``source`` is a local checkpoint directory, a ``.gguf`` file (or a directory with
    ``gguf_file``), or a hub id (downloaded by transformers when the hub is reachable).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location, kwargs = locate_source(source, gguf_file, revision)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=DTYPES[dtype], **kwargs)
    except OSError as exc:
        raise ModelError(f"model.source: cannot load {source!r}: {exc}") from exc
    if "gguf_file" in kwargs:
        forget_quantization(model)
    save_model(model, tokenizer, out_dir)
    commit = getattr(model.config, "_commit_hash", None) if location == source else None
    return {"parameters": count_parameters(model), "hub_commit": commit}


def locate_source(source: str, gguf_file: str | None, revision: str | None) -> tuple[str | Path, dict]:
    """Return where transformers loads a params file's model source from, and the keyword arguments it needs."""
    from ..core import paths

    local = paths.resolve(source)
    kwargs: dict = {}
    if source.endswith(".gguf"):
        if not local.is_file():
            raise ModelError(f"model.source: GGUF file {local} does not exist")
        location, kwargs["gguf_file"] = local.parent, local.name
    elif gguf_file:
        location, kwargs["gguf_file"] = local, gguf_file
        if not (local / gguf_file).is_file():
            raise ModelError(f"model.gguf_file: {local / gguf_file} does not exist")
    elif local.exists():
        if not (local / "config.json").is_file():
            raise ModelError(f"model.source: {local} is not a checkpoint directory (no config.json); "
                             "for the default model run `make model`")
        location = local
    elif _looks_like_hub_id(source):
        location = source
        if revision:
            kwargs["revision"] = revision
    else:
        raise ModelError(f"model.source: {source!r} is neither an existing directory or .gguf file ({local}) "
                         "nor a hub id like 'Qwen/Qwen2.5-1.5B-Instruct'; for the default model run `make model`")
    return location, kwargs


def tokenizer_and_context(location: str | Path, **kwargs) -> tuple[object, int]:
    """Return the tokenizer of the model at ``location`` and its context length in tokens.

    The length is resolved as lm-eval's backends resolve it (the config's
    ``max_position_embeddings`` for the models here), so a prompt fitted to it is never cut again.
    """
    from transformers import AutoConfig

    try:
        tokenizer = load_tokenizer(location, **kwargs)
        config = AutoConfig.from_pretrained(location, **kwargs)
    except OSError as exc:
        raise ModelError(f"model.source: cannot load the tokenizer and config of {str(location)!r}, which the "
                         f"evaluation counts generation budgets and prompt lengths in: {exc}") from exc
    return tokenizer, context_tokens(config, tokenizer)


def load_config(source: str, gguf_file: str | None = None, revision: str | None = None):
    """Return the transformers config of ``model.source`` without loading weights; None for a hub id out of reach."""
    from transformers import AutoConfig

    location, kwargs = locate_source(source, gguf_file, revision)
    try:
        return AutoConfig.from_pretrained(location, **kwargs)
    except OSError:
        if isinstance(location, Path):
            raise
        return None


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/", "~"))


def context_tokens(config, tokenizer) -> int:
    """Return the model's context length in tokens, resolved as lm-eval's backends resolve it."""
    from lm_eval.models.utils import resolve_max_length

    return int(resolve_max_length(config, tokenizer))
