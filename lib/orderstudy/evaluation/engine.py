"""Scores a model on the study's benchmarks with lm-eval, on a fixed seeded sample of items.

The benchmarks are the registered ones (``core/benchmark.py``; ``benchmarks/`` holds them). Each
gives its tasks' samples, prompts, budgets and lm-eval task configuration; at run time a small
YAML per task is written next to the sampled items (lm-eval resolves a relative ``data_files``
against the current directory, so the paths are absolute). lm-eval generates (or scores the
log-likelihood of) the answers; each benchmark then scores its tasks from lm-eval's samples, and
``scores.aggregate`` makes the benchmark's score from its tasks' the way the benchmark says.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core import atomic
from ..core.prompts import prompt_tokens
from ..core.benchmark import get_benchmark
from . import backends, scores as benchmark_scores
from ..benchmarks import budgets, data
from ..core.params import EvaluationParams, stable_hash

TASKS_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "tasks"
# lm-eval's MMLU scores four continuations (" A" ... " D") per question.
MMLU_CHOICES = 4
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSuite:
    """The tasks of one study's evaluation, written to disk once and shared by every model."""

    key: str                       # hash of everything that decides the scores but the model
    tasks_dir: Path                # generated lm-eval YAMLs
    benchmarks: dict[str, dict[str, str]]   # benchmark -> {task id (e.g. '1-1') -> lm-eval task name}
    sample_ids: dict[str, dict[str, list[str]]]
    params: EvaluationParams
    lawbench_sources: dict
    # benchmark -> task -> how many tokens it generates and why (budgets.Budget.record()), with
    # the prompts cut to fit the context; for capped tasks, the ceiling (gold answers cut).
    generation: dict[str, dict[str, dict]] = field(default_factory=dict)
    stop: tuple[str, ...] = ()     # what ends a generation besides the budget
    context_tokens: int | None = None
    # benchmark -> what outside its items decides its scores (Benchmark.resources): 2-1's tables.
    resources: dict[str, dict | None] = field(default_factory=dict)
    chat_template: bool = True     # the study's top-level `chat_template`: generation through the template
    engine: "backends.Engine | None" = None   # the one engine that scores every state (in the key)
    # benchmark -> task -> items, for the benchmarks lm-eval does not ask (fidelity to the base:
    # Benchmark.measure, Benchmark.compare), in the params' order.
    compared: dict[str, dict[str, list[dict]]] = field(default_factory=dict)

    @property
    def cherrant(self) -> dict | None:
        """Where 2-1's cost tables come from (correction.CostTables.source), when 2-1 is evaluated."""
        return (self.resources.get("lawbench") or {}).get("cherrant")

    def lm_eval_tasks(self, benchmark: str) -> list[str]:
        return list(self.benchmarks[benchmark].values())

    def request_type(self, benchmark: str) -> str:
        return get_benchmark(benchmark).request_type(self.params)

    def chat(self, benchmark: str) -> bool:
        """Return whether the benchmark's prompts go through the chat template (generation does, log-likelihood not)."""
        return self.chat_template and self.request_type(benchmark) == "generation"

    def benchmark_of(self, name: str) -> tuple[str, str]:
        """Return ``(benchmark, task)`` of lm-eval task ``name``."""
        for bench, tasks in self.benchmarks.items():
            for task, task_name in tasks.items():
                if task_name == name:
                    return bench, task
        raise KeyError(name)

    def max_new_tokens(self, name: str) -> int:
        """Return the generation budget of lm-eval task ``name`` (0 for a log-likelihood task)."""
        bench, task = self.benchmark_of(name)
        return self.generation.get(bench, {}).get(task, {}).get("max_new_tokens", 0)

    def cost_tables(self):
        """Return 2-1's ChERRANT cost tables as this suite resolved them."""
        from ..benchmarks.lawbench.benchmark import tables

        return tables(self.resources.get("lawbench"))


def lawbench_task_ids(params: EvaluationParams) -> tuple[str, ...]:
    return get_benchmark("lawbench").tasks(params)


def cherrant_tables(params: EvaluationParams):
    """Return the cost tables 2-1 is scored with, as ``evaluation.cherrant_data`` asks (``lawbench.benchmark``)."""
    from ..benchmarks.lawbench.benchmark import cherrant_tables as tables

    return tables(params)


