"""The ``prune`` section of a params file."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ...core.operation import OperationParams


class PruneParams(OperationParams):
    # width: MLP channels and attention heads (whole key/value groups), the same in every layer;
    # mlp_channels: MLP channels only; depth: whole decoder layers (the least influential on
    # calibration data); magnitude / wanda: unstructured zeros; 2:4: two zeros in every four weights.
    method: Literal["width", "mlp_channels", "depth", "magnitude", "wanda", "2:4"] = "width"
    sparsity: Annotated[float, Field(gt=0.0, lt=1.0, description=(
        "fraction removed: of MLP channels (width, mlp_channels), of layers (depth), of the weights of "
        "every decoder linear layer (magnitude, wanda); 2:4 is always 0.5"))] = 0.3
    head_sparsity: Annotated[float, Field(ge=0.0, lt=1.0, description=(
        "width only: fraction of attention heads removed, rounded to whole key/value groups"))] = 0.3
    # How width and 2:4 score what they remove: weight norms, or weights times the size of their
    # inputs on calibration data (activation-aware; Wanda's score for 2:4).
    importance: Literal["magnitude", "activation"] = "magnitude"
    multiple_of: Annotated[int, Field(ge=1, description="MLP channels kept are a multiple of this")] = 64
    storage: Literal["dense", "sparse"] = "dense"   # sparse: values + bitmask, for magnitude/wanda/2:4
    calibration_data: str = Field("finetune", description="'finetune' (the fine-tuning training data) or a JSONL file")
    calibration_samples: Annotated[int, Field(ge=1)] = 32
    calibration_seq_len: Annotated[int, Field(ge=8)] = 256

    @model_validator(mode="after")
    def _consistent(self):
        unstructured = self.method in ("magnitude", "wanda", "2:4")
        if self.storage == "sparse" and not unstructured:
            raise ValueError(f"prune.storage: 'sparse' applies to magnitude, wanda and 2:4; method {self.method!r} "
                             "already makes the checkpoint smaller; use storage: dense")
        if self.method == "2:4" and "sparsity" in self.model_fields_set and self.sparsity != 0.5:
            raise ValueError(f"prune.sparsity: 2:4 removes exactly half of the weights; got {self.sparsity}, set 0.5 or leave it out")
        if "importance" in self.model_fields_set and self.method in ("depth", "magnitude", "wanda"):
            raise ValueError(f"prune.importance applies to width, mlp_channels and 2:4; method {self.method!r} "
                             "has its own score (depth: angular distance, magnitude: |w|, wanda: |w| x input norm)")
        if "head_sparsity" in self.model_fields_set and self.method != "width":
            raise ValueError(f"prune.head_sparsity applies to method 'width' only (got method {self.method!r})")
        return self

    @property
    def needs_calibration(self) -> bool:
        """Whether the method reads calibration data."""
        return self.method in ("depth", "wanda") or (
            self.method in ("width", "mlp_channels", "2:4") and self.importance == "activation")
