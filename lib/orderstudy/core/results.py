"""The result file of one run (``outputs/<study>/results/<ordering>.json``): its schema, written by the study, read by the report.

``ResultFile`` is the schema; the study validates every result through it before writing
(``write_result``: a result that does not fit is a bug and fails loudly), and the report reads
every file through it (``read_result``). A file that does not fit raises ``ResultFileError``
naming the file, the key and what was expected.

Strictness: the top level is closed (an unknown key is an error: a typo or a file from another
version of the study, not something to ignore); the blocks inside (a benchmark's entry, a task's,
a step's, the runtime records) are open: their known keys are typed, others are kept as they are.
Adding a key is one line: a field on the model it belongs to (top level: ``ResultFile``; a
benchmark's: ``BenchmarkResult``; a task's: ``TaskResult``; a step's: ``StepRecord``). Changing
what a key means, or removing one, is a new ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import atomic
from .plan import parse_ordering

# The one definition of the schema's version: the study writes it, the report reads only it, and
# it is part of every result's key (a new version reruns the orderings).
SCHEMA_VERSION = 1
STATUSES = ("ok", "failed")


class ResultFileError(ValueError):
    """A result or items file that does not follow the schema, naming the file, the key and what was expected."""


def problem(path: Path | str, key: str, expected: str, got: Any) -> ResultFileError:
    """Return the error for ``key`` of ``path``: what was expected, what the file has."""
    shown = repr(got) if len(repr(got)) < 80 else repr(got)[:77] + "..."
    return ResultFileError(f"{path}: key '{key}': expected {expected}, got {shown}")


# strict: a count written as 3.0 or true, a score as "high", is a bug upstream, not something to coerce.
_STRICT = dict(strict=True, allow_inf_nan=False, frozen=True)


class _Open(BaseModel):
    """A block whose keys other than the typed ones are kept as they are."""

    model_config = ConfigDict(extra="allow", **_STRICT)


_SCORE = "a score in percent (at most 100)"


class TaskResult(_Open):
    """One task's score in a benchmark."""

    # No lower bound: LawBench's 3-4/3-5 task score, (log 216 - mean distance) / log 216, is below 0
    # when predictions are over 216 times off; the benchmark's mean of task scores can be too.
    score: float = Field(description=_SCORE)
    n: int = Field(description="the number of items")
    abstention_rate: float | None = Field(None, description="a fraction or null")
    weight: float | None = Field(None, ge=0, le=1, description="the task's weight (0-1)")  # None: equal weights
    # A task whose answers need more tokens than evaluation.max_new_tokens allowed: its score is
    # bounded by ceiling_pct (its gold answers cut at max_new_tokens).
    capped: bool = Field(False, description="true or false")
    max_new_tokens: int | None = Field(None, description="a number of tokens")
    ceiling_pct: float | None = Field(None, description="a score in percent or null")
    excluded_items: int | None = Field(None, description="the number of items left out of the score")
    truncated_prompts: int | None = Field(None, description="the number of prompts cut to fit the context")
    population: int | None = Field(None, description="the subject's number of questions in the full data")


class BenchmarkResult(_Open):
    """One benchmark's score: the weighted mean of its tasks' scores (``aggregation`` says how)."""

    score: float = Field(description=_SCORE)
    scoring: str = Field("", description="how it was scored")
    n_items: int | None = Field(None, description="the number of items")
    tasks: dict[str, TaskResult] = Field(description="an object of task -> {score, n}")
    aggregation: str = Field("", description="how task scores are aggregated")
    generation: dict[str, Any] | None = Field(None, description="an object: the generation budgets")
    capped_tasks: list[str] | None = Field(None, description="a list of task names")
    unscored_tasks: dict[str, str] | None = Field(None, description="an object of task -> why it has no score")
    cherrant: dict[str, Any] | None = Field(None, description="an object: the ChERRANT data used, or null")

    def weights(self) -> dict[str, float]:
        """Return each task's weight in the score, summing to 1 (equal when the file gives none)."""
        given = {t: s.weight for t, s in self.tasks.items()}
        if self.tasks and all(w is not None for w in given.values()) and sum(given.values()) > 0:
            total = sum(given.values())
            return {t: w / total for t, w in given.items()}
        return {t: 1.0 / len(self.tasks) for t in self.tasks}


