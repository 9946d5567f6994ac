"""Checks a study's inputs before any work: the device, the model, the data, the packages, the disk space.

``input_problems`` looks for every input a study needs and is missing, all at once and without
touching the network: the device, the model source (a hub id only in the local Hugging Face
cache), the benchmarks' data, the fine-tuning and calibration files, ChERRANT's tables. It reads
only directories and file headers, so ``orderstudy check`` answers in seconds. ``preflight`` runs
it first, then the checks that read the inputs (the model's shape, the benchmark sample) and the
disk space.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..core import paths
from ..core.operation import get_operation, letters
from ..core.params import ParamsError, StudyParams, load_params
from ..core.plan import make_plan, parse_ordering

OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


@dataclass(frozen=True)
class Problem:
    """One missing or unusable input: the params key it comes from, what is wrong and what is expected."""

    key: str
    message: str

    def line(self, params_file) -> str:
        return f"{params_file}: key '{self.key}': {self.message}"


class InputProblems(ParamsError):
    """Every problem ``input_problems`` found, one line each (the file, the key, what is expected)."""

    def __init__(self, params_file, problems: list[Problem]):
        self.params_file = params_file
        self.problems = list(problems)
        super().__init__("\n".join(p.line(params_file) for p in self.problems))


def hub_offline() -> bool:
    """Return whether the Hugging Face libraries are told to stay offline (``HF_HUB_OFFLINE=1`` and its kin)."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in OFFLINE_ENV)


@contextmanager
def offline_hub():
    """Keep the Hugging Face libraries off the network inside the block: no download, no retry."""
    saved = {name: os.environ.get(name) for name in OFFLINE_ENV}
    os.environ.update(dict.fromkeys(OFFLINE_ENV, "1"))
    import sys

    constants = sys.modules.get("huggingface_hub.constants")  # read at import: set it too when already loaded
    saved_constant = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if constants is not None:
            constants.HF_HUB_OFFLINE = saved_constant


def check_inputs(params_file, params: StudyParams | None = None, offline: bool | None = None) -> StudyParams:
    """Return the params of ``params_file`` after ``input_problems``; raise ``InputProblems`` listing every one found."""
    params_file = paths.resolve(params_file)
    params = params or load_params(params_file)
    problems: list[Problem] = []
    for each in [params.for_family(f) for f in params.families] or [params]:  # every family's section
        problems += [p for p in input_problems(each, offline=hub_offline() if offline is None else offline)
                     if p not in problems]
    if problems:
        raise InputProblems(params_file, problems)
    return params


def input_problems(params: StudyParams, offline: bool = True) -> list[Problem]:
    """Return every input the study needs that is missing, in params order; never touches the network.

    ``offline``: a hub id the local Hugging Face cache lacks is a problem (else it is downloaded
    when the study first loads it).
    """
    problems: list[Problem] = []
    problems += _device_problems(params)
    problems += _model_problems(params, offline)
    ops = _planned_operations(params)
    trains = any(get_operation(op).needs_training_data for op in ops)
    # Calibration text: each calibrating operation's calibration_data, "finetune" (the fine-tuning pairs) or a file.
    calibration = {get_operation(op).section: getattr(params.operation_params(op), "calibration_data", "finetune")
                   for op in ops if get_operation(op).needs_calibration(params.operation_params(op))}
    uses_finetune_data = trains or "finetune" in calibration.values()
    ev = params.evaluation
    lawbench_training = uses_finetune_data and params.finetune.data == "lawbench"
    if "lawbench" in ev.benchmarks or lawbench_training:
        settings = ({ev.lawbench_setting} if "lawbench" in ev.benchmarks else set()) | ({"zero_shot"} if lawbench_training else set())
        problems += _lawbench_problems(params, sorted(settings))
    problems += _mmlu_problems(params)
    if "lawbench" in ev.benchmarks:
        problems += _cherrant_problems(params)
    jsonl = '{"instruction", "question"?, "answer"} lines'
    if uses_finetune_data and params.finetune.data != "lawbench":
        problems += _jsonl_problem("finetune.data", params.finetune.data, f"'lawbench' or a JSONL file of {jsonl}")
    for section, source in calibration.items():
        if source != "finetune":
            problems += _jsonl_problem(f"{section}.calibration_data", source,
                                       f"'finetune' (the fine-tuning pairs) or a JSONL file of {jsonl}")
    if params.executor == "ray" and importlib.util.find_spec("ray") is None:
        problems.append(Problem("executor", "'ray' needs the ray package, which is not installed here (it is pinned "
                                "in requirements.txt: pip install -r requirements.txt); expected 'local' or ray installed"))
    return problems


def _planned_operations(params: StudyParams) -> list[str]:
    used = {op for state in make_plan(params.orderings).steps for op in parse_ordering(state)}
    return [op for op in letters() if op in used]


def _device_problems(params: StudyParams) -> list[Problem]:
    if params.device != "cuda":
        return []
    import torch

    if torch.cuda.is_available():
        return []
    why = "a CPU-only torch build" if torch.version.cuda is None else "no CUDA device visible"
    return [Problem("device", f"'cuda' was asked for, but torch sees no CUDA device here ({why}); "
                              "expected 'cpu', or 'auto' (CUDA where there is one)")]


