"""The original items for 1-2, 2-8 and 3-6: LawBench's layout, instructions and answer forms."""

import re

import pytest

from orderstudy.benchmarks.lawbench.original import ORIGINAL_DIR, ORIGINAL_TASKS, original_items, original_path
from orderstudy.benchmarks.lawbench.scoring import score_item, score_task

# LawBench's zero-shot instructions for the three tasks (data/zero_shot/<task>.json), word for word.
LAWBENCH_INSTRUCTIONS = {
    "1-2": "请你运用法律知识从A,B,C,D中选出一个正确的答案，并写在[正确答案]和<eoa>之间。例如[正确答案]A<eoa>。请你严格按照这个格式回答。",
    "2-8": "请你根据给定的一个诉方观点，从A,B,C,D,E五个辩方候选观点中选出可以与之形成争议观点对的一个观点，并将答案写在[正确答案]和<eoa>之间。例如[正确答案]A<eoa>。请你严格按照这个格式回答。",
    "3-6": "请你运用法律知识分析下列案件，从A,B,C,D中选出一个正确的答案，并写在[正确答案]和<eoa>之间。例如[正确答案]A<eoa>。请你严格按照这个格式回答。",
}
ANSWER_FORMS = {"1-2": r"正确答案：([A-D])。", "2-8": r"\[正确答案\]([A-E])<eoa>", "3-6": r"正确答案:([A-D])。"}
LETTERS = {"1-2": "ABCD", "2-8": "ABCDE", "3-6": "ABCD"}


@pytest.mark.parametrize("setting", ["zero_shot", "one_shot"])
@pytest.mark.parametrize("task", ORIGINAL_TASKS)
def test_items_follow_lawbench(task, setting):
    items = original_items(task, setting)
    assert 5 <= len(items) <= 8
    letters = []
    for item in items:
        assert set(item) == {"instruction", "question", "answer"} and all(isinstance(v, str) for v in item.values())
        match = re.fullmatch(ANSWER_FORMS[task], item["answer"])
        assert match, item["answer"]
        letters.append(match.group(1))
        # Every option appears once, in order, as "X:" — the option-counting judge depends on it.
        positions = [item["question"].find(f"{letter}:") for letter in LETTERS[task]]
        assert all(p >= 0 for p in positions) and positions == sorted(positions)
        assert all(item["question"].count(f"{letter}:") == 1 for letter in LETTERS[task])
        if setting == "zero_shot":
            assert item["instruction"] == LAWBENCH_INSTRUCTIONS[task]
        else:
            assert item["instruction"].startswith(LAWBENCH_INSTRUCTIONS[task] + "下面是一个例子:\n")
            assert item["instruction"].endswith("<eoa>\n请你回答：")
    assert len(set(letters)) >= 3            # answers are spread over the options


@pytest.mark.parametrize("task", ORIGINAL_TASKS)
def test_items_are_scored_like_lawbench_items(task):
    items = original_items(task)
    answers = [item["answer"] for item in items]
    right = [f"[正确答案]{re.search(ANSWER_FORMS[task], a).group(1)}<eoa>" for a in answers]
    assert score_task(task, right, answers).score == 1.0
    assert score_item(task, "我不确定", answers[0]) == (0.0, True)


def test_settings_hold_the_same_questions():
    for task in ORIGINAL_TASKS:
        zero, one = original_items(task, "zero_shot"), original_items(task, "one_shot")
        assert [(i["question"], i["answer"]) for i in zero] == [(i["question"], i["answer"]) for i in one]
        example = one[0]["instruction"].split("下面是一个例子:\n")[1]
        assert all(example.split("\n")[0] != item["question"] for item in zero)   # the example is not a test item


def test_marked_as_not_lawbench():
    readme = (ORIGINAL_DIR / "README.md").read_text(encoding="utf-8")
    assert "not LawBench's" in readme and "original" in readme


def test_paths():
    assert original_path("1-2").name == "1-2.json" and original_path("2-8", "one_shot").parent.name == "one_shot"
    with pytest.raises(ValueError, match="no original items"):
        original_path("2-1")
    with pytest.raises(ValueError, match="unknown setting"):
        original_path("1-2", "few_shot")
