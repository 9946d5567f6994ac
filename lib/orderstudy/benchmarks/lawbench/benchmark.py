"""LawBench as one of the study's benchmarks (``core.benchmark.Benchmark``).

Generative, through the chat template: the model sees LawBench's prompt (instruction, newline,
question), cut from the left when it does not fit the context with the task's budget
(``budgets``). Each item is scored once, by LawBench's rule for its task (``scoring``); the task's
score is computed from those item scores (``scoring.score_task``: the mean of the scored items, or
2-1's corpus F0.5 from the same items' edit counts, or 3-4/3-5's unclipped log distance), and the
benchmark's score is the unweighted mean of its tasks' scores, as LawBench's leaderboard reports.
lm-eval generates the answers; it scores nothing (its metric only counts the items).
"""

from __future__ import annotations

import math
from pathlib import Path

from ...core import paths, prompts
from ...core.benchmark import Benchmark, Prompt, TaskScore
from .. import budgets, data

HERE = Path(__file__).resolve().parent
TASKS_DIR = HERE.parent / "tasks"


class LawBench(Benchmark):
    name = "lawbench"
    display_name = "LawBench"
    items_key = "evaluation.lawbench_items_per_task"
    # Its scorers and what feeds them: LawBench's rules (this package), the prompt and the budget.
    code = (HERE, TASKS_DIR / "glue.py", HERE.parent / "budgets.py", HERE.parent / "data.py")

    def check_setting(self, key, value) -> str | None:
        from .tasks import TASK_IDS

        if key != "lawbench_tasks" or value == "all":
            return None
        unknown = [t for t in value if t not in TASK_IDS]
        if unknown:
            return f"unknown LawBench task {unknown[0]!r}; allowed: 'all' or a list of {', '.join(TASK_IDS)}"
        return None

    def tasks(self, params) -> tuple[str, ...]:
        from .tasks import TASK_IDS

        return TASK_IDS if params.lawbench_tasks == "all" else tuple(params.lawbench_tasks)

    def request_type(self, params) -> str:
        return "generation"

    def lm_eval_name(self, task: str) -> str:
        return f"orderstudy_lawbench_{task}"

    # -- the suite --------------------------------------------------------------------------
    def data_dir(self, params) -> Path:
        return paths.resolve(params.lawbench_data)

    def sample(self, params, seed: int) -> dict[str, list[dict]]:
        return data.lawbench_sample(self.data_dir(params), params.lawbench_setting, self.tasks(params),
                                    params.lawbench_items_per_task, seed)

    def sources(self, params) -> dict:
        # A directory without sources.json is LawBench's own data directory: every task is LawBench's.
        lb_dir = self.data_dir(params)
        return data.lawbench_sources(lb_dir) or {
            task: {"lawbench": True, "source": f"LawBench's data directory ({lb_dir})"} for task in self.tasks(params)}

    def resources(self, params) -> dict | None:
        """2-1's ChERRANT cost tables, when 2-1 is evaluated: where they come from and their digest."""
        if "2-1" not in self.tasks(params):
            return None
        tables = cherrant_tables(params)
        return {"cherrant": dict(tables.source), "cherrant_key": tables.key()}

    def resources_key(self, resources):
        return resources["cherrant_key"] if resources else None

    def budgets(self, params, tokenizer, samples) -> dict[str, dict]:
        # Counted over every item of the task file, not the sample: the budget does not move with the sample.
        lb_dir = self.data_dir(params)
        out = {}
        for task in self.tasks(params):
            answers = [item["answer"] for item in data.load_lawbench_task(lb_dir, params.lawbench_setting, task)]
            out[task] = budgets.derive(budgets.answer_tokens(tokenizer, answers), params.max_new_tokens).record()
        return out

    def prompt(self, task: str, item: dict) -> Prompt:
        return Prompt(item.get("input", item["prompt"]))

    def fit(self, task, item, tokenizer, limit_tokens, chat) -> tuple[dict, int]:
        text, dropped = prompts.fit_left(tokenizer, self.prompt(task, item), chat, limit_tokens)
        return dict(item, input=text), dropped

    def ceilings(self, params, tokenizer, samples, generation, resources) -> dict[str, float | None]:
        out = {}
        for task, record in generation.items():
            if record.get("capped") and task in samples:
                out[task] = _ceiling(task, samples[task], tokenizer, record["max_new_tokens"], resources)
        return out

    def task_config(self, task, params, budget, stop) -> dict:
        return {"include": str(TASKS_DIR / "_lawbench.yaml"),
                "generation_kwargs": {"until": list(stop), "do_sample": False, "max_gen_toks": budget["max_new_tokens"]}}

    def evaluated_items(self, params, sample_ids) -> list[dict]:
        out = []
        for task, ids in sample_ids.items():
            items = data.load_lawbench_task(self.data_dir(params), params.lawbench_setting, task)
            for item_id in ids:
                item = items[int(item_id.rsplit("/", 1)[1])]
                out.append({"task": task, "id": item_id, "question": item["question"], "prompt": data.lawbench_prompt(item)})
        return out

    # -- scores -----------------------------------------------------------------------------
    def score_task(self, task, samples, params, resources) -> TaskScore:
        from .scoring import score_task

        ids = [s["doc"]["id"] for s in samples]
        preds = [s["filtered_resps"][0] for s in samples]
        answers = [s["doc"]["answer"] for s in samples]
        predictions = dict(zip(ids, preds))
        # LawBench leaves some items out of a task's score (a NaN item score: e.g. 2-2's
        # compensation items, 3-4/3-5's death and life sentences). Which ones depends on the
        # answer only, so every model leaves out the same items.
        if all_left_out(task, answers):
            return TaskScore(predictions=predictions,
                             unscored=f"all {len(samples)} sampled item(s) are ones LawBench leaves out of the score")
        scored = score_task(task, preds, answers, [s["doc"]["prompt"] for s in samples],
                            tables(resources) if task == "2-1" else None)
        kept = {i: s for i, s in zip(ids, scored.item_scores) if not math.isnan(s)}
        entry = {"score": round(100.0 * scored.score, 6), "n": len(kept),
                 "abstention_rate": round(scored.abstention_rate, 6), "excluded_items": len(samples) - len(kept)}
        return TaskScore(entry=entry, items=kept, predictions=predictions)

    def aggregation(self, params) -> str:
        return "unweighted mean of the tasks, as LawBench's leaderboard"

    def scoring(self, params) -> str:
        return f"LawBench {params.lawbench_setting}, generative, LawBench's rules"

    def record(self, resources) -> dict:
        return {"cherrant": resources["cherrant"]} if resources else {}


