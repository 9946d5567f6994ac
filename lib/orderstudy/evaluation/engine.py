"""Scores a model on the study's benchmarks with lm-eval, on a fixed seeded sample of items.

The benchmarks are lm-eval tasks in YAML (``orderstudy/benchmarks/tasks/``); at run time a small YAML per
task is written next to the sampled items (lm-eval resolves a relative ``data_files`` against
the current directory, so the paths are absolute). Each benchmark's score is the unweighted mean
of its tasks' scores, in percent, like LawBench's leaderboard and lm-eval's MMLU groups.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core import atomic, paths
from . import backends
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
    # the prompts cut to fit the context; for capped LawBench tasks, the ceiling (gold answers cut).
    generation: dict[str, dict[str, dict]] = field(default_factory=dict)
    stop: tuple[str, ...] = ()     # what ends a generation besides the budget
    context_tokens: int | None = None
    cherrant: dict | None = None   # where 2-1's cost tables come from (correction.CostTables.source)
    chat_template: bool = True     # the study's top-level `chat_template`: generation through the template
    engine: "backends.Engine | None" = None   # the one engine that scores every state (in the key)

    def lm_eval_tasks(self, benchmark: str) -> list[str]:
        return list(self.benchmarks[benchmark].values())

    def max_new_tokens(self, name: str) -> int:
        """Return the generation budget of lm-eval task ``name`` (0 for a log-likelihood task)."""
        for bench, tasks in self.benchmarks.items():
            for task, task_name in tasks.items():
                if task_name == name:
                    return self.generation.get(bench, {}).get(task, {}).get("max_new_tokens", 0)
        raise KeyError(name)

    def cost_tables(self):
        """Return 2-1's ChERRANT cost tables as this suite resolved them."""
        from ..benchmarks.lawbench import correction

        if self.cherrant is None or self.cherrant.get("kind") == "packaged":
            return correction.packaged_tables()
        return correction.lawbench_tables(self.cherrant["path"])


def lawbench_task_ids(params: EvaluationParams) -> tuple[str, ...]:
    from ..benchmarks.lawbench.tasks import TASK_IDS

    return TASK_IDS if params.lawbench_tasks == "all" else tuple(params.lawbench_tasks)