def tokenizer_fingerprint(tokenizer) -> str:
    """Return a hash of what decides how the tokenizer cuts text and renders the chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items())
    return stable_hash({"class": type(tokenizer).__name__, "vocabulary": stable_hash(vocabulary),
                        "chat_template": getattr(tokenizer, "chat_template", None),
                        "eos": tokenizer.eos_token, "bos": tokenizer.bos_token})


def build_suite(params: EvaluationParams, seed: int, work_dir: Path, tokenizer, context_tokens: int,
                engine: "backends.Engine | None" = None, chat_template: bool = True) -> EvalSuite:
    """Return the study's evaluation suite, sampling the items and writing the task YAMLs.

    ``tokenizer`` and ``context_tokens`` are the base model's: every task's generation budget is
    counted in its tokens (``budgets``), and a prompt that does not fit its context with the
    budget is cut from the left, once, here. ``engine`` (``backends.choose_engine``, once per
    study) is part of the key: a change of engine evaluates every state again. Without one, the
    suite is transformers'. ``chat_template`` is the study's top-level setting, which fine-tuning
    and calibration follow too.
    """
    engine = engine or backends.Engine("hf", "no engine given", {"generation": "hf", "loglikelihood": "hf"})
    every = [get_benchmark(name) for name in params.benchmarks]
    compared = {spec.name: spec.sample(params, seed) for spec in every if not spec.uses_lm_eval(params)}
    specs = [spec for spec in every if spec.uses_lm_eval(params)]
    samples = {spec.name: spec.sample(params, seed) for spec in specs}
    resources = {spec.name: spec.resources(params) for spec in specs}
    generation = {spec.name: budget for spec in specs if (budget := spec.budgets(params, tokenizer, samples[spec.name]))}
    sources = (get_benchmark("lawbench").sources(params) or {}) if "lawbench" in samples else {}
    stop = tuple(budgets.stop_sequences(tokenizer, chat_template))
    sample_ids = {b: {t: [i["id"] for i in items] for t, items in tasks.items()} for b, tasks in {**samples, **compared}.items()}
    content = {b: {t: items for t, items in tasks.items()} for b, tasks in {**samples, **compared}.items()}
    # The cap and the tables' location are keyed through what they decide: the budgets, the tables' digests.
    # The sample seed is in the key as "seed"; how benchmark scores are aggregated decides no item's score.
    # The benchmarks' scoring code and the lm-eval task templates are in it: a scorer fix re-scores.
    key = stable_hash({"params": params.model_dump(mode="json", exclude={"max_new_tokens", "cherrant_data", "sample_seed",
                                                                         "mmlu_weight_by_size"}),
                       "seed": seed, "items": content, "generation": generation, "stop": stop,
                       "context_tokens": context_tokens, "chat_template": chat_template,
                       "tokenizer": tokenizer_fingerprint(tokenizer),
                       "resources": {spec.name: spec.resources_key(resources[spec.name]) for spec in specs},
                       "scoring": {spec.name: spec.fingerprint() for spec in every},
                       "templates": templates_fingerprint(), "format": 3, "engine": engine.key()})
    tasks_dir = Path(work_dir) / f"eval-{key}"
    if not (tasks_dir / "suite.json").exists():
        fitted = {spec.name: {task: _fit_prompts(spec, task, items, tokenizer, context_tokens,
                                                 generation.get(spec.name, {}).get(task), chat_template, params)
                              for task, items in samples[spec.name].items()} for spec in specs}
        with atomic.directory(tasks_dir) as tmp:
            for spec in specs:
                for task, items in samples[spec.name].items():
                    rows, cut = fitted[spec.name][task]
                    budget = generation.get(spec.name, {}).get(task)
                    _write_task(tmp, tasks_dir, spec, task, rows, spec.task_config(task, params, budget, stop))
                    generation.setdefault(spec.name, {}).setdefault(task, {})["truncated_prompts"] = cut
                ceilings = spec.ceilings(params, tokenizer, samples[spec.name], generation.get(spec.name, {}),
                                         resources[spec.name])
                for task, ceiling in ceilings.items():
                    generation[spec.name][task]["ceiling_pct"] = ceiling
            atomic.write_json(tmp / "suite.json", {"key": key, "sample_ids": sample_ids, "generation": generation,
                                                   "stop": list(stop), "context_tokens": context_tokens})
    generation = atomic.read_json(tasks_dir / "suite.json").get("generation", generation)
    benchmarks = {spec.name: {task: spec.lm_eval_name(task) for task in samples[spec.name]} for spec in specs}
    return EvalSuite(key, tasks_dir, benchmarks, sample_ids, params, sources, generation, stop, context_tokens,
                     resources, chat_template, engine, compared)


@dataclass(frozen=True)
class Base:
    """The base a state is compared with by the fidelity benchmarks (``kl``, ``flip``).

    ``key`` identifies the base's checkpoint (its state's key: a reference kept from it is reused
    while it holds); ``answers`` are the base's own answers (``{benchmark: {task: {id: answer}}}``,
    its stored evaluation's), ``None`` when the state evaluated is the base itself (``is_self``).
    """

    model_dir: Path
    key: str
    dtype: str
    device: str
    answers: dict | None = None
    is_self: bool = False


def templates_fingerprint() -> str:
    """Return a hash of the lm-eval task templates (their prompts and metrics decide the scores)."""
    return stable_hash({p.name: p.read_text(encoding="utf-8") for p in sorted(TASKS_DIR.glob("*.yaml"))})


def _fit_prompts(spec, task: str, items: list[dict], tokenizer, context_tokens: int, budget: dict | None,
                 chat_template: bool, params: EvaluationParams) -> tuple[list[dict], int]:
    """Return the items with the prompt each model sees (cut from the left to fit), and how many were cut."""
    new_tokens = budget["max_new_tokens"] if budget else 1   # log-likelihood: one answer letter
    limit = context_tokens - new_tokens
    if limit < 1:
        raise data.DataError(f"evaluation.max_new_tokens: a {spec.name} task generates {new_tokens} tokens, which leaves "
                             f"no room for a prompt in the model's {context_tokens}-token context; lower it")
    chat = chat_template and spec.request_type(params) == "generation"
    rows, cut = [], 0
    for item in items:
        row, dropped = spec.fit(task, item, tokenizer, limit, chat)
        rows.append(row)
        cut += dropped > 0
    return rows, cut


def _write_task(tmp: Path, final_dir: Path, spec, task: str, items: list[dict], config: dict) -> None:
    name = spec.lm_eval_name(task)
    data_file = tmp / "data" / f"{name}.jsonl"
    rows = [dict(item, task=task) for item in items]
    atomic.write_text(data_file, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    final_data = final_dir / "data" / f"{name}.jsonl"
    spec_file = {"include": config["include"], "task": name, **{k: v for k, v in config.items() if k != "include"},
                 "dataset_kwargs": {"data_files": {"test": str(final_data)}}}
    atomic.write_text(tmp / f"{name}.yaml", json.dumps(spec_file, ensure_ascii=False, indent=2) + "\n")


def evaluate(suite: EvalSuite, *, model_dir: Path, device: str, dtype: str, state=None, model=None, tokenizer=None,
             engines: "backends.VllmEngines | None" = None, base: Base | None = None) -> dict:
    """Return the scores of the model in ``model_dir``: ``{"benchmarks", "items", "runtime", ...}``.

    The suite's engine scores every request type it is chosen for. vLLM evaluates the checkpoint
    itself or, for a layout it cannot read, the state's evaluation-equivalent copy
    (``equivalent.evaluation_dir``; needs ``state``), through ``engines`` when given (an engine
    kept across states) or an engine started for this call. transformers evaluates the model
    given, or loads it. ``runtime`` says which engine scored what, with which batch sizes, how
    many tokens it processed and how fast. The fidelity benchmarks compare the model with ``base``
    (needed when the suite has any): ``kl`` on transformers' model (the one the engine scores, or,
    beside vLLM, the state's evaluation model), ``flip`` on the answers of the benchmarks it compares.
    """
    from lm_eval import simple_evaluate

    from ..checkpoints import equivalent, models

    params = suite.params
    engine = suite.engine or backends.Engine("hf", "no engine given", {"generation": "hf", "loglikelihood": "hf"})
    started_all = time.perf_counter()
    tokenizer = tokenizer or models.load_tokenizer(model_dir)
    # Log-likelihood MMLU is scored on the raw prompt, as lm-eval does; generation goes through the
    # chat template of an instruct model (without it, it rarely answers in the expected form).
    loglik = [t for b in suite.benchmarks if suite.request_type(b) == "loglikelihood" for t in suite.lm_eval_tasks(b)]
    generative = [t for b in suite.benchmarks for t in suite.lm_eval_tasks(b) if t not in loglik]
    phases = [(phase, tasks, chat) for phase, tasks, chat in
              (("loglikelihood", loglik, False), ("generation", generative, suite.chat_template)) if tasks]
    used = {engine.for_request(phase) for phase, _, _ in phases}
    divergence = [b for b in suite.compared if suite.request_type(b) == "divergence"]
    if suite.compared and base is None:
        raise ValueError(f"benchmarks {', '.join(suite.compared)} compare a state with the base: evaluate() needs base=")
    runtime: dict = {"engine": engine.key(), "engine_reason": engine.reason, "backend": engine.name,
                     "equivalent_copy": None, "numerics": None}
    timings: dict = {}
    vllm_dir = model_dir
    if "vllm" in used:
        t0 = time.perf_counter()
        if state is not None:
            from ..checkpoints import equivalent

            vllm_dir, copy_record = equivalent.evaluation_dir(state, dtype, device, agreement_sequences(suite, tokenizer))
            if copy_record is not None:
                runtime["equivalent_copy"] = {k: copy_record[k] for k in ("copy_of", "agreement_with_state", "dtype")}
        timings["equivalent_copy_s"] = round(time.perf_counter() - t0, 3)
    if ("hf" in used or divergence) and model is None:
        from ..checkpoints import storage

        t0 = time.perf_counter()
        if "vllm" in used and "hf" in used:
            # Beside vLLM, transformers scores the checkpoint vLLM does (the state's equivalent copy
            # where it has one): one function per state.
            model = storage.load(vllm_dir, dtype, device)
        else:
            # Any layout (standard, adapter, sparse); a quantized one as equivalent.evaluation_model says.
            model, runtime["numerics"] = equivalent.evaluation_model(model_dir, dtype, device, params.quantized_on_cpu,
                                                                   agreement_sequences(suite, tokenizer))
        timings["model_load_s"] = round(time.perf_counter() - t0, 3)
    own_engines = engines is None and "vllm" in used
    if own_engines:
        engines = backends.VllmEngines(dtype, device, params)
    config = models.read_config(model_dir)
    manager = task_manager(suite)
    outputs: dict = {"results": {}, "samples": {}}
    try:
        for phase, tasks, chat in phases:
            which = engine.for_request(phase)
            prompts = [prompt_tokens(tokenizer, text, chat) for name in tasks for text in task_prompts(suite, name)]
            longest = max(prompts, default=0)
            t0 = time.perf_counter()
            if which == "vllm":
                lm = engines.lm_for(vllm_dir)
                batch_size = "vllm scheduler"
            else:
                batch_size = params.batch_size if params.batch_size != "auto" else backends.choose_batch_size(
                    config, dtype, device, backends.free_memory_bytes(device), longest,
                    max(suite.max_new_tokens(t) for t in tasks), loglikelihood=phase == "loglikelihood")
                lm = backends.make_hf_lm(model=model, tokenizer=tokenizer, device=device, batch_size=batch_size,
                                         params=params)
            if which == "hf" and phase == "generation":
                _stop_at_end_of_turn(model, tokenizer, suite.stop)
            ready_s = time.perf_counter() - t0
            started = time.perf_counter()
            with _without_env_report():
                out = simple_evaluate(model=lm, tasks=built_tasks(suite, manager, tasks), task_manager=manager,
                                      apply_chat_template=chat,
                                      log_samples=True, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                                      fewshot_random_seed=0, bootstrap_iters=0)
            seconds = time.perf_counter() - started
            outputs["results"].update(out["results"])
            outputs["samples"].update(out["samples"])
            stats = {"engine": which, "items": sum(len(out["samples"][t]) for t in tasks), "longest_prompt_tokens": longest,
                     "batch_size": batch_size, "engine_ready_s": round(ready_s, 3), "seconds": round(seconds, 3)}
            if phase == "generation":
                new_tokens = sum(len(tokenizer(s["resps"][0][0], add_special_tokens=False)["input_ids"])
                                 for t in tasks for s in out["samples"][t])
                stats.update(prompt_tokens=sum(prompts), new_tokens=new_tokens,
                             new_tokens_per_s=round(new_tokens / seconds, 2) if seconds else None)
            else:
                # The work the scores need: each context once (its four one-letter answers share it,
                # as transformers computes them; lm-eval's vllm type runs it once per letter).
                stats.update(prompt_tokens=sum(prompts))
            stats["tokens_per_s"] = round((stats["prompt_tokens"] + stats.get("new_tokens", 0)) / seconds, 1) if seconds else None
            if which == "hf":
                stats["cache_implementation"] = backends.cache_implementation(params, device)
            runtime[phase] = stats
    finally:
        if own_engines:
            engines.close()
    if engines is not None and "vllm" in used:
        runtime["vllm_engines"] = engines.stats()
    scores = summarize(outputs, suite)
    if suite.compared:
        t0 = time.perf_counter()
        fidelity = {}
        for name in suite.compared:
            spec = get_benchmark(name)
            if spec.request_type(params) == "divergence":
                fidelity[name] = spec.measure(suite, suite.compared[name], model, tokenizer, base)
            else:
                fidelity[name] = spec.compare(scores["answers"], scores["answers"] if base.is_self else base.answers, params)
        merged = summarize_fidelity(fidelity, suite)
        scores["benchmarks"].update(merged["benchmarks"])
        scores["items"].update(merged["items"])
        # In the params' order, whichever way they were scored.
        scores["benchmarks"] = {b: scores["benchmarks"][b] for b in params.benchmarks if b in scores["benchmarks"]}
        scores["items"] = {b: scores["items"][b] for b in params.benchmarks if b in scores["items"]}
        timings["fidelity_s"] = round(time.perf_counter() - t0, 3)
        runtime["fidelity"] = {"engine": "hf", "base": base.key, "model": "the state itself" if base.is_self else
                               "the model transformers scores" if "hf" in used else "the state's evaluation model"}
    timings["total_s"] = round(time.perf_counter() - started_all, 3)
    runtime["timings"] = timings
    scores["runtime"] = runtime
    return scores


def summarize_fidelity(scored: dict[str, dict], suite: EvalSuite) -> dict:
    """Return the fidelity benchmarks' entries and item scores from their tasks' ``TaskScore``s, aggregated."""
    params = suite.params
    benchmarks, items = {}, {}
    for bench, tasks in scored.items():
        spec = get_benchmark(bench)
        benchmarks[bench] = {"score": None, "scoring": spec.scoring(params),
                             "n_items": sum(t.entry["n"] for t in tasks.values()),
                             "tasks": {task: dict(t.entry) for task, t in tasks.items()}}
        items[bench] = {task: t.items for task, t in tasks.items()}
    return {"benchmarks": benchmark_scores.aggregate(benchmarks, params), "items": items}


def task_manager(suite: EvalSuite):
    """Return lm-eval's task index over the suite's task files (indexed once per suite and process)."""
    if suite.tasks_dir not in _MANAGERS:
        from lm_eval.tasks import TaskManager

        _MANAGERS[suite.tasks_dir] = TaskManager(include_path=str(suite.tasks_dir), include_defaults=False)
    return _MANAGERS[suite.tasks_dir]


_MANAGERS: dict = {}


def built_tasks(suite: EvalSuite, manager, names: list[str]) -> list:
    """Return lm-eval's task objects for ``names``, built once per suite and process.

    Building a task reads and indexes its data (4.6 s for the demo's 34 tasks the first time, 0.8 s
    after); a process that evaluates many states (the pre-evaluation phase) builds them once.
    lm-eval rebuilds a task's requests at every evaluation, so a task object serves many.
    """
    missing = [n for n in names if (suite.tasks_dir, n) not in _TASKS]
    if missing:
        from lm_eval.tasks import get_task_dict

        for name, task in get_task_dict(missing, manager).items():
            _TASKS[(suite.tasks_dir, name)] = task
    return [_TASKS[(suite.tasks_dir, n)] for n in names]


_TASKS: dict = {}


def _stop_at_end_of_turn(model, tokenizer, stop: tuple[str, ...]) -> None:
    """Make transformers end a sequence at the template's end-of-turn token, as it does at EOS.

    lm-eval stops a batch when every sequence has produced a stop string, but only EOS makes
    transformers pad a finished sequence instead of letting it run on; a template whose turn ends
    with another token (Llama 3's ``<|eot_id|>``) would get the run-on text kept.
    """
    config = getattr(model, "generation_config", None)
    if config is None:
        return
    eos = config.eos_token_id
    current = list(eos) if isinstance(eos, (list, tuple)) else [] if eos is None else [eos]
    vocabulary = tokenizer.get_vocab()
    extra = [vocabulary[text] for text in stop if text in vocabulary and vocabulary[text] not in current]
    if extra:
        config.eos_token_id = current + extra


def agreement_sequences(suite: EvalSuite, tokenizer, count: int = 4, max_tokens: int = 96) -> list[list[int]]:
    """Return the fixed token sequences a quantized state's numerics are checked on.

    The first sampled prompt of each of the suite's first ``count`` tasks (in sorted task order),
    cut to its first ``max_tokens`` tokens: real prompts of the study, the same for every state.
    """
    names = sorted(name for tasks in suite.benchmarks.values() for name in tasks.values())[:count]
    sequences = []
    for name in names:
        prompts = task_prompts(suite, name)
        if prompts:
            sequences.append(tokenizer(prompts[0].text(), add_special_tokens=False)["input_ids"][:max_tokens])
    return sequences


def longest_prompt_tokens(suite: EvalSuite, tasks: list[str], tokenizer, chat: bool) -> int:
    """Return the token count of the longest prompt among ``tasks``' sampled items (chat template included)."""
    return max((prompt_tokens(tokenizer, text, chat) for name in tasks for text in task_prompts(suite, name)), default=0)


def task_prompts(suite: EvalSuite, name: str) -> list:
    """Return the prompt (``core.prompts.Prompt``) of every sampled item of lm-eval task ``name``, in the suite's order."""
    bench, task = suite.benchmark_of(name)
    spec = get_benchmark(bench)
    lines = (suite.tasks_dir / "data" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [spec.prompt(task, item) for item in map(json.loads, lines)]


@contextlib.contextmanager
def _without_env_report():
    """Skip lm-eval's environment report (torch's collect_env: ~3.5 s of subprocesses per call here).

    Every result records the versions that matter itself (``store.versions``).
    """
    import lm_eval.evaluator as evaluator

    original = evaluator.add_env_info
    evaluator.add_env_info = lambda results: None
    try:
        yield
    finally:
        evaluator.add_env_info = original


def summarize(outputs: dict, suite: EvalSuite) -> dict:
    """Return benchmark and task scores (percent), per-item scores and LawBench predictions.

    Each benchmark scores its tasks from lm-eval's samples (every item once; the task's score from
    those item scores), and its score is aggregated from its tasks' as it says
    (``scores.aggregate``): what is stored is what the report prints. Every task entry says how
    many tokens the task could generate (``max_new_tokens``), whether its answers need more
    (``capped``) and how many prompts were cut to fit the context (``truncated_prompts``); each
    benchmark's ``generation`` has the whole record.
    """
    params = suite.params
    benchmarks, items, predictions, answers = {}, {}, {}, {}
    for bench, tasks in suite.benchmarks.items():
        spec = get_benchmark(bench)
        task_scores, bench_items, unscored = {}, {}, {}
        generation = suite.generation.get(bench, {})
        for task, name in tasks.items():
            samples = sorted(outputs["samples"][name], key=lambda s: s["doc_id"])
            scored = spec.score_task(task, samples, params, suite.resources.get(bench))
            if scored.predictions is not None:
                predictions.setdefault(bench, {})[task] = scored.predictions
            if scored.answers is not None:
                answers.setdefault(bench, {})[task] = scored.answers
            if scored.unscored is not None:  # no score to give: said, and kept out of the average
                unscored[task] = scored.unscored
                continue
            task_scores[task] = dict(scored.entry)
            bench_items[task] = scored.items
            task_scores[task].update(_generation_fields(generation.get(task)))
        benchmarks[bench] = {
            "score": None,
            "scoring": spec.scoring(params),
            "n_items": sum(t["n"] for t in task_scores.values()),
            "tasks": task_scores,
        }
        if unscored:
            benchmarks[bench]["unscored_tasks"] = unscored
        if generation:
            benchmarks[bench]["generation"] = {"max_new_tokens_cap": params.max_new_tokens,
                                               "context_tokens": suite.context_tokens, "stop": list(suite.stop),
                                               "tasks": generation}
            capped = [t for t, g in generation.items() if g.get("capped")]
            if capped:
                benchmarks[bench]["capped_tasks"] = capped
        benchmarks[bench].update(spec.record(suite.resources.get(bench)))
        items[bench] = bench_items
    return {"benchmarks": benchmark_scores.aggregate(benchmarks, params), "items": items,
            "lawbench_predictions": predictions.get("lawbench", {}), "answers": answers}


def _generation_fields(record: dict | None) -> dict:
    """Return what a task entry says of its generation: budget, capped, prompts cut."""
    if not record:
        return {}
    fields = {k: record[k] for k in ("max_new_tokens", "capped") if k in record}
    if record.get("capped") and record.get("ceiling_pct") is not None:
        fields["ceiling_pct"] = record["ceiling_pct"]
    fields["truncated_prompts"] = record.get("truncated_prompts", 0)
    return fields
