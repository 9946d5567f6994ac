"""Prune (P): structured width or depth pruning, or unstructured / 2:4 sparsity.

``step.py`` is the step (checks, calibration, dispatch by method, saving); ``structured.py`` the
width, MLP-channel and depth methods; ``unstructured.py`` magnitude, Wanda and 2:4;
``calibration.py`` the calibration sample and the activation statistics read from it. The spec is
all that importing this package loads; the rest (torch) is imported when a pruning runs.
"""

from __future__ import annotations

from pathlib import Path

from ...core.operation import OperationSpec
from .params import PruneParams


def apply(src: Path, dst: Path, params: PruneParams, ctx) -> dict:
    """Return the record of pruning the checkpoint in ``src`` into ``dst`` (``step.apply``)."""
    from .step import apply as prune

    return prune(src, dst, params, ctx)


def check_source(load_config, params: PruneParams) -> str | None:
    """Return why width pruning would give a config transformers refuses, naming the key; None if it would not."""
    if params.method != "width":
        return None
    config = load_config()
    if config is None:
        return None  # a hub id out of reach: the prune step checks again before pruning
    from .structured import width_shape_problem

    problem = width_shape_problem(config, params)
    return f"key 'prune.head_sparsity': {problem}" if problem else None


SPEC = OperationSpec(
    letter="P", name="prune", name_zh="剪枝", title="Pruning", section="prune",
    params_model=PruneParams, apply=apply,
    stochastic=lambda params: params.needs_calibration,  # the calibration sample is drawn by seed
    needs_calibration=lambda params: params.needs_calibration,
    check_source=check_source,
    # A quantized input is dequantized, pruned and quantized again; an adapter is merged first.
    applies_to=frozenset({"standard", "sparse", "quantized", "adapter"}),
    # Re-quantizing after Q (bitsandbytes, or GPTQ run again) decides its quantized results too.
    code=(Path(__file__).parent, Path(__file__).parent.parent / "common.py",
          Path(__file__).parent.parent / "quantize" / "requantize.py", Path(__file__).parent.parent / "quantize" / "gptq.py"),
)
