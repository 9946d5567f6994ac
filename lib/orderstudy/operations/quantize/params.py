"""The ``quantize`` section of a params file."""

from __future__ import annotations

from typing import Literal

from ...core.operation import OperationParams


class QuantizeParams(OperationParams):
    method: Literal["nf4", "fp4", "int8"] = "nf4"
    double_quant: bool = True     # 4-bit only: quantize the block scales too
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"  # auto = the study's dtype
    # Linear modules kept in full precision (bitsandbytes never quantizes the embedding).
    skip_modules: tuple[str, ...] = ("lm_head",)