def cherrant_tables(params: EvaluationParams):
    """Return the cost tables 2-1 is scored with, as ``evaluation.cherrant_data`` asks.

    ``auto``: ChERRANT's own files from the LawBench checkout that holds ``lawbench_data``
    (``<checkout>/evaluation/utils/data/`` beside its ``data/``), else the copy ``make data``
    took from a checkout (``cache/data/cherrant``), else the packaged fallback. ``packaged``: the
    fallback. A path: a LawBench checkout or its ``evaluation/utils/data/``, which must hold them.
    """
    from ..benchmarks.lawbench import correction

    spec = params.cherrant_data
    try:
        if spec == "packaged":
            return correction.packaged_tables()
        if spec != "auto":
            return correction.lawbench_tables(paths.resolve(spec))
        for candidate in (paths.resolve(params.lawbench_data).parent, paths.CHERRANT_DATA):
            if correction.lawbench_data_dir(candidate) is not None:
                return correction.lawbench_tables(candidate)
        return correction.packaged_tables()
    except correction.ThesaurusMissingError as exc:
        # Stop before any model work: 2-1 is scored after generation.
        raise data.DataError(str(exc)) from None
    except correction.CostTablesError as exc:
        raise data.DataError(f"evaluation.cherrant_data: {exc}") from None


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
    samples: dict[str, dict[str, list[dict]]] = {}
    sources, generation, cherrant = {}, {}, None
    if "lawbench" in params.benchmarks:
        lb_dir = paths.resolve(params.lawbench_data)
        task_ids = lawbench_task_ids(params)
        samples["lawbench"] = data.lawbench_sample(lb_dir, params.lawbench_setting, task_ids,
                                                   params.lawbench_items_per_task, seed)
        # A directory without sources.json is LawBench's own data directory: every task is LawBench's.
        sources = data.lawbench_sources(lb_dir) or {
            task: {"lawbench": True, "source": f"LawBench's data directory ({lb_dir})"} for task in task_ids}
        if "2-1" in task_ids:
            cherrant = cherrant_tables(params)
        generation["lawbench"] = {}
        for task in task_ids:
            answers = [item["answer"] for item in data.load_lawbench_task(lb_dir, params.lawbench_setting, task)]
            generation["lawbench"][task] = budgets.derive(budgets.answer_tokens(tokenizer, answers),
                                                          params.max_new_tokens).record()
    for group in ("stem", "mmlu_law"):
        if group in params.benchmarks:
            samples[group] = data.mmlu_sample(paths.resolve(params.mmlu_data), data.MMLU_GROUPS[group],
                                              params.mmlu_items_per_subject, seed)
            if params.mmlu_scoring == "generative":
                # The gold answer is one letter; budgets.MIN_TOKENS lets "The answer is (B)" through.
                generation[group] = {
                    subject: budgets.derive(budgets.answer_tokens(tokenizer, ["ABCD"[row["answer"]] for row in rows]),
                                            params.max_new_tokens).record()
                    for subject, rows in samples[group].items()}
    stop = tuple(budgets.stop_sequences(tokenizer, chat_template))
    sample_ids = {b: {t: [i["id"] for i in items] for t, items in tasks.items()} for b, tasks in samples.items()}
    content = {b: {t: items for t, items in tasks.items()} for b, tasks in samples.items()}
    # The cap and the tables' location are keyed through what they decide: the budgets, the tables' digests.
    # The sample seed is in the key as "seed"; how benchmark scores are aggregated decides no item's score.
    key = stable_hash({"params": params.model_dump(mode="json", exclude={"max_new_tokens", "cherrant_data", "sample_seed",
                                                                         "mmlu_weight_by_size"}),
                       "seed": seed, "items": content, "generation": generation, "stop": stop,
                       "context_tokens": context_tokens, "chat_template": chat_template,
                       "tokenizer": tokenizer_fingerprint(tokenizer),
                       "cherrant": cherrant.key() if cherrant is not None else None, "format": 2,
                       "engine": engine.key()})
    tasks_dir = Path(work_dir) / f"eval-{key}"
    if not (tasks_dir / "suite.json").exists():
        fitted = {bench: {task: _fit_prompts(bench, items, tokenizer, context_tokens, generation.get(bench, {}).get(task),
                                             params, chat_template) for task, items in tasks.items()}
                  for bench, tasks in samples.items()}
        with atomic.directory(tasks_dir) as tmp:
            for bench, tasks in samples.items():
                for task, items in tasks.items():
                    rows, cut = fitted[bench][task]
                    _write_task(tmp, tasks_dir, bench, task, rows, params, generation.get(bench, {}).get(task), stop)
                    generation.setdefault(bench, {}).setdefault(task, {})["truncated_prompts"] = cut
            for task, record in generation.get("lawbench", {}).items():
                if record.get("capped") and task in samples["lawbench"]:
                    record["ceiling_pct"] = _ceiling(task, samples["lawbench"][task], tokenizer, record["max_new_tokens"],
                                                     cherrant)
            atomic.write_json(tmp / "suite.json", {"key": key, "sample_ids": sample_ids, "generation": generation,
                                                   "stop": list(stop), "context_tokens": context_tokens})
    generation = atomic.read_json(tasks_dir / "suite.json").get("generation", generation)
    benchmarks = {bench: {task: _task_name(bench, task) for task in tasks} for bench, tasks in samples.items()}
    return EvalSuite(key, tasks_dir, benchmarks, sample_ids, params, sources, generation, stop, context_tokens,
                     dict(cherrant.source) if cherrant is not None else None, chat_template, engine)


def _fit_prompts(bench: str, items: list[dict], tokenizer, context_tokens: int, budget: dict | None,
                 params: EvaluationParams, chat_template: bool) -> tuple[list[dict], int]:
    """Return the items with the prompt each model sees (cut from the left to fit), and how many were cut."""
    new_tokens = budget["max_new_tokens"] if budget else 1   # log-likelihood: one answer letter
    limit = context_tokens - new_tokens
    if limit < 1:
        raise data.DataError(f"evaluation.max_new_tokens: a {bench} task generates {new_tokens} tokens, which leaves "
                             f"no room for a prompt in the model's {context_tokens}-token context; lower it")
    chat = chat_template and (bench == "lawbench" or params.mmlu_scoring == "generative")
    rows, cut = [], 0
    for item in items:
        if bench == "lawbench":
            text, dropped = budgets.fit_prompt(tokenizer, item["prompt"], limit, chat)
            rows.append(dict(item, input=text))
        else:
            # Only the question is cut; the choices and "Answer:" stay.
            rest = budgets.prompt_tokens(tokenizer, _mmlu_prompt(dict(item, question="")), chat)
            text, dropped = budgets.fit_prompt(tokenizer, item["question"], limit - rest, chat=False)
            rows.append(dict(item, question=text))
        cut += dropped > 0
    return rows, cut


