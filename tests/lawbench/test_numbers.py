"""Number-reading tasks: 3-1 (article F1), 3-4/3-5 (normalised log distance), 3-7 (amount accuracy)."""

import math

import pytest

from orderstudy.benchmarks.lawbench.errors import LawBenchInputError
from orderstudy.benchmarks.lawbench.numbers import LOG_216, predicted_articles, predicted_months
from orderstudy.benchmarks.lawbench.scoring import score_item, score_task

# ---------------------------------------------------------------------------------------------
# 3-1: F1 between the answer's article numbers and the first number of each "、"-separated piece.


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("[法条]刑法第264条<eoa>", (1.0, False)),
        ("根据刑法第二百六十四条的规定", (1.0, False)),              # Chinese numerals (cn2an)
        ("刑法第二百六十四条之规定", (1.0, False)),
        # "第(.*?)款" is deleted first and runs from the first 第, taking the article with it.
        ("刑法第二百六十四条第一款", (0.0, True)),
        ("[法条]刑法第264条、刑法第67条<eoa>", (2 / 3, False)),       # partial: P=1/2, R=1
        ("[法条]刑法第234条<eoa>", (0.0, False)),
        ("无法确定法条", (0.0, True)),                              # no number at all
        ("", (0.0, True)),
        ("刑法第264条。刑法第264条。刑法第264条。", (1.0, False)),     # repeats: one piece, first number
        # The first number of the piece is taken, whatever it is (LawBench quirk).
        ("2016年，被告人触犯刑法第264条", (0.0, False)),
    ],
)
def test_3_1_articles(prediction, expected):
    value, abstained = score_item("3-1", prediction, "法条:刑法第264条")
    assert (value, abstained) == (pytest.approx(expected[0]), expected[1])


def test_3_1_two_article_answer():
    answer = "法条:刑法第264、67条"  # LawBench's form for several articles
    assert score_item("3-1", "刑法第264条、第六十七条", answer) == (1.0, False)
    assert score_item("3-1", "刑法第264条", answer)[0] == pytest.approx(2 / 3)
    assert predicted_articles("第二百六十四条、第六十七条") == {264, 67}
    assert predicted_articles("第二百六十四条、第六十七条第三款") == {264}   # see the 款 quirk above


# ---------------------------------------------------------------------------------------------
# 3-4 / 3-5: item score 1 - |log(true+1) - log(pred+1)| / log 216; abstention costs log 216.


def expected_item(true_months, predicted):
    return 1 - abs(math.log(true_months + 1) - math.log(predicted + 1)) / LOG_216


@pytest.mark.parametrize("task", ["3-4", "3-5"])
@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("[刑期]12个月<eoa>", (1.0, False)),
        ("判处有期徒刑一年", (1.0, False)),                            # 1 year -> 12 months
        ("[刑期]6个月<eoa>", (expected_item(12, 6), False)),           # partial credit
        ("[刑期]24个月<eoa>", (expected_item(12, 24), False)),
        ("无法预测刑期", (0.0, True)),                                  # costs log 216 -> 0
        ("", (0.0, True)),
        ("[刑期]12个月<eoa>[刑期]12个月<eoa>", (1.0, False)),
        ("判处有期徒刑一年零六个月", (expected_item(12, 6), False)),    # months first: reads 6 (quirk)
        ("2016年3月判决，刑期十二个月", (1.0, False)),                   # "个月" before "月"
        ("2016年3月判决", (expected_item(12, 3), False)),               # a date's month is read (quirk)
    ],
)
def test_prison_terms(task, prediction, expected):
    value, abstained = score_item(task, prediction, "刑期:12个月")
    assert (value, abstained) == (pytest.approx(expected[0]), expected[1])


def test_prison_term_task_score_is_lawbench_normalised_distance():
    predictions = ["[刑期]12个月<eoa>", "[刑期]6个月<eoa>", "不知道", "死刑"]
    answers = ["刑期:12个月", "刑期:12个月", "刑期:24个月", "刑期:死刑"]
    result = score_task("3-4", predictions, answers)
    distances = [0.0, math.log(13) - math.log(7), LOG_216]   # the 死刑 item is left out
    assert result.score == pytest.approx((LOG_216 - sum(distances) / 3) / LOG_216)
    assert result.abstention_rate == pytest.approx(1 / 4)     # n counts the left-out item
    assert math.isnan(result.item_scores[3])
    assert sum(result.item_scores[:3]) / 3 == pytest.approx(result.score)


def test_prison_term_far_off_is_clipped_per_item_but_not_in_the_task_score():
    result = score_task("3-5", ["[刑期]999999个月<eoa>"], ["刑期:1个月"])
    distance = math.log(1000000) - math.log(2)
    assert result.item_scores == [0.0]
    assert result.score == pytest.approx((LOG_216 - distance) / LOG_216) and result.score < 0


def test_months_reading_order():
    assert predicted_months("3年") == 36
    assert predicted_months("三年六个月") == 6
    assert predicted_months("无期徒刑") is None


@pytest.mark.parametrize("answer", ["12个月", "刑期:一年", "刑期:12月"])
def test_prison_answers_not_in_lawbench_form_are_errors(answer):
    with pytest.raises(LawBenchInputError, match="answer"):
        score_item("3-4", "12个月", answer)


# ---------------------------------------------------------------------------------------------
# 3-7: right when the amount is one of the numbers (\d+\.?\d*) written in the prediction.

AMOUNT = "上文涉及到的犯罪金额:8500.0元。"


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("[金额]8500元<eoa>", (1.0, False)),
        ("[金额]8500.00元<eoa>", (1.0, False)),
        ("[金额]8000元<eoa>", (0.0, False)),
        ("无法计算", (0.0, True)),
        ("", (0.0, True)),
        ("被告人共盗窃3次，共计8500元，其中3000元已退赔。", (1.0, False)),  # any number may match
        ("[金额]8,500元<eoa>", (0.0, False)),                           # reads 8 and 500
        ("[金额]八千五百元<eoa>", (0.0, True)),                          # numerals are not converted here
    ],
)
def test_3_7_amounts(prediction, expected):
    assert score_item("3-7", prediction, AMOUNT) == expected


@pytest.mark.parametrize("answer", ["8500元", "上文涉及到的犯罪金额:0.85万元。", "上文涉及到的犯罪金额:八千元。"])
def test_amount_answers_not_in_lawbench_form_are_errors(answer):
    with pytest.raises(LawBenchInputError, match="answer"):
        score_item("3-7", "8500", answer)


@pytest.mark.parametrize("answer", ["刑法第264条", "法条:刑法第五百条", "法条:刑法第500条"])
def test_article_answers_not_in_lawbench_form_are_errors(answer):
    with pytest.raises(LawBenchInputError, match="answer"):
        score_item("3-1", "264", answer)
