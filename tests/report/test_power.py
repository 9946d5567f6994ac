"""The power table: the smallest change the study can detect, and what a benchmark without intervals needs."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from orderstudy.report import build_report, intervals
from orderstudy.report.changes import order_pairs


def test_minimum_detectable_change_follows_from_the_observed_variance(finished_study):
    report = build_report(finished_study.params_file, figures=False, outputs_dir=finished_study.outputs_dir)
    power = report.power.set_index("benchmark")
    est = report.estimates
    for benchmark in ("lawbench", "stem", "mmlu_law"):
        row = power.loc[benchmark]
        assert row["tasks"] == 3 and row["items"] == 60 and row["items_per_task"] == "20" and row["intervals"]
        assert row["basis"] == "order effects"
        # se: the root mean square over the finished order-effect pairs of their paired standard errors.
        ok = [o for o in est.study.orderings if est.study.status(o) == "ok"]
        ses = [est.compare(a, b, benchmark).diff_se for a, b in order_pairs(ok)]
        assert row["comparisons"] == len(ses) == 3 + 6  # 3 pairs, 6 among the 4 triples that ran
        assert row["se_points"] == pytest.approx(math.sqrt(np.mean(np.square(ses))), rel=1e-6)
        # MDE: the δ at which the mark fires 80% of the time, with the paired variance growing with δ:
        # δ = q · sqrt(se² + g δ (100 - δ)), q = t_{.975,df} + t_{.8,df} (df: the pairs' median), g the
        # mean over pairs of sum_t w_t²/n_t times a half for 0/1 items, a fifth for partial credit.
        data = est.items[benchmark]
        noises = [intervals.pair_noise(data.design, est.arm(a, benchmark, (0,)), est.arm(b, benchmark, (0,)))
                  for a, b in order_pairs(ok)]
        df = float(np.median([n.df for n in noises]))
        binary = [all(np.isin(data.values[o][0], (0.0, 1.0)).all() for o in pair) for pair in order_pairs(ok)]
        g = float(np.mean([0.5 if x else 0.2 for x in binary])) * float(np.sum(data.design.weights**2 / 20))
        q = stats.t.ppf(0.975, df) + stats.t.ppf(0.8, df)
        se, mde = row["se_points"], row["mde_points"]
        assert mde == pytest.approx(q * math.sqrt(se**2 + g * mde * (100 - mde)), rel=1e-6)
        assert mde > q * se  # the old (t + t) · se, which the mark reaches only 55-70% of the time
        # More items are needed to detect 5 points than to detect the minimum detectable change today.
        assert row["items_per_task_needed"] > 20 if row["mde_points"] > 5 else row["items_per_task_needed"] <= 20
    md = report.markdown["power"]
    assert "Minimum detectable change (points, 80% power, 95%)" in md and "Items per task to detect 5 points" in md
    assert f"{power.at['stem', 'mde_points']:.1f}" in md


def test_a_benchmark_with_one_item_a_task_has_no_interval_and_says_what_it_needs(finished_study):
    # Keep one item of each stem subject, as a demo sampling one item per MMLU subject does.
    for path in finished_study.paths.items.glob("*.json"):
        items = json.loads(path.read_text())
        items["stem"] = {task: dict(list(scores.items())[:1]) for task, scores in items["stem"].items()}
        path.write_text(json.dumps(items))
    report = build_report(finished_study.params_file, figures=False, outputs_dir=finished_study.outputs_dir)
    main = report.main.set_index("ordering")
    assert main["stem_ci_low"].isna().all() and main["stem_change_significant"].drop("base").isna().all()
    assert not main["lawbench_ci_low"].isna().all()  # the other benchmarks keep theirs
    assert report.order_effects["stem_diff_significant"].isna().all()
    reason = report.estimates.interval_notes()["stem"]
    assert "3 of its 3 tasks have fewer than 2 items" in reason and "mmlu_items_per_subject ≥ 2" in reason
    assert f"stem: {reason}." in report.markdown["main"] and "| stem¹" in report.markdown["main"]
    row = report.power.set_index("benchmark").loc["stem"]
    assert not row["intervals"] and math.isnan(row["mde_points"])
    assert row["items_per_task_needed"] >= 2  # planned from the spread of all its items
    assert "no interval" in report.markdown["power"]


def test_a_pair_scoring_every_item_alike_is_left_out_of_the_typical_error(finished_study):
    # P>Q and Q>P answer no stem item right, as heavily pruned models do: their paired difference
    # has a standard error of exactly 0, which says nothing of how items vary.
    for ordering in ("P>Q", "Q>P"):
        path = finished_study.paths.dir / "items" / f"{ordering.replace('>', '-')}.json"
        items = json.loads(path.read_text())
        items["stem"] = {task: {i: 0.0 for i in scores} for task, scores in items["stem"].items()}
        path.write_text(json.dumps(items))
    report = build_report(finished_study.params_file, figures=False, outputs_dir=finished_study.outputs_dir)
    row = report.power.set_index("benchmark").loc["stem"]
    est = report.estimates
    ok = [o for o in est.study.orderings if est.study.status(o) == "ok"]
    ses = {(a, b): est.compare(a, b, "stem").diff_se for a, b in order_pairs(ok)}
    zero = [pair for pair, se in ses.items() if se == 0]
    assert zero == [("P>Q", "Q>P")] or zero == [("Q>P", "P>Q")]
    assert row["uninformative"] == 1 and row["comparisons"] == len(ses) - 1
    kept = [se for se in ses.values() if se > 0]
    assert row["se_points"] == pytest.approx(math.sqrt(np.mean(np.square(kept))), rel=1e-6)
    assert row["se_points"] > math.sqrt(np.mean(np.square(list(ses.values()))))  # the zero would have shrunk it
    # The other benchmarks keep every pair.
    assert report.power.set_index("benchmark").loc["lawbench", "uninformative"] == 0


def test_a_benchmark_whose_pairs_all_score_alike_says_the_spread_cannot_be_estimated(finished_study):
    # Every ordering answers no stem item right: no pair says how items vary.
    for path in finished_study.paths.items.glob("*.json"):
        items = json.loads(path.read_text())
        items["stem"] = {task: {i: 0.0 for i in scores} for task, scores in items["stem"].items()}
        path.write_text(json.dumps(items))
    report = build_report(finished_study.params_file, figures=False, outputs_dir=finished_study.outputs_dir)
    row = report.power.set_index("benchmark").loc["stem"]
    assert row["comparisons"] == 0 and row["uninformative"] == 3 + 6
    assert "all 9 pairs of orderings score every item alike" in row["note"]
    assert math.isnan(row["mde_points"]) and math.isnan(row["items_per_task_needed"])
