"""2-1 文件校对: LawBench's ChERRANT character-level F0.5, worked by hand on short sentences.

Source 上诉证据足以认定指控实施。 has two errors; the answer corrects them to
上述证据足以认定指控事实。, which ChERRANT lists as three edits: S 诉->述 at (1, 2),
M (insert) 事 at (10, 10) and R (delete) 施 at (11, 12). A sentence's F0.5 uses ChERRANT's
conventions: P = 1 without false positives, R = 1 without false negatives.
"""

import math
import random

import pytest

from orderstudy.benchmarks.lawbench import correction
from orderstudy.benchmarks.lawbench.errors import LawBenchInputError
from orderstudy.benchmarks.lawbench.scoring import score_item, score_task

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
    # Unrelated characters, homophones (的地得, 实事施), thesaurus neighbours (的所, 的了, 述诉) and punctuation.
    alphabet = "甲乙丙丁的了地得所实事施述诉，。AB"
    for _ in range(300):
        src = [rng.choice(alphabet) for _ in range(rng.randint(1, 8))]
        tgt = src[:]
        for _ in range(rng.randint(0, 3)):
            p, q = rng.randrange(len(tgt)), rng.randrange(len(tgt))
            tgt[p], tgt[q] = tgt[q], rng.choice(alphabet)
        assert correction.align(src, tgt) == correction.align_reference(src, tgt)


def test_thesaurus_is_read_as_chERRANT_reads_it():
    # Each word takes the code of the last line that lists it: 人 is on 5 lines, the last
    # Dn03A04= (a measure word), not Aa01A01= (person), the first.
    thesaurus = correction.thesaurus()
    assert thesaurus["人"] == "Dn03A04=" and thesaurus["的"] == "Kd01A01=" and thesaurus["地"] == "Kd01A03@"
    assert "维" not in thesaurus and "，" not in thesaurus
    # HIT's file as shipped: 77,457 distinct words, ideographic spaces inside words kept.
    assert len(thesaurus) == 77457 and "白矾\u3000" in thesaurus


def test_readings_are_every_toneless_pinyin():
    assert correction.readings("行") == {"hang", "heng", "xing"}
    assert correction.readings("实") == {"shi"} and correction.readings("事") == {"shi", "zi"}
    assert correction.readings("，") == {"，"} and correction.readings("A") == {"A"}   # no reading: itself


# Hand-worked ChERRANT costs: semantic/6 + spelling + punctuation (0 both punctuation, 0.25 neither,
# 0.499 one of them). Semantic: 4 when a token is not in the thesaurus, else 2 per class level
# (code[0], code[1], code[2:4]) that differs. Spelling: 0.5 unless both are Chinese and share a reading.
@pytest.mark.parametrize(
    "a, b, cost",
    [
        ("的", "所", 0 / 6 + 0.5 + 0.25),      # Kd01A01 / Kd01C01: same three levels; de, di / suo
        ("的", "地", 0 / 6 + 0.0 + 0.25),      # Kd01A01 / Kd01A03: same levels and a shared reading (de, di)
        ("的", "了", 2 / 6 + 0.5 + 0.25),      # Kd01A01 / Kd05D01: minor class differs
        ("述", "诉", 2 / 6 + 0.5 + 0.25),      # Hi13D02 / Hi12A12: minor class differs; shu / su
        ("的", "是", 4 / 6 + 0.5 + 0.25),      # Kd01A01 / Kc06B01: middle and minor classes differ
        ("的", "人", 6 / 6 + 0.5 + 0.25),      # Kd01A01 / Dn03A04: no level shared
        ("本", "体", 4 / 6 + 0.0 + 0.25),      # Kb07A01 / Dk07B01: levels compared by position, so 07 = 07 counts;
                                               # and 体 has the rare reading ben
        ("实", "事", 6 / 6 + 0.0 + 0.25),      # Ed01C01 / Hj19A01, homophones (shi)
        ("人", "入", 6 / 6 + 0.5 + 0.25),      # look-alikes (ren / ru): spelling 0 in ChERRANT if its confusion set pairs them
        ("维", "的", 4 / 6 + 0.5 + 0.25),      # 维 is not in the thesaurus
        ("，", "、", 4 / 6 + 0.5 + 0.0),       # both punctuation
        ("A", "，", 4 / 6 + 0.5 + 0.499),
        ("A", "。", 4 / 6 + 0.5 + 0.25),       # ChERRANT's list has the half-width ｡, not 。
        ("A", "的", 4 / 6 + 0.5 + 0.25),       # not Chinese: spelling 0.5 whatever the readings
    ],
)
def test_substitution_costs(a, b, cost):
    assert correction.substitution_cost(a, b) == pytest.approx(cost)
    assert correction.substitution_cost(b, a) == pytest.approx(cost)


