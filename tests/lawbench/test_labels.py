"""Multi-label tasks (2-3, 2-9, 3-3): set F1 of the labels whose text occurs in the prediction."""

import pytest

from orderstudy.benchmarks.lawbench.errors import LawBenchInputError
from orderstudy.benchmarks.lawbench.scoring import score_item

MARRIAGE = "类别:婚后有子女、限制行为能力子女抚养。"


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("[类别]婚后有子女、限制行为能力子女抚养<eoa>", (1.0, False)),
        ("[类别]婚后有子女<eoa>", (2 / 3, False)),                   # P=1, R=1/2
        ("[类别]婚后有子女、准予离婚<eoa>", (0.5, False)),             # P=1/2, R=1/2
        ("[类别]准予离婚<eoa>", (0.0, False)),                        # wrong but not an abstention
        ("无法确定类别", (0.0, True)),
        ("", (0.0, True)),
        ("类别为婚后有子女。婚后有子女。限制行为能力子女抚养。", (1.0, False)),  # repeats count once
    ],
)
def test_2_3_marriage_disputes(prediction, expected):
    value, abstained = score_item("2-3", prediction, MARRIAGE)
    assert (value, abstained) == (pytest.approx(expected[0]), expected[1])


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("鉴定;受伤", (1.0, False)),                 # order does not matter
        ("受伤", (2 / 3, False)),
        ("受伤;鉴定;拘捕", (0.8, False)),             # P=2/3, R=1
        ("卖出", (0.0, False)),
        ("没有触发任何事件", (0.0, True)),
        ("", (0.0, True)),
        ("该句触发的事件有：受伤；鉴定。", (1.0, False)),  # full-width separator: labels still occur
    ],
)
def test_2_9_event_detection(prediction, expected):
    value, abstained = score_item("2-9", prediction, "受伤;鉴定")
    assert (value, abstained) == (pytest.approx(expected[0]), expected[1])


CHARGES = "罪名:盗窃;诈骗"


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("[罪名]盗窃;诈骗<eoa>", (1.0, False)),
        ("[罪名]盗窃罪<eoa>", (2 / 3, False)),
        ("[罪名]抢劫<eoa>", (0.0, False)),
        ("无法判断罪名", (0.0, True)),
        ("", (0.0, True)),
        # "合同诈骗" contains "诈骗", so both charges are predicted (LawBench's substring rule).
        ("[罪名]合同诈骗<eoa>", (0.5, False)),
        ("被告人犯盗窃罪、诈骗罪。被告人犯盗窃罪、诈骗罪。", (1.0, False)),
    ],
)
def test_3_3_charges(prediction, expected):
    value, abstained = score_item("3-3", prediction, CHARGES)
    assert (value, abstained) == (pytest.approx(expected[0]), expected[1])


@pytest.mark.parametrize(
    "task, answer",
    [("2-3", "婚后有子女"), ("2-3", "类别:离婚。"), ("3-3", "盗窃")],
)
def test_answers_not_in_lawbench_form_are_errors(task, answer):
    with pytest.raises(LawBenchInputError, match="answer"):
        score_item(task, "盗窃", answer)
