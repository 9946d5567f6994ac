"""Single-answer tasks (1-2, 2-2, 2-4, 2-8, 3-6): LawBench's option-counting judge, worked by hand.

Rule: an item is right when the right option's text occurs in the prediction and no other
option's text does; it is an abstention when no option occurs. There is no partial credit.
"""

import math

import pytest

from orderstudy.benchmarks.lawbench.errors import LawBenchInputError
from orderstudy.benchmarks.lawbench.scoring import score_item, score_task

EXAM_1_2 = "正确答案：B。"  # LawBench's 1-2 form (full-width colon)
EXAM_3_6 = "正确答案:C。"  # LawBench's 3-6 form (ASCII colon)
ARGUMENT = "[正确答案]C<eoa>"  # 2-8


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("[正确答案]B<eoa>", (1.0, False)),                      # correct, in the requested form
        ("[正确答案]C<eoa>", (0.0, False)),                      # wrong
        ("我无法回答这个问题。", (0.0, True)),                    # abstention: no letter at all
        ("", (0.0, True)),                                       # empty prediction
        ("根据民法典第十九条，本题应选B。", (1.0, False)),          # extra text before and after
        ("[正确答案]B<eoa>[正确答案]B<eoa>[正确答案]B<eoa>", (1.0, False)),  # the model repeating itself
        ("[正确答案]B<eoa>，因为A项错误。", (0.0, False)),          # a second letter occurs: wrong
        ("Answer: B", (0.0, False)),                             # the "A" of "Answer" counts (LawBench quirk)
    ],
)
def test_1_2_knowledge_questions(prediction, expected):
    assert score_item("1-2", prediction, EXAM_1_2) == expected


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("[正确答案]C<eoa>", (1.0, False)),
        ("[正确答案]D<eoa>", (0.0, False)),
        ("本案事实不清，无法判断。", (0.0, True)),
        ("", (0.0, True)),
        ("分析：甲的行为构成危险驾驶罪。\n[正确答案]C<eoa>\n以上。", (1.0, False)),
        ("C或者D", (0.0, False)),
    ],
)
def test_3_6_case_analysis(prediction, expected):
    assert score_item("3-6", prediction, EXAM_3_6) == expected


def test_either_colon_reads_the_same_letter():
    assert score_item("1-2", "B", "正确答案:B。") == score_item("1-2", "B", "正确答案：B。") == (1.0, False)
    assert score_item("3-6", "C", "正确答案：C。") == (1.0, False)


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("[正确答案]C<eoa>", (1.0, False)),
        ("[正确答案]E<eoa>", (0.0, False)),          # E is an option in 2-8
        ("都不能形成争议观点对", (0.0, True)),
        ("", (0.0, True)),
        ("辩方观点C与诉方观点构成争议。[正确答案]C<eoa>", (1.0, False)),
        ("C和E都可以", (0.0, False)),
    ],
)
def test_2_8_argument_mining(prediction, expected):
    assert score_item("2-8", prediction, ARGUMENT) == expected


DISPUTE = "争议焦点类别：责任认定。"


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("[争议焦点]责任认定<eoa>", (1.0, False)),
        ("[争议焦点]责任划分<eoa>", (0.0, False)),
        ("无法判断", (0.0, True)),
        ("", (0.0, True)),
        ("本句的争议焦点是责任认定。责任认定。", (1.0, False)),
        ("争议焦点为责任认定，并涉及利息", (0.0, False)),   # a second label occurs
    ],
)
def test_2_2_dispute_focus(prediction, expected):
    assert score_item("2-2", prediction, DISPUTE) == expected


def test_2_2_leaves_out_compensation_items_but_counts_them_in_abstention():
    # LawBench's jdzy.py skips answers labelled 赔偿 (not one of its 16 options) in the score,
    # but divides abstentions by all items.
    value, abstained = score_item("2-2", "赔偿", "争议焦点类别：赔偿。")
    assert math.isnan(value) and not abstained
    result = score_task("2-2", ["[争议焦点]责任认定<eoa>", "不知道", "赔偿问题"],
                        [DISPUTE, DISPUTE, "争议焦点类别：赔偿。"])
    assert result.score == pytest.approx(0.5)          # (1 + 0) / 2 scored items
    assert result.abstention_rate == pytest.approx(1 / 3)
    assert result.item_scores[:2] == [1.0, 0.0] and math.isnan(result.item_scores[2])


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("[类别]婚姻家庭<eoa>", (1.0, False)),
        ("[类别]劳动纠纷<eoa>", (0.0, False)),
        ("请补充更多信息。", (0.0, True)),
        ("", (0.0, True)),
        ("该咨询属于婚姻家庭类。", (1.0, False)),
        ("婚姻家庭，也可能是侵权", (0.0, False)),
    ],
)
def test_2_4_topic(prediction, expected):
    assert score_item("2-4", prediction, "婚姻家庭") == expected


@pytest.mark.parametrize(
    "task, answer",
    [
        ("1-2", "B"),                       # no 正确答案 prefix
        ("1-2", "正确答案：F。"),             # not a letter of the task
        ("2-8", "正确答案:C。"),              # 2-8 uses [正确答案]C<eoa>
        ("2-2", "责任认定"),                  # no 争议焦点类别： prefix
        ("2-2", "争议焦点类别：借款。"),        # not one of the 16 labels
        ("2-4", "其他"),                     # not one of the 20 topics
    ],
)
def test_answers_not_in_lawbench_form_are_errors(task, answer):
    with pytest.raises(LawBenchInputError, match="answer"):
        score_item(task, "A", answer)
