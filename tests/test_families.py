"""A study of families (``quantize.method: [nf4, gptq]``): params, paths, shared states, the side-by-side table.

The end-to-end run of params/smoke-families.yaml is in test_e2e_gptq.py; these tests take the
parts on their own, without model work (the state keys read the prepared data, not a model).
"""

import json
import math

import numpy as np
import pytest
import yaml

from orderstudy.core import paths
from orderstudy.core.params import ParamsError, load_params
from orderstudy.report.families import VERDICTS, effect_difference, family_table, verdict

SMOKE_FAMILIES = paths.PARAMS_DIR / "smoke-families.yaml"


def _params_file(tmp_path, **quantize):
    raw = yaml.safe_load(SMOKE_FAMILIES.read_text())
    raw["quantize"] = quantize
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def test_a_method_list_makes_one_family_per_method_with_the_one_method_study_s_params(tmp_path):
    params = load_params(SMOKE_FAMILIES)
    assert params.families == ("nf4", "gptq") and params.family_operation == "Q"
    nf4, gptq = params.for_family("nf4"), params.for_family("gptq")
    assert nf4.operation_params("Q").method == "nf4" and nf4.operation_params("Q").double_quant is True
    assert gptq.operation_params("Q").method == "gptq" and gptq.operation_params("Q").group_size == 32
    assert not nf4.families and not gptq.families
    # A family's params are those of a file naming that one method with its own keys: the same hash,
    # so its states and results are that study's.
    raw = yaml.safe_load(SMOKE_FAMILIES.read_text())
    raw["quantize"] = {"method": "gptq", "bits": 4, "group_size": 32, "calibration_samples": 8, "calibration_seq_len": 128}
    single = tmp_path / "gptq.yaml"
    single.write_text(yaml.safe_dump(raw))
    assert gptq.hash() == load_params(single).hash()
    # The study's own hash covers every family: another family's key changes it.
    changed = _params_file(tmp_path, method=["nf4", "gptq"], double_quant=True, bits=4, group_size=16,
                           calibration_samples=8, calibration_seq_len=128)
    assert load_params(changed).hash() != params.hash()
    assert load_params(changed).for_family("nf4").hash() == nf4.hash()


@pytest.mark.parametrize("quantize, expected", [
    ({"method": ["nf4"]}, "key 'quantize.method': a list of two or more different methods"),
    ({"method": ["nf4", "nf4"]}, "key 'quantize.method': a list of two or more different methods"),
    ({"method": ["nf4", "fp4"], "group_size": 64}, "quantize.group_size applies to method 'gptq' only"),
    ({"method": ["nf4", "awq"]}, "key 'quantize.method'"),
])
def test_a_bad_method_list_names_the_file_and_the_key(tmp_path, quantize, expected):
    path = _params_file(tmp_path, **quantize)
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_only_one_section_may_list_methods(tmp_path):
    raw = yaml.safe_load(SMOKE_FAMILIES.read_text())
    raw["prune"]["method"] = ["magnitude", "wanda"]
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(ParamsError, match=r"key 'quantize.method': one operation's method may be a list .*prune.method, "
                                          r"quantize.method all list methods"):
        load_params(path)


def test_families_share_the_states_without_the_operation_and_keep_their_runs_apart(outputs_dir, lawbench_dir, mmlu_dir,
                                                                                    default_model_dir, capsys):
    from orderstudy.prepare import prepare_tiny
    from orderstudy.study.study import Study

    prepare_tiny()
    study = Study(SMOKE_FAMILIES)
    assert study.family == "nf4" and [s.family for s in study.variants()] == ["nf4", "gptq"]
    nf4, gptq = study.variants()
    for state in ("base", "F", "P"):
        assert nf4.store.key(state) == gptq.store.key(state)
        assert nf4.store.label(state) == gptq.store.label(state) == state
    for state in ("Q", "F>Q", "Q>F", "P>Q", "Q>P"):
        assert nf4.store.key(state) != gptq.store.key(state)
        assert (nf4.store.label(state), gptq.store.label(state)) == (f"{state}.nf4", f"{state}.gptq")
    # One store and one evaluation sample; each family's results, items and notebooks in its own directory.
    assert nf4.paths.states == gptq.paths.states == outputs_dir / "smoke-families" / "states"
    assert nf4.result_path("P") == outputs_dir / "smoke-families" / "nf4" / "results" / "P.json"
    assert gptq.notebook_path("Q>P") == outputs_dir / "smoke-families" / "gptq" / "notebooks" / "Q-P.ipynb"
    assert nf4.suite.key == gptq.suite.key
    assert (nf4.run_name("Q>P"), gptq.run_name("Q>P")) == ("nf4/Q>P", "gptq/Q>P")
    # The task plan builds a shared state once, each family's own once each.
    from orderstudy.execution.tasks import plan_tasks

    tasks = plan_tasks(study.variants(), list(study.plan.orderings))
    builds = [t.id for t in tasks if t.kind == "build"]
    assert sorted(builds) == sorted(["build base", "build F", "build P"]
                                    + [f"build {s}.{f}" for f in ("nf4", "gptq") for s in ("Q", "F>Q", "Q>F", "P>Q", "Q>P")])
    evaluations = [t for t in tasks if t.kind == "evaluate"]
    assert len(evaluations) == 3 + 2 * 5 and {t.family for t in evaluations if t.name == "Q>P"} == {"nf4", "gptq"}
    with pytest.raises(ParamsError, match="family 'awq' was asked for, but the study's families are nf4, gptq"):
        Study(SMOKE_FAMILIES, family="awq")
    # `orderstudy plan` lists each state once, saying which every family shares, and each family's runs.
    from orderstudy.execution.runner import print_plan

    print_plan(SMOKE_FAMILIES)
    out = capsys.readouterr().out
    assert f"{len(study.plan.orderings)} orderings" in out and "families nf4, gptq: 13 states, 3 shared" in out
    states = [line.split()[1:] for line in out.splitlines() if line.startswith("  state ")]
    assert len(states) == 13
    assert {s[0] for s in states if s[-2:] == ["(every", "family)"]} == {"base", "F", "P"}
    assert {s[0] for s in states if "(every" not in s} == {f"{s}.{f}" for f in ("nf4", "gptq")
                                                        for s in ("Q", "F>Q", "Q>F", "P>Q", "Q>P")}
    runs = [line.split()[1] for line in out.splitlines() if line.startswith("  run ")]
    assert runs == [f"{f}/{o}" for f in ("nf4", "gptq") for o in study.plan.orderings]


