"""The literature's claims: loaded from data, tested per benchmark, verdicts that follow the intervals."""

import json

import pytest

from orderstudy.report import build_report
from orderstudy.report.claims import ClaimsError, load_claims


def test_the_packaged_claims_are_the_four_the_study_tests():
    claims = {c.id: c for c in load_claims()}
    assert set(claims) == {"prune_before_quantize", "progressive_intensity", "quantize_last", "finetune_recovers"}
    assert claims["prune_before_quantize"].comparisons == ((("P>Q",), ("Q>P",)), (("F>P>Q",), ("F>Q>P",)),
                                                           (("P>F>Q",), ("Q>F>P",)))
    assert "arXiv:2405.20935" in claims["prune_before_quantize"].source
    assert "arXiv:2603.18426" in claims["progressive_intensity"].source
    assert "arXiv:2511.19495" in claims["quantize_last"].source
    assert claims["finetune_recovers"].comparisons == ((("P>F",), ("P",)), (("Q>F",), ("Q",)))
    assert all(c.words("zh") != c.words("en") for c in claims.values())


def _set_scores(study, ordering, benchmark, value):
    """Make every item of one ordering on one benchmark score ``value`` (and its result say so)."""
    stem = ordering.replace(">", "-")
    items_path, result_path = study.paths.items / f"{stem}.json", study.paths.results / f"{stem}.json"
    items, result = json.loads(items_path.read_text()), json.loads(result_path.read_text())
    items[benchmark] = {t: dict.fromkeys(scores, value) for t, scores in items[benchmark].items()}
    for task in result["benchmarks"][benchmark]["tasks"].values():
        task["score"] = 100.0 * value
    result["benchmarks"][benchmark]["score"] = 100.0 * value
    items_path.write_text(json.dumps(items))
    result_path.write_text(json.dumps(result))


def test_verdicts_follow_the_paired_interval(finished_study):
    # LawBench: fine-tuning after P and after Q gets everything right, P and Q alone nothing.
    for ordering, value in (("P>F", 1.0), ("Q>F", 1.0), ("P", 0.0), ("Q", 0.0)):
        _set_scores(finished_study, ordering, "lawbench", value)
    # stem: the reverse.
    for ordering, value in (("P>F", 0.0), ("Q>F", 0.0), ("P", 1.0), ("Q", 1.0)):
        _set_scores(finished_study, ordering, "stem", value)
    report = build_report(finished_study.params_file, figures=False, outputs_dir=finished_study.outputs_dir)
    row = report.claims.set_index("id").loc["finetune_recovers"]
    assert row["lawbench_verdict"] == "supported" and row["lawbench_diff"] == pytest.approx(100.0)
    assert row["lawbench_diff_ci_low"] > 0
    assert row["stem_verdict"] == "contradicted" and row["stem_diff_ci_high"] < 0
    assert row["lawbench_tested"] == "P>F, Q>F vs P, Q"
    # A claim whose orderings did not all run is tested on the rest, and says what was left out.
    quantize_last = report.claims.set_index("id").loc["quantize_last"]
    assert "left out" in quantize_last["lawbench_note"] and "P>Q>F not run" in quantize_last["lawbench_note"]
    assert "Q>P>F" not in quantize_last["lawbench_tested"] and "F>Q>P" in quantize_last["lawbench_tested"]
    # Every verdict is its interval's: above zero supported, below contradicted, across zero not
    # resolved; a claim with no difference measured was not tested or predicts no direction.
    checked = 0
    for _, claim in report.claims.iterrows():
        for benchmark in ("lawbench", "stem", "mmlu_law"):
            verdict, diff = claim[f"{benchmark}_verdict"], claim[f"{benchmark}_diff"]
            low, high = claim[f"{benchmark}_diff_ci_low"], claim[f"{benchmark}_diff_ci_high"]
            if diff is None or diff != diff:
                assert verdict in ("not tested", "no prediction"), (claim["id"], benchmark, verdict)
                continue
            assert low <= diff <= high
            expected = "supported" if low > 0 else "contradicted" if high < 0 else "not resolved"
            assert verdict == expected, (claim["id"], benchmark, low, high, verdict)
            checked += 1
    assert checked >= 8
    assert "supported +100.00 [" in report.markdown["claims"]


