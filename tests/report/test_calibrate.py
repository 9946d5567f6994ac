"""``python -m orderstudy.report calibrate``: simulated studies drawn from a finished study's own items."""

import json

import pytest

from orderstudy.report import intervals
from orderstudy.report.__main__ import main
from orderstudy.report.build import resolve_source
from orderstudy.report.calibrate import calibration_table
from orderstudy.report.estimates import estimate
from orderstudy.report.load import load_study


def _estimates(study):
    source = resolve_source(study.params_file, outputs_dir=study.outputs_dir)
    return estimate(load_study(source.paths, source.orderings, source.benchmarks, source.seeds), source.params)


def test_the_command_prints_coverage_and_false_marks_per_benchmark(finished_study, capsys):
    assert main(["calibrate", str(finished_study.params_file), "--outputs-dir", str(finished_study.outputs_dir)]) == 0
    out = capsys.readouterr().out
    assert "| LawBench" in out and "| stem" in out and "| mmlu_law" in out
    assert "400 simulated studies per benchmark" in out and "nominally 0.950" in out


def test_on_a_study_shaped_like_its_data_the_intervals_hold(finished_study):
    frame = calibration_table(_estimates(finished_study), studies=400, seed=0).set_index("benchmark")
    assert list(frame.index) == ["lawbench", "stem", "mmlu_law"]
    assert (frame["pairs"] == 9).all() and (frame["items_per_task"] == "20").all()
    # 400 studies: one standard error of a 95% coverage is 1.1 points; these bounds are 3.5 of them.
    for column in ("score_coverage", "diff_coverage", "rate_coverage"):
        assert frame[column].between(0.91, 0.99).all(), frame[column]
    for column in ("diff_false_marks", "rate_false_marks"):
        assert (frame[column] <= 0.09).all(), frame[column]


def test_intervals_too_narrow_for_the_study_are_caught(finished_study, monkeypatch):
    # Quantiles of a 68% interval printed as 95%: the simulation must see it.
    monkeypatch.setattr(intervals, "_quantile", lambda confidence, df: 1.0)
    frame = calibration_table(_estimates(finished_study), studies=200, seed=0)
    assert (frame["diff_coverage"] < 0.85).all() and (frame["diff_false_marks"] > 0.15).all(), frame


def test_a_benchmark_without_intervals_is_not_simulated_and_says_why(finished_study):
    for path in finished_study.paths.items.glob("*.json"):
        items = json.loads(path.read_text())
        items["stem"] = {t: dict(list(v.items())[:1]) for t, v in items["stem"].items()}
        path.write_text(json.dumps(items))
    frame = calibration_table(_estimates(finished_study), studies=50, seed=0).set_index("benchmark")
    assert "fewer than 2 items" in frame.loc["stem", "note"]
    assert frame.loc["lawbench", "studies"] == pytest.approx(50)


def test_with_three_seeds_the_seeds_are_kept_and_the_intervals_hold(tmp_path, study_writer):
    study = study_writer(tmp_path, seeds=(0, 1, 2))
    frame = calibration_table(_estimates(study), studies=200, seed=0)
    # The seeds' part is the study's own realisation (not resampled), so intervals err wide, not narrow.
    assert (frame["diff_coverage"] >= 0.92).all() and (frame["diff_false_marks"] <= 0.08).all(), frame