class ErrorRecord(_Open):
    """Why a run failed."""

    type: str = Field(description="the exception's type name")
    message: str = Field(description="the exception's message")
    traceback: str | None = Field(None, description="the traceback, or null")
    step: str | None = Field(None, description="the state being made when it failed")


class RunFamily(_Open):
    """The family of a run in a study of several (``quantize.method: [nf4, gptq]``)."""

    name: str = Field(description="the family: the method its runs apply, such as 'gptq'")
    operation: str = Field(description="the letter of the operation the families differ in, such as 'Q'")
    families: list[str] = Field(description="every family of the study, in the params file's order")


class StepRecord(_Open):
    """One state on the ordering's path: built or reused, its size (what the operation recorded is kept too)."""

    state: str = Field(description="the state's name, such as 'F>P'")
    label: str | None = Field(None, description="the state's label")
    seed: int | None = Field(None, description="the seed that decided the state, or null when every seed shares it")
    operation: str | None = Field(None, description="the operation's letter, or null for the base")
    key: str | None = Field(None, description="the state's key")
    reused: bool | None = Field(None, description="true or false")
    seconds: float | None = Field(None, description="seconds")
    build_seconds: float | None = Field(None, description="seconds, or null")
    size_bytes: int | None = Field(None, description="bytes on disk")
    n_params: int | None = Field(None, description="a parameter count or null")
    quantized: bool | None = Field(None, description="true or false")


class EvaluationRecord(_Open):
    """How the final state was evaluated."""

    reused: bool = Field(description="true or false")
    seconds: float = Field(description="seconds")
    suite: str = Field(description="the suite's key")
    runtime: dict[str, Any] | None = Field(None, description="an object: engines, batch sizes, timings, or null")


class TrainingDataRecord(_Open):
    """Where the fine-tuning and calibration pairs come from (null where the study has no such step)."""

    finetune: dict[str, Any] | None = Field(None, description="an object, or null")
    calibration: dict[str, Any] | None = Field(None, description="an object by operation section (prune, quantize), or null")