def test_substitution_cost_sums_in_chERRANTs_order():
    # Float ties decide which alignments are kept, so the sum must be ChERRANT's to the last bit.
    assert correction.substitution_cost("的", "是") == 4 / 6.0 + 0.5 + 0.25
    assert correction.substitution_cost("A", "，") == 4 / 6.0 + 0.5 + 0.499
    assert correction.f_beta(0, 0, 0) == 1.0 and math.isclose(correction.f_beta(1, 1, 1), 0.5)


def _flat_cost(a, b, tables=None):
    """The substitution cost this module used before it had the thesaurus and pinyin."""
    if a == b:
        return 0
    chinese = correction._all_chinese(a) and correction._all_chinese(b)
    return (6 if chinese else 4) / 6.0 + 0.5 + correction.punctuation_cost(a, b)


@pytest.mark.parametrize(
    "source, target, flat_edits, edits",
    [
        # 临 dropped and 分 written 汾 (same reading, fen). With one price for every pair, deleting
        # 临 and changing 分, or the reverse, are equally cheap and both edit lists are kept; the
        # shared reading makes 分->汾 cheaper (0.92 against 1.42 for 临->汾), leaving one.
        ("临汾分行", "汾汾行",
         {(0, 1, "-NONE-"): ("R",), (2, 3, "汾"): ("S",), (0, 1, "汾"): ("S",), (2, 3, "-NONE-"): ("R",)},
         {(0, 1, "-NONE-"): ("R",), (2, 3, "汾"): ("S",)}),
        # 地 -> 的 costs 0.25 (same thesaurus class, shared reading), so two substitutions
        # (0.25 + 1.42) beat inserting 的 and deleting 以 (2), which flat costs (3.5 against 2) chose.
        ("故意地以", "故意的地",
         {(2, 2, "的"): ("M",), (3, 4, "-NONE-"): ("R",)},
         {(2, 4, "的地"): ("S",)}),
        # 本 -> 体 costs 0.92 (a shared reading and a class level), so deleting 体 and changing 本
        # (1.92) beats the word-order edit plus a deletion (2) the flat costs chose.
        ("具体到本案", "具到体案",
         {(1, 3, "到体"): ("W",), (3, 4, "-NONE-"): ("R",)},
         {(1, 2, "-NONE-"): ("R",), (3, 4, "体"): ("S",)}),
    ],
)
def test_real_costs_change_the_edits(monkeypatch, source, target, flat_edits, edits):
    assert dict(correction._edits(source, target, None)) == edits
    monkeypatch.setattr(correction, "substitution_cost", _flat_cost)
    assert dict(correction._edits(source, target, None)) == flat_edits


def test_missing_thesaurus_says_what_to_run(tmp_path, monkeypatch):
    from orderstudy.core import paths

    monkeypatch.setattr(paths, "THESAURUS_FILE", tmp_path / "cilin_ex.txt")
    correction.thesaurus.cache_clear()
    try:
        with pytest.raises(correction.ThesaurusMissingError, match="python -m orderstudy.prepare data"):
            correction.substitution_cost("的", "地")
    finally:
        monkeypatch.undo()
        correction.thesaurus.cache_clear()
    assert correction.substitution_cost("的", "地") == pytest.approx(0.25)


def test_lawbench_published_predictions_excerpt():
    """Six items of GPT-4's published 2-1 predictions (tests/lawbench/data, from LawBench, Apache-2.0).

    The counts were also produced by a transcription of ChERRANT's own code run with the same
    substitution costs (the earlier flat ones; the thesaurus and pinyin costs leave them as they
    were); they pin the whole pipeline on real model output.
    """
    from pathlib import Path

    from orderstudy.benchmarks.lawbench.predictions import read_task_predictions, score_task_file

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
