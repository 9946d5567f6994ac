"""Tables: change rates against hand-computed values, N/A rows with reasons, CSV columns, labels."""

import json
import math
import re

import pandas as pd
import pytest

from orderstudy.core.atomic import write_json, write_text
from orderstudy.core.paths import StudyPaths, ordering_filename
from orderstudy.core.plan import REFERENCE_ORDER
from orderstudy.report import build_report
from orderstudy.report.changes import change_rate, how_orders_differ, order_pairs, transitions
from orderstudy.report.markdown import format_change, format_size


def _write_small_study(root, item_lists, *, failed=()):
    """Write a study whose items are given by hand: ordering -> benchmark -> task -> list of item scores."""
    paths = StudyPaths("small", root / "outputs")
    for ordering, benchmarks in item_lists.items():
        items = {b: {t: {f"{t}-{i}": v for i, v in enumerate(values)} for t, values in tasks.items()}
                 for b, tasks in benchmarks.items()}
        scores = {b: {"score": sum(100 * sum(v) / len(v) for v in tasks.values()) / len(tasks),
                      "tasks": {t: {"score": 100 * sum(v) / len(v), "n": len(v)} for t, v in tasks.items()}}
                  for b, tasks in benchmarks.items()}
        write_json(paths.items / f"{ordering_filename(ordering)}.json", items)
        write_json(paths.result(ordering), {
            "schema": 1, "study": "small", "ordering": ordering, "status": "ok", "error": None,
            "size_bytes": 1000 if ordering == "base" else 250, "benchmarks": scores,
            "items_file": f"items/{ordering_filename(ordering)}.json",
        })
    for ordering in failed:
        write_json(paths.result(ordering), {
            "schema": 1, "study": "small", "ordering": ordering, "status": "failed", "size_bytes": None,
            "error": {"type": "ValueError", "message": "no calibration data", "step": ordering},
        })
    params = write_text(root / "small.yaml", "study: small\nmodel:\n  source: m\norderings: [base, F, Q, F>Q, Q>F]\n"
                        "evaluation:\n  benchmarks: [lawbench, stem]\nreport:\n  confidence: 0.95\n")
    return params, paths


HAND = {
    # lawbench: tasks 25% and 50% -> 37.5; stem: 50%
    "base": {"lawbench": {"1-1": [1, 0, 0, 0], "2-1": [1, 1, 0, 0]}, "stem": {"s": [1, 0]}},
    # lawbench: 50% and 75% -> 62.5, change +66.67%; stem 100%, change +100%
    "F": {"lawbench": {"1-1": [1, 1, 0, 0], "2-1": [1, 1, 1, 0]}, "stem": {"s": [1, 1]}},
    # lawbench: 0% and 25% -> 12.5, change -66.67%; stem 0%, change -100%
    "Q": {"lawbench": {"1-1": [0, 0, 0, 0], "2-1": [1, 0, 0, 0]}, "stem": {"s": [0, 0]}},
    # F>Q: lawbench 50%, 50% -> 50 (F -> F>Q: -12.5 points, -20%); stem 50%
    "F>Q": {"lawbench": {"1-1": [1, 1, 0, 0], "2-1": [1, 1, 0, 0]}, "stem": {"s": [1, 0]}},
}


def test_change_rates_match_hand_computed_values(tmp_path):
    params, paths = _write_small_study(tmp_path, HAND, failed=["Q>F"])
    report = build_report(params, figures=False, outputs_dir=tmp_path / "outputs")
    main = report.main.set_index("ordering")
    assert main.at["F", "lawbench"] == pytest.approx(62.5)
    assert main.at["F", "lawbench_change_pct"] == pytest.approx(200 / 3)
    assert main.at["Q", "lawbench_change_pct"] == pytest.approx(-200 / 3)
    assert main.at["F", "stem_change_pct"] == pytest.approx(100.0)
    assert main.at["Q", "stem_change_pct"] == pytest.approx(-100.0)
    assert main.at["Q", "compression_ratio"] == pytest.approx(4.0)
    assert list(main.index) == ["base", "F", "Q", "Q>F", "F>Q"]  # reference row order

    quantize = report.transitions["Q"].set_index("before")
    assert quantize.at["F", "lawbench_diff"] == pytest.approx(-12.5)
    assert quantize.at["F", "lawbench_change_pct"] == pytest.approx(-20.0)
    assert quantize.at["F", "after"] == "F>Q"
    effects = report.order_effects
    assert list(zip(effects.a, effects.b)) == [("Q>F", "F>Q")]
    assert effects.loc[0, "status"] == "failed" and "Q>F failed (ValueError at Q>F: no calibration data)" in effects.loc[0, "note"]

    md = (paths.tables / "main.md").read_text()
    assert "+66.67%" in md and "-66.67%" in md and "+100.00%" in md