def _ceiling(task: str, items: list[dict], tokenizer, max_new_tokens: int, cherrant) -> float | None:
    """Return the score (percent) of the sampled items' gold answers cut at ``max_new_tokens`` tokens."""
    from ..benchmarks.lawbench.scoring import score_task
    from ..benchmarks.tasks.glue import all_left_out

    answers = [item["answer"] for item in items]
    if all_left_out(task, answers):
        return None
    cut = [budgets.cut(tokenizer, answer, max_new_tokens) for answer in answers]
    return round(100.0 * score_task(task, cut, answers, [item["prompt"] for item in items], cherrant).score, 6)


def _task_name(bench: str, task: str) -> str:
    return f"orderstudy_{'lawbench' if bench == 'lawbench' else 'mmlu'}_{task}"


def _write_task(tmp: Path, final_dir: Path, bench: str, task: str, items: list[dict], params: EvaluationParams,
                budget: dict | None, stop: tuple[str, ...]) -> None:
    name = _task_name(bench, task)
    data_file = tmp / "data" / f"{name}.jsonl"
    rows = [dict(item, task=task) for item in items]
    atomic.write_text(data_file, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    final_data = final_dir / "data" / f"{name}.jsonl"
    if bench == "lawbench":
        spec = {"include": str(TASKS_DIR / "_lawbench.yaml"), "task": name,
                "generation_kwargs": {"until": list(stop), "do_sample": False, "max_gen_toks": budget["max_new_tokens"]}}
    else:
        template = "_mmlu.yaml" if params.mmlu_scoring == "loglikelihood" else "_mmlu_generative.yaml"
        spec = {"include": str(TASKS_DIR / template), "task": name,
                "description": f"The following are multiple choice questions (with answers) about {task.replace('_', ' ')}.\n\n"}
        if budget is not None:
            spec["generation_kwargs"] = {"until": ["\n\n", *stop], "do_sample": False,
                                         "max_gen_toks": budget["max_new_tokens"]}
    spec["dataset_kwargs"] = {"data_files": {"test": str(final_data)}}
    atomic.write_text(tmp / f"{name}.yaml", json.dumps(spec, ensure_ascii=False, indent=2) + "\n")


def evaluate(suite: EvalSuite, *, model_dir: Path, device: str, dtype: str, state=None, model=None, tokenizer=None,
             engines: "backends.VllmEngines | None" = None) -> dict:
    """Return the scores of the model in ``model_dir``: ``{"benchmarks", "items", "runtime", ...}``.

    The suite's engine scores every request type it is chosen for. vLLM evaluates the checkpoint
    itself or, for a layout it cannot read, the state's evaluation-equivalent copy
    (``equivalent.evaluation_dir``; needs ``state``), through ``engines`` when given (an engine
    kept across states) or an engine started for this call. transformers evaluates the model
    given, or loads it. ``runtime`` says which engine scored what, with which batch sizes, how
    many tokens it processed and how fast.
    """
    from lm_eval import simple_evaluate

    from ..checkpoints import equivalent, models

    params = suite.params
    engine = suite.engine or backends.Engine("hf", "no engine given", {"generation": "hf", "loglikelihood": "hf"})
    started_all = time.perf_counter()
    tokenizer = tokenizer or models.load_tokenizer(model_dir)
    # Log-likelihood MMLU is scored on the raw prompt, as lm-eval does; generation goes through the
    # chat template of an instruct model (without it, it rarely answers in the expected form).
    loglik = [t for b in ("stem", "mmlu_law") if b in suite.benchmarks for t in suite.lm_eval_tasks(b)] \
        if params.mmlu_scoring == "loglikelihood" else []
    generative = [t for b in suite.benchmarks for t in suite.lm_eval_tasks(b) if t not in loglik]
    phases = [(phase, tasks, chat) for phase, tasks, chat in
              (("loglikelihood", loglik, False), ("generation", generative, suite.chat_template)) if tasks]
    used = {engine.for_request(phase) for phase, _, _ in phases}
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
    if "hf" in used and model is None:
        from ..checkpoints import storage

        t0 = time.perf_counter()
        if "vllm" in used:
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
            with _without_env_report(), _scoring_tables(suite):
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
    timings["total_s"] = round(time.perf_counter() - started_all, 3)
    runtime["timings"] = timings
    scores = summarize(outputs, suite)
    scores["runtime"] = runtime
    return scores


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


@contextlib.contextmanager
def _scoring_tables(suite: EvalSuite):
    """Score 2-1 inside lm-eval (its aggregation hooks take no argument) with the suite's ChERRANT tables."""
    if suite.cherrant is None:
        yield
        return
    from ..benchmarks.lawbench import correction

    with correction.using(suite.cost_tables()):
        yield


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
            sequences.append(tokenizer(prompts[0], add_special_tokens=False)["input_ids"][:max_tokens])
    return sequences


def longest_prompt_tokens(suite: EvalSuite, tasks: list[str], tokenizer, chat: bool) -> int:
    """Return the token count of the longest prompt among ``tasks``' sampled items (chat template included)."""
    return max((prompt_tokens(tokenizer, text, chat) for name in tasks for text in task_prompts(suite, name)), default=0)


def task_prompts(suite: EvalSuite, name: str) -> list[str]:
    """Return the prompt of every sampled item of lm-eval task ``name``, in the suite's order."""
    lines = (suite.tasks_dir / "data" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [item.get("input") or item.get("prompt") or _mmlu_prompt(item) for item in map(json.loads, lines)]


prompt_tokens = budgets.prompt_tokens


def _mmlu_prompt(item: dict) -> str:
    # The few-shot-free MMLU prompt: description, question, lettered choices, "Answer:".
    choices = "".join(f"\n{letter}. {c}" for letter, c in zip("ABCD", item.get("choices", [])))
    return f"The following are multiple choice questions (with answers).\n\n{item.get('question', '')}{choices}\nAnswer:"


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

    Every task entry says how many tokens the task could generate (``max_new_tokens``), whether
    its answers need more (``capped``) and how many prompts were cut to fit the context
    (``truncated_prompts``); each benchmark's ``generation`` has the whole record.
    """
    benchmarks, items, predictions = {}, {}, {}
    for bench, tasks in suite.benchmarks.items():
        task_scores, bench_items, unscored = {}, {}, {}
        generation = suite.generation.get(bench, {})
        for task, name in tasks.items():
            samples = sorted(outputs["samples"][name], key=lambda s: s["doc_id"])
            ids = [s["doc"]["id"] for s in samples]
            if bench == "lawbench":
                from ..benchmarks.lawbench.scoring import score_task
                from ..benchmarks.tasks.glue import all_left_out

                preds = [s["filtered_resps"][0] for s in samples]
                answers = [s["doc"]["answer"] for s in samples]
                predictions[task] = dict(zip(ids, preds))
                # LawBench leaves some items out of a task's score (a NaN item score: e.g. 2-2's
                # compensation items, 3-4/3-5's death and life sentences). Which ones depends on the
                # answer only, so every model leaves out the same items.
                if all_left_out(task, answers):  # no score to give: said, and kept out of the average
                    unscored[task] = f"all {len(samples)} sampled item(s) are ones LawBench leaves out of the score"
                    continue
                scored = score_task(task, preds, answers, [s["doc"]["prompt"] for s in samples],
                                    suite.cost_tables() if task == "2-1" else None)
                kept = {i: s for i, s in zip(ids, scored.item_scores) if not math.isnan(s)}
                task_scores[task] = {"score": round(float(outputs["results"][name]["score,none"]), 6),
                                     "n": len(kept), "abstention_rate": round(scored.abstention_rate, 6),
                                     "excluded_items": len(samples) - len(kept)}
                bench_items[task] = kept
            else:
                task_scores[task] = {"score": round(100.0 * float(outputs["results"][name]["acc,none"]), 6),
                                     "n": len(samples)}
                bench_items[task] = {i: float(s["acc"]) for i, s in zip(ids, samples)}
            task_scores[task].update(_generation_fields(generation.get(task)))
        benchmarks[bench] = {
            "score": round(sum(t["score"] for t in task_scores.values()) / len(task_scores), 6),
            "scoring": (f"LawBench {suite.params.lawbench_setting}, generative, LawBench's rules" if bench == "lawbench"
                        else f"MMLU {suite.params.mmlu_scoring}"),
            "n_items": sum(t["n"] for t in task_scores.values()),
            "tasks": task_scores,
        }
        if unscored:
            benchmarks[bench]["unscored_tasks"] = unscored
        if generation:
            benchmarks[bench]["generation"] = {"max_new_tokens_cap": suite.params.max_new_tokens,
                                               "context_tokens": suite.context_tokens, "stop": list(suite.stop),
                                               "tasks": generation}
            capped = [t for t, g in generation.items() if g.get("capped")]
            if capped:
                benchmarks[bench]["capped_tasks"] = capped
        if bench == "lawbench" and suite.cherrant is not None:
            benchmarks[bench]["cherrant"] = suite.cherrant
        items[bench] = bench_items
    return {"benchmarks": benchmarks, "items": items, "lawbench_predictions": predictions}


def _generation_fields(record: dict | None) -> dict:
    """Return what a task entry says of its generation: budget, capped, prompts cut."""
    if not record:
        return {}
    fields = {k: record[k] for k in ("max_new_tokens", "capped") if k in record}
    if record.get("capped") and record.get("ceiling_pct") is not None:
        fields["ceiling_pct"] = record["ceiling_pct"]
    fields["truncated_prompts"] = record.get("truncated_prompts", 0)
    return fields
