"""Against LawBench's own files (conftest's LAWBENCH_REFERENCE): its items for 1-2, 2-8 and 3-6, ChERRANT's tables for 2-1.

Every test here skips, saying why, where those files are absent (a user's clone).
"""

import json
import random
import re

import pytest

from orderstudy.benchmarks import data
from orderstudy.evaluation import engine as evaluation
from orderstudy.benchmarks.lawbench import correction
from orderstudy.benchmarks.lawbench.scoring import score_task
from orderstudy.core.params import EvaluationParams

# The sha256 of ChERRANT's files (cilin.txt, confusion_dict.txt) as LawBench's evaluation/utils/data/ ships them.
CILIN_SHA256 = "d4c707f5d895e00f2223547582f1c2cd8f5888a7cc0d0f687fc28a510b77a6bb"
CONFUSION_SHA256 = "aafa202dc451fb79a0a2cfc77b965009daa39d0cedd03e25074c1a35b7ac67b2"
LETTERS = {"1-2": "ABCD", "2-8": "ABCDE", "3-6": "ABCD"}


@pytest.fixture(scope="module")
def tables(lawbench_reference):
    return correction.lawbench_tables(lawbench_reference / "evaluation-utils-data")


@pytest.mark.parametrize("setting", ["zero_shot", "one_shot"])
@pytest.mark.parametrize("task", ["1-2", "2-8", "3-6"])
def test_choice_tasks_on_lawbench_items(lawbench_reference, task, setting):
    items = data.load_lawbench_task(lawbench_reference / "data", setting, task)
    assert len(items) == 500
    answers = [item["answer"] for item in items]
    prompts = [data.lawbench_prompt(item) for item in items]
    letters = [re.search(f"[{LETTERS[task]}]", answer).group(0) for answer in answers]
    # Predictions built from the gold answers: the answer itself, LawBench's requested form, the
    # next letter instead (wrong), and no letter at all (an abstention).
    for predictions, score, abstention in (
        (answers, 1.0, 0.0),
        ([f"[正确答案]{x}<eoa>" for x in letters], 1.0, 0.0),
        ([f"[正确答案]{LETTERS[task][(LETTERS[task].index(x) + 1) % len(LETTERS[task])]}<eoa>" for x in letters], 0.0, 0.0),
        (["我无法回答这个问题。"] * len(items), 0.0, 1.0),
    ):
        result = score_task(task, predictions, answers, prompts)
        assert (result.score, result.abstention_rate, result.n) == (score, abstention, 500)


