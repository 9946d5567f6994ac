"""What a benchmark is to the study, and the registry of the study's benchmarks.

A benchmark is a package under ``orderstudy/benchmarks/`` that defines a ``Benchmark`` subclass
and registers an instance (``benchmarks/__init__.py``: ``BUILT_IN``). It owns everything that
is particular to it: which tasks it has and how they are sampled, the prompt each item shows the
model (its ``Prompt``: the one rendering that the generation budgets, the cut to the context and
the lm-eval task all use), its generation budgets, its lm-eval task configuration, how an item
is scored and how item scores make a task's score, and how task scores make its score. The
evaluation engine (``evaluation/engine.py``) only runs lm-eval and hands every benchmark its
tasks' samples; the report reads the benchmark names recorded in the result files.

This module is at the bottom layer: it defines the interface and the registry and imports no
benchmark. The methods that score are called with the study's ``EvaluationParams``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fingerprint import code_fingerprint
from .prompts import Prompt  # noqa: F401  (a benchmark's prompt: defined with the renderer)

# What a benchmark asks of a model: lm-eval generates or scores log-likelihoods; a fidelity
# benchmark compares the model with the base, on the base's next-token distributions
# ("divergence", ``measure``) or on another benchmark's answers ("agreement", ``compare``).
REQUEST_TYPES = ("generation", "loglikelihood", "divergence", "agreement")
LM_EVAL_REQUEST_TYPES = ("generation", "loglikelihood")


@dataclass
class TaskScore:
    """One task's outcome on one model: its entry in the evaluation, its item scores, its raw answers.

    ``entry`` holds at least ``score`` (percent) and ``n`` (items scored); ``items`` maps item id
    to its score (0-1), items left out of the score absent; ``predictions`` maps item id to the
    model's answer text (for benchmarks whose answers are kept for rescoring), else ``None``.
    ``unscored`` says why the task has no score (``entry`` is then empty).
    """

    entry: dict[str, Any] = field(default_factory=dict)
    items: dict[str, float] = field(default_factory=dict)
    predictions: dict[str, str] | None = None
    unscored: str | None = None
    answers: dict[str, str] | None = None   # item id -> the answer the model chose (what a flip compares)


class Benchmark:
    """The interface every benchmark implements; see the module docstring.

    Class attributes to set: ``name`` (its key in params, results and tables), ``display_name``
    (printed), ``items_key`` (the params key of its sample size per task, for the report's power
    table) and ``code`` (the files whose code decides its scores: fingerprinted into the
    evaluation's key, so a scorer fix re-scores every state without rebuilding any). Set
    ``fingerprint_version`` to keep stored evaluations across a change that scores nothing
    differently (docs/caching.md).
    """

    name: str = ""
    display_name: str = ""
    items_key: str = ""
    code: tuple[Path, ...] = ()
    fingerprint_version: str | None = None
    # An accuracy is better higher; a divergence from the base, or a share of answers changed, lower.
    higher_is_better: bool = True
    # Item scores in [0, 1] (a proportion's intervals, which stay inside [0, 100]); False: any value
    # >= 0 (a divergence), whose intervals are the t interval of a mean.
    bounded: bool = True
    unit: str = "%"   # what its score (and a difference of two, in points) is counted in, as printed
    # Its score is itself a distance from the base (0 for the base): no change rate against the base.
    from_base: bool = False

    # -- what it is -------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Return what identifies its scoring code in an evaluation's key."""
        if self.fingerprint_version is not None:
            return self.fingerprint_version
        return code_fingerprint(self.code or (Path(inspect.getsourcefile(type(self))),))

    def check_setting(self, key: str, value) -> str | None:
        """Return why ``value`` of the evaluation section's ``key`` cannot be one of its settings; ``None`` if it can.

        Called for every key of the section while the params are validated: a benchmark checks the
        keys it owns (what pydantic's types cannot say, e.g. LawBench's task ids) and passes on the rest.
        """
        return None

    def tasks(self, params) -> tuple[str, ...]:
        """Return its tasks' ids under ``params``."""
        raise NotImplementedError

    def request_type(self, params) -> str:
        """Return what lm-eval asks the model for: ``generation`` or ``loglikelihood``."""
        raise NotImplementedError

    def lm_eval_name(self, task: str) -> str:
        """Return the lm-eval task name of one of its tasks (unique across benchmarks)."""
        return f"orderstudy_{self.name}_{task}"

    # -- the suite --------------------------------------------------------------------------
    def sample(self, params, seed: int) -> dict[str, list[dict]]:
        """Return the sampled items of every task: ``{task: [item, ...]}``, each item with an ``id``."""
        raise NotImplementedError

    def sources(self, params) -> dict | None:
        """Return where each task's items come from (recorded in results), ``None`` if it is not recorded."""
        return None

    def resources(self, params) -> dict | None:
        """Return what outside its items decides its scores (a JSON record, in the key), ``None`` if nothing."""
        return None

    def resources_key(self, resources: dict | None):
        """Return what of ``resources`` goes in the evaluation's key: what decides scores, not where it was read."""
        return resources

    def budgets(self, params, tokenizer, samples: dict[str, list[dict]]) -> dict[str, dict]:
        """Return each generating task's budget record (``budgets.Budget.record()``); empty for log-likelihood."""
        return {}

    def prompt(self, task: str, item: dict) -> Prompt:
        """Return the prompt lm-eval renders for ``item`` (a row of the task's data file)."""
        raise NotImplementedError

    def fit(self, task: str, item: dict, tokenizer, limit_tokens: int, chat: bool) -> tuple[dict, int]:
        """Return the row written for ``item``, its prompt cut to ``limit_tokens`` tokens, and the tokens cut."""
        raise NotImplementedError

    def ceilings(self, params, tokenizer, samples: dict[str, list[dict]], generation: dict[str, dict],
                 resources: dict | None) -> dict[str, float | None]:
        """Return, for capped tasks, the score of their gold answers cut at the budget (percent)."""
        return {}

    def task_config(self, task: str, params, budget: dict | None, stop: tuple[str, ...]) -> dict:
        """Return the lm-eval task YAML's content (without ``task`` and ``dataset_kwargs``, which the engine adds)."""
        raise NotImplementedError

    def evaluated_items(self, params, sample_ids: dict[str, list[str]]) -> list[dict]:
        """Return the question and prompt text of every evaluated item (no training pair may share one)."""
        return []

    # -- scores -----------------------------------------------------------------------------
    def score_task(self, task: str, samples: list[dict], params, resources: dict | None) -> TaskScore:
        """Return one task's score from lm-eval's samples (sorted by ``doc_id``): each item scored once."""
        raise NotImplementedError

    def weights(self, tasks, params, populations: dict[str, int] | None = None) -> dict[str, float]:
        """Return each task's weight in the benchmark's score, summing to 1: by default, equal.

        ``populations``: what ``populations(tasks, params)`` returned, when the caller read it already.
        """
        tasks = list(tasks)
        return {t: 1.0 / len(tasks) for t in tasks}

    def populations(self, tasks, params) -> dict[str, int]:
        """Return each task's number of items in its full data, where the weights come from it; else empty."""
        return {}

    def aggregation(self, params) -> str:
        """Return how the benchmark's score is aggregated from its tasks', in words (recorded in results)."""
        return "unweighted mean of the tasks"

    def scoring(self, params) -> str:
        """Return how its items are scored, in words (recorded in results)."""
        raise NotImplementedError

    def record(self, resources: dict | None) -> dict:
        """Return what its entry in an evaluation records besides scores (e.g. the tables a scorer used)."""
        return {}

    # -- fidelity to the base ---------------------------------------------------------------
    def uses_lm_eval(self, params) -> bool:
        """Return whether lm-eval asks the model for this benchmark (else ``measure`` or ``compare`` scores it)."""
        return self.request_type(params) in LM_EVAL_REQUEST_TYPES

    def measure(self, suite, samples: dict[str, list[dict]], model, tokenizer, base) -> dict[str, TaskScore]:
        """Return each task's score of ``model`` against the base (request type ``divergence``).

        ``samples`` are its tasks' items as ``sample`` drew them; ``base`` (``evaluation.engine.Base``)
        says where the base's checkpoint is and identifies it, so a reference kept from it is reused.
        """
        raise NotImplementedError

    def compares(self, params) -> tuple[str, ...]:
        """Return the benchmarks whose answers it compares with the base's (request type ``agreement``)."""
        return ()

    def compare(self, answers: dict, base_answers: dict, params) -> dict[str, TaskScore]:
        """Return each task's score from the model's and the base's answers (``{benchmark: {task: {id: answer}}}``)."""
        raise NotImplementedError


_REGISTRY: dict[str, Benchmark] = {}


def register_benchmark(benchmark: Benchmark) -> Benchmark:
    """Return ``benchmark`` after adding it to the registry; its name must be new."""
    if _REGISTRY.get(benchmark.name) is benchmark:
        return benchmark
    if not benchmark.name.isidentifier():
        raise ValueError(f"benchmark {benchmark.name!r}: its name must be a Python identifier (it is a params value)")
    if benchmark.name in _REGISTRY:
        raise ValueError(f"benchmark {benchmark.name!r} is already registered")
    _REGISTRY[benchmark.name] = benchmark
    return benchmark


def unregister_benchmark(name: str) -> None:
    """Remove a benchmark from the registry (tests that register one of their own)."""
    _REGISTRY.pop(name, None)


def benchmarks() -> tuple[Benchmark, ...]:
    """Return the registered benchmarks, in registry order."""
    return tuple(_REGISTRY.values())


def names() -> tuple[str, ...]:
    """Return the registered benchmarks' names, in registry order."""
    return tuple(_REGISTRY)


def get_benchmark(name: str) -> Benchmark:
    """Return the registered benchmark ``name``, or raise ``KeyError`` naming the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"benchmark {name!r} is not registered; known: {', '.join(_REGISTRY) or 'none'}") from None


def trait(name: str, attribute: str):
    """Return a class attribute of the registered benchmark ``name`` (``bounded``, ``higher_is_better``,
    ``from_base``, ``unit``...); for a benchmark not registered (a result file's), the interface's default."""
    return getattr(_REGISTRY.get(name, Benchmark), attribute)


def display_name(name: str) -> str:
    """Return a benchmark's printed name (``lawbench`` -> ``LawBench``); an unknown one unchanged."""
    benchmark = _REGISTRY.get(name)
    return benchmark.display_name or name if benchmark is not None else name