def test_verdicts():
    assert verdict([(-3.0, True), (-1.0, True)]) == VERDICTS[0]
    assert verdict([(-3.0, True), (2.0, True)]) == VERDICTS[2]
    assert verdict([(0.5, False), (0.0, False)]) == VERDICTS[3]


def _family_study(root, family, scores_by_ordering):
    """Write one family's result and item files (stem only, 2 subjects of 4 items) under ``root/<family>/``."""
    d = root / family
    (d / "results").mkdir(parents=True)
    (d / "items").mkdir()
    for ordering, (a, b) in scores_by_ordering.items():
        scored = {"astronomy": {str(i): v for i, v in enumerate(a)}, "virology": {str(i): v for i, v in enumerate(b)}}
        items = {"stem": scored, "mmlu_law": scored}   # two benchmarks: each its own family of differences
        stem = paths.ordering_filename(ordering)
        (d / "items" / f"{stem}.json").write_text(json.dumps(items))
        score = 100 * (np.mean(a) + np.mean(b)) / 2
        tasks = {t: {"score": 100 * float(np.mean(v)), "n": len(v), "weight": 0.5} for t, v in
                 (("astronomy", a), ("virology", b))}
        result = {"schema": 5, "study": "fam", "ordering": ordering, "seed": 0, "status": "ok", "size_bytes": 1000,
                  "n_params": 10, "quantized": "Q" in ordering, "items_file": f"items/{stem}.json",
                  "benchmarks": {b: {"score": score, "tasks": tasks} for b in ("stem", "mmlu_law")}}
        (d / "results" / f"{stem}.json").write_text(json.dumps(result))
    return d


def test_the_difference_between_families_is_the_paired_contrast_of_the_four_models(tmp_path):
    from orderstudy.core import results as schema
    from orderstudy.core.params import ReportParams
    from orderstudy.report.estimates import estimate
    from orderstudy.report.load import load_study

    root = tmp_path / "fam"
    (root / "states").mkdir(parents=True)
    ones, zeros = [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]
    half = [1.0, 0.0, 1.0, 0.0]
    # nf4: P>Q scores every item, Q>P none (an effect of -100 points); gptq: both the same (no effect).
    shared = {"base": (ones, half), "P": (half, half)}
    _family_study(root, "nf4", {**shared, "Q": (half, ones), "P>Q": (ones, ones), "Q>P": (zeros, zeros)})
    _family_study(root, "gptq", {**shared, "Q": (half, ones), "P>Q": (half, half), "Q>P": (half, half)})
    for f in ("nf4", "gptq"):
        for path in (root / f / "results").glob("*.json"):  # the files are the schema's
            data = json.loads(path.read_text())
            data["schema"] = schema.SCHEMA_VERSION
            path.write_text(json.dumps(data))
    planned = ("base", "P", "Q", "P>Q", "Q>P")
    estimates = {f: estimate(load_study(paths.StudyPaths("fam", tmp_path, f), planned), ReportParams())
                 for f in ("nf4", "gptq")}
    diff, note = effect_difference(estimates["nf4"], estimates["gptq"], "P>Q", "Q>P", "stem")
    assert note == "" and diff.value == pytest.approx(100.0)
    # Item by item: (Q>P - P>Q) in gptq less that in nf4 is 0 - (-1) = +1 on every item: no spread.
    assert diff.low == pytest.approx(100.0) and diff.high == pytest.approx(100.0) and diff.significant
    frame = family_table(estimates, "Q")
    row = frame.set_index(["a", "b", "benchmark"]).loc[("P>Q", "Q>P", "stem")]
    assert row["nf4_diff"] == pytest.approx(-100.0) and bool(row["nf4_diff_significant"])
    assert row["gptq_diff"] == pytest.approx(0.0) and not bool(row["gptq_diff_significant"])
    assert row["gptq_vs_nf4"] == pytest.approx(100.0) and row["verdict"] == "holds in some families only"
    assert not math.isnan(row["gptq_vs_nf4_p"])
    # Each benchmark's differences adjusted within it (Holm over one pair: the raw p), every row filled.
    assert frame["gptq_vs_nf4_p_holm"].tolist() == pytest.approx(frame["gptq_vs_nf4_p"].tolist())
    assert frame["nf4_diff_significant_holm"].tolist() == [True, True]
    # A pair without Q is the same states in both families: not a row.
    assert set(frame["a"]) <= {"P>Q"} and set(frame["benchmark"]) == {"stem", "mmlu_law"}
