"""A study's parameters: one YAML file under ``params/``, validated strictly before any work.

An unknown key, a wrong type or an impossible value stops the run with a message that names the
file, the key and what is allowed (``ParamsError``). The hash of the validated parameters is
recorded with every result.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from . import paths
from .plan import REFERENCE_ORDER, format_ordering, parse_ordering


class ParamsError(ValueError):
    """A params file that cannot be used, with where and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelParams(_Section):
    source: str = Field(description="hub id, local checkpoint directory, or a .gguf file")
    gguf_file: str | None = Field(None, description="file name inside `source` when it is a GGUF directory")
    revision: str | None = None


class FinetuneParams(_Section):
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


class PruneParams(_Section):
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


class QuantizeParams(_Section):
    method: Literal["nf4", "fp4", "int8"] = "nf4"
    double_quant: bool = True     # 4-bit only: quantize the block scales too
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"  # auto = the study's dtype
    # Linear modules kept in full precision (bitsandbytes never quantizes the embedding).
    skip_modules: tuple[str, ...] = ("lm_head",)


class EvaluationParams(_Section):
    benchmarks: tuple[Literal["lawbench", "stem", "mmlu_law"], ...] = ("lawbench", "stem", "mmlu_law")
    lawbench_data: str = "cache/data/lawbench"
    lawbench_setting: Literal["zero_shot", "one_shot"] = "zero_shot"
    lawbench_tasks: tuple[str, ...] | Literal["all"] = "all"
    lawbench_items_per_task: Annotated[int, Field(ge=1)] | None = 5
    # The most tokens any task generates. Each task's own budget comes from its gold answers'
    # lengths (budgets.py); a task whose answers need more is marked capped in every result.
    max_new_tokens: Annotated[int, Field(ge=1)] = 2048
    # Where LawBench 2-1's ChERRANT tables (cilin.txt, confusion_dict.txt) come from: auto (the
    # LawBench checkout holding lawbench_data, else cache/data/cherrant, else the packaged
    # fallback), packaged, or a LawBench checkout / its evaluation/utils/data directory.
    cherrant_data: str = "auto"
    mmlu_data: str = "cache/data/mmlu"
    mmlu_items_per_subject: Annotated[int, Field(ge=1)] | None = 5
    mmlu_scoring: Literal["loglikelihood", "generative"] = "loglikelihood"
    # auto: as many sequences as fit the device's free memory for the longest prompt, up to 256 on
    # CUDA and 8 on a CPU (backends.choose_batch_size); a number fixes it.
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    # The one engine for every state (backends.choose_engine). auto: vLLM where a build for the
    # device is installed and every planned state allows it, else transformers. hf: transformers.
    # vllm: vLLM, or an error saying what prevents it.
    backend: Literal["auto", "hf", "vllm"] = "auto"
    cache_implementation: Literal["auto", "dynamic", "static"] = "auto"   # transformers' KV cache; auto = dynamic
    vllm_gpu_memory_utilization: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.85
    # A bitsandbytes 4-bit state on a CPU: scored as its evaluation-equivalent dense model (the
    # dequantized weights, what bitsandbytes' reference kernel multiplies by; dense speed), or by
    # bitsandbytes itself, pinned to that reference kernel on every CPU (numerics.py).
    quantized_on_cpu: Literal["equivalent", "bitsandbytes"] = "equivalent"
    # The seed of the evaluation sample and of the LawBench train/evaluation split: one for every
    # seed of the study, so that seeds are scored on the same items (paired). None: the first seed.
    sample_seed: Annotated[int, Field(ge=0)] | None = None
    # MMLU groups (stem, mmlu_law) as lm-eval aggregates them (weight_by_size): each subject
    # weighs its number of questions in the full data; false: the unweighted mean of the subjects.
    mmlu_weight_by_size: bool = True

    @model_validator(mode="before")
    @classmethod
    def _chat_template_moved(cls, value):
        if isinstance(value, dict) and "chat_template" in value:
            raise PydanticCustomError("moved_key", "moved to the top level: write `chat_template: {value}` without "
                                      "indentation; it decides the prompt format of fine-tuning, calibration and "
                                      "evaluation alike", {"key": "chat_template", "value": str(value["chat_template"]).lower()})
        return value

    @field_validator("lawbench_tasks")
    @classmethod
    def _known_tasks(cls, value):
        if value == "all":
            return value
        from ..benchmarks.lawbench.tasks import TASK_IDS

        unknown = [t for t in value if t not in TASK_IDS]
        if unknown:
            raise ValueError(f"unknown LawBench task {unknown[0]!r}; allowed: 'all' or a list of {', '.join(TASK_IDS)}")
        return value


# Keys of earlier versions that a params file may still carry, and what to do instead.
RETIRED_REPORT_KEYS = {
    "bootstrap_resamples": "intervals are no longer bootstrapped (see report/intervals.py); remove the key",
    "bootstrap_seed": "intervals are no longer bootstrapped (see report/intervals.py); remove the key",
}


class ReportParams(_Section):
    language: Literal["en", "zh"] = "en"
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95
    # The power at which the report states each benchmark's minimum detectable change.
    power: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.8
    # The change (points) the power table says how many items per task it would take to detect.
    target_change_points: Annotated[float, Field(gt=0.0, le=100.0)] = 5.0
    # A YAML file of claims of your own, added to the packaged ones (report/claims.yaml's format).
    claims_file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _retired(cls, data):
        if isinstance(data, dict):
            for key, why in RETIRED_REPORT_KEYS.items():
                if key in data:
                    raise PydanticCustomError("retired_key", "key 'report.{key}' is no longer used: {why}",
                                              {"key": key, "why": why})
        return data


