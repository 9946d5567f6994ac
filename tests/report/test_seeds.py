"""A study of several seeds in the report: means and spreads over seeds, pairing over seeds, partial runs."""

import json

import numpy as np
import pandas as pd
import pytest

from orderstudy.report import build_report
from orderstudy.report.load import load_study

SEEDS = (0, 1, 2)


@pytest.fixture
def seeded_study(tmp_path, study_writer):
    return study_writer(tmp_path, "seeded", seeds=SEEDS)


def _result(study, ordering, seed):
    stem = ordering.replace(">", "-")
    return json.loads((study.paths.results / f"{stem}.seed{seed}.json").read_text())


def test_scores_are_means_over_seeds_with_their_spread(seeded_study):
    report = build_report(seeded_study.params_file, figures=False, outputs_dir=seeded_study.outputs_dir)
    main = report.main.set_index("ordering")
    for ordering in ("F>P>Q", "P>Q"):
        per_seed = [_result(seeded_study, ordering, s)["benchmarks"]["stem"]["score"] for s in SEEDS]
        assert main.at[ordering, "stem"] == pytest.approx(np.mean(per_seed))
        assert main.at[ordering, "stem_seed_sd"] == pytest.approx(np.std(per_seed, ddof=1))
        assert main.at[ordering, "seeds"] == 3
    # A state no stochastic step decided is the same for every seed; one with fine-tuning is not.
    assert main.at["P>Q", "stem_seed_sd"] == pytest.approx(0, abs=1e-9) and main.at["F>P>Q", "stem_seed_sd"] > 1
    assert "±0.00" in report.markdown["main"] and "Seeds: each difference is paired" in report.markdown["order_effects"]


def test_order_effects_are_paired_seed_by_seed(seeded_study):
    report = build_report(seeded_study.params_file, figures=False, outputs_dir=seeded_study.outputs_dir)
    row = report.order_effects.set_index(["a", "b"]).loc[("F>P>Q", "F>Q>P")]
    diffs = [_result(seeded_study, "F>Q>P", s)["benchmarks"]["lawbench"]["score"]
             - _result(seeded_study, "F>P>Q", s)["benchmarks"]["lawbench"]["score"] for s in SEEDS]
    assert row["lawbench_diff"] == pytest.approx(np.mean(diffs))
    assert row["lawbench_seed_sd"] == pytest.approx(np.std(diffs, ddof=1))
    assert row["lawbench_seeds"] == 3
    low, high = row["lawbench_diff_ci_low"], row["lawbench_diff_ci_high"]
    assert low < row["lawbench_diff"] < high
    # Two states every seed shares differ by the same amount in every seed: no spread over seeds.
    assert report.order_effects.set_index(["a", "b"]).loc[("P>Q", "Q>P"), "stem_seed_sd"] == pytest.approx(0, abs=1e-9)


def test_seed_noise_widens_the_intervals_of_seeded_orderings_only(seeded_study, tmp_path, study_writer):
    one = study_writer(tmp_path / "one", "one", seeds=(0,))
    many = build_report(seeded_study.params_file, figures=False, outputs_dir=seeded_study.outputs_dir).main.set_index("ordering")
    single = build_report(one.params_file, figures=False, outputs_dir=one.outputs_dir).main.set_index("ordering")
    width = lambda t, o: t.at[o, "lawbench_ci_high"] - t.at[o, "lawbench_ci_low"]
    # Base and P>Q: the same items and scores with one seed or three (shared states), the same width.
    assert width(many, "P>Q") == pytest.approx(width(single, "P>Q"), rel=1e-9)
    # F>P>Q: its mean over three seeds moves from seed to seed, which the interval must hold.
    assert width(many, "F>P>Q") > width(single, "F>P>Q")


def test_a_seed_that_failed_leaves_the_others_and_says_so(seeded_study):
    path = seeded_study.paths.results / "F-P-Q.seed2.json"
    data = json.loads(path.read_text())
    data.update(status="failed", error={"type": "RuntimeError", "message": "diverged", "step": "F>P"},
                benchmarks=None, items_file=None)
    path.write_text(json.dumps(data))
    report = build_report(seeded_study.params_file, figures=False, outputs_dir=seeded_study.outputs_dir)
    main = report.main.set_index("ordering")
    assert main.at["F>P>Q", "status"] == "ok" and main.at["F>P>Q", "seeds"] == 2
    assert "seed 2 failed (RuntimeError at F>P: diverged)" in main.at["F>P>Q", "note"]
    per_seed = [_result(seeded_study, "F>P>Q", s)["benchmarks"]["stem"]["score"] for s in (0, 1)]
    assert main.at["F>P>Q", "stem"] == pytest.approx(np.mean(per_seed))
    row = report.order_effects.set_index(["a", "b"]).loc[("F>P>Q", "F>Q>P")]
    assert row["stem_seeds"] == 2  # paired over the seeds both finished


def test_which_files_a_study_of_several_seeds_reads(seeded_study):
    # A plain file left from when the study had one seed is not one of its runs.
    plain = seeded_study.paths.results / "F.json"
    plain.write_text((seeded_study.paths.results / "F.seed0.json").read_text())
    study = load_study(seeded_study.paths, seeds=SEEDS)
    assert study.seeds == SEEDS and sorted(study.runs["F"]) == [0, 1, 2]
    assert study.ok_seeds("F") == SEEDS
    # Read from the directory alone, the file names say the seeds.
    assert load_study(seeded_study.paths).seeds == SEEDS
    # Asked for two of the seeds, it reads those two.
    assert sorted(load_study(seeded_study.paths, seeds=(0, 2)).runs["F"]) == [0, 2]


def test_main_csv_keeps_its_columns_and_adds_the_seeds(seeded_study):
    build_report(seeded_study.params_file, figures=False, outputs_dir=seeded_study.outputs_dir)
    main = pd.read_csv(seeded_study.paths.tables / "main.csv")
    for column in ("ordering", "status", "lawbench", "lawbench_change_pct", "size_bytes", "seeds", "lawbench_seed_sd"):
        assert column in main.columns


def test_each_seeded_ordering_carries_its_own_seed_variance(seeded_study):
    # Not one pooled over the orderings: an ordering whose seeds vary more gets the wider interval.
    report = build_report(seeded_study.params_file, figures=False, outputs_dir=seeded_study.outputs_dir)
    est = report.estimates
    for ordering in ("F>P>Q", "P>F", "F"):
        per_seed = np.array([_result(seeded_study, ordering, s)["benchmarks"]["stem"]["score"] for s in SEEDS]) / 100
        arm = est.arm(ordering, "stem", SEEDS)
        assert arm.seed_variance == pytest.approx(np.var(per_seed, ddof=1)) and arm.seed_df == 2
    assert est.arm("P>Q", "stem", SEEDS).seed_variance == 0  # no stochastic step decided it
