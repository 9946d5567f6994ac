"""The ``quantize`` section of a params file."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ...core.operation import OperationParams

BNB_METHODS = ("nf4", "fp4", "int8")
# The keys that only GPTQ reads, and the ones that only bitsandbytes reads.
GPTQ_KEYS = ("bits", "group_size", "desc_act", "damp_percent", "calibration_data", "calibration_samples",
             "calibration_seq_len")
BNB_KEYS = ("double_quant", "compute_dtype")


class QuantizeParams(OperationParams):
    # nf4 / fp4 / int8: bitsandbytes, calibration-free absmax rounding. gptq: GPTQ (GPTQModel),
    # each layer's rounding fitted to its inputs on calibration text.
    method: Literal["nf4", "fp4", "int8", "gptq"] = "nf4"
    double_quant: bool = True     # 4-bit bitsandbytes only: quantize the block scales too
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"  # auto = the study's dtype
    # Linear modules kept in full precision (neither library quantizes the embedding).
    skip_modules: tuple[str, ...] = ("lm_head",)
    # GPTQ only: weight bits, the input columns that share one scale (-1: one group per row),
    # act-order (GPTQModel's desc_act: columns quantized by decreasing Hessian diagonal), and
    # the dampening added to the Hessian's diagonal, as a fraction of its mean.
    bits: Literal[4, 8] = 4
    group_size: Annotated[int, Field(ge=-1)] = 128
    desc_act: bool = False
    damp_percent: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    # GPTQ's calibration text, by the same rule as pruning's: the fine-tuning pairs by default
    # (never an evaluated item), or a JSONL file of prompt/answer pairs.
    calibration_data: str = Field("finetune", description="'finetune' (the fine-tuning training data) or a JSONL file")
    calibration_samples: Annotated[int, Field(ge=1)] = 32
    calibration_seq_len: Annotated[int, Field(ge=8)] = 256

    @model_validator(mode="after")
    def _keys_of_the_method(self):
        given = self.model_fields_set
        if self.method == "gptq":
            wrong = [k for k in BNB_KEYS if k in given]
            if wrong:
                raise ValueError(f"quantize.{wrong[0]} applies to bitsandbytes (nf4, fp4, int8), not to method 'gptq'; "
                                 "leave it out")
            if self.group_size == 0:
                raise ValueError("quantize.group_size: a positive number of input columns per scale, or -1 (one group a row)")
        else:
            wrong = [k for k in GPTQ_KEYS if k in given]
            if wrong:
                raise ValueError(f"quantize.{wrong[0]} applies to method 'gptq' only (got method {self.method!r}); "
                                 "leave it out or set method: gptq")
        return self

    @classmethod
    def method_keys(cls) -> dict[str, tuple[str, ...]]:
        return {"gptq": GPTQ_KEYS, **{method: BNB_KEYS for method in BNB_METHODS}}

    @property
    def needs_calibration(self) -> bool:
        """Whether the method reads calibration text (GPTQ does; bitsandbytes never)."""
        return self.method == "gptq"


def input_widths(config) -> dict[str, int]:
    """Return the input width of each kind of decoder linear layer of a model config (dict or object).

    >>> input_widths({"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9, "head_dim": 64})
    {'q/k/v/gate/up_proj (hidden_size)': 576, 'down_proj (intermediate_size)': 1536, 'o_proj (heads x head_dim)': 576}
    """
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    hidden, heads = get("hidden_size"), get("num_attention_heads")
    head_dim = get("head_dim") or hidden // heads
    return {"q/k/v/gate/up_proj (hidden_size)": hidden, "down_proj (intermediate_size)": get("intermediate_size"),
            "o_proj (heads x head_dim)": heads * head_dim}


def group_size_problem(config, group_size: int) -> str | None:
    """Return why GPTQ groups of ``group_size`` do not fit the model's layers (naming the key), None if they do.

    GPTQModel quantizes any width, but its kernels (torch's int4 CPU matmul, Marlin on CUDA) need
    every layer's input width to be a whole number of groups: SmolLM2-135M's 576 is not one of 128.

    >>> group_size_problem({"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9, "head_dim": 64}, 128)[:60]
    'quantize.group_size 128 does not divide q/k/v/gate/up_proj ('
    >>> group_size_problem({"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9, "head_dim": 64}, 64) is None
    True
    """
    if group_size == -1:
        return None
    widths = input_widths(config)
    wrong = {name: w for name, w in widths.items() if w % group_size}
    if not wrong:
        return None
    fits = [g for g in (1024, 512, 256, 128, 64, 32, 16) if all(w % g == 0 for w in widths.values())]
    name, width = next(iter(wrong.items()))
    return (f"quantize.group_size {group_size} does not divide {name} = {width}: GPTQ's kernels need whole groups "
            f"in every layer; set group_size to {fits[0] if fits else -1}" + (" (or -1: one group a row)" if fits else ""))
