"""2-1 文件校对: LawBench's ChERRANT character-level F0.5, worked by hand on short sentences.

Source 上诉证据足以认定指控实施。 has two errors; the answer corrects them to
上述证据足以认定指控事实。, which ChERRANT lists as three edits: S 诉->述 at (1, 2),
M (insert) 事 at (10, 10) and R (delete) 施 at (11, 12). A sentence's F0.5 uses ChERRANT's
conventions: P = 1 without false positives, R = 1 without false negatives.
"""

import math
import random

import pytest

from orderstudy.lawbench import correction
from orderstudy.lawbench.errors import LawBenchInputError
from orderstudy.lawbench.scoring import score_item, score_task

SOURCE = "上诉证据足以认定指控实施。"
ANSWER = "上述证据足以认定指控事实。"
PROMPT = "纠正下面法律文书句子中字词的拼写、冗余、缺失、乱序错误。\n句子：\n" + SOURCE
GOLD_EDITS = {(1, 2, "述"): ("S",), (10, 10, "事"): ("M",), (11, 12, "-NONE-"): ("R",)}


def f05(tp, fp, fn):
    p = tp / (tp + fp) if fp else 1.0
    r = tp / (tp + fn) if fn else 1.0
    return 1.25 * p * r / (0.25 * p + r) if p + r else 0.0


def test_answer_edits():
    assert dict(correction.annotate(SOURCE, ANSWER).edits) == GOLD_EDITS


@pytest.mark.parametrize(
    "prediction, counts",
    [
        (ANSWER, (3, 0, 0)),                                   # correct
        ("上述证据足以认定指控实施。", (1, 0, 2)),                 # partial: one of the two errors fixed
        ("上诉证据足以认定指控实施了。", (0, 1, 3)),               # wrong edit
        (SOURCE, (0, 0, 3)),                                   # unchanged: no edit, everything missed
        ("没有错误", (0, 0, 3)),                                 # "no error" is ChERRANT's no-edit marker
        ("", (0, 1, 3)),                                       # empty -> "无内容", one wrong edit
        # Extra text before the sentence: the prediction (20 chars) is cut to len(answer) + 5 = 18,
        # which also loses the end; the 述 edit still counts.
        ("修改后的句子：上述证据足以认定指控事实。", (1, 2, 2)),
        # Repeated: the newline is removed and the text cut to 18 characters, leaving 上述证据足
        # inserted at the end (one false positive).
        (ANSWER + "\n" + ANSWER, (3, 1, 0)),
        ("上述證據足以認定指控事實。", (3, 0, 0)),                 # traditional characters are simplified
    ],
)
def test_sentence_counts(prediction, counts):
    assert correction.sentence_counts(prediction, ANSWER, PROMPT) == counts
    assert score_item("2-1", prediction, ANSWER, PROMPT) == (pytest.approx(f05(*counts)), False)


def test_partial_credit_value():
    assert score_item("2-1", "上述证据足以认定指控实施。", ANSWER, PROMPT)[0] == pytest.approx(5 / 7)


def test_sentence_without_error():
    # An answer equal to the sentence has no edit: leaving it alone is perfect, changing it is not.
    assert score_item("2-1", SOURCE, SOURCE, PROMPT) == (1.0, False)
    assert score_item("2-1", ANSWER, SOURCE, PROMPT) == (0.0, False)


def test_task_score_is_corpus_level_f05_rounded_to_4_decimals():
    result = score_task("2-1", [ANSWER, SOURCE, "上述证据足以认定指控实施。"], [ANSWER] * 3, [PROMPT] * 3)
    # Summed counts: tp 3+0+1, fp 0, fn 0+3+2 -> P = 1, R = 4/9.
    assert result.score == round(f05(4, 0, 5), 4) == 0.8
    assert result.item_scores == pytest.approx([1.0, 0.0, 5 / 7])
    assert result.abstention_rate == 0.0


def test_word_order_edit():
    assert dict(correction.annotate("我们明天见面吧。", "明天我们见面吧。").edits) == {(0, 4, "明天我们"): ("W",)}


def test_edits_of_every_cheapest_alignment_are_listed():
    # Two cheapest alignments give different edit lists; an edit both contain is listed twice,
    # and ChERRANT then counts it twice (as a true positive, or as a miss).
    edits = correction.annotate("的丙丙", "了的了丙了").edits
    assert dict(edits) == {(0, 0, "了"): ("M", "M"), (1, 1, "了"): ("M",), (2, 3, "了"): ("S",),
                           (1, 2, "了"): ("S",), (3, 3, "了"): ("M",)}
    assert correction.compare(edits, edits) == (6, 0, 0)
    assert correction.compare(correction.annotate("的丙丙", "的丙丙").edits, edits) == (0, 0, 6)


def test_unannotatable_answer_scores_nothing():
    unannotatable = correction.annotate(SOURCE, "无法标注").edits
    assert correction.compare(correction.annotate(SOURCE, "随便").edits, unannotatable) == (0, 0, 0)


