"""Multiplicity: the adjustments against published worked examples and their definitions, p-values that invert
the very intervals that give the marks, and the adjusted columns of every table."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from orderstudy.report import build_report
from orderstudy.report.intervals import (
    Arm, Design, change_rate, contrast_interval, difference, paired_difference, score_interval,
)
from orderstudy.report.multiplicity import adjust, check_method

# Benjamini & Hochberg (1995), section 4: 15 p-values of a study of myocardial infarction treatment.
# At 0.05 their step-up procedure rejects the 4 smallest; Bonferroni (and Holm) the 3 smallest.
BH_1995 = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262, 0.5719,
           0.6528, 0.7590, 1.0000]


def test_the_published_worked_example_of_benjamini_and_hochberg():
    assert int(np.sum(adjust(BH_1995, "bh") < 0.05)) == 4
    assert int(np.sum(adjust(BH_1995, "holm") < 0.05)) == 3
    # Holm by hand: 15 x 0.0001, 14 x 0.0004, 13 x 0.0019, 12 x 0.0095.
    assert adjust(BH_1995, "holm")[:4] == pytest.approx([0.0015, 0.0056, 0.0247, 0.114])
    # BH by hand: 0.0095 x 15 / 4 = 0.035625; 0.0201 x 15 / 5 = 0.0603 is lowered by no later one.
    assert adjust(BH_1995, "bh")[3] == pytest.approx(0.035625)
    assert adjust(BH_1995, "none") == pytest.approx(BH_1995)


def _holm_by_definition(p, alpha):
    """Holm (1979): step down through the sorted p-values, reject while p_(k) <= alpha / (m - k + 1)."""
    order, rejected = np.argsort(p), np.zeros(len(p), bool)
    for k, i in enumerate(order, start=1):
        if p[i] > alpha / (len(p) - k + 1):
            break
        rejected[i] = True
    return rejected


def _bh_by_definition(p, alpha):
    """Benjamini-Hochberg: reject the k smallest for the largest k with p_(k) <= k alpha / m."""
    order, m = np.argsort(p), len(p)
    passing = [k for k in range(1, m + 1) if p[order[k - 1]] <= k * alpha / m]
    rejected = np.zeros(m, bool)
    rejected[order[: max(passing, default=0)]] = True
    return rejected


@pytest.mark.parametrize("seed", range(5))
def test_adjusted_p_values_reject_what_the_procedures_definitions_reject(seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 0.02, 4), rng.uniform(0, 1, 14)])
    for alpha in (0.01, 0.05, 0.1):
        assert np.array_equal(adjust(p, "holm") <= alpha, _holm_by_definition(p, alpha))
        assert np.array_equal(adjust(p, "bh") <= alpha, _bh_by_definition(p, alpha))
    # A missing p-value (no interval) is not counted in the family's size.
    with_gap = np.insert(p, 3, math.nan)
    assert math.isnan(adjust(with_gap, "holm")[3])
    assert np.delete(adjust(with_gap, "holm"), 3) == pytest.approx(adjust(p, "holm"))


def test_an_unknown_method_names_the_key_and_the_choices():
    with pytest.raises(ValueError, match=r"report.multiplicity: 'bonferroni'.*holm, bh, none"):
        check_method("bonferroni")


def _design(counts, weights=None, continuous=False):
    counts = np.asarray(counts)
    w = np.full(len(counts), 1 / len(counts)) if weights is None else np.asarray(weights, float) / np.sum(weights)
    return Design(tuple(f"t{i}" for i in range(len(counts))), np.repeat(np.arange(len(counts)), counts), w, continuous)


def _arm(values, design):
    values = np.atleast_2d(np.asarray(values, dtype=float))
    reported = np.array([design.weights @ (np.bincount(design.task_of, v) / design.items_per_task) for v in values])
    return Arm(values, reported)


@pytest.mark.parametrize("seed", range(12))
def test_each_p_value_inverts_the_interval_that_gives_its_mark(seed):
    rng = np.random.default_rng(seed)
    design = _design([3, 5, 8], [100, 135, 378])
    base = rng.random(16) < 0.5
    a = _arm(base, design)
    b = _arm(np.where(rng.random(16) < 0.3 + 0.04 * seed, ~base, base), design)
    for function in (difference, change_rate):
        found = function(design, a, b, 0.95)
        if not found.has_interval:
            assert found.p > 0.05
            continue
        assert found.significant == (found.p < 0.05), (function.__name__, found)
        if 1e-6 < found.p < 0.999:
            # Just below the confidence 1 - p the interval excludes zero; just above it no longer does.
            assert function(design, a, b, 1 - found.p * 1.01).significant is True
            assert not function(design, a, b, 1 - found.p * 0.99).significant


def test_a_continuous_metric_gets_the_paired_t_interval_of_its_per_item_differences():
    # Per-document KL divergences of two states (nats, unbounded) on the same 12 documents: one task
    # is the textbook paired t test, which scipy computes independently.
    rng = np.random.default_rng(3)
    a, b = rng.gamma(2.0, 0.4, 12), rng.gamma(2.0, 0.4, 12) + 0.5
    found = paired_difference(a, b)
    reference = stats.ttest_rel(b, a)
    low, high = reference.confidence_interval(0.95)
    assert found.value == pytest.approx(float(np.mean(b - a)))
    assert (found.low, found.high) == pytest.approx((low, high))
    assert found.p == pytest.approx(reference.pvalue) and found.significant
    # The base's KL is 0 on every document: the difference is the state's own mean, its interval the one-sample t.
    zero = paired_difference(np.zeros(12), b)
    assert (zero.low, zero.high) == pytest.approx(tuple(stats.ttest_1samp(b, 0).confidence_interval(0.95)))
    # Values above 1 on a design of proportions are an error, not a silently clipped Wilson interval.
    design = _design([12])
    with pytest.raises(ValueError, match="continuous=True"):
        difference(design, _arm(a, design), _arm(b, design), 0.95)
    # Declared continuous, scores keep their own unit (nats, not percent) and their interval is t-type.
    kl = _design([12], continuous=True)
    score = score_interval(kl, _arm(b, kl), 0.95)
    assert score.value == pytest.approx(float(b.mean()))
    assert (score.low, score.high) == pytest.approx(tuple(stats.ttest_1samp(b, 0).confidence_interval(0.95)))


def test_an_interaction_is_the_paired_contrast_of_four_states_on_shared_items():
    rng = np.random.default_rng(5)
    design = _design([10, 10], continuous=True)
    base, x, y = (rng.normal(m, 0.3, 20) for m in (0.0, 1.0, 2.0))
    xy = x + y - base + 0.8 + rng.normal(0, 0.2, 20)  # compounds by 0.8 nats
    found = contrast_interval(design, [_arm(v, design) for v in (xy, x, y, base)], [1, -1, -1, 1], 0.95)
    per_item = xy - x - y + base
    assert found.value == pytest.approx(float(per_item.mean()))
    assert found.low < 0.8 < found.high and found.significant
    # Two tasks of equal weight and 10 items: the stratified variance of the per-item contrasts.
    within = sum(np.var(per_item[i * 10:(i + 1) * 10], ddof=1) for i in range(2)) / 4 / 10
    assert found.se == pytest.approx(math.sqrt(within), rel=0.05)


def _load(study):
    return build_report(study.params_file, figures=False, outputs_dir=study.outputs_dir)


def test_every_table_has_the_raw_and_the_adjusted_mark_of_its_own_family(finished_study):
    report = _load(finished_study)
    order = report.order_effects
    for bench in ("lawbench", "stem", "mmlu_law"):
        raw, adjusted = order[f"{bench}_diff_significant"], order[f"{bench}_diff_significant_holm"]
        # An adjustment only takes marks away, and the adjusted p-values are Holm's of that benchmark's family.
        assert not (adjusted.fillna(False) & ~raw.fillna(False)).any()
        assert order[f"{bench}_diff_p_holm"].to_numpy() == pytest.approx(
            adjust(order[f"{bench}_diff_p"].to_numpy(float), "holm"), nan_ok=True)
        assert (raw.dropna() == (order.loc[raw.notna(), f"{bench}_diff_p"] < 0.05)).all()
    main = report.main.set_index("ordering")
    assert math.isnan(main.loc["base", "stem_change_p_holm"])  # the base against itself is no test
    others = main.drop("base")
    assert others["stem_change_p_holm"].to_numpy() == pytest.approx(
        adjust(others["stem_change_p"].to_numpy(float), "holm"), nan_ok=True)
    assert "stem_diff_significant_holm" in report.transitions["F"]
    assert "Holm" in report.markdown["order_effects"] and "the order effects on the same benchmark" in report.markdown[
        "order_effects"]
    assert "the changes against the base on the same benchmark" in report.markdown["main"]
    # Claims: one family over every claim and benchmark.
    claims = report.claims
    cells = [(i, b) for i in claims.index for b in ("lawbench", "stem", "mmlu_law") if not claims.at[i, f"{b}_exploratory"]]
    assert [claims.at[i, f"{b}_p_holm"] for i, b in cells] == pytest.approx(
        adjust([claims.at[i, f"{b}_p"] for i, b in cells], "holm"), nan_ok=True)


def test_the_method_is_a_parameter_and_names_the_columns(tmp_path, study_writer):
    study = study_writer(tmp_path, report="  multiplicity: bh\n")
    report = _load(study)
    assert "stem_diff_significant_bh" in report.order_effects and "stem_diff_significant_holm" not in report.order_effects
    assert "Benjamini-Hochberg" in report.markdown["order_effects"]
    study = study_writer(tmp_path / "none", report="  multiplicity: none\n")
    report = _load(study)
    assert not [c for c in report.order_effects if c.endswith(("_holm", "_bh"))]
    assert "‡" not in report.markdown["order_effects"]


def test_marks_that_hold_after_holm_carry_a_dagger(finished_study):
    # Fine-tuning after P gets every LawBench and stem item right, P alone none: marked after any adjustment.
    for ordering, value in (("P>F", 1.0), ("P", 0.0)):
        _set_scores(finished_study, ordering, ("lawbench", "stem"), value)
    report = _load(finished_study)
    table = report.transitions["F"].set_index("before")
    assert bool(table.loc["P", "stem_diff_significant_holm"])
    assert "*†" in report.markdown["F"]


def _set_scores(study, ordering, benchmarks, value):
    stem = ordering.replace(">", "-")
    items_path, result_path = study.paths.items / f"{stem}.json", study.paths.results / f"{stem}.json"
    items, result = json.loads(items_path.read_text()), json.loads(result_path.read_text())
    for benchmark in benchmarks:
        items[benchmark] = {t: dict.fromkeys(scores, value) for t, scores in items[benchmark].items()}
        for task in result["benchmarks"][benchmark]["tasks"].values():
            task["score"] = 100.0 * value
        result["benchmarks"][benchmark]["score"] = 100.0 * value
    items_path.write_text(json.dumps(items))
    result_path.write_text(json.dumps(result))


def _keep_items(study, count):
    """Keep the first ``count`` items of every task in every items file (a study sampled like the demo)."""
    for path in study.paths.items.glob("*.json"):
        items = json.loads(path.read_text())
        items = {b: {t: dict(list(v.items())[:count]) for t, v in tasks.items()} for b, tasks in items.items()}
        path.write_text(json.dumps(items))


def test_a_direction_taken_from_the_data_is_tested_on_the_other_half_or_called_exploratory(finished_study):
    report = _load(finished_study)
    row = report.claims.set_index("id").loc["progressive_intensity"]
    assert "tested on the other" in row["stem_note"] and not row["stem_exploratory"]
    # On the held-out half: the test's scores are the item means of the second half of each task's items.
    est = report.estimates
    _, second = est.split_items("stem")
    assert second.sum() == 30  # 3 tasks x 10 of their 20 items
    # With 3 items a task there is no half to test on: the verdict is exploratory and outside the family.
    _keep_items(finished_study, 3)
    report = _load(finished_study)
    row = report.claims.set_index("id").loc["progressive_intensity"]
    assert row["stem_exploratory"] and "exploratory" in row["stem_note"]
    assert row["stem_verdict_holm"] in ("exploratory", "no prediction", "not tested")
    assert math.isnan(row["stem_p_holm"])
    assert not report.claims.set_index("id").loc["prune_before_quantize", "stem_exploratory"]


def test_the_power_of_a_continuous_metric_is_in_its_own_unit_and_does_not_grow_like_a_proportion():
    from orderstudy.report.intervals import pair_noise

    rng = np.random.default_rng(8)
    design = _design([10, 10], continuous=True)
    a, b = rng.gamma(2.0, 0.5, 20), rng.gamma(2.0, 0.5, 20)
    noise = pair_noise(design, _arm(a, design), _arm(b, design))
    found = difference(design, _arm(a, design), _arm(b, design), 0.95)
    assert noise.growth == 0.0
    assert math.sqrt(noise.item) == pytest.approx(found.se)  # nats, not 100 x nats
