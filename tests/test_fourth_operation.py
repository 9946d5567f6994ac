"""A fourth operation, defined here only, goes through every part of the study without another change.

``scale`` (letter X) multiplies the final norm's weight by ``scale.factor`` and saves a standard
checkpoint. Registered through the registry's public function, it must get its orderings in the
plan, its params section, its state keys and a built state, its notebook step section and its
report table; unregistered again after each test.
"""

from __future__ import annotations

import dataclasses
import inspect
import shutil
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from orderstudy.core import paths
from orderstudy.core.atomic import write_json
from orderstudy.core.operation import OperationParams, OperationSpec, register_operation, unregister_operation
from orderstudy.core.params import ParamsError, StudyParams, load_params
from orderstudy.core.paths import StudyPaths, ordering_filename
from orderstudy.core.plan import BASE, all_orderings, make_plan, parse_ordering, prefixes
from orderstudy.study.store import StateStore

TINY = paths.MODELS_CACHE / "tiny-llama"
FACTOR = 0.25


class ScaleParams(OperationParams):
    factor: float = 0.5


def scale_apply(src: Path, dst: Path, params: ScaleParams, ctx) -> dict:
    """Return the record of scaling the final norm's weight of ``src`` by ``params.factor`` into ``dst``."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    with torch.no_grad():
        model.model.norm.weight.mul_(params.factor)
    model.save_pretrained(dst, safe_serialization=True)
    for f in Path(src).glob("tokenizer*"):
        shutil.copy2(f, Path(dst) / f.name)
    return {"factor": params.factor, "parameters": sum(p.numel() for p in model.parameters())}


SCALE = OperationSpec(letter="X", name="scale", name_zh="缩放", section="scale", params_model=ScaleParams,
                      apply=scale_apply, applies_to=frozenset({"standard"}))


@pytest.fixture
def scale():
    register_operation(SCALE)
    yield SCALE
    unregister_operation("X")


def _params(**sections) -> StudyParams:
    return StudyParams.model_validate({"study": "t", "model": {"source": str(TINY)}, **sections})


def _copy_base(name: str, out_dir: Path, parent_dir: Path | None) -> dict:
    assert name == BASE
    shutil.copytree(TINY, out_dir)
    return {"parameters": 1}


def test_the_plan_has_every_permutation_of_every_subset_of_four_with_shared_prefixes(scale):
    plan = make_plan("all")
    assert len(plan.orderings) == 65 == len(set(plan.orderings))
    assert plan.orderings[:5] == ("base", "F", "P", "Q", "X") and plan.orderings[-1] == "X>Q>P>F"
    assert {len(parse_ordering(o)) for o in plan.orderings} == {0, 1, 2, 3, 4}
    # Every ordering's prefixes are orderings of the plan: 65 states, 64 steps instead of 4*24 + 3*24 + ...
    assert len(plan.states) == 65 and len(plan.steps) == 64
    assert plan.naive_step_count == 4 * 1 + 12 * 2 + 24 * 3 + 24 * 4 == 196
    assert all(p in plan.orderings for o in plan.orderings for p in prefixes(o))


def test_the_three_built_in_operations_keep_the_reference_order_without_it():
    assert all_orderings()[:4] == ("base", "F", "P", "Q") and len(all_orderings()) == 16
    with pytest.raises(ValueError, match="unknown operation 'X'"):
        parse_ordering("F>X")


def test_the_params_file_takes_its_section_and_rejects_a_typo_in_it(scale, tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(f"study: t\nmodel:\n  source: x/y\nscale:\n  factor: {FACTOR}\norderings: [X, F>X]\n")
    params = load_params(good)
    assert params.operation_params("X") == ScaleParams(factor=FACTOR) and params.scale.factor == FACTOR
    assert params.model_dump()["scale"] == {"factor": FACTOR}
    assert _params().operation_params("X").factor == 0.5  # left out: its defaults
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: t\nmodel:\n  source: x/y\nscale:\n  factr: 2\n")
    with pytest.raises(ParamsError) as err:
        load_params(bad)
    assert str(bad) in str(err.value) and "key 'scale.factr': unknown key" in str(err.value)
    bad.write_text("study: t\nmodel:\n  source: x/y\nscale:\n  factor: big\n")
    with pytest.raises(ParamsError, match=r"key 'scale.factor': Input should be a valid number"):
        load_params(bad)


def test_the_store_keys_its_states_and_builds_one_on_the_tiny_model(scale, tmp_path):
    store = StateStore(tmp_path / "states", _params(scale={"factor": FACTOR}), "float32", "cpu")
    keys = {s: store.key(s) for s in make_plan("all").states}
    assert len(set(keys.values())) == 65
    assert not store.seeded("X") and store.seeded("F>X")  # its own stochastic flag, and the F before it

    def build(name, out_dir, parent_dir):
        if name == BASE:
            return _copy_base(name, out_dir, parent_dir)
        return scale.apply(parent_dir, out_dir, store.params.operation_params("X"), None)

    state, reused = store.get("X", build)
    assert not reused and state.key == keys["X"]
    record = state.record()
    assert record["operation"] == "X" and record["params"] == {"factor": FACTOR} and record["info"]["factor"] == FACTOR
    assert record["code"] == SCALE.fingerprint()
    before = load_file(TINY / "model.safetensors")["model.norm.weight"]
    after = load_file(state.model_dir / "model.safetensors")["model.norm.weight"]
    assert torch.equal(after, before * FACTOR) and not torch.equal(after, before)
    assert store.get("X", build) == (state, True)

    # The notebook's step sections for it: its title, its params section, its record as a table.
    from orderstudy.notebook import views

    assert views.step_title("F>X", 2) == "Scale (X): `F` → `F>X`, operation 2 of 2"
    study = SimpleNamespace(store=store)
    step = {"state": "X", "operation": "X", "key": state.key, "reused": True, "n_params": 1}
    section = views.step_section(study, "X", step, 1)
    assert section[0] == "### Scale (X): `base` → `X`, operation 1 of 1"
    assert "The `scale` parameters as run" in section[2]
    assert section[3].loc["factor", "value"] == str(FACTOR)
    effect = views.step_effect(study, step)
    assert effect[0] == "What the scale step recorded:" and effect[1].loc["factor", "value"] == str(FACTOR)
    row = dict(step, size_bytes=2**20, quantized=False, build_seconds=1.0)
    assert views.steps_table({"steps": [row]})["operation"].tolist() == ["scale"]


def _write_result(study_paths: StudyPaths, ordering: str, score: float) -> None:
    tasks = {f"t{k}": {f"t{k}/{i}": float((i + k) % 3 != 0 or score > 60) for i in range(12)} for k in range(2)}
    items = {"lawbench": tasks}
    task_scores = {t: {"score": 100 * float(np.mean(list(v.values()))), "n": len(v), "weight": 0.5}
                   for t, v in tasks.items()}
    doc = {
        "schema": 1, "study": study_paths.study, "ordering": ordering, "seed": 0, "status": "ok", "error": None,
        "size_bytes": 1000, "weights_bytes": 900, "base_bf16_weights_bytes": 900, "n_params": 100, "quantized": False,
        "benchmarks": {"lawbench": {"score": float(np.mean([t["score"] for t in task_scores.values()])),
                                    "aggregation": "unweighted mean of the tasks", "scoring": "generative",
                                    "n_items": 24, "tasks": task_scores}},
        "items_file": f"items/{ordering_filename(ordering)}.json",
        "steps": [{"state": s, "operation": s.split(">")[-1], "key": "k", "reused": False, "seconds": 1.0,
                   "size_bytes": 1000, "n_params": 100, "seed": None} for s in prefixes(ordering)[1:]],
        "state_key": "k", "params_hash": "h", "versions": {}, "device": "cpu",
        "operations": {"X": {"name": "scale", "name_zh": "缩放", "title": "Norm scaling", "section": "scale"}},
    }
    write_json(study_paths.dir / doc["items_file"], items)
    write_json(study_paths.result(ordering), doc)


def test_the_report_makes_a_table_for_it_named_from_the_result_files(scale, tmp_path):
    from orderstudy.report.build import build_report

    study_paths = StudyPaths("four", tmp_path / "outputs")
    for ordering, score in (("base", 50.0), ("X", 70.0), ("F", 55.0), ("F>X", 75.0), ("X>F", 60.0)):
        _write_result(study_paths, ordering, score)
    report = build_report(study_paths.dir, figures=False)
    assert list(report.transitions) == ["F", "P", "Q", "X"]
    table = report.transitions["X"]
    # One row per state without X (16 of the 65 planned); those with both results have the change in points:
    # every item right after X (score > 60), two in three before it.
    assert len(table) == 16 and list(zip(table["before"], table["after"]))[:2] == [("base", "X"), ("F", "F>X")]
    measured = table.dropna(subset=["lawbench_diff"])
    assert list(measured["after"]) == ["X", "F>X"]
    assert measured["lawbench_diff"].tolist() == pytest.approx([100 / 3, 100 / 3])
    assert (study_paths.tables / "scale.csv").is_file() and (study_paths.tables / "scale.md").is_file()
    # The heading comes from the result file's "operations" key, not from the registry's spec.
    assert report.markdown["X"].startswith("Norm scaling\n")
    assert build_report(study_paths.dir, language="zh", figures=False).markdown["X"].startswith("缩放\n")


def _fingerprinted(tmp_path: Path, source: str, version: str | None = None) -> OperationSpec:
    """Return the scale spec with its code read from a file of ``source`` (a copy of ``scale_apply``)."""
    code = tmp_path / "scale_op.py"
    code.write_text(source)
    return dataclasses.replace(SCALE, code=(code,), fingerprint_version=version)


def _keys(tmp_path: Path, spec: OperationSpec) -> dict[str, str]:
    register_operation(spec)
    try:
        store = StateStore(tmp_path / "states", _params(), "float32", "cpu")
        return {s: store.key(s) for s in ("base", "F", "P", "F>P", "X", "F>X", "F>X>P", "P>X>F", "F>P>Q")}
    finally:
        unregister_operation("X")


def test_a_change_in_its_code_changes_the_keys_of_its_states_and_their_descendants_only(tmp_path):
    original = textwrap.dedent(inspect.getsource(scale_apply))
    before = _keys(tmp_path, _fingerprinted(tmp_path, original))
    fixed = original.replace("model.model.norm.weight.mul_(params.factor)", "model.model.norm.weight.mul_(params.factor * 1.0)")
    after = _keys(tmp_path, _fingerprinted(tmp_path, fixed))
    assert {s for s in before if before[s] != after[s]} == {"X", "F>X", "F>X>P", "P>X>F"}
    # A comment, a docstring or blank lines are not code: nothing changes.
    reworded = original.replace('"""Return the record', '"""Give back the record').replace(
        "    with torch.no_grad():", "    # scale in place\n\n    with torch.no_grad():")
    assert reworded != original and _keys(tmp_path, _fingerprinted(tmp_path, reworded)) == before
    # Pinned to the fingerprint the states were built with, the changed code keeps every key.
    old = _fingerprinted(tmp_path, original).fingerprint()
    assert _keys(tmp_path, _fingerprinted(tmp_path, fixed, version=old)) == before
    bumped = _keys(tmp_path, _fingerprinted(tmp_path, fixed, version="2"))
    assert {s for s in before if before[s] != bumped[s]} == {"X", "F>X", "F>X>P", "P>X>F"}
