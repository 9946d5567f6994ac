"""Turning lm-eval's output into the result's scores, with LawBench's own rules."""

import math
from pathlib import Path

import pytest

from orderstudy.evaluation import engine as evaluation
from orderstudy.core.params import EvaluationParams


def _suite(tasks):
    names = {t: f"orderstudy_lawbench_{t}" for t in tasks}
    return evaluation.EvalSuite("k", Path("."), {"lawbench": names}, {}, EvaluationParams(), {})


def _outputs(rows):
    """lm-eval's output for LawBench items: {task: [(id, answer, prediction)]} (lm-eval scores none of them)."""
    results, samples = {}, {}
    for task, items in rows.items():
        name = f"orderstudy_lawbench_{task}"
        results[name] = {"empty_answer,none": sum(not p.strip() for _, _, p in items) / len(items)}
        samples[name] = [{"doc_id": k, "doc": {"id": i, "answer": a, "prompt": "问题"}, "filtered_resps": [p]}
                         for k, (i, a, p) in enumerate(items)]
    return {"results": results, "samples": samples}


# LawBench's 3-4 rule by hand: an item's distance is |ln(gold + 1) - ln(predicted + 1)| in months,
# its score 1 - distance / ln 216, the task's score (ln 216 - mean distance) / ln 216; death and
# life sentences are left out of the score.
SIX_FOR_TWELVE = 1 - math.log(13 / 7) / math.log(216)


def test_items_lawbench_leaves_out_are_kept_out_of_items_and_averages():
    rows = {
        "2-4": [("2-4/0", "婚姻家庭", "[类别]婚姻家庭<eoa>"), ("2-4/1", "劳动纠纷", "我不知道")],
        "3-4": [("3-4/0", "刑期:死刑", "[刑期]12个月<eoa>"), ("3-4/1", "刑期:12个月", "[刑期]12个月<eoa>"),
                ("3-4/2", "刑期:12个月", "[刑期]6个月<eoa>")],
        "3-5": [("3-5/0", "刑期:无期徒刑", "[刑期]6个月<eoa>")],
    }
    # Each task's score (percent), computed by hand: 2-4 one right of two; 3-4 as above.
    expected = {"2-4": 50.0, "3-4": 100 * (1 - math.log(13 / 7) / 2 / math.log(216))}
    out = evaluation.summarize(_outputs(rows), _suite(rows))
    lb = out["benchmarks"]["lawbench"]
    # 2-4: one right, one "I don't know" (an abstention); two scored tasks weigh one half each.
    assert lb["tasks"]["2-4"] == {"score": 50.0, "n": 2, "abstention_rate": 0.5, "excluded_items": 0, "weight": 0.5}
    assert out["items"]["lawbench"]["2-4"] == {"2-4/0": 1.0, "2-4/1": 0.0}
    # 3-4: the death sentence is left out of the items and the count.
    assert lb["tasks"]["3-4"] == {"score": pytest.approx(expected["3-4"], abs=1e-6), "n": 2, "abstention_rate": 0.0,
                                  "excluded_items": 1, "weight": 0.5}
    assert out["items"]["lawbench"]["3-4"] == {"3-4/1": 1.0, "3-4/2": pytest.approx(SIX_FOR_TWELVE)}
    # A task whose every sampled item is left out has no score: said, and not averaged as a zero.
    assert "3-5" not in lb["tasks"] and "3-5" in lb["unscored_tasks"]
    assert lb["score"] == pytest.approx((50.0 + expected["3-4"]) / 2, abs=1e-6)
    assert lb["aggregation"] == "unweighted mean of the tasks, as LawBench's leaderboard"
    assert lb["n_items"] == 4
    assert out["lawbench_predictions"]["3-5"] == {"3-5/0": "[刑期]6个月<eoa>"}


def test_suite_with_2_1_needs_the_thesaurus_before_any_model_work(lawbench_dir, smollm2_tokenizer, tmp_path, monkeypatch):
    # 2-1 is scored after generation; a missing thesaurus must stop the study at its preflight instead.
    from orderstudy.benchmarks import data
    from orderstudy.core import paths
    from orderstudy.benchmarks.lawbench import correction

    params = EvaluationParams(benchmarks=("lawbench",), lawbench_data=str(lawbench_dir), lawbench_tasks=("2-1",),
                              lawbench_items_per_task=1, cherrant_data="packaged")
    monkeypatch.setattr(paths, "THESAURUS_FILE", tmp_path / "cilin_ex.txt")
    correction.thesaurus.cache_clear()
    try:
        with pytest.raises(data.DataError, match="python -m orderstudy.prepare data"):
            evaluation.build_suite(params, 0, tmp_path / "suite", smollm2_tokenizer, 8192)
        other = params.model_copy(update={"lawbench_tasks": ("2-2",)})
        assert evaluation.build_suite(other, 0, tmp_path / "suite2", smollm2_tokenizer, 8192).benchmarks["lawbench"]
    finally:
        monkeypatch.undo()
        correction.thesaurus.cache_clear()
