"""Generation budgets from the gold answers, the ceiling they leave, and prompts fitted to the context.

Everything here runs on the packaged LawBench data and SmolLM2's real tokenizer.
"""

import copy
import json
import logging
import random
import shutil

import pytest

from orderstudy.benchmarks import budgets, data
from orderstudy.core import prompts
from orderstudy.evaluation import engine as evaluation
from orderstudy.checkpoints import models
from orderstudy.benchmarks.lawbench.scoring import score_item, score_task
from orderstudy.benchmarks.lawbench.tasks import TASK_IDS
from orderstudy.core.params import EvaluationParams

# SmolLM2's budgets for the packaged data under the default cap (uncapped): task -> (p99, budget).
SMOLLM2_BUDGETS = {
    "1-1": (701, 877), "1-2": (13, 32), "2-1": (481, 602), "2-2": (28, 35), "2-3": (68, 85), "2-4": (9, 32),
    "2-5": (163, 204), "2-6": (267, 334), "2-7": (672, 840), "2-8": (17, 32), "2-9": (30, 38), "2-10": (25, 32),
    "3-1": (30, 38), "3-2": (519, 649), "3-3": (72, 90), "3-4": (11, 32), "3-5": (11, 32), "3-6": (13, 32),
    "3-7": (30, 38), "3-8": (1131, 1414),
}
# Item-mean tasks whose scorer (jieba + ROUGE-L on long texts) is slow: only the items whose
# answer the budget cuts change, so the loss is summed over those (every item is scored).
ROUGE_TASKS = ("1-1", "2-7", "3-2", "3-8")


def test_smollm2_budgets_of_the_packaged_data(lawbench_dir, smollm2_tokenizer):
    cap = EvaluationParams().max_new_tokens
    for task, (p99, budget) in SMOLLM2_BUDGETS.items():
        answers = [item["answer"] for item in data.load_lawbench_task(lawbench_dir, "zero_shot", task)]
        found = budgets.derive(budgets.answer_tokens(smollm2_tokenizer, answers), cap)
        assert (found.answer_tokens_p99, found.max_new_tokens, found.capped) == (p99, budget, False), task


