"""The ``finetune`` section of a params file."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ...core.operation import OperationParams


class FinetuneParams(OperationParams):
    data: str = Field("lawbench", description="'lawbench' (LawBench items outside the evaluation sample) or a JSONL file")
    train_items_per_task: Annotated[int, Field(ge=1)] = 40
    validation_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    max_steps: Annotated[int, Field(ge=1, description="optimizer steps (ignored when `epochs` is set)")] = 20
    epochs: Annotated[float, Field(gt=0.0, description="passes over the training part; replaces max_steps")] | None = None
    batch_size: Annotated[int, Field(ge=1)] = 4
    max_seq_len: Annotated[int, Field(ge=16)] = 256
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 2e-4
    lora_r: Annotated[int, Field(ge=1)] = 16
    lora_alpha: Annotated[float, Field(gt=0.0)] = 32
    lora_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    # What becomes of an adapter trained on a quantized model (QLoRA): merged into the dequantized
    # weights (a full-precision result), merged then quantized again with the source's settings,
    # or kept beside the quantized base. An adapter on a full-precision model is always merged.
    merge: Literal["dequantize", "requantize", "adapter"] = "dequantize"
    # Merging writes dense deltas into every weight, so it undoes unstructured or 2:4 pruning;
    # True zeroes again the weights that were zero before the merge.
    keep_sparsity: bool = True

    @model_validator(mode="after")
    def _steps_or_epochs(self):
        if self.epochs is not None and "max_steps" in self.model_fields_set:
            raise ValueError("set either finetune.max_steps or finetune.epochs, not both")
        return self
