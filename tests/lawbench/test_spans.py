"""Character-F1 tasks: 2-5 (reading comprehension), 2-6 (entities), 2-10 (trigger words).

CJRC F1 compares characters that are letters or digits (punctuation dropped) as multisets.
"""

import pytest

from orderstudy.benchmarks.lawbench.errors import LawBenchInputError
from orderstudy.benchmarks.lawbench.scoring import score_item, score_task
from orderstudy.benchmarks.lawbench.spans import predicted_entities, rc_f1

F1_EPS = 1e-10  # LawBench's F1 for 2-6 and 2-10 is 2PR / (P + R + 1e-10)


def f1(p, r):
    return 2 * p * r / (p + r + F1_EPS)


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("二轮摩托车", 1.0),
        ("摩托车", 0.75),                     # P=3/3, R=3/5
        ("汽车", 2 * 0.5 * 0.2 / 0.7),        # one common character: P=1/2, R=1/5
        ("", 0.0),
        ("答案是：二轮摩托车。", 10 / 13),     # 5 of 8 characters right, punctuation ignored
        ("二轮摩托车，二轮摩托车", 2 / 3),       # P=5/10, R=1
    ],
)
def test_2_5_reading_comprehension(prediction, expected):
    value, abstained = score_item("2-5", prediction, "回答:二轮摩托车")
    assert value == pytest.approx(expected) and abstained is False


def test_rc_f1_empty_sides():
    assert rc_f1("", "") == 1.0 and rc_f1("。", "") == 1.0 and rc_f1("甲", "") == 0.0


ENTITIES = "受害人:严某某;被盗物品:手机"


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("受害人:严某某\n被盗物品:手机", (f1(1, 1), False)),
        # LawBench's own answer format: the 受害人 text runs on to the end of the line,
        # "严某某;被盗物品:手机" (F1 1/2 against 严某某), 被盗物品 reads "手机" (F1 1).
        ("受害人:严某某;被盗物品:手机", (f1(0.75, 0.75), False)),
        ("受害人:严某某", (f1(1, 0.5), False)),                       # partial
        ("犯罪嫌疑人:严某某", (0.0, False)),                           # wrong type
        ("句子中没有实体", (0.0, True)),                               # abstention
        ("", (0.0, True)),
        ("受害人：严某某\n被盗物品：手机\n受害人：严某某", (f1(1, 1), False)),  # full-width colons, repeats
        ("受害人:张", (0.0, True)),        # a type within the last two characters is skipped (quirk)
        ("受害人:无\n被盗物品:手机", (f1(1, 0.5), False)),            # "无" is no entity
    ],
)
def test_2_6_entities(prediction, expected):
    value, abstained = score_item("2-6", prediction, ENTITIES)
    assert (value, abstained) == (pytest.approx(expected[0]), expected[1])


def test_2_6_empty_answer():
    assert score_item("2-6", "", "") == (1.0, False)
    assert score_item("2-6", "受害人:张三某", "") == (0.0, False)


def test_2_6_abstention_rate_is_the_one_lawbench_computes():
    result = score_task("2-6", ["无", "受害人:严某某\n被盗物品:手机"], [ENTITIES, ENTITIES])
    assert result.abstention_rate == 0.5


def test_predicted_entities_reads_up_to_whitespace():
    assert predicted_entities("地点:北京市 时间:2017年") == {"地点": "北京市", "时间": "2017年"}


def test_2_6_answer_segment_without_colon_is_an_error():
    with pytest.raises(LawBenchInputError, match="answer"):
        score_item("2-6", "受害人:甲", "受害人甲")


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("查扣;退给", f1(1, 1)),
        ("退给;查扣", 0.0),                          # compared position by position (quirk)
        ("查扣", f1(1, 0.5)),                        # partial
        ("扣押", f1(0.5, 0.25)),                      # 扣 in common: word F1 1/2, over 1 and 2 words
        ("", 0.0),
        ("查扣；退给", f1(2 / 3, 1 / 3)),              # full-width ";" makes one word
        ("查扣;退给;查扣;退给", f1(0.5, 1)),           # repeats lower precision
    ],
)
def test_2_10_trigger_words(prediction, expected):
    value, abstained = score_item("2-10", prediction, "查扣;退给")
    assert value == pytest.approx(expected) and abstained is False
