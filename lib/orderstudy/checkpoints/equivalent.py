"""The evaluation-equivalent dense copy of a model state that vLLM cannot read, made once per state.

vLLM reads standard dense checkpoints only (0.32 does not know bitsandbytes). Two layouts our
operations write have a dense checkpoint that computes the same function:

- bitsandbytes 4-bit (NF4, FP4): its forward dequantizes each weight to the compute dtype and
  multiplies, so a dense checkpoint holding those dequantized weights computes the same function
  (``storage.load_dense`` dequantizes any layout);
- GPTQ on a CPU (vLLM serves GPTQ itself on CUDA): ``scale x (code - zero)`` is the weight its
  kernels multiply by, within the kernel's own rounding (measured, as for NF4);
- the sparse format (values plus a bitmask): densified, it holds exactly the same weights.

The copy lives beside the state, in ``states/<key>/equivalent/`` (``model/`` and ``record.json``),
outside the state's ``model/``: it is never part of the state's size or manifest. Its record says
what it is a copy of and the measured agreement between the copy and the state's own model on
fixed prompts of the study (``numerics.agreement``: largest absolute logit difference, greedy
token agreement). 8-bit (LLM.int8 keeps outlier features in 16-bit at run time) and a LoRA adapter
beside a 4-bit base have no such copy: ``backends.vllm_blockers`` keeps vLLM off those studies.
"""

from __future__ import annotations

import fcntl
import time
from pathlib import Path

from ..core import atomic
from . import gptq, models

COPY_DIR = "equivalent"
RECORD_VERSION = 1


class NoEquivalentError(RuntimeError):
    """A state whose layout has no evaluation-equivalent dense copy."""


def copy_kind(model_dir: Path, device: str = "cpu") -> str | None:
    """Return why the checkpoint in ``model_dir`` needs a dense copy for vLLM on ``device``, ``None`` when vLLM reads it.

    vLLM serves GPTQ checkpoints itself on CUDA; on a CPU a GPTQ state is evaluated through its
    dequantized copy. Raises ``NoEquivalentError`` for a layout that has no equivalent copy.
    """
    from . import storage

    layout = storage.layout(model_dir)
    if layout == "adapter":
        raise NoEquivalentError(f"{model_dir}: a LoRA adapter beside a quantized base has no evaluation-equivalent "
                                "dense copy (finetune.merge: adapter); evaluate this study with evaluation.backend: hf")
    if layout == "sparse":
        return "sparse format (values and bitmask): the same weights, dense"
    quant = models.quantization_config(model_dir)
    if quant is None:
        return None
    if gptq.is_gptq(quant):
        if device != "cpu":
            return None
        return (f"GPTQ {quant.get('bits')}-bit, group size {quant.get('group_size')}: the weights dequantized "
                "(scale x (code - zero)), what GPTQModel's kernels multiply by")
    if quant.get("load_in_4bit"):
        return (f"bitsandbytes 4-bit ({quant.get('bnb_4bit_quant_type')}): the weights dequantized to the compute "
                "dtype, what bitsandbytes' forward multiplies by")
    raise NoEquivalentError(f"{model_dir}: bitsandbytes 8-bit (LLM.int8, outlier features kept in 16-bit at run time) "
                            "is not weight-only and has no evaluation-equivalent dense copy; evaluate this study with "
                            "evaluation.backend: hf")