class RayParams(_Section):
    # None: start a Ray cluster on this machine for the run (and stop it after); "auto": join the
    # cluster already started here with `ray start`; "ray://host:10001" or "host:6379": a remote one.
    address: str | None = None
    gpus_per_task: Annotated[float, Field(gt=0.0, description="GPUs each task holds when the device is CUDA")] = 1.0
    cpus_per_task: Annotated[float, Field(gt=0.0, description="CPUs Ray reserves for each task")] = 1.0

    @field_validator("address")
    @classmethod
    def _known_address(cls, value):
        if value is None or value == "auto" or re.fullmatch(r"(ray://)?[A-Za-z0-9._\[\]:-]+:[0-9]+", value):
            return value
        raise ValueError("allowed: null (start a Ray cluster on this machine), 'auto' (the cluster started here "
                         "with `ray start`), 'ray://host:port' or 'host:port'")


# How the steps run; none of it decides a result, so none of it is in a state key or in hash().
EXECUTION_KEYS = ("executor", "ray")


class StudyParams(_Section):
    study: str
    # Every stochastic step (fine-tuning; pruning that samples calibration data) runs once per
    # seed; states no stochastic step touches are built once and shared by every seed.
    seeds: tuple[Annotated[int, Field(ge=0)], ...] = (0,)
    device: Literal["cpu", "cuda", "auto"] = "auto"
    # auto: bfloat16 on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX), else float32 (bf16
    # matmuls are emulated and ~7x slower than fp32 on a plain AVX2 CPU; measured, see README).
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    model: ModelParams
    # Whether prompts go through the model's chat template: one setting for the fine-tuning pairs,
    # the calibration text and the generated evaluation alike, so the model is trained on the
    # format it is tested on (log-likelihood MMLU always reads the raw prompt, as lm-eval does).
    chat_template: bool = True
    orderings: tuple[str, ...] | Literal["all"] = "all"
    finetune: FinetuneParams = FinetuneParams()
    prune: PruneParams = PruneParams()
    quantize: QuantizeParams = QuantizeParams()
    evaluation: EvaluationParams = EvaluationParams()
    report: ReportParams = ReportParams()
    # local: every step in the ordering notebooks, one after another; ray: the steps and
    # evaluations on a Ray cluster first (independent branches at once), then the notebooks.
    executor: Literal["local", "ray"] = "local"
    ray: RayParams = RayParams()

    @model_validator(mode="before")
    @classmethod
    def _one_seed_is_a_list_of_one(cls, data):
        # Params files written before seed repeats say `seed: N`: that is `seeds: [N]`.
        if isinstance(data, dict) and "seed" in data:
            if "seeds" in data:
                raise ValueError(SEED_AND_SEEDS)
            data = {("seeds" if k == "seed" else k): ([v] if k == "seed" else v) for k, v in data.items()}
        return data

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value):
        if not value:
            raise ValueError("list at least one seed, e.g. [0]")
        if len(set(value)) != len(value):
            raise ValueError("a seed is listed twice")
        return value

    @field_validator("study")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError("a study name is letters, digits, '.', '_' or '-' (it names a directory)")
        return value

    @field_validator("orderings")
    @classmethod
    def _valid_orderings(cls, value):
        if value == "all":
            return value
        canonical = tuple(format_ordering(parse_ordering(o)) for o in value)
        if len(set(canonical)) != len(canonical):
            raise ValueError("an ordering is listed twice")
        return canonical

    @property
    def ordering_list(self) -> tuple[str, ...]:
        return REFERENCE_ORDER if self.orderings == "all" else self.orderings

    @property
    def sample_seed(self) -> int:
        """The seed of the evaluation sample and the train/evaluation split, shared by every seed."""
        return self.seeds[0] if self.evaluation.sample_seed is None else self.evaluation.sample_seed

    def hash(self) -> str:
        """Return a short stable hash of the parameters that decide the results (not the executor).

        The list of seeds is left out: it says which runs exist, and each result records its own
        seed, so adding a seed leaves the other runs' hash as it was.
        """
        data = self.model_dump(mode="json", exclude=set(EXECUTION_KEYS) | {"seeds"})
        data["evaluation"]["sample_seed"] = self.sample_seed
        return stable_hash(data)

    def operation_params(self, op: str) -> BaseModel:
        return {"F": self.finetune, "P": self.prune, "Q": self.quantize}[op]


SEED_AND_SEEDS = "set either 'seeds' (a list, e.g. [0, 1, 2]) or the older 'seed' (one number), not both"


def stable_hash(data) -> str:
    """Return a 16-hex-digit hash of JSON-serialisable ``data`` (key order does not matter)."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_params(path: str | Path) -> StudyParams:
    """Return the validated parameters in ``path``, or raise ``ParamsError`` saying what to fix."""
    path = paths.resolve(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found; pass one of {sorted(p.name for p in paths.PARAMS_DIR.glob('*.yaml'))}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of keys to values at the top level, got {type(raw).__name__}")
    if "seed" in raw and "seeds" in raw:
        raise ParamsError(f"{path}: keys 'seed' and 'seeds': {SEED_AND_SEEDS}")
    try:
        return StudyParams.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(_describe(path, exc)) from None


def _describe(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: {exc.error_count()} problem(s) in the parameters:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  - key '{key}': unknown key; check its spelling against the keys documented in params/README.md")
        elif err["type"] == "missing":
            lines.append(f"  - key '{key}': required but missing")
        elif err["type"] == "retired_key":
            lines.append(f"  - {err['msg']}")
        elif err["type"] == "moved_key":
            lines.append(f"  - key '{key}.{err['ctx']['key']}': {err['msg']}")
        else:
            lines.append(f"  - key '{key}': {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)
