"""Scores a model on the study's benchmarks with lm-eval, on a fixed seeded sample of items.

The benchmarks are lm-eval tasks in YAML (``orderstudy/tasks/``); at run time a small YAML per
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
from dataclasses import dataclass
from pathlib import Path

from . import atomic, data, paths
from .params import EvaluationParams, stable_hash

TASKS_DIR = Path(__file__).parent / "tasks"
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
    chat_template: bool = True     # the study's top-level `chat_template`: generation through the template

    def lm_eval_tasks(self, benchmark: str) -> list[str]:
        return list(self.benchmarks[benchmark].values())


def lawbench_task_ids(params: EvaluationParams) -> tuple[str, ...]:
    from .lawbench.tasks import TASK_IDS

    return TASK_IDS if params.lawbench_tasks == "all" else tuple(params.lawbench_tasks)


def _require_thesaurus() -> None:
    """Stop before any model work when 2-1's scorer would miss its thesaurus after generation."""
    from .lawbench.correction import ThesaurusMissingError, thesaurus

    try:
        thesaurus()
    except ThesaurusMissingError as exc:
        raise data.DataError(str(exc)) from None


def build_suite(params: EvaluationParams, seed: int, work_dir: Path, chat_template: bool = True) -> EvalSuite:
    """Return the study's evaluation suite, sampling the items and writing the task YAMLs."""
    samples: dict[str, dict[str, list[dict]]] = {}
    sources = {}
    if "lawbench" in params.benchmarks:
        lb_dir = paths.resolve(params.lawbench_data)
        samples["lawbench"] = data.lawbench_sample(lb_dir, params.lawbench_setting, lawbench_task_ids(params),
                                                   params.lawbench_items_per_task, seed)
        sources = data.lawbench_sources(lb_dir)
        if "2-1" in lawbench_task_ids(params):
            _require_thesaurus()
    for group in ("stem", "mmlu_law"):
        if group in params.benchmarks:
            samples[group] = data.mmlu_sample(paths.resolve(params.mmlu_data), data.MMLU_GROUPS[group],
                                              params.mmlu_items_per_subject, seed)
    sample_ids = {b: {t: [i["id"] for i in items] for t, items in tasks.items()} for b, tasks in samples.items()}
    content = {b: {t: items for t, items in tasks.items()} for b, tasks in samples.items()}
    key = stable_hash({"params": params.model_dump(mode="json"), "chat_template": chat_template, "seed": seed,
                       "items": content, "format": 1})
    tasks_dir = Path(work_dir) / f"eval-{key}"
    benchmarks: dict[str, dict[str, str]] = {}
    if not (tasks_dir / "suite.json").exists():
        with atomic.directory(tasks_dir) as tmp:
            for bench, tasks in samples.items():
                for task, items in tasks.items():
                    _write_task(tmp, tasks_dir, bench, task, items, params)
            atomic.write_json(tmp / "suite.json", {"key": key, "sample_ids": sample_ids})
    for bench, tasks in samples.items():
        benchmarks[bench] = {task: _task_name(bench, task) for task in tasks}
    return EvalSuite(key, tasks_dir, benchmarks, sample_ids, params, sources, chat_template)


def _task_name(bench: str, task: str) -> str:
    return f"orderstudy_{'lawbench' if bench == 'lawbench' else 'mmlu'}_{task}"


def _write_task(tmp: Path, final_dir: Path, bench: str, task: str, items: list[dict], params: EvaluationParams) -> None:
    name = _task_name(bench, task)
    data_file = tmp / "data" / f"{name}.jsonl"
    rows = [dict(item, task=task) for item in items]
    atomic.write_text(data_file, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    final_data = final_dir / "data" / f"{name}.jsonl"
    if bench == "lawbench":
        spec = {"include": str(TASKS_DIR / "_lawbench.yaml"), "task": name,
                "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": params.max_new_tokens}}
    else:
        template = "_mmlu.yaml" if params.mmlu_scoring == "loglikelihood" else "_mmlu_generative.yaml"
        spec = {"include": str(TASKS_DIR / template), "task": name,
                "description": f"The following are multiple choice questions (with answers) about {task.replace('_', ' ')}.\n\n"}
    spec["dataset_kwargs"] = {"data_files": {"test": str(final_data)}}
    atomic.write_text(tmp / f"{name}.yaml", json.dumps(spec, ensure_ascii=False, indent=2) + "\n")


