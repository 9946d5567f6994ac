"""Which numerics a quantized model state computes with, and how far they are from its exact model.

bitsandbytes computes a 4-bit layer on a CPU in one of two ways:

- the reference kernel: dequantize the weight to the compute dtype, then torch's ``linear`` (its
  ``default`` kernel). A dense model holding those dequantized weights computes the same function.
- on a CPU with AVX512-BF16, after the first eval-mode forward without gradients, the layer
  repacks its weight for a fused kernel that computes in bf16 whatever the compute dtype. Measured
  on the tiny model (NF4, float32 compute): the first forward is 0.004 from the exact dequantized
  model, every later one (and every forward after a reload) 0.051, twelve times further.

Left alone, an evaluation of a Q state on such a CPU scores its first batch with one numerics and
the rest with another, and Q's measured effect depends on the CPU kind. So:

- ``pin_bnb_cpu_path`` keeps every 4-bit layer of a model on the reference kernel, so a 4-bit
  model computes the same way on every CPU, on every forward; ``models.load_model`` calls it for
  every model it loads (training, validation losses, tests).
- an evaluation on a CPU scores a 4-bit state as its evaluation-equivalent dense model (the
  dequantized weights: the function the reference kernel computes, at dense speed), or, on
  request, bitsandbytes pinned to the reference kernel (``equivalent.evaluation_model``);
- every evaluation of a quantized state records which, and the measured distance (``agreement``)
  of the evaluated model from bitsandbytes' own model and from the dequantized model in float32.
"""

from __future__ import annotations

import torch

REFERENCE_KERNEL = "bitsandbytes reference kernel: dequantize to the compute dtype, then torch linear"
REPACKED_KERNEL = "bitsandbytes AVX512-BF16 repacked kernel (bf16 compute)"


def linear_4bit_layers(model) -> list:
    """Return the model's bitsandbytes 4-bit linear layers (none for a dense or 8-bit model)."""
    import bitsandbytes as bnb

    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def is_repacked(layer) -> bool:
    """Return whether a 4-bit layer's weight is in bitsandbytes' CPU repacked format."""
    state = getattr(layer.weight, "quant_state", None)
    return bool(getattr(state, "packing_format_for_cpu", False))


def pin_bnb_cpu_path(model) -> int:
    """Return how many 4-bit layers now stay on bitsandbytes' reference CPU kernel, for good.

    Turns off each layer's AVX512-BF16 repacking (bitsandbytes asks the CPU once, when the layer
    is built, and repacks on the first eval-mode forward), so every forward dequantizes and
    multiplies. Call it before the model's first forward: repacking rounds the block scales to
    bf16, and unpacking cannot give them back, so an already repacked layer is refused
    (``RepackedError``). Harmless on CUDA, where the flag is never read, and on CPUs without
    AVX512-BF16, where it is already off.
    """
    fix_bnb_cpu_dequantize()
    layers = linear_4bit_layers(model)
    repacked = [name for name, m in model.named_modules() if m in layers and is_repacked(m)]
    if repacked:
        raise RepackedError(f"{len(repacked)} 4-bit layer(s) (e.g. {repacked[0]}) were already repacked for "
                            "bitsandbytes' AVX512-BF16 kernel, which rounded their block scales to bf16; "
                            "load the model fresh from disk (models.load_model) instead")
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


class RepackedError(RuntimeError):
    """A 4-bit model whose weights bitsandbytes already repacked (lossy) for its CPU kernel."""


_DEQUANTIZE_FIX: dict = {}


def fix_bnb_cpu_dequantize() -> dict:
    """Return how bitsandbytes' CPU 4-bit dequantization is made exact for every shape (once per process).

    bitsandbytes 0.50's AVX-512 CPU kernel for ``dequantize_4bit`` indexes its blocks row by row,
    while quantization makes them over the flattened tensor: on a CPU with AVX-512, every weight
    whose rows are not a multiple of the block size (64) dequantizes wrong, silently (measured
    here: a 64x32 NF4 weight comes back with 0.40 relative error instead of 0.09; bitsandbytes'
    pull request 2072 describes the same kernel). Dequantization runs in every 4-bit forward on a
    CPU (the reference kernel) and in every dequantize (pruning or fine-tuning a quantized state,
    its evaluation-equivalent model), so this re-registers the CPU kernel: such shapes go to
    bitsandbytes' own pure-torch implementation (the one it already falls back to for odd rows),
    every other shape to bitsandbytes' own kernel, on CPUs with and without AVX-512 alike. Real
    models' rows (576, 960, 1536, 8960, whole heads of 64 or 128) are all multiples of 64; the
    tests' tiny models have rows of 32.
    """
    if _DEQUANTIZE_FIX:
        return _DEQUANTIZE_FIX
    import gc
    import warnings

    import bitsandbytes.backends.cpu.ops as cpu_ops
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
    from bitsandbytes.backends.utils import _get_4bit_code

    signature = ("A", "absmax", "blocksize", "quant_type", "shape", "dtype")
    found = [f for f in gc.get_objects()
             if callable(f) and getattr(f, "__module__", None) == cpu_ops.__name__
             and getattr(getattr(f, "__code__", None), "co_varnames", ())[:6] == signature]
    if len(found) != 1:
        raise RuntimeError(f"bitsandbytes' CPU dequantize_4bit kernel not found ({len(found)} candidates): the "
                           "pinned bitsandbytes (requirements.txt) is expected; numerics.fix_bnb_cpu_dequantize "
                           "must be checked against this version")
    bitsandbytes_kernel = found[0]
    generic = getattr(_dequantize_4bit_compute, "__wrapped__", _dequantize_4bit_compute)  # eager, not compiled

    def dequantize_4bit(A, absmax, blocksize, quant_type, shape, dtype):
        if shape[-1] % blocksize:
            flat = A.view(torch.uint8) if A.dtype != torch.uint8 else A
            return generic(flat.reshape(-1), absmax, _get_4bit_code(quant_type, A.device), blocksize, shape, dtype)
        return bitsandbytes_kernel(A, absmax, blocksize, quant_type, shape, dtype)

    with warnings.catch_warnings():
        # torch words it "Warning only once for all operators, ...\n  Overriding a previously registered kernel".
        warnings.filterwarnings("ignore", message=r"(?s).*Overriding a previously registered kernel")
        torch.library.register_kernel("bitsandbytes::dequantize_4bit", "cpu", dequantize_4bit)
    _DEQUANTIZE_FIX.update({"kernel": "bitsandbytes' CPU kernel; its pure-torch path for rows not a multiple of the block",
                            "cpu_capability": torch.backends.cpu.get_cpu_capability()})
    return _DEQUANTIZE_FIX