def test_main_csv_columns_are_the_contract(finished_study):
    build_report(finished_study.params_file, figures=False, outputs_dir=finished_study.outputs_dir)
    main = pd.read_csv(finished_study.paths.tables / "main.csv")
    required = ["ordering", "status", "size_bytes", "compression_ratio", "error"]
    for b in ("lawbench", "stem", "mmlu_law"):
        required += [b, f"{b}_change_pct", f"{b}_ci_low", f"{b}_ci_high", f"{b}_change_ci_low",
                     f"{b}_change_ci_high", f"{b}_change_significant"]
    assert set(required) <= set(main.columns)
    assert tuple(main["ordering"]) == REFERENCE_ORDER
    ok = main[main.status == "ok"]
    assert (ok["lawbench_ci_low"] <= ok["lawbench"]).all() and (ok["lawbench"] <= ok["lawbench_ci_high"]).all()
    significant = ok["stem_change_significant"].astype(bool)
    excludes = (ok["stem_change_ci_low"] > 0) | (ok["stem_change_ci_high"] < 0)
    assert (significant == excludes)[ok.ordering != "base"].all()
    # Sizes as the field reports them: the weight files beside the directory, and the ratio
    # against what the base weighs in bf16 (the base's own row: its fp32 or bf16 weights over that).
    by = ok.set_index("ordering")
    assert (by["weights_bytes"] < by["size_bytes"]).all()
    result = json.loads((finished_study.paths.results / "P-Q.json").read_text())
    assert by.at["P>Q", "compression_ratio"] == pytest.approx(result["base_bf16_weights_bytes"] / result["weights_bytes"])
    assert set(by["compression_basis"]) == {"weights vs base in bf16"}
    md = (finished_study.paths.tables / "main.md").read_text()
    assert "| Weights " in md and "| Directory " in md and "what the base model's weights weigh in bf16" in md
    # Which aggregation each score is, as the result files say.
    assert "Scores: LawBench unweighted mean of the tasks, as LawBench's leaderboard; stem unweighted mean of the " \
           "subjects; mmlu_law weighted by subject size (questions in the full data), as lm-eval's MMLU groups." in md


def test_failed_and_missing_orderings(finished_study):
    report = build_report(finished_study.params_file, figures=False, outputs_dir=finished_study.outputs_dir)
    main = pd.read_csv(finished_study.paths.tables / "main.csv", keep_default_na=False).set_index("ordering")
    failed, not_run = finished_study.failed, finished_study.not_run
    assert main.at[failed, "status"] == "failed"
    assert finished_study.error_message in main.at[failed, "error"]
    assert main.at[not_run, "status"] == "not run" and main.at[not_run, "error"] == ""
    assert main.at[failed, "lawbench"] == "" and main.at[failed, "lawbench_change_pct"] == ""

    md = (finished_study.paths.tables / "main.md").read_text()
    failed_row = next(line for line in md.splitlines() if line.startswith("| quantize → prune → fine-tune"))
    assert "¹" in failed_row and failed_row.count("N/A") == 9
    assert f"¹ quantize → prune → fine-tune (Q>P>F): failed: OutOfMemoryError at Q>P>F: {finished_study.error_message}" in md
    not_run_row = next(line for line in md.splitlines() if line.startswith("| prune → quantize → fine-tune"))
    assert "not run" in not_run_row and "N/A" not in not_run_row
    assert report.markdown["main"] == md


def test_markdown_prints_like_the_reference(finished_study):
    report = build_report(finished_study.params_file, figures=False, outputs_dir=finished_study.outputs_dir, language="zh")
    lines = report.markdown["main"].splitlines()
    assert lines[0].startswith("| 操作顺序描述") and "LawBench 变化率%" in lines[0] and "模型大小" in lines[0]
    assert lines[2].startswith("| 原始模型") and "0.00%" in lines[2]
    assert any(line.startswith("| 微调 → 剪枝 → 量化 ") for line in lines)
    assert "不适用" in report.markdown["main"]
    prune = report.markdown["P"]
    assert prune.startswith("剪枝\n") and "| 量化微调 → 量化微调剪枝" in prune and "LawBench 变化率%" in prune
    assert "| 原始模型 → 微调" in report.markdown["F"]