def test_gold_answers_cut_at_the_budget_lose_under_a_point(lawbench_dir, smollm2_tokenizer):
    """The ceiling test: on every task, gold answers cut at the budget score within a point of whole ones.

    Where LawBench's scorer gives the whole gold answers less than 100 (2-6: 62.9, its soft F1
    over entity strings), that is the ceiling the cut ones are compared with. 2-1 (ChERRANT, about
    50 ms a sentence here) is scored on 200 seeded items plus every item whose answer the budget
    cuts: that weighs the cut ones 2.5 times more than all 500 would, so the test is stricter.
    """
    cap = EvaluationParams().max_new_tokens
    losses = {}
    for task in TASK_IDS:
        items = data.load_lawbench_task(lawbench_dir, "zero_shot", task)
        answers = [item["answer"] for item in items]
        lengths = budgets.answer_tokens(smollm2_tokenizer, answers)
        budget = budgets.derive(lengths, cap).max_new_tokens
        cut = [k for k, n in enumerate(lengths) if n > budget]
        prompts = [data.lawbench_prompt(item) for item in items]
        if task in ROUGE_TASKS:
            loss = sum(score_item(task, answers[k], answers[k])[0]
                       - score_item(task, budgets.cut(smollm2_tokenizer, answers[k], budget), answers[k])[0]
                       for k in cut) / len(items)
        else:
            chosen = range(len(items))
            if task == "2-1":
                chosen = sorted(set(random.Random(0).sample(range(len(items)), 200)) | set(cut))
            gold = [answers[k] for k in chosen]
            short = [budgets.cut(smollm2_tokenizer, a, budget) for a in gold]
            asked = [prompts[k] for k in chosen]
            loss = score_task(task, gold, gold, asked).score - score_task(task, short, gold, asked).score
        losses[task] = round(100 * loss, 3)
    assert all(0 <= loss <= 1.0 for loss in losses.values()), losses
    # The test can fail: a budget a quarter as long leaves a 3-8 answer well under half its score.
    answer = max(data.load_lawbench_task(lawbench_dir, "zero_shot", "3-8"), key=lambda item: len(item["answer"]))["answer"]
    assert score_item("3-8", budgets.cut(smollm2_tokenizer, answer, 1414 // 4), answer)[0] < 0.5


def test_a_task_over_the_cap_is_capped_with_its_ceiling(lawbench_dir, smollm2_tokenizer, tmp_path):
    params = EvaluationParams(benchmarks=("lawbench",), lawbench_data=str(lawbench_dir), lawbench_tasks=("1-1", "2-4"),
                              lawbench_items_per_task=4, max_new_tokens=48)
    suite = evaluation.build_suite(params, 0, tmp_path, smollm2_tokenizer, 8192)
    recitation, topic = suite.generation["lawbench"]["1-1"], suite.generation["lawbench"]["2-4"]
    assert recitation["capped"] and recitation["max_new_tokens"] == 48 and recitation["needed_tokens"] == 877
    assert not topic["capped"] and topic["max_new_tokens"] == 32
    # The ceiling: the sample's gold answers cut at the cap, scored by LawBench's rule.
    items = data.lawbench_sample(lawbench_dir, "zero_shot", ("1-1",), 4, 0)["1-1"]
    gold = [item["answer"] for item in items]
    expected = score_task("1-1", [budgets.cut(smollm2_tokenizer, a, 48) for a in gold], gold).score
    assert recitation["ceiling_pct"] == pytest.approx(100 * expected) and recitation["ceiling_pct"] < 60
    spec = (suite.tasks_dir / "orderstudy_lawbench_1-1.yaml").read_text()
    assert '"max_gen_toks": 48' in spec and '"<|im_end|>"' in spec
    # The cap is keyed through the budgets: a cap that changes one changes the suite (re-evaluates),
    # one that changes none keeps it.
    lower = evaluation.build_suite(params.model_copy(update={"max_new_tokens": 40}), 0, tmp_path, smollm2_tokenizer, 8192)
    assert lower.key != suite.key
    uncapped = params.model_copy(update={"lawbench_tasks": ("2-4",)})
    assert (evaluation.build_suite(uncapped, 0, tmp_path, smollm2_tokenizer, 8192).key
            == evaluation.build_suite(uncapped.model_copy(update={"max_new_tokens": 4096}), 0, tmp_path,
                                      smollm2_tokenizer, 8192).key)


def test_long_prompts_are_cut_from_the_left_once_for_every_backend(lawbench_dir, tiny_model_dir, tmp_path, caplog):
    """3-5's prompts (median 1,400 SmolLM2 tokens) against a model with a 1,024-token context: cut here, not by lm-eval."""
    model_dir = tmp_path / "tiny-1k"
    shutil.copytree(tiny_model_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps(dict(config, max_position_embeddings=1024)))
    tokenizer, context = models.tokenizer_and_context(model_dir)
    assert context == 1024
    params = EvaluationParams(benchmarks=("lawbench",), lawbench_data=str(lawbench_dir), lawbench_tasks=("3-5",),
                              lawbench_items_per_task=4, max_new_tokens=8, batch_size=2)
    suite = evaluation.build_suite(params, 0, tmp_path / "suite", tokenizer, context)
    rows = [json.loads(line) for line in (suite.tasks_dir / "data" / "orderstudy_lawbench_3-5.jsonl").read_text().splitlines()]
    limit = context - 8
    over = [r for r in rows if prompts.prompt_tokens(tokenizer, r["prompt"], True) > limit]
    assert over, "the sample must hold a prompt longer than the context for this test to mean anything"
    assert suite.generation["lawbench"]["3-5"]["truncated_prompts"] == len(over)
    for row in rows:
        assert prompts.prompt_tokens(tokenizer, row["input"], True) <= limit
        assert row["prompt"].endswith(row["input"])          # the start is what goes
    for row in over:
        assert prompts.prompt_tokens(tokenizer, row["input"], True) >= limit - 4   # and no more than needed
    caplog.set_level(logging.WARNING)
    out = evaluation.evaluate(suite, model_dir=model_dir, device="cpu", dtype="float32")
    assert "Left truncation" not in caplog.text                # lm-eval had nothing left to cut
    entry = out["benchmarks"]["lawbench"]["tasks"]["3-5"]
    assert entry["truncated_prompts"] == len(over) and entry["max_new_tokens"] == 8 and entry["capped"] is True
    assert out["benchmarks"]["lawbench"]["generation"]["context_tokens"] == 1024
    assert out["benchmarks"]["lawbench"]["capped_tasks"] == ["3-5"]


def test_fit_left_drops_the_start_of_a_chinese_prompt(smollm2_tokenizer):
    text = "根据下列事实预测判决刑期。" * 40 + "请回答。"
    total = prompts.prompt_tokens(smollm2_tokenizer, text, True)
    kept, dropped = prompts.fit_left(smollm2_tokenizer, text, True, total - 50)
    assert text.endswith(kept) and "\ufffd" not in kept and kept.endswith("请回答。")
    assert 50 <= dropped <= 53 and prompts.prompt_tokens(smollm2_tokenizer, kept, True) <= total - 50
    assert prompts.fit_left(smollm2_tokenizer, text, True, total) == (text, 0)


def test_generation_stops_at_the_templates_end_of_turn(smollm2_tokenizer, tiny_model_dir):
    assert budgets.end_of_turn(smollm2_tokenizer) == "<|im_end|>" == smollm2_tokenizer.eos_token
    assert budgets.stop_sequences(smollm2_tokenizer, chat=True) == ["<|im_end|>"]
    # A template that closes turns with another special token (as Llama 3 does with <|eot_id|>).
    other = copy.deepcopy(smollm2_tokenizer)
    other.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|endoftext|>{% endfor %}"
                           "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    assert budgets.stop_sequences(other, chat=True) == ["<|im_end|>", "<|endoftext|>"]
    assert budgets.stop_sequences(other, chat=False) == ["<|im_end|>"]
    model = models.load_model(tiny_model_dir, "float32", "cpu")
    assert model.generation_config.eos_token_id == 2
    evaluation._stop_at_end_of_turn(model, other, ("<|im_end|>", "<|endoftext|>"))
    assert model.generation_config.eos_token_id == [2, 0]   # transformers now ends a sequence there too


def test_mmlu_generative_gets_a_budget_too(mmlu_dir, smollm2_tokenizer, tmp_path):
    params = EvaluationParams(benchmarks=("mmlu_law",), mmlu_data=str(mmlu_dir), mmlu_items_per_subject=2,
                              mmlu_scoring="generative", max_new_tokens=24)
    suite = evaluation.build_suite(params, 0, tmp_path, smollm2_tokenizer, 8192)
    record = suite.generation["mmlu_law"]["jurisprudence"]
    # One-letter answers: the floor, cut to the cap, which caps nothing (the letter fits).
    assert (record["answer_tokens_p99"], record["needed_tokens"], record["max_new_tokens"], record["capped"]) == (1, 32, 24, False)
    spec = (suite.tasks_dir / "orderstudy_mmlu_jurisprudence.yaml").read_text()
    assert '"max_gen_toks": 24' in spec and '"<|im_end|>"' in spec
