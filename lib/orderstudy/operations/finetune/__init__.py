"""Fine-tune (F): LoRA on the study's training pairs, merged back (or kept beside a quantized base).

The spec is all that importing this package loads; the training code (``training.py``, torch,
peft) is imported when a fine-tune runs.
"""

from __future__ import annotations

from pathlib import Path

from ...core.operation import OperationSpec
from .params import FinetuneParams


def apply(src: Path, dst: Path, params: FinetuneParams, ctx) -> dict:
    """Return the record of fine-tuning the checkpoint in ``src`` into ``dst`` (``training.apply``)."""
    from .training import apply as fine_tune

    return fine_tune(src, dst, params, ctx)


SPEC = OperationSpec(
    letter="F", name="fine-tune", name_zh="微调", title="Fine-tuning", section="finetune",
    params_model=FinetuneParams, apply=apply,
    stochastic=lambda params: True,  # LoRA initialisation, dropout, the order of the training pairs
    needs_training_data=True,
    # An adapter beside a quantized base is already a fine-tune: an ordering applies F once.
    applies_to=frozenset({"standard", "sparse", "quantized"}),
    # Re-quantizing after Q (bitsandbytes, or GPTQ run again) decides its quantized results too.
    code=(Path(__file__).parent, Path(__file__).parent.parent / "common.py",
          Path(__file__).parent.parent / "quantize" / "requantize.py", Path(__file__).parent.parent / "quantize" / "gptq.py"),
)