class ResultFile(BaseModel):
    """One run's result file (see the module's docstring for what is strict and how to add a key).

    The keys a report needs are required (``schema``, ``study``, ``ordering``, ``status``; for a
    finished run ``size_bytes`` and ``benchmarks``, for a failed one ``error``, see
    ``check_status``); the others are optional, as files written before a key existed lack it.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, **_STRICT)

    schema_version: int = Field(alias="schema", description=f"the schema number {SCHEMA_VERSION}")
    study: str = Field(description="the study name")
    ordering: str = Field(description="an ordering such as 'F>P>Q' or 'base'")
    seed: int | None = Field(None, description="the run's seed (an integer)")
    family: RunFamily | None = Field(None, description="null, or the run's family in a study of several: "
                                     "an object with 'name', 'operation' and 'families'")
    operations: dict[str, dict[str, str]] | None = Field(
        None, description="an object: operation letter -> its names (name, name_zh, title) and params section")
    status: Literal["ok", "failed"] = Field(description=" or ".join(repr(s) for s in STATUSES))
    error: ErrorRecord | None = Field(None, description="null, or an object with 'type' and 'message'")
    size_bytes: int | None = Field(None, gt=0, description="bytes on disk (a positive integer) or null")
    n_params: int | None = Field(None, description="a parameter count or null")
    benchmarks: dict[str, BenchmarkResult] | None = Field(None, description="an object of benchmark name -> scores")
    steps: list[StepRecord] | None = Field(None, description="a list of step records")
    state_key: str | None = Field(None, description="the final state's key")
    result_key: str | None = Field(None, description="the result's key")
    params_file: str | None = Field(None, description="the params file's path")
    params_hash: str | None = Field(None, description="the params' hash")
    sample_ids: dict[str, dict[str, list[str]]] | None = Field(None, description="benchmark -> task -> item ids")
    lawbench_sources: dict[str, dict[str, Any]] | None = Field(None, description="task -> where its items come from")
    versions: dict[str, str | None] | None = Field(None, description="package -> version, null when not installed")
    device: str | None = Field(None, description="the device")
    dtype: str | None = Field(None, description="the dtype")
    provenance: dict[str, Any] | None = Field(None, description="the base model's provenance, or null")
    engine: dict[str, Any] | None = Field(None, description="an object: the evaluation engine")
    finished_at: str | None = Field(None, description="a time stamp")
    # A finished run's (OrderingRun.finish):
    weights_bytes: int | None = Field(None, gt=0, description="bytes (a positive integer) or null")
    base_bf16_weights_bytes: int | None = Field(None, gt=0, description="bytes (a positive integer) or null")
    quantized: bool | None = Field(None, description="true or false")
    items_file: str | None = Field(None, description="a path relative to the study directory, or null")
    evaluation: EvaluationRecord | None = Field(None, description="an object: how the evaluation ran")
    training_data: TrainingDataRecord | None = Field(None, description="an object: the training and calibration data")

    @field_validator("ordering")
    @classmethod
    def _parses(cls, text: str) -> str:
        parse_ordering(text)
        return text


    def document(self) -> dict:
        """Return the file's content: every key it was given, nothing added."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def check_status(result: ResultFile, path: Path | str) -> None:
    """Raise ``ResultFileError`` when a key the run's status needs is missing or null."""
    if result.status == "failed" and result.error is None:
        raise ResultFileError(f"{path}: key 'error': a failed ordering needs an object with 'type' and 'message', "
                              "got null or nothing")
    if result.status == "ok":
        for key in ("size_bytes", "benchmarks"):
            if getattr(result, key) is None:
                field = ResultFile.model_fields[key]
                raise ResultFileError(f"{path}: key '{key}' is missing or null; a finished run needs "
                                      f"{field.description}")


def parse(data: Any, path: Path | str) -> ResultFile:
    """Return the result in ``data`` (read from ``path``) as a ``ResultFile``, or raise ``ResultFileError``."""
    if not isinstance(data, dict):
        raise problem(path, "(top level)", "a JSON object", type(data).__name__)
    # The version first: a file of another version fails on it, not on whatever else changed.
    if "schema" not in data:
        raise ResultFileError(f"{path}: key 'schema' is missing; expected the schema number {SCHEMA_VERSION}")
    version = data["schema"]
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise problem(path, "schema", f"{SCHEMA_VERSION} (this version reads schema {SCHEMA_VERSION} only)", version)
    try:
        result = ResultFile.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, data, path) from None
    check_status(result, path)
    check_percentages(result, path)
    return result


def check_percentages(result: ResultFile, path: Path | str) -> None:
    """Raise ``ResultFileError`` for a score above 100 percent, except a divergence's (a benchmark not bounded)."""
    from .benchmark import trait

    for name, entry in (result.benchmarks or {}).items():
        if not trait(name, "bounded"):
            continue
        scores = [(f"benchmarks.{name}.score", entry.score),
                  *((f"benchmarks.{name}.tasks.{t}.score", r.score) for t, r in entry.tasks.items())]
        for key, score in scores:
            if score > 100:
                raise problem(path, key, _SCORE, score)


