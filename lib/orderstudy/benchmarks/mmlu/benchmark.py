"""An MMLU subject group as one of the study's benchmarks (``core.benchmark.Benchmark``).

Each subject is a task, zero-shot, with lm-eval's MMLU prompt: the description "The following are
multiple choice questions (with answers) about <subject>.", the question, the four lettered
choices and "Answer:". ``evaluation.mmlu_scoring`` picks how an item is scored:

- ``loglikelihood`` (the standard way, lm-eval's ``mmlu``): the letter with the highest
  log-likelihood is the model's answer; the plain prompt, no chat template.
- ``generative``: the model writes an answer through the chat template and the letter is read
  from it (``tasks/glue.py``: ``mmlu_letter``); an answer without a clear letter counts as wrong.

A subject's score is its accuracy; the group's is, by default, weighted by subject size as
lm-eval's MMLU groups are (``evaluation.mmlu_weight_by_size``; see ``weights``).

What "weighted by subject size" means when only a sample of each subject is scored: a subject's
weight is its number of questions **in the full data** (``N_s``), not in the sample. A sample of
``n_s`` of a subject's ``N_s`` questions estimates that subject's accuracy ``p_s`` over all of
them, so ``sum_s N_s p̂_s / sum_s N_s`` estimates the group's accuracy over all its questions: the
number lm-eval prints for the whole group (stratified sampling's estimator). Weighting by the
sample's sizes instead would, with the same ``n`` per subject, just give the unweighted mean.
With every question scored the two weightings agree and equal lm-eval's. The price of an equal
sample per subject: professional_law (1,534 of mmlu_law's 1,763 questions) weighs 87% of the
mmlu_law score on its few sampled items, so that score's interval is wide (the report says so).
"""

from __future__ import annotations

import json
from pathlib import Path

from ...core import paths, prompts
from ...core.benchmark import Benchmark, Prompt, TaskScore
from .. import budgets, data

HERE = Path(__file__).resolve().parent
TASKS_DIR = HERE.parent / "tasks"
# lm-eval's MMLU scores four continuations (" A" ... " D") per question.
CHOICES = 4
LETTERS = "ABCD"


def description(subject: str) -> str:
    """Return the task description lm-eval's MMLU puts before every question of ``subject``."""
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"


def question_text(item: dict) -> str:
    """Return the question with its lettered choices and the "Answer:" cue, as the task's ``doc_to_text`` renders it."""
    choices = "".join(f"\n{letter}. {c}" for letter, c in zip(LETTERS, item["choices"]))
    return f"{item['question'].strip()}{choices}\nAnswer:"


def subject_sizes(data_dir: Path, subjects) -> dict[str, int]:
    """Return each MMLU subject's number of questions in the full data (``<subject>.jsonl`` lines)."""
    sizes = {}
    for subject in subjects:
        path = Path(data_dir) / f"{subject}.jsonl"
        with open(path, encoding="utf-8") as f:
            sizes[subject] = sum(1 for line in f if line.strip())
    return sizes


def chosen_letter(sample: dict) -> str:
    """Return the letter the model chose in one of lm-eval's samples ("" when a written answer names none).

    Log-likelihood: the letter of the highest log-likelihood, the first on a tie (as lm-eval's
    ``acc`` takes it); generative: the letter read from the answer (``glue.mmlu_letter``).
    """
    responses = sample["filtered_resps"]
    if isinstance(responses[0], str):
        from ..tasks.glue import mmlu_letter

        return mmlu_letter(responses[0]) or ""
    scores = [float(r[0]) if isinstance(r, (list, tuple)) else float(r) for r in responses]
    return LETTERS[max(range(len(scores)), key=scores.__getitem__)]


