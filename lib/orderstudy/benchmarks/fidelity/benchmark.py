"""Fidelity to the base as two of the study's benchmarks: a sensitive measure beside accuracy.

Accuracy on a few hundred items moves only when a change is large; how far a state has drifted
from the base shows much smaller ones. Both benchmarks are 0 for the base and grow with drift,
so lower is better, and neither has a change rate against the base (the base's value is 0).

- ``kl``: the KL divergence of the state's next-token distributions from the base's, per token,
  averaged over each held-out text (``kl.py``: against the base's top-k distributions kept once,
  a lower bound of the full divergence). The texts are LawBench and MMLU items that the study
  never evaluates (they sit after the evaluation sample in each task's seeded order) and never
  trains or calibrates on (they join the evaluated items that no training or calibration pair may
  share). A score is in nats per token (not percent); its interval clusters by text (each text one
  item).
- ``flip``: the share of the study's MMLU items whose chosen answer differs from the base's
  (arXiv 2407.09141: "flips"), whether the answer was right or wrong; one 0/1 item per question,
  each subject a task, subjects weighed equally (the same number of questions each).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ...core import paths
from ...core.benchmark import Benchmark, TaskScore
from .. import data
from ..mmlu.benchmark import LETTERS, description, question_text
from . import kl

HERE = Path(__file__).resolve().parent
SOURCES = ("lawbench", "mmlu")


def mmlu_subjects(params) -> tuple[str, ...]:
    """Return the MMLU subjects held-out texts are drawn from.

    Those of the study's MMLU groups (stem, law), after each subject's evaluation sample; when every
    question of them is evaluated (``mmlu_items_per_subject: null``), the subjects outside those
    groups, which no benchmark of the study evaluates.
    """
    evaluated = tuple(data.STEM_SUBJECTS) + tuple(data.LAW_SUBJECTS)
    if params.mmlu_items_per_subject is not None:
        return evaluated
    directory = paths.resolve(params.mmlu_data)
    return tuple(sorted(p.stem for p in Path(directory).glob("*.jsonl") if p.stem not in evaluated))


def _lawbench_tasks(params) -> tuple[str, ...]:
    from ..lawbench.tasks import TASK_IDS

    return TASK_IDS if params.lawbench_tasks == "all" else tuple(params.lawbench_tasks)


def _mmlu_rows(data_dir: Path, subject: str) -> list[dict]:
    path = Path(data_dir) / f"{subject}.jsonl"
    if not path.is_file():
        raise data.DataError(f"{path}: MMLU subject file missing (the KL divergence's held-out texts are drawn from it; "
                             "run `make data`, or point evaluation.mmlu_data at a directory of <subject>.jsonl files)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _after_sample(order: list[int], skip: int | None, count: int, where: str) -> list[int]:
    """Return ``count`` positions of ``order`` after the first ``skip`` (the evaluation sample's)."""
    if skip is None:
        raise data.DataError(f"{where}: every item is evaluated (items per task: all), so none is left for the KL "
                             "divergence's held-out texts; give a number of items per task, or leave kl out of "
                             "evaluation.benchmarks")
    if skip + count > len(order):
        raise data.DataError(f"{where}: {len(order)} items hold the {skip} evaluated and {count} held-out texts "
                             "for the KL divergence only with overlap; lower evaluation.kl_texts")
    return order[skip:skip + count]


def _spread(total: int, groups: int) -> list[int]:
    """Return ``total`` split over ``groups`` as evenly as it goes, the first groups taking the rest."""
    return [total // groups + (g < total % groups) for g in range(groups)]


class KlDivergence(Benchmark):
    name = "kl"
    display_name = "KL to base"
    items_key = "evaluation.kl_texts"
    code = (HERE, Path(data.__file__))
    higher_is_better = False
    from_base = True
    bounded = False
    unit = "nats/token"

    def tasks(self, params) -> tuple[str, ...]:
        return tuple(source for source, n in zip(SOURCES, self.counts(params)) if n)

    def request_type(self, params) -> str:
        return "divergence"

    # -- the texts --------------------------------------------------------------------------
    def sample(self, params, seed: int) -> dict[str, list[dict]]:
        """Return the held-out texts: half LawBench items, half MMLU questions, none of them evaluated.

        Spread over the tasks (the study's LawBench tasks; the MMLU subjects of ``mmlu_subjects``)
        round robin, each taken from its task's seeded order right after the evaluation's sample.
        A study that evaluates every LawBench item takes every text from MMLU.
        """
        n_law, n_mmlu = self.counts(params)
        out = {"lawbench": [], "mmlu": []}
        law_dir = paths.resolve(params.lawbench_data)
        tasks = _lawbench_tasks(params)
        for task, count in zip(tasks, _spread(n_law, len(tasks)) if n_law else ()):
            if not count:
                continue
            items = data.load_lawbench_task(law_dir, "zero_shot", task)
            order = data._order(len(items), seed, f"lawbench/{task}")
            for i in _after_sample(order, params.lawbench_items_per_task, count, f"LawBench task {task}"):
                out["lawbench"].append({"id": f"{task}/{i}", "text": f"{data.lawbench_prompt(items[i])}\n{items[i]['answer']}",
                                        "question": items[i]["question"], "prompt": data.lawbench_prompt(items[i])})
        mmlu_dir = paths.resolve(params.mmlu_data)
        subjects = mmlu_subjects(params)
        if n_mmlu and not subjects:
            raise data.DataError(f"{mmlu_dir}: no MMLU subject outside the evaluated groups to draw the KL divergence's "
                                 "held-out texts from; give evaluation.mmlu_items_per_subject a number")
        for subject, count in zip(subjects, _spread(n_mmlu, len(subjects)) if n_mmlu else ()):
            if not count:
                continue
            rows = _mmlu_rows(mmlu_dir, subject)
            order = data._order(len(rows), seed, f"mmlu/{subject}")
            skip = params.mmlu_items_per_subject or 0   # a subject outside the groups: none of it is evaluated
            for i in _after_sample(order, skip, count, f"MMLU subject {subject}"):
                row = rows[i]
                letter = LETTERS[row["answer"]]
                text = f"{description(subject)}{question_text(row)} {letter}. {row['choices'][row['answer']]}"
                out["mmlu"].append({"id": f"{subject}/{i}", "text": text, "question": row["question"],
                                    "prompt": row["question"]})
        return {source: rows for source, rows in out.items() if rows}

    def counts(self, params) -> tuple[int, int]:
        """Return how many held-out texts come from LawBench and from MMLU: half each, all MMLU's when every
        LawBench item is evaluated (``lawbench_items_per_task: null``)."""
        if params.lawbench_items_per_task is None:
            return 0, params.kl_texts
        n_law, n_mmlu = _spread(params.kl_texts, 2)
        return n_law, n_mmlu

    def evaluated_items(self, params, sample_ids) -> list[dict]:
        # No training or calibration pair may share a held-out text's content: they join the evaluated items.
        out, files = [], {}
        for source, ids in sample_ids.items():
            for item_id in ids:
                task, index = item_id.rsplit("/", 1)
                if (source, task) not in files:
                    files[source, task] = (
                        data.load_lawbench_task(paths.resolve(params.lawbench_data), "zero_shot", task)
                        if source == "lawbench" else _mmlu_rows(paths.resolve(params.mmlu_data), task))
                item = files[source, task][int(index)]
                if source == "lawbench":
                    question, prompt = item["question"], data.lawbench_prompt(item)
                else:
                    question = prompt = item["question"]
                out.append({"task": source, "id": item_id, "question": question, "prompt": prompt})
        return out

    def sequences(self, samples: dict[str, list[dict]], tokenizer, max_tokens: int) -> dict[str, list[list[int]]]:
        """Return each text's first ``max_tokens`` tokens (the tokenizer's special tokens included), by source."""
        return {source: [tokenizer(row["text"])["input_ids"][:max_tokens] for row in rows]
                for source, rows in samples.items()}

    # -- scores -----------------------------------------------------------------------------
    def measure(self, suite, samples, model, tokenizer, base) -> dict[str, TaskScore]:
        params = suite.params
        sequences = self.sequences(samples, tokenizer, params.kl_tokens)
        flat = [s for source in samples for s in sequences[source]]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        reference = self.reference(suite, flat, model, base, pad)
        values = kl.divergence(model, flat, reference, pad_id=pad)
        out, start = {}, 0
        tail = reference.tail_mass()
        for source, rows in samples.items():
            chunk = values[start:start + len(rows)]
            start += len(rows)
            items = {row["id"]: float(v) for row, v in zip(rows, chunk)}
            tokens = sum(len(s) - 1 for s in sequences[source])
            out[source] = TaskScore(entry={"score": round(sum(chunk) / len(chunk), 9), "n": len(chunk),
                                           "tokens": tokens, "reference_tail_mass": round(tail, 6)}, items=items)
        return out

    def reference(self, suite, sequences: list[list[int]], model, base, pad_id: int) -> kl.Reference:
        """Return the base's top-k distributions on the texts: computed once per base and suite, then kept."""
        params = suite.params
        path = Path(suite.tasks_dir) / "kl" / f"reference-{base.key}-top{params.kl_top_k}.npz"
        if path.is_file():
            return kl.Reference.load(path)
        if base.is_self:
            ref = kl.reference(model, sequences, top_k=params.kl_top_k, pad_id=pad_id)
        else:
            from ...checkpoints import storage

            base_model = storage.load(base.model_dir, base.dtype, base.device)
            try:
                ref = kl.reference(base_model, sequences, top_k=params.kl_top_k, pad_id=pad_id)
            finally:
                del base_model
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".reference-", suffix=".npz")
        os.close(fd)
        try:
            ref.save(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return ref

    def aggregation(self, params) -> str:
        return "mean over the held-out texts (LawBench's and MMLU's weighed by their numbers of texts)"

    def weights(self, tasks, params, populations=None) -> dict[str, float]:
        # Each text weighs the same: a source's weight is its share of the texts.
        counts = dict(zip(SOURCES, self.counts(params)))
        total = sum(counts[t] for t in tasks)
        return {t: counts[t] / total for t in tasks}

    def scoring(self, params) -> str:
        return (f"KL(base || state) of the next-token distributions, nats per token, over the first "
                f"{params.kl_tokens} tokens of each of {params.kl_texts} held-out texts, against the base's "
                f"top {params.kl_top_k} tokens and the rest's mass (a lower bound of the full divergence)")


class FlipRate(Benchmark):
    name = "flip"
    display_name = "Answers flipped"
    items_key = "evaluation.mmlu_items_per_subject"
    code = (HERE / "benchmark.py",)
    higher_is_better = False
    from_base = True

    def check_setting(self, key, value) -> str | None:
        if key == "benchmarks" and "flip" in value and not self._groups(value):
            return "benchmark 'flip' compares MMLU answers with the base's: add stem or mmlu_law to evaluation.benchmarks"
        return None

    @staticmethod
    def _groups(benchmarks) -> tuple[str, ...]:
        from ...core.benchmark import get_benchmark, names

        return tuple(b for b in benchmarks if b in names() and hasattr(get_benchmark(b), "subjects"))

    def compares(self, params) -> tuple[str, ...]:
        return self._groups(params.benchmarks)

    def tasks(self, params) -> tuple[str, ...]:
        from ...core.benchmark import get_benchmark

        return tuple(s for b in self.compares(params) for s in get_benchmark(b).tasks(params))

    def request_type(self, params) -> str:
        return "agreement"

    def sample(self, params, seed: int) -> dict[str, list[dict]]:
        return {}   # its items are the compared benchmarks'

    def compare(self, answers, base_answers, params) -> dict[str, TaskScore]:
        out = {}
        for bench in self.compares(params):
            for subject, chosen in (answers.get(bench) or {}).items():
                base = (base_answers.get(bench) or {}).get(subject)
                if base is None or set(base) != set(chosen):
                    raise ValueError(f"flip: the base's answers to {bench}/{subject} are not on the same items")
                items = {i: float(chosen[i] != base[i]) for i in sorted(chosen)}
                out[subject] = TaskScore(entry={"score": round(100.0 * sum(items.values()) / len(items), 6),
                                                "n": len(items)}, items=items)
        return out

    def scoring(self, params) -> str:
        return "share of MMLU questions whose chosen answer differs from the base's (right or wrong)"

    def aggregation(self, params) -> str:
        return "unweighted mean of the subjects (each the same number of questions)"


KL = KlDivergence()
FLIP = FlipRate()