def _model_problems(params: StudyParams, offline: bool) -> list[Problem]:
    from ..checkpoints import models

    m = params.model
    try:
        # Where the study's loading will look (models.locate_source), checked here before any work.
        location, kwargs = models.locate_source(m.source, m.gguf_file, m.revision)
    except models.ModelError as exc:
        key, _, message = str(exc).partition(": ")
        return [Problem(key if key.startswith("model.") else "model.source", message if key.startswith("model.") else str(exc))]
    if isinstance(location, Path):
        if kwargs:
            return []
        try:
            models.check_checkpoint(location)  # all its files there, their headers readable
        except models.ModelError as exc:
            return [Problem("model.source", f"{exc}; expected a complete checkpoint directory")]
        return []
    if not offline:
        return []  # a hub id: downloaded when the study first loads it
    from huggingface_hub import try_to_load_from_cache  # reads the cache directory only, no request
    from huggingface_hub.constants import HF_HUB_CACHE

    found = try_to_load_from_cache(location, "config.json", revision=m.revision)
    if isinstance(found, str):
        return []
    at = f" at revision {m.revision!r}" if m.revision else ""
    return [Problem("model.source", f"hub id {location!r}{at} is not in the local Hugging Face cache ({HF_HUB_CACHE}) "
                                    "and nothing is downloaded offline; expected a local checkpoint directory, or the "
                                    f"hub id downloaded beforehand (huggingface-cli download {location})")]


def _lawbench_problems(params: StudyParams, settings: list[str]) -> list[Problem]:
    from ..core.benchmark import get_benchmark

    ev = params.evaluation
    data_dir = paths.resolve(ev.lawbench_data)
    expected = f"a directory of LawBench task files <data>/{settings[0]}/<task>.json (run `make data`)"
    if not data_dir.is_dir():
        return [Problem("evaluation.lawbench_data", f"{data_dir} does not exist; expected {expected}")]
    tasks = get_benchmark("lawbench").tasks(ev)
    missing = [f"{s}/{t}.json" for s in settings for t in tasks if not (data_dir / s / f"{t}.json").is_file()]
    if not missing:
        return []
    return [Problem("evaluation.lawbench_data", f"{data_dir} lacks {len(missing)} LawBench task file(s) "
                                                f"({_few(missing)}); expected {expected}")]


def _mmlu_problems(params: StudyParams) -> list[Problem]:
    from ..benchmarks.data import MMLU_GROUPS

    ev = params.evaluation
    subjects = [s for name in ev.benchmarks for s in MMLU_GROUPS.get(name, ())]
    if not subjects:
        return []
    data_dir = paths.resolve(ev.mmlu_data)
    expected = "a directory of MMLU <subject>.jsonl files with question, choices, answer (run `make data`)"
    if not data_dir.is_dir():
        return [Problem("evaluation.mmlu_data", f"{data_dir} does not exist; expected {expected}")]
    missing = [f"{s}.jsonl" for s in dict.fromkeys(subjects) if not (data_dir / f"{s}.jsonl").is_file()]
    if not missing:
        return []
    return [Problem("evaluation.mmlu_data", f"{data_dir} lacks {len(missing)} MMLU subject file(s) ({_few(missing)}); "
                                            f"expected {expected}")]


def _cherrant_problems(params: StudyParams) -> list[Problem]:
    from ..benchmarks.lawbench import correction

    spec = params.evaluation.cherrant_data
    if spec in ("auto", "packaged"):
        return []
    where = paths.resolve(spec)
    expected = (f"'auto', 'packaged', or a LawBench checkout (or its evaluation/utils/data/) holding "
                f"{correction.CILIN_FILE} and {correction.CONFUSION_FILE}")
    if not where.exists():
        return [Problem("evaluation.cherrant_data", f"{where} does not exist; expected {expected}")]
    if correction.lawbench_data_dir(where) is None:
        return [Problem("evaluation.cherrant_data", f"{where} holds no ChERRANT tables; expected {expected}")]
    return []


def _jsonl_problem(key: str, value: str, expected: str) -> list[Problem]:
    path = paths.resolve(value)
    return [] if path.is_file() else [Problem(key, f"{path} does not exist; expected {expected}")]


def _few(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def preflight(study) -> None:
    """Check, before any work, what would otherwise fail late: every missing input at once, then the model, data, disk space."""
    for family in study.for_each_family():  # each family's own section (GPTQ's groups, its calibration file)
        check_inputs(family.params_file, family.params)
        family.check_sources()  # a pruned shape transformers would refuse stops here, not after the work
    study.suite  # samples the benchmarks now: a malformed data file stops the run here
    if study.trains:
        study.training_examples  # a malformed training file stops it here too
    for family in study.for_each_family():
        for spec in family.used_operations:   # each calibrating operation's text (pruning's, GPTQ's)
            if spec.needs_calibration(family.params.operation_params(spec.letter)):
                family.calibration_of(spec.letter)
    need = estimate_disk_bytes(study)
    free = shutil.disk_usage(study.paths.dir).free
    if need > free:
        raise ParamsError(f"{study.params_file}: the planned checkpoints need about {need / 2**30:.1f} GiB "
                          f"but {study.paths.dir} has {free / 2**30:.1f} GiB free; free space or run fewer orderings")


def estimate_disk_bytes(study) -> int:
    """Return a generous estimate of the bytes the study's missing states will take."""
    from ..checkpoints import models

    base = study.store.state("base")
    if study.store.is_complete(base, verify_hashes=False):
        base_bytes = base.record()["size_bytes"]
    else:
        src = paths.resolve(study.params.model.source)
        base_bytes = models.dir_size_bytes(src) if src.exists() else 0
    missing = set()
    for seeded in study.variants():  # each seed's and family's own states; a shared state counts once
        missing |= {seeded.store.key(s) for s in seeded.plan.states
                    if not seeded.store.is_complete(seeded.store.state(s), verify_hashes=False)}
    return base_bytes * len(missing)