def test_progressive_intensity_expects_the_weaker_operation_first(finished_study):
    # On stem, pruning alone costs nothing and quantizing alone costs everything: P is the weaker.
    _set_scores(finished_study, "Q", "stem", 0.0)
    report = build_report(finished_study.params_file, figures=False, outputs_dir=finished_study.outputs_dir)
    base, prune = report.estimates.score("base", "stem"), report.estimates.score("P", "stem")
    assert base - prune < base - 0.0
    row = report.claims.set_index("id").loc["progressive_intensity"]
    assert row["stem_tested"].startswith("P>Q, F>P>Q, P>F>Q vs Q>P, F>Q>P, Q>F>P")
    assert "weaker: P" in row["stem_note"]
    # Now quantizing costs nothing and pruning everything: the expectation turns around.
    _set_scores(finished_study, "Q", "stem", 1.0)
    _set_scores(finished_study, "P", "stem", 0.0)
    report = build_report(finished_study.params_file, figures=False, outputs_dir=finished_study.outputs_dir)
    row = report.claims.set_index("id").loc["progressive_intensity"]
    assert row["stem_tested"].startswith("Q>P, F>Q>P, Q>F>P vs P>Q, F>P>Q, P>F>Q") and "weaker: Q" in row["stem_note"]


def test_claims_of_your_own_and_in_chinese(finished_study, tmp_path, study_writer):
    mine = tmp_path / "mine.yaml"
    mine.write_text("- id: quantize_first_is_worst\n  claim: {en: Quantizing first is worst., zh: 先量化最差。}\n"
                    "  source: my notes\n  comparisons:\n    - {better: [F>Q, P>Q], worse: Q>F}\n", encoding="utf-8")
    other = study_writer(tmp_path / "zh", "zh", report=f"  language: zh\n  claims_file: {mine}\n")
    report = build_report(other.params_file, figures=False, outputs_dir=other.outputs_dir)
    assert list(report.claims["id"])[-1] == "quantize_first_is_worst"
    md = report.markdown["claims"]
    assert "先量化最差。 (my notes)" in md and "先剪枝（稀疏化）后量化优于先量化后剪枝。" in md
    assert any(word in md for word in ("支持", "反驳", "在此样本量下无法判定"))
    assert "最小可检测变化" in report.markdown["power"]
    assert "得分汇总方式：" in report.markdown["main"] and "按科目题目数（完整数据）加权" in report.markdown["main"]


@pytest.mark.parametrize("text,expected", [
    ("- id: x\n  claim: {en: c}\n  source: s\n  comparisons: [{better: P>X, worse: Q}]\n", "claim 'x': comparison 1: better"),
    ("- id: x\n  claim: {en: c}\n  source: s\n  comparisons: [{better: P}]\n", "expected exactly the keys better and worse"),
    ("- id: x\n  claim: {en: c}\n  comparisons: [{better: P, worse: Q}]\n", "key 'source'"),
    ("- id: x\n  claim: {en: c}\n  source: s\n  rule: strongest_last\n", "key 'rule'"),
    ("- id: prune_before_quantize\n  claim: {en: c}\n  source: s\n  comparisons: [{better: P, worse: Q}]\n", "defined twice"),
    ("- {id: x, claim: {en: c}, source: s, rule: weaker_first, operations: [P, Q], pairs: [[P>Q, F>P]]}\n",
     "must apply both P and Q"),
])
def test_a_bad_claims_file_names_the_file_the_claim_and_the_key(tmp_path, text, expected):
    path = tmp_path / "claims.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ClaimsError) as err:
        load_claims(str(path))
    assert expected in str(err.value)
    if "defined twice" not in expected:
        assert str(path) in str(err.value)