def evaluation_dir(state, dtype: str, device: str, sequences: list[list[int]]) -> tuple[Path, dict | None]:
    """Return ``(checkpoint directory vLLM evaluates, the copy's record or None)`` for ``state``.

    The state's own ``model/`` when vLLM reads it; otherwise its equivalent copy, made now if it is
    not there yet (under a lock beside it: two processes needing it wait for one copy).
    """
    kind = copy_kind(state.model_dir, device)
    if kind is None:
        return state.model_dir, None
    copy = Path(state.dir) / COPY_DIR
    record = _complete_record(copy, state.key)
    if record is None:
        with open(Path(state.dir) / f".{COPY_DIR}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            record = _complete_record(copy, state.key)
            if record is None:
                record = make_copy(state, copy, kind, dtype, device, sequences)
    return copy / "model", record


def _complete_record(copy: Path, state_key: str) -> dict | None:
    path = copy / "record.json"
    if not path.is_file() or not (copy / "model" / "config.json").is_file():
        return None
    try:
        record = atomic.read_json(path)
    except (ValueError, OSError):
        return None
    return record if record.get("state_key") == state_key and record.get("record_version") == RECORD_VERSION else None


def make_copy(state, copy: Path, kind: str, dtype: str, device: str, sequences: list[list[int]]) -> dict:
    """Write the equivalent dense copy of ``state`` to ``copy`` and return its record (with the agreement)."""
    from . import numerics
    from . import storage

    started = time.perf_counter()
    dense, facts = storage.load_dense(state.model_dir, dtype, device)
    with atomic.directory(copy) as tmp:
        storage.save(dense, tmp / "model", tokenizer_from=state.model_dir)
        del dense
        # Measured on the copy as the engines read it, from disk: the model load_dense returns in
        # memory has had every buffer cast to the dtype (its rotary frequencies too, which a loaded
        # checkpoint keeps in float32), and on the demo's pruned NF4 states that alone moved the
        # logits by up to 47 (the copy reloaded: 0.0 from bitsandbytes' model).
        reloaded = models.load_model(tmp / "model", dtype, device)
        own = storage.load(state.model_dir, dtype, device)   # the state as transformers runs it (4-bit: bitsandbytes)
        record = {
            "record_version": RECORD_VERSION,
            "state": state.name,
            "state_key": state.key,
            "copy_of": kind,
            "layout": facts["layout"],
            "quantization": facts["quantization"],
            "dtype": dtype,
            "device": device,
            # Measured, not assumed: the copy's logits against the state's own model on fixed prompts.
            "agreement_with_state": numerics.agreement(reloaded, own, sequences),
            "size_bytes_not_counted": models.dir_size_bytes(tmp / "model"),
            "seconds": round(time.perf_counter() - started, 3),
        }
        atomic.write_json(tmp / "record.json", record)
    return record


def evaluation_model(model_dir, dtype: str, device: str, how: str, sequences: list[list[int]]):
    """Return ``(model, record)``: the model an evaluation scores for the state in ``model_dir``.

    A dense state is loaded as it is. A bitsandbytes 4-bit state on a CPU is, by default
    (``how="equivalent"``), its evaluation-equivalent dense model: the dequantized weights in the
    compute dtype, which is what bitsandbytes' reference kernel multiplies by (identical logits in
    float32, measured by the tests; within bf16 rounding in bf16) at dense speed (measured here:
    prefill 7.6x, decoding 3.6x faster than the reference kernel). ``how="bitsandbytes"`` runs
    bitsandbytes itself, pinned to its reference kernel. On CUDA, and for 8-bit (LLM.int8 is not
    weight-only: it has no dense equivalent), bitsandbytes runs. ``record`` says which, and, for
    a quantized state, the measured distance of the evaluated model's logits on ``sequences``
    from bitsandbytes' own (reference-kernel) model and from the dequantized model in float32.
    """
    from . import storage
    from .numerics import agreement, answers_as_equivalent, kernel_path, linear_4bit_layers

    quant = models.quantization_config(model_dir)
    if quant is None:
        return storage.load(model_dir, dtype, device), {"quantized": False, "evaluated_as": "the checkpoint itself"}
    if gptq.is_gptq(quant):
        return _gptq_evaluation_model(model_dir, quant, dtype, device, how, sequences)
    bnb_model = storage.load(model_dir, dtype, device)   # pinned to the reference kernel on a CPU
    four_bit = bool(linear_4bit_layers(bnb_model))
    record = {"quantized": True, "bitsandbytes_kernel": kernel_path(bnb_model, device)["kernel"]}
    if four_bit and answers_as_equivalent(quant, device, how):
        model, _ = storage.load_dense(model_dir, dtype, device)
        record["evaluated_as"] = ("evaluation-equivalent dense model: the dequantized 4-bit weights in the compute "
                                  "dtype, what bitsandbytes' reference kernel multiplies by")
        record["vs_bitsandbytes"] = agreement(model, bnb_model, sequences)
    else:
        model = bnb_model
        why = "8-bit has no dense equivalent" if not four_bit else (
            f"bitsandbytes on {device}" if device != "cpu" else "evaluation.quantized_on_cpu: bitsandbytes")
        record["evaluated_as"] = f"bitsandbytes itself ({record['bitsandbytes_kernel']}; {why})"
    record["vs_dequantized_float32"] = _against_float32(model, model_dir, device, sequences)
    return model, record


def _gptq_evaluation_model(model_dir, quant: dict, dtype: str, device: str, how: str, sequences: list[list[int]]):
    """Return ``(model, record)`` for a GPTQ state: its dense equivalent on a CPU (``how="equivalent"``), else GPTQModel's kernel.

    GPTQModel's CPU kernel (4-bit: torch's int4 matmul in bf16, after repacking the codes on the
    first forward) and the dense model of the dequantized weights compute nearly the same
    function; the record gives the measured distance of the evaluated model from the kernel's and
    from the dequantized model in float32.
    """
    from . import storage
    from .numerics import agreement, answers_as_equivalent

    dense = None
    if answers_as_equivalent(quant, device, how):
        dense, _ = storage.load_dense(model_dir, dtype, device)   # dequantized before any forward repacks the codes
    kernel_model = storage.load(model_dir, dtype, device)
    kernels = sorted({type(m).__name__ for m in gptq.quant_layers(kernel_model).values()})
    record = {"quantized": True, "quantization": f"gptq {quant.get('bits')}-bit, group size {quant.get('group_size')}",
              "gptq_kernel": f"{gptq.LIBRARY} {gptq.prepare_library()} {', '.join(kernels)} on {device}"}
    if dense is not None:
        model = dense
        record["evaluated_as"] = ("evaluation-equivalent dense model: GPTQ's dequantized weights (scale x (code - zero)) "
                                  "in the study's dtype")
        record["vs_gptq_kernel"] = agreement(model, kernel_model, sequences)
    else:
        model = kernel_model
        record["evaluated_as"] = f"GPTQModel's own kernel ({', '.join(kernels)} on {device})"
    record["vs_dequantized_float32"] = _against_float32(model, model_dir, device, sequences)
    return model, record


def _against_float32(model, model_dir, device: str, sequences: list[list[int]]) -> dict:
    """Return how the evaluated model agrees with the state's dequantized weights in float32 (loaded, then freed)."""
    from . import storage
    from .numerics import agreement

    exact, _ = storage.load_dense(model_dir, "float32", device)
    try:
        return agreement(model, exact, sequences)
    finally:
        del exact
