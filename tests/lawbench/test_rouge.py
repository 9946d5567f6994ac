"""ROUGE-L tasks (1-1, 2-7, 3-2, 3-8) over jieba words, as LawBench computes them.

The expected values are worked from jieba's segmentation (checked in
``test_segmentation_assumed_below``) and rouge-chinese's ROUGE-L: one LCS over the word
sequences, F = 2PR / (P + R + 1e-8).
"""

import pytest

from orderstudy.benchmarks.lawbench.errors import LawBenchInputError
from orderstudy.benchmarks.lawbench.rouge import segment
from orderstudy.benchmarks.lawbench.scoring import score_item, score_task

ARTICLE = "农民专业合作社设理事长一名。"


def rouge_f(lcs, hyp_words, ref_words):
    p, r = lcs / hyp_words, lcs / ref_words
    return 2 * p * r / (p + r + 1e-8)


def test_segmentation_assumed_below():
    assert segment(ARTICLE).split() == ["农民", "专业", "合作社", "设", "理事长", "一名", "。"]
    assert segment("农民专业合作社设理事长。").split() == ["农民", "专业", "合作社", "设", "理事长", "。"]
    assert segment("我不知道。").split() == ["我", "不", "知道", "。"]
    assert segment("被告人应当承担赔偿责任。").split() == ["被告人", "应当", "承担", "赔偿", "责任", "。"]
    assert segment("被告人承担责任。").split() == ["被告人", "承担责任", "。"]


@pytest.mark.parametrize(
    "prediction, expected",
    [
        (ARTICLE, rouge_f(7, 7, 7)),
        ("农民专业合作社设理事长。", rouge_f(6, 6, 7)),     # partial
        ("我不知道。", rouge_f(1, 4, 7)),                 # only "。" in common
        ("", 0.0),                                        # scored as "无内容"
        (ARTICLE + ARTICLE, rouge_f(7, 14, 7)),           # the model repeating itself
    ],
)
def test_1_1_recitation_strips_answer_prefix(prediction, expected):
    value, abstained = score_item("1-1", prediction, "答案:" + ARTICLE)
    assert value == pytest.approx(expected) and abstained is False


@pytest.mark.parametrize("task", ["2-7", "3-2", "3-8"])
@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("被告人应当承担赔偿责任。", rouge_f(6, 6, 6)),
        ("被告人承担责任。", rouge_f(2, 3, 6)),
        ("", 0.0),
        ("回答:被告人应当承担赔偿责任。", None),  # extra words before the text: computed below
    ],
)
def test_generation_tasks(task, prediction, expected):
    value, abstained = score_item(task, prediction, "被告人应当承担赔偿责任。")
    if expected is None:
        words = segment(prediction).split()
        expected = rouge_f(6, len(words), 6)
    assert value == pytest.approx(expected) and abstained is False


def test_only_1_1_removes_the_answer_prefix():
    # 3-8's answers start with "回答:" and are used as they are, as LawBench does.
    with_prefix = score_item("3-8", ARTICLE, "答案:" + ARTICLE)[0]
    assert with_prefix < score_item("1-1", ARTICLE, "答案:" + ARTICLE)[0]


def test_task_score_is_the_mean_and_no_abstention():
    result = score_task("2-7", ["被告人应当承担赔偿责任。", ""], ["被告人应当承担赔偿责任。"] * 2)
    assert result.score == pytest.approx(rouge_f(6, 6, 6) / 2)
    assert result.abstention_rate == 0.0


def test_empty_answer_is_an_error():
    with pytest.raises(LawBenchInputError, match="answer is empty"):
        score_item("3-8", "回答", "  ")