def test_too_many_alignments_counts_as_a_timeout():
    # ChERRANT gives up on a sentence after 10 s and corrects it to "无" instead.
    source, correction_text = "甲乙丙丁", "戊己"   # 6 equally cheap alignments
    oper = correction.align(correction.tokens(source), correction.tokens(correction_text))
    count = correction.count_alignments(oper, first_only=False)
    assert count > 1
    full = correction.annotate(source, correction_text, max_alignments=count)
    assert not full.timed_out
    cut = correction.annotate(source, correction_text, max_alignments=count - 1)
    assert cut.timed_out and dict(cut.edits) == dict(correction.annotate(source, "无").edits)


def test_whitespace_only_prediction_is_handled_like_chERRANT_failure():
    annotation = correction.annotate(SOURCE, " \u3000 ")
    assert annotation.timed_out and dict(annotation.edits) == dict(correction.annotate(SOURCE, "无").edits)


def test_prompt_forms():
    assert correction.source_sentence(PROMPT) == SOURCE
    assert correction.source_sentence([{"role": "HUMAN", "prompt": PROMPT + "\n请回答"}]) == SOURCE
    with pytest.raises(LawBenchInputError, match="句子"):
        correction.source_sentence("纠正句子：" + SOURCE)
    with pytest.raises(LawBenchInputError, match="origin prompt"):
        score_item("2-1", ANSWER, ANSWER)
    with pytest.raises(LawBenchInputError, match="origin prompts are needed"):
        score_task("2-1", [ANSWER], [ANSWER])


def test_prediction_cut_to_answer_length_plus_five():
    assert correction.clean_prediction("一二三四五六七八九十", "一二三") == "一二三四五六七八"
    assert correction.clean_prediction("一\n二\t三", "一二三") == "一二三"
    assert correction.clean_prediction("\n", "一二三") == "无内容"


def test_fast_alignment_equals_chERRANT_loop():
    rng = random.Random(0)
    alphabet = "甲乙丙丁的了，。AB"
    for _ in range(300):
        src = [rng.choice(alphabet) for _ in range(rng.randint(1, 8))]
        tgt = src[:]
        for _ in range(rng.randint(0, 3)):
            p, q = rng.randrange(len(tgt)), rng.randrange(len(tgt))
            tgt[p], tgt[q] = tgt[q], rng.choice(alphabet)
        assert correction.align(src, tgt) == correction.align_reference(src, tgt)


def test_substitution_costs():
    assert correction.substitution_cost("述", "诉") == pytest.approx(1.75)       # 6/6 + 0.25 + 0.5
    assert correction.substitution_cost("，", "、") == pytest.approx(4 / 6 + 0.5)  # both punctuation
    assert correction.substitution_cost("A", "，") == pytest.approx(4 / 6 + 0.5 + 0.499)
    # ChERRANT's punctuation list has the half-width ｡ but not 。, which counts as a non-punctuation token.
    assert correction.substitution_cost("A", "。") == pytest.approx(4 / 6 + 0.5 + 0.25)
    assert correction.f_beta(0, 0, 0) == 1.0 and math.isclose(correction.f_beta(1, 1, 1), 0.5)


def test_lawbench_published_predictions_excerpt():
    """Six items of GPT-4's published 2-1 predictions (tests/lawbench/data, from LawBench, Apache-2.0).

    The counts were also produced by a transcription of ChERRANT's own code run with the same
    substitution costs; they pin the whole pipeline on real model output.
    """
    from pathlib import Path

    from orderstudy.lawbench.predictions import read_task_predictions, score_task_file

    path = Path(__file__).parent / "data" / "lawbench_gpt4_zero_shot_2-1_excerpt.json"
    loaded = read_task_predictions(path, "2-1")
    counts = [correction.sentence_counts(p, a, o)
              for p, a, o in zip(loaded.predictions, loaded.answers, loaded.origin_prompts)]
    assert counts == [(0, 2, 3), (0, 2, 1), (1, 2, 0), (1, 0, 0), (0, 3, 1), (0, 3, 1)]
    result = score_task_file(path, "2-1")
    assert result.score == round(f05(2, 12, 6), 4)
    assert result.item_scores == pytest.approx([f05(*c) for c in counts])


def test_alignment_count_matches_enumeration():
    for source, target in [("甲乙丙丁", "戊己"), ("的丙丙", "了的了丙了"), (SOURCE, ANSWER), ("甲乙丙丁戊己庚辛壬癸子丑", "甲")]:
        src, tgt = correction.tokens(source), correction.tokens(target)
        first_only = abs(len(src) - len(tgt)) > 10
        oper = correction.align(src, tgt)
        assert len(list(correction.alignments(oper, first_only))) == correction.count_alignments(oper, first_only)


def test_one_shot_prompt_reads_the_question_not_the_example():
    # LawBench's one-shot 2-1 prompt: the example has no "句子：" line, so the first one is the question's.
    prompt = ("纠正下面法律文书句子中字词的拼写、冗余、缺失、乱序错误，尽量减少对原句的修改，保留原句语义。"
              "只需要给出修改后的句子，请你严格按照这个格式回答。下面是一个例子:\n"
              "经交通管理部门认定，燕云社负淑故主要这任。\n经交通管理部门认定，燕云社负事故主要责任。\n"
              "请你回答:\n句子：\n" + SOURCE)
    assert correction.source_sentence(prompt) == SOURCE
    assert score_item("2-1", ANSWER, ANSWER, prompt) == (1.0, False)
