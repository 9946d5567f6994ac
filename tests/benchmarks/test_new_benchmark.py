"""A benchmark defined here only goes through the study's evaluation without another change.

``arith`` asks sums ("17 + 25 =") and scores an answer right when its first number is the sum.
Registered through the registry's public function, it must be accepted by the params, sampled,
rendered, written as lm-eval tasks, run by lm-eval on the tiny model, scored item by item and
aggregated by its own rule, keyed by its own code, and named by the report; unregistered after.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from orderstudy.checkpoints import models
from orderstudy.core.benchmark import Benchmark, Prompt, TaskScore, register_benchmark, unregister_benchmark
from orderstudy.core.params import EvaluationParams, ParamsError, load_params
from orderstudy.evaluation import engine as evaluation
from orderstudy.report import labels

HERE = Path(__file__)
TASKS_DIR = Path(evaluation.TASKS_DIR)


class Arith(Benchmark):
    name = "arith"
    display_name = "Arithmetic"
    items_key = "evaluation.benchmarks"
    # Weighted 3:1 (easy:hard): a rule of its own, to check the engine aggregates as the benchmark says.
    WEIGHTS = {"easy": 0.75, "hard": 0.25}

    def __init__(self, code: tuple[Path, ...] = (HERE,)):
        self.code = code

    def tasks(self, params):
        return ("easy", "hard")

    def request_type(self, params):
        return "generation"

    def sample(self, params, seed):
        out = {}
        for task, top in (("easy", 9), ("hard", 99)):
            rng = random.Random(f"{seed}:{task}")
            out[task] = [{"id": f"{task}/{i}", "a": rng.randint(1, top), "b": rng.randint(1, top)} for i in range(3)]
        return out

    def budgets(self, params, tokenizer, samples):
        return {t: {"max_new_tokens": 6, "capped": False} for t in samples}

    def prompt(self, task, item):
        return Prompt(f"{item['a']} + {item['b']} =", system="Answer with the sum only.\n\n")

    def fit(self, task, item, tokenizer, limit_tokens, chat):
        return dict(item, text=self.prompt(task, item).user), 0

    def task_config(self, task, params, budget, stop):
        return {"include": str(TASKS_DIR / "_lawbench.yaml"), "doc_to_text": "{{text}}", "doc_to_target": "{{a + b}}",
                "description": "Answer with the sum only.\n\n",
                "generation_kwargs": {"until": list(stop), "do_sample": False, "max_gen_toks": budget["max_new_tokens"]}}

    def score_task(self, task, samples, params, resources):
        scores, predictions = {}, {}
        for s in samples:
            answer = s["filtered_resps"][0]
            first = re.search(r"-?\d+", answer)
            scores[s["doc"]["id"]] = float(first is not None and int(first.group()) == s["doc"]["a"] + s["doc"]["b"])
            predictions[s["doc"]["id"]] = answer
        entry = {"score": round(100.0 * sum(scores.values()) / len(scores), 6), "n": len(scores)}
        return TaskScore(entry=entry, items=scores, predictions=predictions)

    def weights(self, tasks, params, populations=None):
        return {t: self.WEIGHTS[t] for t in tasks}

    def aggregation(self, params):
        return "easy 3, hard 1"

    def scoring(self, params):
        return "first number equals the sum"


@pytest.fixture
def arith():
    benchmark = register_benchmark(Arith())
    yield benchmark
    unregister_benchmark("arith")


def test_the_params_take_it_once_registered_and_name_the_known_ones_before(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("study: t\nmodel: {source: cache/models/x}\nevaluation: {benchmarks: [lawbench, arith]}\n")
    with pytest.raises(ParamsError, match=r"key 'evaluation.benchmarks'.*unknown benchmark 'arith'.*lawbench, stem, mmlu_law"):
        load_params(path)
    register_benchmark(Arith())
    try:
        assert load_params(path).evaluation.benchmarks == ("lawbench", "arith")
        assert labels.benchmark_name("arith") == "Arithmetic"
    finally:
        unregister_benchmark("arith")
    assert labels.benchmark_name("arith") == "arith"


def test_it_is_sampled_run_by_lm_eval_scored_once_per_item_and_aggregated_its_way(arith, tiny_model_dir, tmp_path):
    params = EvaluationParams(benchmarks=("arith",))
    tokenizer, context = models.tokenizer_and_context(tiny_model_dir)
    suite = evaluation.build_suite(params, 0, tmp_path, tokenizer, context)
    assert suite.benchmarks == {"arith": {"easy": "orderstudy_arith_easy", "hard": "orderstudy_arith_hard"}}
    rows = [json.loads(line) for line in (suite.tasks_dir / "data" / "orderstudy_arith_easy.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["easy/0", "easy/1", "easy/2"] and all(r["text"].endswith(" =") for r in rows)

    scores = evaluation.evaluate(suite, model_dir=tiny_model_dir, device="cpu", dtype="float32")
    entry = scores["benchmarks"]["arith"]
    items = scores["items"]["arith"]
    assert set(items) == {"easy", "hard"} and all(len(v) == 3 for v in items.values())
    for task in ("easy", "hard"):
        assert entry["tasks"][task]["score"] == pytest.approx(100 * sum(items[task].values()) / 3)
        assert entry["tasks"][task]["weight"] == Arith.WEIGHTS[task]
    assert entry["score"] == pytest.approx(0.75 * entry["tasks"]["easy"]["score"] + 0.25 * entry["tasks"]["hard"]["score"])
    assert entry["aggregation"] == "easy 3, hard 1" and entry["scoring"] == "first number equals the sum"
    assert scores["runtime"]["generation"]["items"] == 6   # lm-eval generated one answer per item


def test_its_code_is_in_the_evaluations_key(tiny_model_dir, tmp_path):
    tokenizer, context = models.tokenizer_and_context(tiny_model_dir)
    source = tmp_path / "arith_code.py"

    def key(text: str) -> str:
        source.write_text(text)
        register_benchmark(Arith(code=(source,)))
        try:
            params = EvaluationParams(benchmarks=("arith",))
            return evaluation.build_suite(params, 0, tmp_path / "suite", tokenizer, context).key
        finally:
            unregister_benchmark("arith")

    first = key("def score(a, b):\n    return a == b\n")
    assert key("def score(a, b):\n    # compared as numbers\n    return a == b\n") == first   # a comment changes nothing
    assert key("def score(a, b):\n    return a == b or a == -b\n") != first                     # a scorer fix re-scores


def test_the_built_in_benchmarks_are_keyed_by_their_scoring_code(monkeypatch, tiny_model_dir, tmp_path, lawbench_dir, mmlu_dir):
    from orderstudy.core.benchmark import get_benchmark

    tokenizer, context = models.tokenizer_and_context(tiny_model_dir)
    params = EvaluationParams(lawbench_data=str(lawbench_dir), mmlu_data=str(mmlu_dir), lawbench_tasks=("1-2",),
                              lawbench_items_per_task=1, mmlu_items_per_subject=1)
    before = evaluation.build_suite(params, 0, tmp_path / "a", tokenizer, context).key
    lawbench = get_benchmark("lawbench")
    monkeypatch.setattr(lawbench, "fingerprint_version", "pinned")
    assert evaluation.build_suite(params, 0, tmp_path / "b", tokenizer, context).key != before