class MmluGroup(Benchmark):
    """One group of MMLU subjects, each subject a task."""

    items_key = "evaluation.mmlu_items_per_subject"
    code = (HERE, TASKS_DIR / "glue.py", HERE.parent / "budgets.py", HERE.parent / "data.py")

    def __init__(self, name: str, subjects: tuple[str, ...]):
        self.name = self.display_name = name
        self.subjects = subjects

    def tasks(self, params) -> tuple[str, ...]:
        return self.subjects

    def request_type(self, params) -> str:
        return "loglikelihood" if params.mmlu_scoring == "loglikelihood" else "generation"

    def lm_eval_name(self, task: str) -> str:
        return f"orderstudy_mmlu_{task}"

    def data_dir(self, params) -> Path:
        return paths.resolve(params.mmlu_data)

    def sample(self, params, seed):
        return data.mmlu_sample(self.data_dir(params), self.subjects, params.mmlu_items_per_subject, seed)

    def budgets(self, params, tokenizer, samples):
        if params.mmlu_scoring != "generative":
            return {}
        # The gold answer is one letter; budgets.MIN_TOKENS lets "The answer is (B)" through.
        return {subject: budgets.derive(budgets.answer_tokens(tokenizer, [LETTERS[row["answer"]] for row in rows]),
                                        params.max_new_tokens).record()
                for subject, rows in samples.items()}

    def prompt(self, task, item) -> Prompt:
        return Prompt(question_text(item), system=description(task))

    def fit(self, task, item, tokenizer, limit_tokens, chat):
        # Only the question is cut (from the left); the description, the choices and "Answer:" stay.
        rest = prompts.prompt_tokens(tokenizer, self.prompt(task, dict(item, question="")), chat)
        text, dropped = prompts.fit_left(tokenizer, item["question"], False, limit_tokens - rest)
        return dict(item, question=text), dropped

    def task_config(self, task, params, budget, stop):
        template = "_mmlu.yaml" if params.mmlu_scoring == "loglikelihood" else "_mmlu_generative.yaml"
        spec = {"include": str(TASKS_DIR / template), "description": description(task)}
        if budget is not None:
            spec["generation_kwargs"] = {"until": ["\n\n", *stop], "do_sample": False,
                                         "max_gen_toks": budget["max_new_tokens"]}
        return spec

    def evaluated_items(self, params, sample_ids):
        out = []
        for subject, ids in sample_ids.items():
            lines = (self.data_dir(params) / f"{subject}.jsonl").read_text(encoding="utf-8").splitlines()
            rows = [json.loads(line) for line in lines if line.strip()]
            for item_id in ids:
                row = rows[int(item_id.rsplit("/", 1)[1])]
                out.append({"task": subject, "id": item_id, "question": row["question"], "prompt": row["question"]})
        return out

    def score_task(self, task, samples, params, resources) -> TaskScore:
        # Each item scored once, by lm-eval's process_results: the letter of the highest
        # log-likelihood, or the letter read from the answer (glue.mmlu_generative_process_results).
        ids = [s["doc"]["id"] for s in samples]
        correct = [float(s["acc"]) for s in samples]
        score = 100.0 * (sum(correct) / len(correct))
        return TaskScore(entry={"score": round(score, 6), "n": len(samples)}, items=dict(zip(ids, correct)),
                         answers={i: chosen_letter(s) for i, s in zip(ids, samples)})

    def weights(self, tasks, params, populations=None):
        tasks = list(tasks)
        if not params.mmlu_weight_by_size:
            return super().weights(tasks, params)
        sizes = populations if populations is not None else self.populations(tasks, params)
        total = sum(sizes.values())
        return {t: sizes[t] / total for t in tasks}

    def populations(self, tasks, params):
        return subject_sizes(self.data_dir(params), tasks)

    def aggregation(self, params):
        if params.mmlu_weight_by_size:
            return "weighted by subject size (questions in the full data), as lm-eval's MMLU groups"
        return "unweighted mean of the subjects"

    def scoring(self, params):
        return f"MMLU {params.mmlu_scoring}"


STEM = MmluGroup("stem", data.STEM_SUBJECTS)
LAW = MmluGroup("mmlu_law", data.LAW_SUBJECTS)
