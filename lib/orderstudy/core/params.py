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
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from . import paths
from .benchmark import benchmarks as registered_benchmarks, names as benchmark_names
from .operation import RESERVED_SECTIONS, get_operation, operations
from .plan import all_orderings, canonical_ordering


class ParamsError(ValueError):
    """A params file that cannot be used, with where and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelParams(_Section):
    source: str = Field(description="hub id, local checkpoint directory, or a .gguf file")
    gguf_file: str | None = Field(None, description="file name inside `source` when it is a GGUF directory")
    revision: str | None = None


class EvaluationParams(_Section):
    # Any of the registered benchmarks (core/benchmark.py; the built-in ones: benchmarks/__init__.py).
    benchmarks: tuple[str, ...] = ("lawbench", "stem", "mmlu_law")
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
    # bitsandbytes itself, pinned to that reference kernel on every CPU (numerics.py). A GPTQ state
    # likewise: its dequantized dense model, or (bitsandbytes) GPTQModel's own CPU kernel.
    quantized_on_cpu: Literal["equivalent", "bitsandbytes"] = "equivalent"
    # The seed of the evaluation sample and of the LawBench train/evaluation split: one for every
    # seed of the study, so that seeds are scored on the same items (paired). None: the first seed.
    sample_seed: Annotated[int, Field(ge=0)] | None = None
    # MMLU groups (stem, mmlu_law) as lm-eval aggregates them (weight_by_size): each subject
    # weighs its number of questions in the full data; false: the unweighted mean of the subjects.
    mmlu_weight_by_size: bool = True
    # The benchmark kl (fidelity to the base; benchmarks/fidelity): how many held-out texts (half
    # LawBench items, half MMLU questions, none evaluated, trained or calibrated on), how many of
    # each text's first tokens, and how many of the base's most likely tokens are kept per position.
    kl_texts: Annotated[int, Field(ge=2)] = 32
    kl_tokens: Annotated[int, Field(ge=2)] = 128
    kl_top_k: Annotated[int, Field(ge=1)] = 128

    @model_validator(mode="before")
    @classmethod
    def _chat_template_moved(cls, value):
        if isinstance(value, dict) and "chat_template" in value:
            raise PydanticCustomError("moved_key", "moved to the top level: write `chat_template: {value}` without "
                                      "indentation; it decides the prompt format of fine-tuning, calibration and "
                                      "evaluation alike", {"key": "chat_template", "value": str(value["chat_template"]).lower()})
        return value

    @field_validator("benchmarks")
    @classmethod
    def _registered(cls, value):
        known = benchmark_names()
        unknown = [b for b in value if b not in known]
        if unknown:
            raise ValueError(f"unknown benchmark {unknown[0]!r}; allowed: a list of {', '.join(known)}")
        if not value:
            raise ValueError(f"no benchmark given; allowed: a list of {', '.join(known)}")
        if len(set(value)) != len(value):
            raise ValueError("a benchmark is named twice")
        return value

    @field_validator("*")
    @classmethod
    def _benchmarks_accept(cls, value, info):
        # Each benchmark checks the keys it reads (e.g. LawBench's task ids); the error names the key.
        for benchmark in registered_benchmarks():
            problem = benchmark.check_setting(info.field_name, value)
            if problem:
                raise ValueError(problem)
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
    # How marks are adjusted for the many tests in each family (report/multiplicity.py): holm
    # (family-wise error, any dependence: the default), bh (Benjamini-Hochberg, false discovery
    # rate), none (raw marks only). Every table prints the raw mark and, unless none, the adjusted one.
    multiplicity: Literal["holm", "bh", "none"] = "holm"

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
    # Each registered operation's params section (finetune, prune, quantize, ...) is an extra key,
    # validated by the operation's own model (_operation_sections); any other extra key is an error.
    model_config = ConfigDict(extra="allow", frozen=True)

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
    evaluation: EvaluationParams = EvaluationParams()
    report: ReportParams = ReportParams()
    # local: every step in the ordering notebooks, one after another; ray: the steps and
    # evaluations on a Ray cluster first (independent branches at once), then the notebooks.
    executor: Literal["local", "ray"] = "local"
    ray: RayParams = RayParams()
    # The study's families (one operation's ``method`` given as a list, ``quantize.method: [nf4,
    # gptq]``): that section's letter and one validated section per method, in the file's order.
    # None for a study of one family. ``for_family`` gives the params one family runs with.
    _families: tuple[str, dict[str, BaseModel]] | None = PrivateAttr(None)

    @model_validator(mode="wrap")
    @classmethod
    def _operation_sections(cls, data, handler):
        # Every registered operation's section, by its own params model (its defaults when the file
        # leaves it out); errors are reported together with the other keys', under the section's name.
        if not isinstance(data, dict):
            return handler(data)
        data = dict(data)
        sections, errors, families = {}, [], []
        for spec in operations():
            raw = data.pop(spec.section, {})
            if isinstance(raw, spec.params_model):
                sections[spec.section] = raw
                continue
            if isinstance(raw, dict) and isinstance(raw.get("method"), list):
                found, problems = _method_families(spec, raw)
                errors += problems
                if found:
                    sections[spec.section] = next(iter(found.values()))
                    families.append((spec, found))
                continue
            try:
                sections[spec.section] = spec.params_model.model_validate(raw)
            except ValidationError as exc:
                errors += _details(exc, (spec.section,))
        if len(families) > 1:
            listed = ", ".join(f"{spec.section}.method" for spec, _ in families)
            errors.append(InitErrorDetails(
                type=PydanticCustomError("families", "one operation's method may be a list (the study's families), "
                                         f"not several: {listed} all list methods; keep one list"),
                loc=(families[1][0].section, "method"), input=list(families[1][1])))
        errors += [InitErrorDetails(type="extra_forbidden", loc=(key,), input=data[key])
                   for key in data if key not in cls.model_fields and key not in ("seed",)]
        try:
            result = handler({k: v for k, v in data.items() if k in cls.model_fields or k == "seed"})
        except ValidationError as exc:
            errors = [*_details(exc), *errors]
            result = None
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        result.__pydantic_extra__.update(sections)
        if families:
            result._families = (families[0][0].letter, families[0][1])
        return result

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
        canonical = tuple(canonical_ordering(o) for o in value)  # any accepted spelling in, F>P>Q out
        if len(set(canonical)) != len(canonical):
            raise ValueError("an ordering is listed twice")
        return canonical

    @property
    def ordering_list(self) -> tuple[str, ...]:
        return all_orderings() if self.orderings == "all" else self.orderings

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
        # How the report adjusts its marks decides no result (and leaves the hash of studies run
        # before the key existed as it was).
        data["report"].pop("multiplicity", None)
        if self._families:  # every family's section, not only the first's
            letter, sections = self._families
            data[get_operation(letter).section] = {m: p.model_dump(mode="json") for m, p in sections.items()}
        return stable_hash(data)

    def operation_params(self, op: str) -> BaseModel:
        """Return the params section of the operation with letter ``op`` (in a study of families, the first family's)."""
        return self.__pydantic_extra__[get_operation(op).section]

    @property
    def families(self) -> tuple[str, ...]:
        """Return the study's families, one per method of the section whose ``method`` is a list; () for one family."""
        return tuple(self._families[1]) if self._families else ()

    @property
    def family_operation(self) -> str | None:
        """Return the letter of the operation whose method the families differ in (``Q``), None for one family."""
        return self._families[0] if self._families else None

    def for_family(self, family: str) -> "StudyParams":
        """Return the params one family runs with: its method's section, every other key as the file's.

        They are the params of a file that names that one method (the same hash), so a family's
        states, evaluations and results are those of the one-method study with the same keys.
        """
        if not self._families:
            raise ValueError(f"family {family!r}: the study has one family (no operation's method is a list)")
        letter, sections = self._families
        if family not in sections:
            raise ValueError(f"family {family!r}: the study's families are {', '.join(sections)}")
        params = self.model_copy()
        object.__setattr__(params, "__pydantic_extra__",
                           {**self.__pydantic_extra__, get_operation(letter).section: sections[family]})
        params._families = None
        return params


RESERVED_SECTIONS.update(StudyParams.model_fields, {"seed"})
_BUILTIN_ERRORS = {"extra_forbidden", "missing"}


def _details(exc: ValidationError, prefix: tuple = ()) -> list[InitErrorDetails]:
    """Return a validation error's errors, under ``prefix``, as ``ValidationError.from_exception_data`` takes them."""
    out = []
    for e in exc.errors():
        ctx = {k: str(v) for k, v in (e.get("ctx") or {}).items()}
        kind = e["type"] if e["type"] in _BUILTIN_ERRORS else PydanticCustomError(e["type"], e["msg"], ctx)
        out.append(InitErrorDetails(type=kind, loc=(*prefix, *e["loc"]), input=e["input"], ctx=ctx))
    return out


def _method_families(spec, raw: dict) -> tuple[dict[str, BaseModel], list[InitErrorDetails]]:
    """Return one validated section per method of ``raw["method"]`` (a list), and the problems found.

    Each method's section keeps the keys that method reads and leaves out the keys only another
    listed method reads (``OperationParams.method_keys``); a key no listed method reads is an error,
    as it is with one method.
    """
    methods = raw["method"]
    if len(methods) < 2 or len(set(map(str, methods))) != len(methods) or not all(isinstance(m, str) for m in methods):
        return {}, [InitErrorDetails(type=PydanticCustomError(
            "families", "a list of two or more different methods, one family of the study each (or one method, "
            "not in a list)"), loc=(spec.section, "method"), input=methods)]
    only = spec.params_model.method_keys()
    found, errors = {}, []
    for method in methods:
        others = {k for m in methods if m != method for k in only.get(m, ())} - set(only.get(method, ()))
        try:
            found[method] = spec.params_model.model_validate(
                {**{k: v for k, v in raw.items() if k not in others}, "method": method})
        except ValidationError as exc:
            errors += [e for e in _details(exc, (spec.section,)) if e not in errors]
    return ({} if errors else found), errors


SEED_AND_SEEDS = "set either 'seeds' (a list, e.g. [0, 1, 2]) or the older 'seed' (one number), not both"


def stable_hash(data) -> str:
    """Return a 16-hex-digit hash of JSON-serialisable ``data`` (key order does not matter)."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _merged(raw: dict, changes: dict) -> dict:
    """Return ``raw`` with ``changes`` laid over it, section by section (a section's other keys kept)."""
    out = dict(raw)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def load_params(path: str | Path, changes: dict | None = None) -> StudyParams:
    """Return the validated parameters in ``path``, or raise ``ParamsError`` saying what to fix.

    ``changes``: keys laid over the file's, section by section (``{"finetune": {"lr": 1e-4}}``),
    as an ordering notebook run by hand may ask; validated as the file's own keys are.
    """
    path = paths.resolve(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found; pass one of {sorted(p.name for p in paths.PARAMS_DIR.glob('*.yaml'))}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of keys to values at the top level, got {type(raw).__name__}")
    if changes:
        if not isinstance(changes, dict):
            raise ParamsError(f"{path}: the changes laid over the file must be a mapping of keys to values "
                              f"(e.g. {{'finetune': {{'lr': 1e-4}}}}), got {type(changes).__name__}")
        raw = _merged(raw, changes)
        path = Path(f"{path} (with the notebook's changes {changes})")
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
