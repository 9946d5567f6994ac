"""Results of other params never mix with a study's: the summary leaves them out and says so, and a
notebook run with params changed in it writes beside the study's results, not over them."""

import json
import os

import nbformat
import pytest

from orderstudy.core import paths
from orderstudy.core.params import ParamsError, load_params
from orderstudy.execution.notebooks import run_summary
from orderstudy.notebook import views
from orderstudy.report.build import make_report, resolve_source
from orderstudy.report.load import left_out_lines, load_study
from orderstudy.study.study import Study

QUIET = dict(show=lambda *a: None)


def params_text(model_dir, sparsity: float) -> str:
    return f"""
study: safety
seed: 0
dtype: float32
model: {{source: {model_dir}}}
orderings: [base, P]
prune: {{sparsity: {sparsity}}}
evaluation:
  benchmarks: [lawbench]
  lawbench_tasks: ['2-4']
  lawbench_items_per_task: 2
  max_new_tokens: 4
"""


@pytest.fixture
def ran(tmp_path, tiny_model_dir, outputs_dir, lawbench_dir):
    """A two-ordering study on the tiny model, run for real: base and P (sparsity 0.5)."""
    params = tmp_path / "safety.yaml"
    params.write_text(params_text(tiny_model_dir, 0.5), encoding="utf-8")
    study = Study(params)
    for ordering in study.plan.orderings:
        study.run_ordering(ordering, **QUIET)
    return study


def test_results_of_the_current_params_are_all_reported(ran):
    found = load_study(ran.paths, ran.plan.orderings, ("lawbench",), (0,), ran.current_result_keys())
    assert found.left_out == {}
    assert set(found.runs) == {"base", "P"}
    # LawBench's own task 2-4 only: nothing to mark, no warning.
    report = make_report(resolve_source(ran.params_file), "en", ran.current_result_keys())
    assert "‡" not in report.markdown["main"] and "Warning" not in report.markdown["main"]
    assert set(report.main["lawbench_project_written_tasks"]) == {""}


def test_a_result_of_other_params_is_left_out_and_named(ran, tiny_model_dir):
    made_with = json.loads(ran.result_path("P").read_text())["params_hash"]
    # The params file now asks for another sparsity: P's result is another model's, base's is still valid.
    ran.params_file.write_text(params_text(tiny_model_dir, 0.25), encoding="utf-8")
    now = Study(ran.params_file)
    assert now.params.hash() != made_with
    found = load_study(now.paths, now.plan.orderings, ("lawbench",), (0,), now.current_result_keys())
    assert set(found.runs) == {"base"}
    assert list(found.left_out) == [now.result_path("P")]
    reason = found.left_out[now.result_path("P")]
    assert f"params_hash {made_with}" in reason and "rerun the study" in reason
    assert left_out_lines(found) == [f"warning: {now.result_path('P')} left out of the tables: {reason}"]
    # The report's main table opens with the warning, naming the file; P shows as not run.
    report = make_report(resolve_source(now.params_file), "en", now.current_result_keys())
    assert report.markdown["main"].startswith("**Warning: 1 result file(s) left out of every table")
    assert "- `P.json`: made by other params" in report.markdown["main"]
    assert dict(zip(report.main["ordering"], report.main["status"]))["P"] == "not run"
    # Without keys (a study directory, no params to compare with), everything is read as before.
    assert set(load_study(now.paths).runs) == {"base", "P"}


def test_the_summary_names_the_results_it_leaves_out(ran, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(paths.ROOT / "lib"), os.environ.get("PYTHONPATH")])))
    ran.params_file.write_text(params_text(tiny_model_dir, 0.25), encoding="utf-8")
    executed = run_summary(ran.params_file)
    stderr = capsys.readouterr().err
    assert f"warning: {ran.result_path('P')} left out of the tables: made by other params" in stderr
    assert str(ran.result_path("base")) not in stderr
    shown = "\n".join(o.get("text", "") or o.get("data", {}).get("text/markdown", "")
                      for c in nbformat.read(executed, as_version=4).cells for o in c.get("outputs", []))
    assert "**Warning: 1 result file(s) left out of every table" in shown and "`P.json`: made by other params" in shown
    assert "not checked" not in shown


def test_a_run_with_params_changed_in_the_notebook_writes_beside_the_study_results(ran):
    study_result = ran.result_path("P")
    before = study_result.read_bytes()
    changed = Study(ran.params_file, params=load_params(ran.params_file, {"prune": {"sparsity": 0.25}}))
    assert changed.changed and not Study(ran.params_file, params=load_params(ran.params_file)).changed
    result = changed.run_ordering("P", **QUIET)
    scratch = ran.paths.dir / "scratch" / changed.params.hash()
    assert changed.result_path("P") == scratch / "results" / "P.json"
    assert json.loads((scratch / "results" / "P.json").read_text())["params_hash"] == changed.params.hash()
    assert (scratch / result["items_file"]).is_file()
    assert f"the result goes beside the study's, to `safety/scratch/{changed.params.hash()}/results/P.json`" in views.header(changed, "P")
    assert study_result.read_bytes() == before               # the study's own result is untouched
    assert result["n_params"] > json.loads(before)["n_params"]   # and it is another model: less pruned
    # The summary of the study reads its results only; the scratch run is not among them.
    found = load_study(ran.paths, ran.plan.orderings, ("lawbench",), (0,), ran.current_result_keys())
    assert found.left_out == {} and found.runs["P"][0].raw["params_hash"] == ran.params.hash()


def test_changes_are_validated_as_the_file_keys_are(ran):
    with pytest.raises(ParamsError, match=r"prune\.sparsity"):
        load_params(ran.params_file, {"prune": {"sparsity": "half"}})
    with pytest.raises(ParamsError, match="must be a mapping"):
        load_params(ran.params_file, [("prune", 1)])
