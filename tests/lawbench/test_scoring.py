"""The public scoring API: TaskScore, score_task, score_item, lawbench_average, and the task table."""

import dataclasses
import math

import pytest

from orderstudy.benchmarks.lawbench import TASK_IDS, TASK_METRICS, TASK_NAMES, LawBenchInputError
from orderstudy.benchmarks.lawbench.scoring import TaskScore, lawbench_average, score_item, score_task

# One (prediction, answer) pair per task in LawBench's forms: a right answer, a wrong one and an
# abstention where the task defines one.
SAMPLES = {
    "1-1": [("农民专业合作社设理事长一名。", "答案:农民专业合作社设理事长一名。"), ("我不知道。", "答案:农民专业合作社设理事长一名。")],
    "1-2": [("[正确答案]B<eoa>", "正确答案：B。"), ("[正确答案]A<eoa>", "正确答案：B。"), ("不知道", "正确答案：B。")],
    "2-2": [("责任认定", "争议焦点类别：责任认定。"), ("利息", "争议焦点类别：责任认定。"), ("无", "争议焦点类别：责任认定。")],
    "2-3": [("婚后有子女", "类别:婚后有子女。"), ("准予离婚", "类别:婚后有子女。"), ("无", "类别:婚后有子女。")],
    "2-4": [("婚姻家庭", "婚姻家庭"), ("侵权", "婚姻家庭"), ("无", "婚姻家庭")],
    "2-5": [("二轮摩托车", "回答:二轮摩托车"), ("汽车", "回答:二轮摩托车")],
    "2-6": [("受害人:严某某\n", "受害人:严某某"), ("无", "受害人:严某某")],
    "2-7": [("法院判决被告赔偿。", "法院判决被告赔偿。"), ("", "法院判决被告赔偿。")],
    "2-8": [("[正确答案]C<eoa>", "[正确答案]C<eoa>"), ("[正确答案]E<eoa>", "[正确答案]C<eoa>"), ("无", "[正确答案]C<eoa>")],
    "2-9": [("受伤;鉴定", "受伤;鉴定"), ("拘捕", "受伤;鉴定"), ("无", "受伤;鉴定")],
    "2-10": [("查扣;退给", "查扣;退给"), ("查扣", "查扣;退给")],
    "3-1": [("刑法第264条", "法条:刑法第264条"), ("刑法第234条", "法条:刑法第264条"), ("无", "法条:刑法第264条")],
    "3-2": [("根据刑法第十七条。", "根据刑法第十七条。"), ("不清楚。", "根据刑法第十七条。")],
    "3-3": [("盗窃", "罪名:盗窃"), ("抢劫", "罪名:盗窃"), ("无", "罪名:盗窃")],
    "3-4": [("12个月", "刑期:12个月"), ("6个月", "刑期:12个月"), ("无", "刑期:12个月")],
    "3-5": [("12个月", "刑期:12个月"), ("24个月", "刑期:12个月"), ("无", "刑期:12个月")],
    "3-6": [("C", "正确答案:C。"), ("D", "正确答案:C。"), ("无", "正确答案:C。")],
    "3-7": [("8500元", "上文涉及到的犯罪金额:8500.0元。"), ("8000元", "上文涉及到的犯罪金额:8500.0元。"),
            ("无", "上文涉及到的犯罪金额:8500.0元。")],
    "3-8": [("回答:可以起诉。", "回答:可以起诉。"), ("不知道。", "回答:可以起诉。")],
}


def test_task_table():
    assert len(TASK_IDS) == 20 and TASK_IDS[0] == "1-1" and TASK_IDS[-1] == "3-8"
    assert TASK_IDS.index("2-10") == TASK_IDS.index("2-9") + 1          # LawBench order, not string order
    assert set(TASK_NAMES) == set(TASK_METRICS) == set(TASK_IDS)
    assert TASK_NAMES["2-1"] == "文件校对" and TASK_METRICS["2-1"] == "f0.5"
    assert TASK_METRICS["1-1"] == "rouge_l" and TASK_METRICS["1-2"] == "accuracy"