def read_json_file(path: Path) -> Any:
    """Return the JSON document in ``path``, or raise ``ResultFileError`` saying where it breaks."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise ResultFileError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def read_result(path: Path | str) -> ResultFile:
    """Return the result file at ``path``, validated."""
    path = Path(path)
    return parse(read_json_file(path), path)


def write_result(path: Path | str, result: dict) -> Path:
    """Write ``result`` to ``path`` after validating it: one that does not fit the schema is a bug and raises.

    What is validated is what is written: the JSON text, read back.
    """
    path = Path(path)
    text = json.dumps(result, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    try:
        parse(json.loads(text), path)
    except ResultFileError as exc:
        raise ResultFileError(f"{exc} (not written: the study made a result that does not fit "
                              "orderstudy/core/results.py; fix the code that made the key, or the schema)") from None
    return atomic.write_text(path, text)


def _explain(exc: ValidationError, data: dict, path: Path | str) -> ResultFileError:
    """Return the first validation error as ``<file>: key '<a.b.c>': expected ..., got ...``."""
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc)
    if error["type"] == "extra_forbidden":
        return ResultFileError(f"{path}: key '{key}': not a key of a result file (schema {SCHEMA_VERSION}); expected "
                               f"one of {', '.join(f.alias or n for n, f in ResultFile.model_fields.items())}")
    expected = _description(error["loc"]) or error["msg"]
    if error["type"] == "missing":
        return ResultFileError(f"{path}: key '{key}' is missing; expected {expected}")
    detail = "" if error["type"].endswith("_type") or error["type"] == "literal_error" else f" ({error['msg']})"
    return problem(path, key, expected + detail, _value_at(data, error["loc"]))


def _description(loc: tuple) -> str | None:
    """Return the description of the field at ``loc``, walking the models, dicts and lists on the way."""
    kind, description = ResultFile, None
    for part in loc:
        kind = _unwrap(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            fields = {f.alias or n: f for n, f in kind.model_fields.items()}
            if part not in fields:
                return description
            description, kind = fields[part].description, fields[part].annotation
        elif get_origin(kind) in (dict, list):
            kind = get_args(kind)[-1]
        else:
            return description
    return description


def _unwrap(kind):
    """Return ``X`` for ``X | None``."""
    args = [a for a in get_args(kind) if a is not type(None)]
    return args[0] if get_origin(kind) not in (dict, list, Literal, None) and len(args) == 1 else kind


def _value_at(data: Any, loc: tuple) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


__all__ = ["SCHEMA_VERSION", "BenchmarkResult", "ErrorRecord", "ResultFile", "ResultFileError", "StepRecord",
           "TaskResult", "check_status", "describe_provenance", "parse", "read_result", "write_result"]


def describe_provenance(provenance: dict | None) -> str:
    """Return one line saying where the base model comes from, for a report's header.

    >>> describe_provenance({"source": "m.gguf", "format": "gguf", "file": "m.gguf", "sha256": "ab" * 32,
    ...           "gguf_file_type": "MOSTLY_Q4_1", "weight_grid": {"on_4bit_grid": True}, "note": "already 4-bit"})
    'Base model: m.gguf (GGUF MOSTLY_Q4_1, sha256 abababababab…). Note: already 4-bit.'
    """
    if not provenance:
        return "Base model: provenance not recorded."
    kind = provenance.get("format")
    made = provenance.get("made_from")
    if kind == "gguf":
        origin = f"GGUF {provenance.get('gguf_file_type') or ''}, sha256 {provenance['sha256'][:12]}…".replace("GGUF ,", "GGUF,")
    elif kind == "hub":
        origin = f"hub, revision {provenance.get('revision') or 'default'}, commit {provenance.get('commit') or 'unknown'}"
    else:
        origin = f"{kind} checkpoint directory"
        if made:
            origin += (f", made from {made.get('file')} ({made.get('format', '').upper()} {made.get('gguf_file_type') or ''}"
                       f", sha256 {str(made.get('sha256', ''))[:12]}…, from {made.get('package', 'a file')})")
    line = f"Base model: {provenance.get('source', '?')} ({origin})."
    if provenance.get("note"):
        line += f" Note: {provenance['note']}."
    return line
