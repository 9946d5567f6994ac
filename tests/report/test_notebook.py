"""The summary notebook: committed as generated, runs with papermill, exports to HTML without code."""

import json
import os

import nbformat

from orderstudy.core import paths
from orderstudy.report import build_html
from orderstudy.report.notebook import summary_notebook


def test_committed_notebook_is_the_generated_one():
    committed = nbformat.read(paths.SUMMARY_NOTEBOOK, as_version=4)
    nbformat.validate(committed)
    assert json.loads(nbformat.writes(committed)) == json.loads(nbformat.writes(summary_notebook()))
    assert committed.metadata.kernelspec.name == "python3"
    assert all(not cell.get("outputs") for cell in committed.cells if cell.cell_type == "code")
    tagged = [cell for cell in committed.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and 'params_file = "params/demo.yaml"' in tagged[0].source
    assert 'language = ""' in tagged[0].source and 'compare_with = ""' in tagged[0].source


def test_summary_runs_and_exports_html(finished_study, study_writer, tmp_path, monkeypatch):
    # The kernel is a new process: it finds the package through the editable install, or this.
    lib = str(paths.ROOT / "lib")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [lib, os.environ.get("PYTHONPATH")])))
    other = study_writer(tmp_path / "other", "other", seed=4)
    html_path = build_html(finished_study.params_file, outputs_dir=finished_study.outputs_dir, compare_with=other.paths.dir)

    assert html_path == finished_study.paths.dir / "report.html"
    executed = nbformat.read(finished_study.paths.notebooks / "summary.ipynb", as_version=4)
    assert not any(o.output_type == "error" for c in executed.cells for o in c.get("outputs", []))
    html = html_path.read_text(encoding="utf-8")
    assert "<td>fine-tune → prune → quantize</td>" in html  # the main table, rendered
    assert "OutOfMemoryError at Q&gt;P&gt;F" in html or "OutOfMemoryError at Q>P>F" in html
    assert html.count("data:image/png;base64") >= 3  # the figures, embedded
    assert "no other ordering is both smaller and better" in html and "Change rate" in html  # with captions
    assert "B = other" in html  # the comparison
    # The power table and the literature's claims, each a section of its own.
    assert "What this study can detect" in html and "Minimum detectable change" in html
    assert "What the literature says, and what this study shows" in html and "arXiv:2405.20935" in html
    assert "build_report(" not in html and "params_file" not in html  # no code input