def evaluate(suite: EvalSuite, *, model_dir: Path, device: str, dtype: str, model=None, tokenizer=None,
             backend: "backends.Backend | None" = None) -> dict:
    """Return the scores of the model in ``model_dir``: ``{"benchmarks", "items", "runtime", ...}``.

    The backend is chosen for the state unless given (``backends.choose_backend``); for
    transformers the model is loaded here unless given. ``runtime`` says which backend ran, with
    which batch sizes, and how fast it generated.
    """
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from . import backends, models, numerics

    params = suite.params
    backend = backend or backends.choose_backend(params.backend, device, model_dir)
    tokenizer = tokenizer or models.load_tokenizer(model_dir)
    numerics_record = None
    if backend.name == "hf" and model is None:
        # Any layout (standard, adapter, sparse); a quantized one as numerics.evaluation_model says.
        model, numerics_record = numerics.evaluation_model(model_dir, dtype, device, params.quantized_on_cpu,
                                                           agreement_sequences(suite, tokenizer))
    config = models.read_config(model_dir)
    manager = TaskManager(include_path=str(suite.tasks_dir), include_defaults=False)
    # Log-likelihood MMLU is scored on the raw prompt, as lm-eval does; generation goes through the
    # chat template of an instruct model (without it, it rarely answers in the expected form).
    loglik = [t for b in ("stem", "mmlu_law") if b in suite.benchmarks for t in suite.lm_eval_tasks(b)] \
        if params.mmlu_scoring == "loglikelihood" else []
    generative = [t for b in suite.benchmarks for t in suite.lm_eval_tasks(b) if t not in loglik]
    outputs: dict = {"results": {}, "samples": {}}
    runtime: dict = {"backend": backend.name, "backend_reason": backend.reason, "numerics": numerics_record,
                     "cache_implementation": backends.cache_implementation(params, device) if backend.name == "hf" else None}
    lm = None
    for phase, tasks, chat in (("loglikelihood", loglik, False), ("generation", generative, suite.chat_template)):
        if not tasks:
            continue
        longest = longest_prompt_tokens(suite, tasks, tokenizer, chat)
        if params.batch_size != "auto":
            batch_size = params.batch_size
        else:
            batch_size = backends.choose_batch_size(
                config, dtype, device, backends.free_memory_bytes(device), longest, params.max_new_tokens,
                loglikelihood=phase == "loglikelihood")
        if lm is None or backend.name == "hf":   # one vLLM engine serves both phases
            lm = backends.make_lm(backend, model_dir=model_dir, model=model, tokenizer=tokenizer, device=device,
                                  dtype=dtype, batch_size=batch_size, seed=0, params=params)
        started = time.perf_counter()
        with _without_env_report():
            out = simple_evaluate(model=lm, tasks=tasks, task_manager=manager, apply_chat_template=chat,
                                  log_samples=True, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                                  fewshot_random_seed=0, bootstrap_iters=0)
        seconds = time.perf_counter() - started
        outputs["results"].update(out["results"])
        outputs["samples"].update(out["samples"])
        stats = {"items": sum(len(out["samples"][t]) for t in tasks), "longest_prompt_tokens": longest,
                 "batch_size": batch_size if backend.name == "hf" else "vllm scheduler", "seconds": round(seconds, 3)}
        if phase == "generation":
            new_tokens = sum(len(tokenizer(s["resps"][0][0], add_special_tokens=False)["input_ids"])
                             for t in tasks for s in out["samples"][t])
            stats.update(new_tokens=new_tokens, new_tokens_per_s=round(new_tokens / seconds, 2) if seconds else None)
        runtime[phase] = stats
    backends.release(lm)
    scores = summarize(outputs, suite)
    scores["runtime"] = runtime
    return scores


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
    return [item.get("prompt") or _mmlu_prompt(item) for item in map(json.loads, lines)]


def prompt_tokens(tokenizer, text: str, chat: bool) -> int:
    """Return the tokens of ``text`` as the model sees it: through its chat template when ``chat``."""
    if chat and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=True, add_generation_prompt=True)
        return len(ids["input_ids"] if hasattr(ids, "keys") else ids)
    return len(tokenizer(text)["input_ids"])


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
    """Return benchmark and task scores (percent), per-item scores and LawBench predictions."""
    benchmarks, items, predictions = {}, {}, {}
    for bench, tasks in suite.benchmarks.items():
        task_scores, bench_items, unscored = {}, {}, {}
        for task, name in tasks.items():
            samples = sorted(outputs["samples"][name], key=lambda s: s["doc_id"])
            ids = [s["doc"]["id"] for s in samples]
            if bench == "lawbench":
                from .lawbench.scoring import score_task
                from .tasks.glue import all_left_out

                preds = [s["filtered_resps"][0] for s in samples]
                answers = [s["doc"]["answer"] for s in samples]
                predictions[task] = dict(zip(ids, preds))
                # LawBench leaves some items out of a task's score (a NaN item score: e.g. 2-2's
                # compensation items, 3-4/3-5's death and life sentences). Which ones depends on the
                # answer only, so every model leaves out the same items.
                if all_left_out(task, answers):  # no score to give: said, and kept out of the average
                    unscored[task] = f"all {len(samples)} sampled item(s) are ones LawBench leaves out of the score"
                    continue
                scored = score_task(task, preds, answers, [s["doc"]["prompt"] for s in samples])
                kept = {i: s for i, s in zip(ids, scored.item_scores) if not math.isnan(s)}
                task_scores[task] = {"score": round(float(outputs["results"][name]["score,none"]), 6),
                                     "n": len(kept), "abstention_rate": round(scored.abstention_rate, 6),
                                     "excluded_items": len(samples) - len(kept)}
                bench_items[task] = kept
            else:
                task_scores[task] = {"score": round(100.0 * float(outputs["results"][name]["acc,none"]), 6),
                                     "n": len(samples)}
                bench_items[task] = {i: float(s["acc"]) for i, s in zip(ids, samples)}
        benchmarks[bench] = {
            "score": round(sum(t["score"] for t in task_scores.values()) / len(task_scores), 6),
            "scoring": (f"LawBench {suite.params.lawbench_setting}, generative, LawBench's rules" if bench == "lawbench"
                        else f"MMLU {suite.params.mmlu_scoring}"),
            "n_items": sum(t["n"] for t in task_scores.values()),
            "tasks": task_scores,
        }
        if unscored:
            benchmarks[bench]["unscored_tasks"] = unscored
        items[bench] = bench_items
    return {"benchmarks": benchmarks, "items": items, "lawbench_predictions": predictions}
