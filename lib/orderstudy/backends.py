"""How a model state is run for evaluation: which backend, which batch size, which KV cache.

Two backends, both lm-eval's own model types:

- ``hf``: lm-eval's ``HFLM`` around a transformers model. It already sorts a task's requests by
  length (longest first, so an out-of-memory shows at once), pads on the left for decoder-only
  models, stops each batch when every sequence has hit EOS or a stop sequence, and drops finished
  sequences' tokens. What it leaves to the caller is the batch size and the KV-cache
  implementation; ``choose_batch_size`` picks the first from the device's free memory and the
  workload's longest prompt.
- ``vllm``: lm-eval's ``vllm`` model type (``pip install -r requirements-vllm.txt``; CUDA only).
  It loads the checkpoint directory itself, so the transformers model is never loaded. vLLM
  loads standard checkpoints, dense (pruned ones included: their config says their new shapes)
  or bitsandbytes 4-bit; ``choose_backend`` falls back to ``hf``, with the reason recorded, for
  the layouts it cannot load (a LoRA adapter beside a quantized base, the sparse bitmask format,
  8-bit bitsandbytes).

Nothing here changes what is computed: greedy decoding, the same prompts, the same scorers.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from .params import EvaluationParams

# Batches larger than this stop paying on a GPU for models of this size (the decode step is
# already memory-bound); on a CPU the matmuls are compute-bound from small batches on, and larger
# batches only add padding.
MAX_BATCH_CUDA = 256
MAX_BATCH_CPU = 8
# Part of the free memory left to the batch: the rest is headroom for the allocator's
# fragmentation and the kernels' workspaces.
MEMORY_FRACTION = 0.8
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


class BackendError(RuntimeError):
    """A backend that was asked for and cannot run here, with what to do about it."""


@dataclass(frozen=True)
class Backend:
    """The backend chosen for one model state, and why."""

    name: str          # "hf" or "vllm"
    reason: str


def vllm_available() -> bool:
    """Return whether the vllm package is importable (it is an extra: requirements-vllm.txt)."""
    return importlib.util.find_spec("vllm") is not None


def vllm_loadable(model_dir: Path) -> tuple[bool, str]:
    """Return whether vLLM can load the checkpoint in ``model_dir``, and why not when it cannot."""
    from .ops import storage

    layout = storage.layout(model_dir)
    if layout != "standard":
        return False, f"vLLM cannot load the {layout!r} layout (a LoRA adapter beside a quantized base, or the sparse bitmask format)"
    config = json.loads((Path(model_dir) / "config.json").read_text())
    quant = config.get("quantization_config")
    if quant:
        if quant.get("quant_method") != "bitsandbytes" or not quant.get("load_in_4bit"):
            return False, "vLLM loads bitsandbytes 4-bit checkpoints, not this quantization (8-bit or another method)"
    return True, "standard checkpoint"


def choose_backend(requested: str, device: str, model_dir: Path) -> Backend:
    """Return the backend to evaluate the state in ``model_dir`` with.

    ``auto`` takes vLLM when it is installed, the device is CUDA and vLLM loads the state, and
    transformers otherwise; ``vllm`` insists on vLLM being usable here (else ``BackendError``) but
    still falls back, saying why, for a state vLLM cannot load; ``hf`` is always transformers.
    """
    if requested == "hf":
        return Backend("hf", "evaluation.backend: hf")
    if device != "cuda":
        if requested == "vllm":
            raise BackendError("evaluation.backend: 'vllm' runs on CUDA only; this study's device is "
                               f"{device!r}. Use backend: auto or hf")
        return Backend("hf", f"vLLM runs on CUDA only (device {device})")
    if not vllm_available():
        if requested == "vllm":
            raise BackendError("evaluation.backend: 'vllm' needs the vllm package: run `make env-vllm` "
                               "(requirements-vllm.txt), or use backend: auto or hf")
        return Backend("hf", "vllm is not installed (make env-vllm installs it)")
    ok, why = vllm_loadable(model_dir)
    if not ok:
        return Backend("hf", why)
    return Backend("vllm", "vLLM installed, CUDA, and a checkpoint it loads")


def free_memory_bytes(device: str) -> int:
    """Return the memory free for activations and KV cache on ``device`` now."""
    if device == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def bytes_per_sequence(config: dict, dtype: str, prompt_tokens: int, new_tokens: int, loglikelihood: bool) -> int:
    """Return the peak memory one sequence of a batch needs during evaluation.

    Its KV cache over prompt and answer, the prefill's widest activations (the MLP's gate, up and
    activation for every prompt token of one layer, plus a few hidden-size buffers), and the
    logits: the last position's only for generation, every position's for log-likelihood
    scoring (lm-eval takes a float32 log-softmax over them, beside the model's own logits).
    """
    text = config.get("text_config", config)
    hidden = text["hidden_size"]
    layers = text["num_hidden_layers"]
    heads = text["num_attention_heads"]
    kv_heads = text.get("num_key_value_heads") or heads
    head_dim = text.get("head_dim") or hidden // heads
    intermediate = text.get("intermediate_size") or 4 * hidden
    vocab = text["vocab_size"]
    width = DTYPE_BYTES[dtype]
    positions = prompt_tokens + (0 if loglikelihood else new_tokens)
    kv = 2 * layers * kv_heads * head_dim * width * positions
    activations = prompt_tokens * (3 * intermediate + 4 * hidden) * width
    logits = prompt_tokens * vocab * (width + 4 + 4) if loglikelihood else vocab * (width + 4)
    return kv + activations + logits


def choose_batch_size(config: dict, dtype: str, device: str, free_bytes: int, prompt_tokens: int,
                      new_tokens: int, loglikelihood: bool) -> int:
    """Return the batch size for a workload whose longest prompt has ``prompt_tokens`` tokens.

    As many sequences as fit in ``MEMORY_FRACTION`` of the free memory, between 1 and the
    device's cap (``MAX_BATCH_CUDA`` or ``MAX_BATCH_CPU``).

    >>> cfg = {"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
    ...        "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 1000}
    >>> choose_batch_size(cfg, "float32", "cpu", 2**30, 500, 96, loglikelihood=False)
    8

    Scoring 500-token prompts by log-likelihood: KV 2*4*2*16*4 B * 500 = 512,000 B, activations
    500 * (3*128 + 4*64) * 4 B = 1,280,000 B, logits 500 * 1000 * (4+4+4) B = 6,000,000 B:

    >>> bytes_per_sequence(cfg, "float32", 500, 96, loglikelihood=True)
    7792000
    >>> choose_batch_size(cfg, "float32", "cuda", 2**30, 500, 96, loglikelihood=True)  # 0.8 GiB // 7,792,000 B
    110
    """
    per_sequence = bytes_per_sequence(config, dtype, prompt_tokens, new_tokens, loglikelihood)
    fits = int(free_bytes * MEMORY_FRACTION) // per_sequence
    cap = MAX_BATCH_CUDA if device == "cuda" else MAX_BATCH_CPU
    return max(1, min(cap, fits))


def cache_implementation(params: EvaluationParams, device: str) -> str:
    """Return the KV-cache implementation generation uses (transformers' ``cache_implementation``).

    ``auto`` is transformers' dynamic cache on every device: lm-eval's batches change length
    from one batch to the next, and a static cache (made for ``torch.compile``) is rebuilt, and
    its compiled graphs recompiled, for every new length. ``static`` can be asked for and is
    measured by ``benchmarks/bench_generation.py --cache static``.
    """
    return "dynamic" if params.cache_implementation == "auto" else params.cache_implementation


def make_lm(backend: Backend, *, model_dir: Path, model=None, tokenizer=None, device: str, dtype: str,
            batch_size: int, seed: int, params: EvaluationParams):
    """Return an lm-eval model object for ``backend`` (``HFLM`` on a loaded model, or ``VLLM``)."""
    if backend.name == "vllm":
        from lm_eval.models.vllm_causallms import VLLM

        return VLLM(**vllm_arguments(model_dir, dtype, seed, params))
    from lm_eval.models.huggingface import HFLM

    # HFLM's maximum length stays the model's own (its config), as with vLLM: a prompt is never
    # cut differently by one backend than by the other.
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
    cache = cache_implementation(params, device)
    if cache != "dynamic":
        model.generation_config.cache_implementation = cache
    return lm


def vllm_arguments(model_dir: Path, dtype: str, seed: int, params: EvaluationParams) -> dict:
    """Return the arguments for lm-eval's ``VLLM`` on the checkpoint in ``model_dir``.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "config.json").write_text('{"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": true}}')
    >>> args = vllm_arguments(d, "bfloat16", 0, EvaluationParams())
    >>> args["quantization"], args["dtype"], args["batch_size"], args["gpu_memory_utilization"]
    ('bitsandbytes', 'bfloat16', 'auto', 0.85)
    """
    config = json.loads((Path(model_dir) / "config.json").read_text())
    quantized = bool(config.get("quantization_config"))
    return {
        "pretrained": str(model_dir),
        "tokenizer": str(model_dir),
        "dtype": dtype,
        "quantization": "bitsandbytes" if quantized else None,
        "batch_size": "auto",       # vLLM schedules its own batches from its KV-cache blocks
        "gpu_memory_utilization": params.vllm_gpu_memory_utilization,
        "seed": seed,
    }


def release(lm) -> None:
    """Free what an lm-eval model object holds on the GPU (vLLM keeps its memory until told)."""
    import gc

    engine = getattr(lm, "model", None)
    if engine is not None and type(engine).__module__.startswith("vllm"):
        try:
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception:  # older or newer vLLM: the process exit frees it anyway
            pass
    del engine
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass
