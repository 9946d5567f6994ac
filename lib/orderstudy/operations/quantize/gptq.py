"""Quantize (Q) with GPTQ: each linear layer's rounding fitted to its inputs on calibration text.

GPTQModel runs GPTQ layer by layer on the model it is given, on the calibration sequences (the
study's calibration text: the fine-tuning pairs by default, never an evaluated item, drawn by
seed as pruning's are), and saves a standard GPTQ checkpoint: ``config.json`` carries the
``quantization_config`` and ``from_pretrained`` alone reloads it (through optimum and GPTQModel,
whose kernel for the device computes). The output head and the embedding stay in full precision.

Re-quantizing (pruning after Q, a fine-tune after Q with ``merge: requantize``) runs GPTQ again with
the source's saved settings, calibrated on the model it now quantizes (``requantize``).

The record names the library and its version, the settings, the calibration items (ids, tokens)
and each layer's relative weight error ``||W - deq(Q(W))||_F / ||W||_F``, read from the saved
checkpoint before it ever runs (a CPU forward repacks its codes: ``checkpoints/gptq.py``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from pathlib import Path

import torch

from ...checkpoints import gptq as gptq_format
from ...checkpoints import models, storage
from ..common import OperationContext, calibration_sample, calibration_sequences, load_tokenizer
from .params import QuantizeParams, group_size_problem


def check_groups(config, group_size: int, what: str) -> None:
    """Raise ``ValueError`` when groups of ``group_size`` do not fit the layers of ``what`` (a model config)."""
    problem = group_size_problem(config, group_size)
    if problem:
        raise ValueError(f"{what}: {problem}")


def check(params: QuantizeParams) -> None:
    """Raise ``ValueError`` naming the key when GPTQ cannot run with ``params``."""
    if tuple(params.skip_modules) != ("lm_head",):
        raise ValueError(f"quantize.skip_modules {list(params.skip_modules)}: GPTQ keeps the output head (and the "
                         "embedding) in full precision and quantizes every decoder linear layer; skip_modules "
                         "applies to bitsandbytes; leave it out")


def settings(bits: int, group_size: int, desc_act: bool, damp_percent: float, sym: bool = True):
    """Return GPTQModel's ``QuantizeConfig`` for these GPTQ settings."""
    from gptqmodel import QuantizeConfig

    return QuantizeConfig(bits=bits, group_size=group_size, desc_act=desc_act, sym=sym, damp_percent=damp_percent,
                          offload_to_disk=False)


def calibration(examples: list[dict], samples: int, seq_len: int, tokenizer, ctx: OperationContext) -> tuple[list, dict]:
    """Return GPTQModel's calibration batches and their record (item ids, tokens)."""
    if not examples:
        raise ValueError("quantize: method 'gptq' needs calibration text and none was given; check "
                         "quantize.calibration_data ('finetune': the fine-tuning pairs, or a JSONL file)")
    chosen = calibration_sample(examples, samples, ctx.seed)
    sequences = calibration_sequences(tokenizer, chosen, seq_len, ctx.chat_template)
    batches = [{"input_ids": ids, "attention_mask": [1] * len(ids)} for ids in sequences]
    record = {"examples": len(sequences), "tokens": sum(len(s) for s in sequences), "seq_len": seq_len,
              "chat_template": ctx.chat_template, "seed": ctx.seed, "item_ids": [str(ex.get("id")) for ex in chosen]}
    return batches, record


def run_gptq(dense_dir: Path, dst: Path, config, batches: list, ctx: OperationContext, tokenizer_from: Path) -> float:
    """Quantize the dense checkpoint in ``dense_dir`` with GPTQModel into ``dst``; return the seconds it took."""
    gptq_format.prepare_library()
    from gptqmodel import GPTQModel

    started = time.perf_counter()
    # GPTQModel prints banners, progress bars and tables: kept out of the study's output (its own log still warns).
    with contextlib.redirect_stdout(io.StringIO()), _quiet_library(), _layer_logs_elsewhere():
        model = GPTQModel.load(str(dense_dir), config, device=ctx.device, dtype=models.DTYPES[ctx.dtype])
        model.quantize(batches, batch_size=1, calibration_data_min_length=1)
        model.save(str(dst))
    del model
    storage.copy_tokenizer(tokenizer_from, dst)
    for stray in ("quant_log.csv",):   # GPTQModel's per-layer log: its numbers are in the record
        (Path(dst) / stray).unlink(missing_ok=True)
    return time.perf_counter() - started


@contextlib.contextmanager
def _layer_logs_elsewhere():
    """Send GPTQModel's per-layer JSON logs to a temporary directory (it writes them to ./logs by default)."""
    from gptqmodel.looper import loop_processor

    before = getattr(loop_processor, "_PROJECT_LOG_DIR", None)
    with tempfile.TemporaryDirectory(prefix="orderstudy-gptq-logs-") as tmp:
        loop_processor._PROJECT_LOG_DIR = Path(tmp)
        try:
            yield
        finally:
            if before is not None:
                loop_processor._PROJECT_LOG_DIR = before


@contextlib.contextmanager
def _quiet_library():
    logger = logging.getLogger("gptqmodel")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def apply(src: Path, dst: Path, params: QuantizeParams, ctx: OperationContext) -> dict:
    """Quantize the checkpoint in ``src`` into ``dst`` with GPTQ and return what happened, for the record."""
    check(params)
    if models.is_quantized(src):
        raise ValueError(f"{src}: the model is already quantized; an ordering applies Q once")
    check_groups(models.read_config(src), params.group_size, f"quantize {src}")
    tokenizer = load_tokenizer(src)
    batches, calibrated = calibration(ctx.calibration_examples, params.calibration_samples,
                                      params.calibration_seq_len, tokenizer, ctx)
    config = settings(params.bits, params.group_size, params.desc_act, params.damp_percent)
    kind = storage.layout(src)
    with _dense_source(src, kind, ctx) as dense_dir:
        seconds = run_gptq(dense_dir, dst, config, batches, ctx, tokenizer_from=src)
    return {
        **record(src, dst, ctx),
        "calibration": calibrated,
        "source_layout": kind,
        "seconds": round(seconds, 2),
    }


def requantize(model, quant: dict, dst: Path, ctx: OperationContext, tokenizer_from: Path) -> dict:
    """Run GPTQ again on the dense in-memory ``model`` with the saved settings ``quant``, calibrated on it; save to ``dst``.

    The calibration text and sample size are the study's quantize section's (``ctx.requantize_examples``,
    ``ctx.requantize_params``): the same draw as Q's own, now through the model being quantized.
    """
    qparams = ctx.requantize_params
    if qparams is None or not ctx.requantize_examples:
        raise ValueError("re-quantizing a GPTQ model runs GPTQ again and needs its calibration text: "
                         "OperationContext.requantize_params and requantize_examples are empty (the study fills "
                         "them from its quantize section)")
    meta = quant.get("meta") or {}
    check_groups(model.config, int(quant["group_size"]), "re-quantizing with GPTQ after this step")
    config = settings(int(quant["bits"]), int(quant["group_size"]), bool(quant.get("desc_act", False)),
                      float(meta.get("damp_percent", qparams.damp_percent)), bool(quant.get("sym", True)))
    tokenizer = load_tokenizer(tokenizer_from)
    batches, calibrated = calibration(ctx.requantize_examples, qparams.calibration_samples,
                                      qparams.calibration_seq_len, tokenizer, ctx)
    with tempfile.TemporaryDirectory(dir=Path(dst).parent, prefix=".dense-") as tmp:
        storage.save(model, Path(tmp), tokenizer_from=tokenizer_from)
        seconds = run_gptq(Path(tmp), dst, config, batches, ctx, tokenizer_from=tokenizer_from)
        out = record(Path(tmp), dst, ctx)
    return {**out, "calibrated": True, "calibrated_on": "the model being re-quantized (GPTQ run again)",
            "calibration": calibrated, "seconds": round(seconds, 2)}


@contextlib.contextmanager
def _dense_source(src: Path, kind: str, ctx: OperationContext):
    """Yield a dense standard checkpoint of ``src``: itself, or a temporary densified copy of a sparse one."""
    if kind == "standard":
        yield Path(src)
        return
    dense, _ = storage.load_dense(src, ctx.dtype, ctx.device)
    with tempfile.TemporaryDirectory(prefix="orderstudy-dense-") as tmp:
        storage.save(dense, Path(tmp), tokenizer_from=src)
        del dense
        yield Path(tmp)


def record(src: Path, dst: Path, ctx: OperationContext) -> dict:
    """Return what the GPTQ checkpoint in ``dst`` holds, and each layer's weight error against ``src``'s."""
    quant = models.quantization_config(dst)
    meta = quant.get("meta") or {}
    model = models.load_model(dst, ctx.dtype, ctx.device)   # fresh: its codes are still there to dequantize
    layers = gptq_format.quant_layers(model)
    reference, _ = storage.load_dense(src, "float32", ctx.device)
    source = dict(reference.named_modules())
    errors = {}
    zeros = total = 0
    with torch.no_grad():
        for name, layer in layers.items():
            original = source[name].weight.float()
            weight = gptq_format.dequantized_weight(layer)
            errors[name] = round(float(torch.linalg.norm(original - weight) / torch.linalg.norm(original)), 6)
            zeros, total = zeros + int((weight == 0).sum()), total + weight.numel()
    kernels = sorted({type(layer).__name__ for layer in layers.values()})
    parameters = models.count_parameters(reference)
    del model, reference
    return {
        "method": "gptq",
        "library": gptq_format.LIBRARY,
        "library_version": gptq_format.prepare_library(),
        "bits": quant["bits"],
        "group_size": quant["group_size"],
        "desc_act": quant.get("desc_act", False),
        "sym": quant.get("sym", True),
        "damp_percent": meta.get("damp_percent"),
        "checkpoint_format": quant.get("checkpoint_format", quant.get("format")),
        "quantized_modules": len(layers),
        "skip_modules": ["lm_head"],   # and the embedding: GPTQ quantizes the decoder's linear layers
        "kernel_on_load": kernels,
        "parameters": parameters,
        # Exact zeros of the dequantized weights: a zero stays one where it rounds to the zero point,
        # but GPTQ's error feedback moves some (measured: 50% unstructured zeros come back as 49.0%).
        "linear_zero_fraction": round(zeros / total, 6) if total else None,
        "weight_error": {"metric": "||W - deq(Q(W))||_F / ||W||_F", "by_module": errors,
                         "mean": round(sum(errors.values()) / len(errors), 6) if errors else None,
                         "max": max(errors.values()) if errors else None},
    }
