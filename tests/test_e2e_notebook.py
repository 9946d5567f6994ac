"""End-to-end tier: the executed ordering notebook of the smoke study, read as a person reads it.

It is rendered to HTML (nbconvert) and checked section by section: every step's section, its
figures and captions, the evaluation; run cell by cell as in JupyterLab, with step cells executed
twice, it writes the result file papermill wrote.
"""

from __future__ import annotations

import json
import re
import shutil

import nbformat
import pytest

from orderstudy.core import paths

pytestmark = pytest.mark.e2e

SECTIONS = ("The base model", "Step 1", "Step 2", "Step 3", "Evaluation", "The result file")
# What each section of F>P>Q's notebook must show: its operation's title, text from its figures'
# captions, and at least this many figures.
EXPECTED = {
    "The base model": ("The model every operation starts from", ("Bytes on disk and parameters by part",), 0),
    "Step 1": ("Fine-tune (F)", ("held-out pair", "The same prompts before and after"), 2),
    "Step 2": ("Prune (P)", ("What width pruning kept", "importance scores", "Size on disk and parameters"), 3),
    "Step 3": ("Quantize (Q)", ("deq(Q(W))", "Size on disk and parameters"), 2),
    "Evaluation": ("Scores read from the store (this state was evaluated before, in", ("interval from the task's sampled items", "A few scored LawBench answers", "How the evaluation ran"), 1),
}
# What an executed notebook must not hold: text progress bars updating in place, the library
# messages notebook_output hides.
NOISE = ("\r", "Loading weights:   0%", "IProgress not found", "Failed to load CPU gemm_4bit_forward",
         "is_gradient_checkpointing", "`pretrained` model kwarg", "already-initialized model",
         "Overriding a previously registered kernel", "The modules are dequantized")


def sections(html: str) -> dict[str, str]:
    """Return ``{section title: its HTML}``, split at the notebook's ``<h2>`` headings."""
    heads = [(m.start(), re.sub(r"<[^>]+>|¶", "", m.group(1)).strip()) for m in re.finditer(r"<h2[^>]*>(.*?)</h2>", html, re.S)]
    return {title: html[start:(heads[i + 1][0] if i + 1 < len(heads) else len(html))] for i, (start, title) in enumerate(heads)}


def test_the_executed_notebook_shows_section_by_section_what_each_operation_did(smoke):
    from nbconvert import HTMLExporter

    notebook = nbformat.read(smoke["dir"] / "notebooks" / "F-P-Q.seed0.ipynb", as_version=4)  # the smoke study has two seeds
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    streams = "".join(o.text for o in outputs if o.output_type == "stream")
    assert not [n for n in NOISE if n in streams], streams[:2000]
    # Nothing on stderr: every library message the smoke study provokes is hidden with its reason.
    assert not [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    html, _ = HTMLExporter().from_notebook_node(notebook)
    found = sections(html)
    assert [t for t in found if t in SECTIONS] == list(SECTIONS)
    for title, (heading, captions, figures) in EXPECTED.items():
        body = found[title].replace("&#39;", "'").replace("&gt;", ">")
        assert heading in body, title
        assert all(c in body for c in captions), (title, [c for c in captions if c not in body])
        assert body.count("data:image/png;base64") >= figures, title
    assert "smoke/results/F-P-Q.seed0.json" in found["The result file"]


def test_run_cell_by_cell_with_steps_executed_twice_it_writes_the_result_papermill_wrote(smoke, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    # A copy of the smoke study's outputs: the states and evaluations are found there, reused.
    study_dir = tmp_path / "outputs" / "smoke"
    shutil.copytree(smoke["dir"], study_dir, ignore=shutil.ignore_patterns("notebooks", "browser"))
    monkeypatch.setenv("ORDERSTUDY_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.delenv("ORDERSTUDY_PROGRESS", raising=False)  # as in JupyterLab: bars, not lines
    notebook = nbformat.read(paths.ORDERING_NOTEBOOK, as_version=4)
    parameters = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    # What a reader edits: two values in the notebook's own cell, every other parameter left as it is.
    source = parameters.source.replace('params_file = "params/demo.yaml"', 'params_file = "params/smoke.yaml"')
    source = source.replace("seed = None", "seed = 0")
    assert source.count("smoke.yaml") == 1 and "seed = 0" in source, parameters.source
    parameters.source = source
    client = NotebookClient(notebook, kernel_name="python3", resources={"metadata": {"path": str(paths.ROOT)}})
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
            if cell.cell_type == "code" and "run.step(" in cell.source:
                client.execute_cell(cell, index)  # executed again: the state is found, not rebuilt
                assert "Reused" in json.dumps(cell.outputs), cell.source
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors

    interactive = json.loads((study_dir / "results" / "F-P-Q.seed0.json").read_text())
    papermill = json.loads((smoke["dir"] / "results" / "F-P-Q.seed0.json").read_text())
    assert all(s["reused"] for s in interactive["steps"]) and interactive["evaluation"]["reused"]
    assert _comparable(interactive) == _comparable(papermill)


def _comparable(result: dict) -> dict:
    out = {k: v for k, v in result.items() if k != "finished_at"}
    out["steps"] = [{k: v for k, v in s.items() if k not in ("seconds", "reused")} for s in result["steps"]]
    out["evaluation"] = {k: v for k, v in result["evaluation"].items() if k not in ("reused", "seconds")}
    return out