def kernel_path(model, device: str) -> dict:
    """Return which kernel the model's quantized layers compute with on ``device``, for a result."""
    import bitsandbytes as bnb

    four_bit = linear_4bit_layers(model)
    eight_bit = [m for m in model.modules() if isinstance(m, bnb.nn.Linear8bitLt)]
    if four_bit:
        on_repacking_path = [m for m in four_bit if m.support_avx512bf16_for_cpu or is_repacked(m)]
        if device != "cpu":
            kernel = f"bitsandbytes {device} 4-bit kernel"
        elif on_repacking_path:
            kernel = REPACKED_KERNEL
        else:
            kernel = REFERENCE_KERNEL
        return {"quantized_layers": len(four_bit), "bits": 4, "kernel": kernel,
                "cpu_repacking": bool(on_repacking_path) if device == "cpu" else None}
    if eight_bit:
        return {"quantized_layers": len(eight_bit), "bits": 8,
                "kernel": f"bitsandbytes LLM.int8 on {device} (int8 weights; outlier features in 16-bit)",
                "cpu_repacking": None}
    return {"quantized_layers": 0, "bits": None, "kernel": "dense", "cpu_repacking": None}


def agreement(model, reference, sequences: list[list[int]]) -> dict:
    """Return how close ``model``'s logits are to ``reference``'s on ``sequences`` (teacher-forced).

    ``max_abs_logit_diff`` over every position and vocabulary entry, the same relative to the
    largest reference logit, and ``greedy_token_agreement``: the fraction of positions whose
    most likely next token is the same in both models.
    """
    max_diff, max_ref, same, positions = 0.0, 0.0, 0, 0
    with torch.no_grad():
        for ids in sequences:
            x = torch.tensor([ids], device=model.device)
            a = model(input_ids=x).logits.float()
            b = reference(input_ids=x.to(reference.device)).logits.float().to(a.device)
            max_diff = max(max_diff, float((a - b).abs().max()))
            max_ref = max(max_ref, float(b.abs().max()))
            same += int((a.argmax(-1) == b.argmax(-1)).sum())
            positions += a.shape[1]
    return {"max_abs_logit_diff": round(max_diff, 6),
            "relative_max_diff": round(max_diff / max_ref, 6) if max_ref else None,
            "greedy_token_agreement": round(same / positions, 6) if positions else None,
            "sequences": len(sequences), "positions": positions}


# How a 4-bit state is evaluated on a CPU (``evaluation.quantized_on_cpu``).
EQUIVALENT = "equivalent"
BITSANDBYTES = "bitsandbytes"


def answers_as_equivalent(quant: dict | None, device: str, how: str) -> bool:
    """Whether a state of quantization config ``quant`` is run as its evaluation-equivalent dense model
    (``equivalent.evaluation_model``): bitsandbytes 4-bit or GPTQ, on a CPU, with ``how="equivalent"``.

    >>> answers_as_equivalent({"quant_method": "gptq", "bits": 4}, "cpu", EQUIVALENT)
    True

    >>> answers_as_equivalent({"load_in_4bit": True}, "cpu", EQUIVALENT), answers_as_equivalent({"load_in_8bit": True}, "cpu", EQUIVALENT)
    (True, False)
    >>> answers_as_equivalent({"load_in_4bit": True}, "cuda", EQUIVALENT), answers_as_equivalent(None, "cpu", EQUIVALENT)
    (False, False)
    """
    weight_only = bool(quant and (quant.get("load_in_4bit") or quant.get("quant_method") == "gptq"))
    return weight_only and device == "cpu" and how == EQUIVALENT
