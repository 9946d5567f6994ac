"""`prepare convert-finetune`: a public legal instruction set into the JSONL finetune.data reads."""

import json

import pytest

from orderstudy.benchmarks.data import jsonl_training
from orderstudy.core import paths
from orderstudy.prepare import PrepareError, convert_finetune, main

EXAMPLES = paths.ROOT / "params" / "examples"


def test_the_disc_law_sft_example_converts_and_loads_as_training_pairs(tmp_path):
    out = tmp_path / "legal_sft.jsonl"
    assert main(["convert-finetune", str(EXAMPLES / "disc-law-sft.example.jsonl"), str(out)]) == 0
    pairs = jsonl_training(out)
    assert len(pairs) == 3
    # a pair-subset row: its input is the whole prompt
    assert pairs[0]["prompt"] == "甲趁乙不备，从乙的背包中拿走现金2000元。甲的行为构成什么罪？"
    assert pairs[0]["answer"] == "甲以非法占有为目的，秘密窃取他人财物，数额较大，构成盗窃罪。"
    assert pairs[0]["question"] == ""
    # a triplet row: the law article it rests on follows the question, on its own line
    assert pairs[1]["prompt"] == ("丈夫想离婚，但妻子不同意，他可以怎么做？\n《中华人民共和国民法典》第一千零七十九条："
                                  "夫妻一方要求离婚的，可以由有关组织进行调解或者直接向人民法院提起离婚诉讼。")
    # a row with an instruction: instruction, then its input as the question
    assert pairs[2]["prompt"] == "请判断下列案情涉及的罪名。\n被告人醉酒后在道路上驾驶机动车，血液中酒精含量为150mg/100ml。"
    assert pairs[2]["answer"] == "危险驾驶罪"


def test_the_shipped_fine_tuning_example_is_what_finetune_data_reads():
    pairs = jsonl_training(EXAMPLES / "legal_sft.example.jsonl")
    assert [p["answer"] for p in pairs][0] == "危险驾驶罪"
    assert pairs[0]["prompt"].startswith("请判断下列案情涉及的罪名。\n被告人")


def test_alpaca_rows_and_rows_without_an_answer(tmp_path):
    src = tmp_path / "alpaca.jsonl"
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"instruction": "解释术语", "input": "", "output": "定金是合同的担保方式。"},
        {"instruction": "解释术语", "input": "不可抗力", "output": "  "},
    ]) + "\n\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert convert_finetune(src, out, "alpaca") == (1, 1)
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == [
        {"instruction": "解释术语", "answer": "定金是合同的担保方式。"}]


def test_a_malformed_row_names_the_file_the_line_and_the_field(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"input": "问", "output": "答"}\n{"input": "问", "output": 3}\n', encoding="utf-8")
    with pytest.raises(PrepareError, match=r"bad.jsonl:2: field 'output': expected a string, got int"):
        convert_finetune(src, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()
    with pytest.raises(PrepareError, match="--format sharegpt: expected one of disc-law-sft, alpaca"):
        convert_finetune(src, tmp_path / "out.jsonl", "sharegpt")
