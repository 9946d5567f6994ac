"""The report shows what its reader must know: which LawBench tasks are not LawBench's, and where the base model comes from."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from orderstudy.core import paths
from orderstudy.core.results import describe_provenance
from orderstudy.report import labels
from orderstudy.report.build import build_report, make_report, resolve_source
from orderstudy.report.notebook import build_html
from orderstudy.study.study import Study


@pytest.fixture(scope="module")
def marked(tmp_path_factory, tiny_model_dir, lawbench_dir):
    """base and P on the tiny model, scored on LawBench 1-2 (items written for this project) and 2-4 (LawBench's)."""
    root = tmp_path_factory.mktemp("marks")
    outputs = root / "outputs"
    saved = paths.OUTPUTS_DIR, os.environ.get("ORDERSTUDY_OUTPUTS")
    paths.OUTPUTS_DIR = outputs
    os.environ["ORDERSTUDY_OUTPUTS"] = str(outputs)
    params = root / "marks.yaml"
    params.write_text(f"""
study: marks
dtype: float32
model: {{source: {tiny_model_dir}}}
orderings: [base, P]
prune: {{sparsity: 0.5}}
evaluation:
  benchmarks: [lawbench]
  lawbench_tasks: ['1-2', '2-4']
  lawbench_items_per_task: 3
  max_new_tokens: 4
""", encoding="utf-8")
    study = Study(params)
    for ordering in study.plan.orderings:
        study.run_ordering(ordering, show=lambda *a: None)
    yield study
    paths.OUTPUTS_DIR = saved[0]
    if saved[1] is None:
        os.environ.pop("ORDERSTUDY_OUTPUTS", None)
    else:
        os.environ["ORDERSTUDY_OUTPUTS"] = saved[1]


def test_the_result_files_say_which_tasks_are_not_lawbench(marked):
    sources = json.loads(marked.result_path("P").read_text())["lawbench_sources"]
    assert sources["1-2"]["lawbench"] is False and sources["2-4"]["lawbench"] is True


def test_every_table_with_lawbench_marks_the_project_written_tasks(marked):
    report = make_report(resolve_source(marked.params_file), "en")
    assert report.study.project_written_tasks() == {"1-2": "orderstudy original items (not LawBench's)"}
    for name in ("main", "P", "order_effects"):
        assert "LawBench‡ — 1 of its 2 tasks here (1-2) are items written for this project" in report.markdown[name], name
    assert "| LawBench‡" in report.markdown["main"]            # the column itself is marked
    assert set(report.main["lawbench_project_written_tasks"]) == {"1-2"}
    # Both ways: all tasks, and LawBench's own (2-4) alone, from the result files' task scores.
    result = json.loads(marked.result_path("P").read_text())
    tasks = result["benchmarks"]["lawbench"]["tasks"]
    assert result["benchmarks"]["lawbench"]["score"] == pytest.approx((tasks["1-2"]["score"] + tasks["2-4"]["score"]) / 2)
    assert report.study.lawbench_own_score("P", {"1-2"}) == pytest.approx(tasks["2-4"]["score"])
    row = next(line for line in report.markdown["main"].splitlines() if line.startswith("| prune |"))
    assert row == f"| prune | {result['benchmarks']['lawbench']['score']:.2f} | {tasks['2-4']['score']:.2f} |"
    assert "LawBench both ways: over all 2 tasks, and over LawBench's own 1 tasks only" in report.markdown["main"]
    # The mark is this report's: names outside it (another study's report, the reference's columns) carry none.
    assert report.marks == {"lawbench": "‡"} and labels.benchmark_name("lawbench") == "LawBench"
    with labels.marked_benchmarks(report.marks):
        assert labels.benchmark_name("lawbench") == "LawBench‡"


def test_report_html_names_the_base_provenance_and_the_marks(marked, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(paths.ROOT / "lib"), os.environ.get("PYTHONPATH")])))
    html = build_html(marked.params_file).read_text(encoding="utf-8")
    provenance = json.loads(marked.result_path("base").read_text())["provenance"]
    assert describe_provenance(provenance) == f"Base model: {provenance['source']} (safetensors checkpoint directory)."
    assert describe_provenance(provenance) in html
    assert "<strong>LawBench‡</strong>: tasks 1-2 are items written for this project" in html
    assert "LawBench‡ — 1 of its 2 tasks here (1-2)" in html


def test_make_docs_figure_copies_the_demo_heatmap_for_the_readme(marked, tmp_path):
    heatmap = build_report(marked.params_file).figures["change_heatmap"]   # drawn from the study's results
    demo = tmp_path / "outputs" / "demo" / "figures"
    demo.mkdir(parents=True)
    shutil.copy(heatmap, demo / "change_heatmap.png")
    target = tmp_path / "docs-figure.png"

    def make(outputs):
        return subprocess.run(["make", "-s", "docs-figure", f"PY={sys.executable}", f"DOCS_FIGURE={target}"], cwd=paths.ROOT,
                              capture_output=True, text=True, env={**os.environ, "ORDERSTUDY_OUTPUTS": str(outputs)})

    done = make(tmp_path / "outputs")
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == heatmap.read_bytes() and target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {target} from {demo / 'change_heatmap.png'}" in done.stdout
    missing = make(tmp_path / "none")
    assert missing.returncode != 0 and "change_heatmap.png: missing; run the demo first (make study)" in missing.stderr
