"""Quantize (Q): bitsandbytes 4-bit (NF4, FP4) or 8-bit weights, or GPTQ, saved as a standard checkpoint.

The spec is all that importing this package loads; ``bnb.py`` (torch, bitsandbytes) or
``gptq.py`` (GPTQModel) is imported when a quantization runs.
"""

from __future__ import annotations

from pathlib import Path

from ...core.operation import OperationSpec
from .params import QuantizeParams


def apply(src: Path, dst: Path, params: QuantizeParams, ctx) -> dict:
    """Return the record of quantizing the checkpoint in ``src`` into ``dst`` (``bnb.apply`` or ``gptq.apply``)."""
    if params.method == "gptq":
        from .gptq import apply as quantize
    else:
        from .bnb import apply as quantize

    return quantize(src, dst, params, ctx)


def check_source(load_config, params: QuantizeParams) -> str | None:
    """Return why GPTQ's groups would not fit the model's layers, naming the key; None if they do (or bitsandbytes)."""
    if params.method != "gptq":
        return None
    config = load_config()
    if config is None:
        return None  # a hub id out of reach: the quantize step checks again before quantizing
    from .params import group_size_problem

    problem = group_size_problem(config, params.group_size)
    return f"key 'quantize.group_size': {problem}" if problem else None


SPEC = OperationSpec(
    letter="Q", name="quantize", name_zh="量化", title="Quantization", section="quantize",
    params_model=QuantizeParams, apply=apply,
    # bitsandbytes: round-to-nearest codes, the same for every seed; GPTQ: its calibration sample is drawn by seed.
    stochastic=lambda params: params.needs_calibration,
    needs_calibration=lambda params: params.needs_calibration,
    check_source=check_source,
    # A quantized model (or an adapter beside one) is not quantized again: an ordering applies Q once.
    applies_to=frozenset({"standard", "sparse"}),
    code=(Path(__file__).parent, Path(__file__).parent.parent / "common.py"),
)