def test_lawbench_data_directory_runs_lawbench_items(lawbench_reference, lawbench_dir, smollm2_tokenizer, tmp_path):
    params = EvaluationParams(benchmarks=("lawbench",), lawbench_data=str(lawbench_reference / "data"),
                              lawbench_tasks=("1-2", "2-8", "3-6"), lawbench_items_per_task=5)
    suite = evaluation.build_suite(params, 0, tmp_path, smollm2_tokenizer, 8192)
    for task in ("1-2", "2-8", "3-6"):
        own = json.loads((lawbench_reference / "data" / "zero_shot" / f"{task}.json").read_text(encoding="utf-8"))
        rows = [json.loads(line) for line in
                (suite.tasks_dir / "data" / f"orderstudy_lawbench_{task}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert [(r["prompt"], r["answer"]) for r in rows] == [
            (data.lawbench_prompt(own[int(i.split("/")[1])]), own[int(i.split("/")[1])]["answer"])
            for i in suite.sample_ids["lawbench"][task]]
        assert suite.lawbench_sources[task]["lawbench"] is True
    # The packaged data has our own items for these three, and says so.
    packaged = evaluation.build_suite(params.model_copy(update={"lawbench_data": str(lawbench_dir)}), 0, tmp_path,
                                      smollm2_tokenizer, 8192)
    assert all(packaged.lawbench_sources[t]["lawbench"] is False for t in ("1-2", "2-8", "3-6"))


def test_chERRANT_tables_are_read_as_chERRANT_reads_them(tables):
    assert (tables.source["kind"], tables.source["cilin_sha256"], tables.source["confusion_sha256"]) == (
        "lawbench", CILIN_SHA256, CONFUSION_SHA256)
    # cilin.txt is GBK; at character level it prices like the packaged copy (one line differs,
    # Jb03A03's 似乎/不要, a two-character word).
    packaged = correction.packaged_tables().thesaurus
    assert len(tables.thesaurus) == 77456 and tables.thesaurus["人"] == "Dn03A04="
    assert {w: c for w, c in tables.thesaurus.items() if len(w) == 1} == {w: c for w, c in packaged.items() if len(w) == 1}
    # confusion_dict.txt: a character, then its look-alikes and sound-alikes; 坐 has two lines,
    # and the last one is kept (its first lists 准, its last only 座 and 做).
    assert tables.confusion["坐"] == frozenset({"座", "做"})
    assert "已" in tables.confusion["己"] and "入" in tables.confusion["人"]


def _chERRANT_cost(a: str, b: str, cilin: dict, confusion: dict) -> float:
    """ChERRANT's char-level substitution cost (Alignment.get_sub_cost), read off its code independently."""
    if a == b:
        return 0

    def level(word):
        code = cilin.get(word)
        return None if code is None else (code[0], code[1], code[2:4])

    la, lb = level(a), level(b)
    semantic = 4 if la is None or lb is None else 0 if la == lb else 2 * (3 - sum(x == y for x, y in zip(la, lb)))
    punct = correction.PUNCT_ALIGNMENT
    pos = 0.0 if a in punct and b in punct else 0.25 if a not in punct and b not in punct else 0.499
    if all("\u4e00" <= ch <= "\u9fff" for ch in a + b):
        from pypinyin import Style, pinyin

        same = bool(set(pinyin(a, style=Style.NORMAL, heteronym=True)[0]) & set(pinyin(b, style=Style.NORMAL, heteronym=True)[0]))
        match = same or (b in confusion and a in confusion[b]) or (a in confusion and b in confusion[a])
        char = 0.0 if match else 0.5
    else:
        char = 0.5
    return semantic / 6.0 + char + pos


def test_costs_equal_an_independent_reading_of_chERRANT(lawbench_reference, tables):
    cilin = {}
    text = (lawbench_reference / "evaluation-utils-data" / "cilin.txt").read_text(encoding="gbk")
    for line in text.strip().split("\n"):
        code, *words = line.split(" ")
        cilin.update(dict.fromkeys(words, code))
    confusion = {}
    with open(lawbench_reference / "evaluation-utils-data" / "confusion_dict.txt", encoding="utf-8") as f:
        for line in f:
            first, *others = line.rstrip("\n").split(" ")
            confusion[first] = others
    items = json.loads((lawbench_reference / "data" / "zero_shot" / "2-1.json").read_text(encoding="utf-8"))
    found = {ch for item in items for ch in correction.source_sentence(data.lawbench_prompt(item)) + item["answer"]}
    chars = sorted(found)
    rng = random.Random(0)
    pairs = [tuple(rng.sample(chars, 2)) for _ in range(5000)]
    # and every confusable pair of the data among 300 of its characters
    pairs += [(a, b) for a in rng.sample(chars, 300) for b in confusion.get(a, ()) if b in found]
    decided = 0
    for a, b in pairs:
        assert correction.substitution_cost(a, b, tables) == _chERRANT_cost(a, b, cilin, confusion), (a, b)
        decided += correction.substitution_cost(a, b, tables) != correction.substitution_cost(a, b, correction.packaged_tables())
    assert decided > 500   # the confusion set decides many of them


def test_confusion_set_decides_the_edits_of_a_real_item(lawbench_reference, tables):
    """2-1 item 222 (zero-shot), with a prediction that fixes 款→关 and drops 部, worked by hand.

    Source …有款关部门…, prediction …有关关门…: either substitute 款→关 and delete 部, or delete 款
    and substitute 部→关. 款/关 are in each other's confusion line (no shared reading, no shared
    thesaurus level): with ChERRANT's tables 款→关 costs 6/6 + 0 + 0.25 = 1.25 and the first is
    cheaper (2.25 against 1 + 1.75); without the confusion set both cost 2.75, both alignments
    are kept and both edit lists are listed.
    """
    item = json.loads((lawbench_reference / "data" / "zero_shot" / "2-1.json").read_text(encoding="utf-8"))[222]
    prompt = data.lawbench_prompt(item)
    source = correction.source_sentence(prompt)
    assert source[9:13] == "款关部门"
    prediction = source[:9] + "关关门" + source[13:]
    packaged = correction.packaged_tables()
    assert correction.substitution_cost("款", "关", tables) == 1.25 and correction.substitution_cost("款", "关", packaged) == 1.75
    assert correction.substitution_cost("部", "关", tables) == correction.substitution_cost("部", "关", packaged) == 1.75
    assert dict(correction.annotate(source, prediction, tables=tables).edits) == {
        (9, 10, "关"): ("S",), (11, 12, "-NONE-"): ("R",)}
    assert dict(correction.annotate(source, prediction, tables=packaged).edits) == {
        (9, 10, "关"): ("S",), (11, 12, "-NONE-"): ("R",), (9, 10, "-NONE-"): ("R",), (11, 12, "关"): ("S",)}
    # The answer fixes 款→关 among three edits: one true positive either way, and one false
    # positive (the deletion of 部) with ChERRANT's tables against three without.
    assert correction.sentence_counts(prediction, item["answer"], prompt, tables) == (1, 1, 2)
    assert correction.sentence_counts(prediction, item["answer"], prompt, packaged) == (1, 3, 2)


def test_suite_takes_chERRANT_tables_from_the_lawbench_checkout(lawbench_reference, smollm2_tokenizer, tmp_path):
    # A LawBench checkout: data/ beside evaluation/utils/data/.
    checkout = tmp_path / "LawBench"
    (checkout / "evaluation" / "utils").mkdir(parents=True)
    (checkout / "data").symlink_to(lawbench_reference / "data")
    (checkout / "evaluation" / "utils" / "data").symlink_to(lawbench_reference / "evaluation-utils-data")
    params = EvaluationParams(benchmarks=("lawbench",), lawbench_data=str(checkout / "data"), lawbench_tasks=("2-1",),
                              lawbench_items_per_task=1)
    suite = evaluation.build_suite(params, 0, tmp_path / "suite", smollm2_tokenizer, 8192)
    assert suite.cherrant["kind"] == "lawbench" and suite.cherrant["confusion_sha256"] == CONFUSION_SHA256
    packaged = evaluation.build_suite(params.model_copy(update={"cherrant_data": "packaged"}), 0, tmp_path / "suite",
                                      smollm2_tokenizer, 8192)
    assert packaged.cherrant["kind"] == "packaged" and packaged.key != suite.key   # the tables decide scores
    given = evaluation.build_suite(params.model_copy(update={"cherrant_data": str(checkout)}), 0, tmp_path / "suite",
                                   smollm2_tokenizer, 8192)
    assert given.key == suite.key   # the same files found another way: the same suite
    with pytest.raises(data.DataError, match="evaluation.cherrant_data: .*confusion_dict.txt"):
        evaluation.build_suite(params.model_copy(update={"cherrant_data": str(tmp_path)}), 0, tmp_path / "suite",
                               smollm2_tokenizer, 8192)