def test_base_score_zero_gives_na_with_reason(tmp_path):
    hand = {k: {b: dict(t) for b, t in v.items()} for k, v in HAND.items()}
    hand["base"]["stem"] = {"s": [0, 0]}
    params, paths = _write_small_study(tmp_path, hand)
    report = build_report(params, figures=False, outputs_dir=tmp_path / "outputs")
    main = report.main.set_index("ordering")
    assert math.isnan(main.at["F", "stem_change_pct"])
    assert "stem: change rate undefined: the base score is 0" in main.at["F", "note"]
    row = next(line for line in report.markdown["main"].splitlines() if re.match(r"\| fine-tune[¹²³] ", line))
    assert "N/A" in row
    assert "change rate undefined: the base score is 0" in report.markdown["main"]
    # The absolute change is still defined, with its interval.
    assert report.transitions["F"].set_index("before").at["base", "stem_diff"] == pytest.approx(100.0)


def test_change_rate_is_nan_not_a_division_by_zero():
    assert change_rate(5.0, 10.0) == pytest.approx(-50.0)
    assert math.isnan(change_rate(5.0, 0.0))


def test_pairs_compared():
    assert transitions(REFERENCE_ORDER, "F") == [("base", "F"), ("P", "P>F"), ("Q", "Q>F"), ("P>Q", "P>Q>F"), ("Q>P", "Q>P>F")]
    assert transitions(REFERENCE_ORDER, "P")[3:] == [("Q>F", "Q>F>P"), ("F>Q", "F>Q>P")]
    pairs = order_pairs(REFERENCE_ORDER)
    assert pairs[:3] == [("P>F", "F>P"), ("P>Q", "Q>P"), ("Q>F", "F>Q")]
    assert len(pairs) == 3 + 15
    kinds = [how_orders_differ(a, b)[0] for a, b in pairs[3:]]
    assert kinds.count("swap") == 9 and kinds.count("rotation") == 6


def test_number_formats():
    assert format_change(97.8333, 50.1, 140.2, True, percent=True) == "+97.83% [+50.10, +140.20]*"
    assert format_change(-2.08, percent=False) == "-2.08"
    assert format_size(int(5.8 * 2**30)) == "5.8 GiB"
    assert format_size(272_600_000) == "260.0 MiB"


def test_an_ordering_missing_a_task_loses_only_its_intervals(finished_study):
    import json

    path = finished_study.paths.items / "F.json"
    items = json.loads(path.read_text())
    del items["stem"]["astronomy"]
    path.write_text(json.dumps(items))
    with pytest.warns(UserWarning, match=r"stem: F lacks per-item scores for \['astronomy'\]"):
        report = build_report(finished_study.params_file, figures=False, outputs_dir=finished_study.outputs_dir)
    main = report.main.set_index("ordering")
    assert math.isnan(main.at["F", "stem_ci_low"]) and not math.isnan(main.at["F", "lawbench_ci_low"])
    assert "stem: no interval: per-item scores missing" in main.at["F", "note"]
    assert not math.isnan(main.at["P", "stem_ci_low"])


def test_every_mark_is_the_mark_of_the_interval_printed_beside_it(finished_study):
    # A change rate's * comes from its own (Fieller) interval, a difference's from its own (MOVER)
    # one; an unbounded rate interval (left empty) carries no mark at all.
    report = build_report(finished_study.params_file, figures=False, outputs_dir=finished_study.outputs_dir)
    frames = [report.main[report.main.ordering != "base"], *report.transitions.values()]
    checked = 0
    for frame in frames:
        frame = frame[frame.status == "ok"]
        for b in report.study.benchmarks:
            for kind in ("change", "diff"):
                if f"{b}_{kind}_significant" not in frame:
                    continue
                low, high = frame[f"{b}_{kind}_ci_low"], frame[f"{b}_{kind}_ci_high"]
                mark = frame[f"{b}_{kind}_significant"]
                bounded = low.notna() & high.notna()
                assert mark[~bounded].isna().all(), (b, kind)
                assert (mark[bounded].astype(bool) == ((low > 0) | (high < 0))[bounded]).all(), (b, kind)
                checked += int(bounded.sum())
    assert checked > 50
    # The markdown prints a * exactly where the column says so.
    q = report.transitions["Q"]
    row = q[q.status == "ok"].iloc[0]
    text = format_change(row["stem_change_pct"], row["stem_change_ci_low"], row["stem_change_ci_high"],
                         row["stem_change_significant"], percent=True)
    assert text.endswith("*") == (row["stem_change_significant"] is True)