@pytest.mark.parametrize("task", sorted(SAMPLES))
def test_task_score_is_the_mean_of_item_scores(task):
    predictions, answers = zip(*SAMPLES[task])
    result = score_task(task, list(predictions), list(answers))
    assert isinstance(result, TaskScore) and result.task == task and result.n == len(predictions)
    assert len(result.item_scores) == result.n
    assert all(0.0 <= s <= 1.0 for s in result.item_scores)
    assert result.score == pytest.approx(sum(result.item_scores) / result.n)
    assert 0.0 <= result.abstention_rate <= 1.0
    singles = [score_item(task, p, a) for p, a in SAMPLES[task]]
    assert [s for s, _ in singles] == pytest.approx(result.item_scores)
    assert sum(a for _, a in singles) / result.n == pytest.approx(result.abstention_rate)
    assert result.item_scores[0] == pytest.approx(1.0, abs=1e-6)   # the right answer


@pytest.mark.parametrize("task", ["1-2", "2-2", "2-3", "2-4", "2-8", "2-9", "3-1", "3-3", "3-4", "3-5", "3-6", "3-7"])
def test_tasks_with_abstention_count_it(task):
    result = score_task(task, *map(list, zip(*SAMPLES[task])))
    assert result.abstention_rate == pytest.approx(1 / 3)


@pytest.mark.parametrize("task", ["1-1", "2-5", "2-7", "2-10", "3-2", "3-8"])
def test_tasks_without_abstention_report_zero(task):
    assert score_task(task, ["", ""], [SAMPLES[task][0][1]] * 2).abstention_rate == 0.0


def test_task_score_is_frozen():
    result = score_task("3-6", ["C"], ["正确答案:C。"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.score = 0.5


def test_errors_name_the_item():
    with pytest.raises(LawBenchInputError, match=r"task 1-2, item 1: answer 'B'"):
        score_task("1-2", ["B", "B"], ["正确答案：B。", "B"])
    with pytest.raises(LawBenchInputError, match="prediction must be a string"):
        score_task("1-2", [None], ["正确答案：B。"])


def test_bad_calls():
    with pytest.raises(LawBenchInputError, match="as many"):
        score_task("1-2", ["B"], [])
    with pytest.raises(LawBenchInputError, match="no items"):
        score_task("1-2", [], [])
    with pytest.raises(ValueError, match="unknown LawBench task"):
        score_task("4-1", ["B"], ["B"])
    with pytest.raises(ValueError, match="unknown LawBench task"):
        score_item("1-13", "B", "B")
    with pytest.raises(LawBenchInputError, match="leaves out"):
        score_task("3-4", ["无期"], ["刑期:无期"])


def test_origin_prompts_are_accepted_and_ignored_where_unused():
    with_prompts = score_task("3-6", ["C"], ["正确答案:C。"], ["prompt"])
    assert with_prompts.score == 1.0


def test_lawbench_average_is_the_unweighted_mean_in_percent():
    scores = [TaskScore("1-1", 0.2, 0.0, 500, []), TaskScore("1-2", 0.5, 0.1, 10, []),
              TaskScore("3-8", 0.8, 0.0, 3, [])]
    assert lawbench_average(scores) == pytest.approx(50.0)
    assert lawbench_average(iter(scores)) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="no task scores"):
        lawbench_average([])
    with pytest.raises(ValueError, match="more than once: 1-1"):
        lawbench_average(scores + [TaskScore("1-1", 0.4, 0.0, 5, [])])


def test_nan_only_for_items_lawbench_leaves_out():
    assert math.isnan(score_item("3-5", "12个月", "刑期:死刑")[0])
    assert not math.isnan(score_item("3-5", "12个月", "刑期:12个月")[0])
