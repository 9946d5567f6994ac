"""Reading LawBench prediction files: every problem names the file and, where there is one, the item."""

import json

import pytest

from orderstudy.benchmarks.lawbench.predictions import PredictionFileError, read_task_predictions, score_task_file, task_file


def write(path, content):
    path.write_text(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False), encoding="utf-8")
    return path


def test_reads_items_in_index_order(tmp_path):
    content = {"1": {"prediction": "B", "refr": "正确答案：B。"}, "0": {"prediction": "A", "refr": "正确答案：A。"}}
    loaded = read_task_predictions(write(tmp_path / "1-2.json", content), "1-2")
    assert loaded.predictions == ["A", "B"] and loaded.answers == ["正确答案：A。", "正确答案：B。"]
    assert loaded.origin_prompts == [None, None]


def test_scores_a_system_file(tmp_path, lawbench_files):
    system = lawbench_files.write_system(tmp_path / "sys", tasks=("2-1", "3-7"))
    assert score_task_file(task_file(system, "2-1"), "2-1").item_scores == [1.0, 0.0]
    assert score_task_file(task_file(system, "3-7"), "3-7").score == 0.5


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"0": {"prediction": "B", "refr": ', "malformed JSON: .* at line 1"),
        ([{"prediction": "B", "refr": "正确答案：B。"}], "expected a JSON object"),
        ({}, "no items"),
        ({"0": {"prediction": "B", "refr": "正确答案：B。"}, "2": {"prediction": "B", "refr": "x"}},
         'item "1" is missing'),
        ({"0": "B"}, 'item "0": expected an object'),
        ({"0": {"prediction": "B"}}, "item \"0\" has no 'refr' \\(the reference answer\\)"),
        ({"0": {"prediction": "B", "refr": None}}, "'refr' must be a string"),
        ({"0": {"refr": "正确答案：B。"}}, "item \"0\" has no 'prediction'"),
        ({"0": {"prediction": ["B"], "refr": "正确答案：B。"}}, "'prediction' must be a string"),
    ],
)
def test_malformed_files(tmp_path, content, message):
    path = write(tmp_path / "1-2.json", content)
    with pytest.raises(PredictionFileError, match=message) as error:
        read_task_predictions(path, "1-2")
    assert str(path) in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(PredictionFileError, match="missing task file") as error:
        read_task_predictions(tmp_path / "3-8.json", "3-8")
    assert str(tmp_path / "3-8.json") in str(error.value)


def test_2_1_needs_the_prompt(tmp_path):
    path = write(tmp_path / "2-1.json", {"0": {"prediction": "甲", "refr": "乙"}})
    with pytest.raises(PredictionFileError, match="has no 'origin_prompt'"):
        read_task_predictions(path, "2-1")


def test_answer_in_wrong_form_names_file_and_item(tmp_path, lawbench_files):
    content = lawbench_files.prediction_file("1-2", [("B", "正确答案：B。"), ("B", "B")])
    path = write(tmp_path / "1-2.json", content)
    with pytest.raises(PredictionFileError, match=r"1-2.json: task 1-2, item 1: answer 'B' is not in LawBench's form"):
        score_task_file(path, "1-2")


def test_not_utf8(tmp_path):
    path = tmp_path / "1-2.json"
    path.write_bytes('{"0": "正确"}'.encode("gbk"))
    with pytest.raises(PredictionFileError, match="not UTF-8"):
        read_task_predictions(path, "1-2")