def all_left_out(task: str, answers: list[str]) -> bool:
    """Return whether LawBench leaves every one of these items out of the task's score.

    It does so by the answer alone (2-2's compensation items, 3-4/3-5's death and life
    sentences: their item score is NaN whatever the prediction).
    """
    from .scoring import score_item

    return task != "2-1" and all(math.isnan(score_item(task, "", a)[0]) for a in answers)


def cherrant_tables(params):
    """Return the cost tables 2-1 is scored with, as ``evaluation.cherrant_data`` asks.

    ``auto``: ChERRANT's own files from the LawBench checkout that holds ``lawbench_data``
    (``<checkout>/evaluation/utils/data/`` beside its ``data/``), else the copy ``make data``
    took from a checkout (``cache/data/cherrant``), else the packaged fallback. ``packaged``: the
    fallback. A path: a LawBench checkout or its ``evaluation/utils/data/``, which must hold them.
    """
    from . import correction

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


def tables(resources: dict | None):
    """Return 2-1's ChERRANT cost tables as a suite's resources record resolved them."""
    from . import correction

    record = (resources or {}).get("cherrant")
    if record is None or record.get("kind") == "packaged":
        return correction.packaged_tables()
    return correction.lawbench_tables(record["path"])


def _ceiling(task: str, items: list[dict], tokenizer, max_new_tokens: int, resources: dict | None) -> float | None:
    """Return the score (percent) of the sampled items' gold answers cut at ``max_new_tokens`` tokens."""
    from .scoring import score_task

    answers = [item["answer"] for item in items]
    if all_left_out(task, answers):
        return None
    cut = [budgets.cut(tokenizer, answer, max_new_tokens) for answer in answers]
    return round(100.0 * score_task(task, cut, answers, [item["prompt"] for item in items],
                                    tables(resources) if task == "2-1" else None).score, 6)


LAWBENCH = LawBench()
