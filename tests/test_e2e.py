"""End-to-end tier: the smoke study (all 16 orderings, tiny settings) through papermill.

The study itself runs once per test session (``smoke`` in conftest.py), shared with test_e2e_ray.py.
"""

import csv
import json
import subprocess
import sys

import pytest

from orderstudy import paths
from orderstudy.plan import REFERENCE_ORDER

pytestmark = pytest.mark.e2e


def _main_rows(study_dir):
    with open(study_dir / "tables" / "main.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_all_sixteen_orderings_run_through_papermill(smoke):
    d = smoke["dir"]
    run = json.loads((d / "last_run.json").read_text())
    assert run["executor"] == "local" and "ray" not in run
    assert [o for o in run["orderings"]] == list(REFERENCE_ORDER)
    failed = {o: r["error"] for o, r in run["orderings"].items() if r["status"] != "ok"}
    assert not failed, failed
    # 15 operation steps plus the base, each built once and shared.
    assert len(run["steps_built"]) == 16
    for ordering in REFERENCE_ORDER:
        nb = d / "notebooks" / f"{paths.ordering_filename(ordering)}.ipynb"
        assert nb.is_file(), nb
        assert ordering in nb.read_text(encoding="utf-8")
        # How the evaluation ran is in the result and in the notebook's overview.
        runtime = json.loads((d / "results" / f"{paths.ordering_filename(ordering)}.json").read_text())["evaluation"]["runtime"]
        assert runtime["backend"] == "hf" and runtime["generation"]["batch_size"] == 8
        assert runtime["generation"]["new_tokens"] > 0 and runtime["loglikelihood"]["items"] == 22
        assert "new_tokens_per_s" in nb.read_text(encoding="utf-8")
    assert (d / "notebooks" / "summary.ipynb").is_file()
    assert "15 operation steps (instead of 33" in smoke["stdout"]


def test_main_table_is_honest(smoke):
    rows = _main_rows(smoke["dir"])
    assert [r["ordering"] for r in rows] == list(REFERENCE_ORDER)
    assert {r["status"] for r in rows} == {"ok"}
    by = {r["ordering"]: r for r in rows}
    size = {o: int(float(r["size_bytes"])) for o, r in by.items()}
    assert size["P"] < size["base"] and size["Q"] < size["base"] and size["P>Q"] < size["Q"]
    assert size["F"] == size["base"] and size["Q>F"] == size["base"]  # QLoRA merged into full precision
    for bench in ("lawbench", "stem", "mmlu_law"):
        base = float(by["base"][bench])
        assert float(by["base"][f"{bench}_change_pct"]) == 0.0  # the base against itself, as the reference prints
        for o, r in by.items():
            score = float(r[bench])
            assert 0 <= score <= 100
            change = r[f"{bench}_change_pct"]
            if o == "base":
                continue
            if base > 0:
                # scores are printed to 4 decimals, the change rate from the unrounded scores
                assert float(change) == pytest.approx((score - base) / base * 100, rel=1e-4, abs=1e-3)
            else:
                assert change in ("", "nan", "NaN")
    # Each size is the real checkpoint directory of the ordering's final state.
    for o in ("base", "P", "F>P>Q"):
        result = json.loads((smoke["dir"] / "results" / f"{paths.ordering_filename(o)}.json").read_text())
        state_dir = smoke["dir"] / "states" / result["state_key"] / "model"
        assert size[o] == sum(f.stat().st_size for f in state_dir.rglob("*") if f.is_file())


def test_a_rerun_with_nothing_changed_does_no_model_work(smoke):
    proc = subprocess.run([sys.executable, "-m", "orderstudy", "run", "params/smoke.yaml", "--quiet"],
                          cwd=paths.ROOT, env=smoke["env"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((smoke["dir"] / "last_run.json").read_text())
    assert not any(r["ran"] for r in run["orderings"].values())
    assert run["steps_built"] == []
    assert proc.stdout.count("up to date, not rerun") == 16


def test_benchmark_script_prints_real_figures(smoke):
    proc = subprocess.run([sys.executable, "benchmarks/bench_study.py", "params/smoke.yaml"],
                          cwd=paths.ROOT, env=smoke["env"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["steps_executed"] == 0 and figures["rerun_notebooks"] == 0
    assert figures["first_run_s"] > 0 and figures["peak_kernel_rss_mib"] > 0
    assert "== per ordering ==" in proc.stdout and "F>P>Q" in proc.stdout


def test_results_record_the_training_pairs_the_overlaps_and_the_provenance(smoke):
    results = {o: json.loads((smoke["dir"] / "results" / f"{paths.ordering_filename(o)}.json").read_text())
               for o in REFERENCE_ORDER}
    for ordering, result in results.items():
        data = result["training_data"]["finetune"]
        # Every evaluated LawBench task with a training pool gave 4 pairs; ours (1-2, 2-8, 3-6) have none.
        assert set(data["no_training_pool"]) == {"1-2", "2-8", "3-6"}
        assert len(data["by_task"]) == 10 and all(t["given"] == 4 for t in data["by_task"].values())
        assert data["overlaps_dropped"] == sum(t["dropped"] for t in data["by_task"].values())
        assert result["provenance"]["format"] == "safetensors" and "weight_grid" in result["provenance"]
        for step in result["steps"]:
            if step["operation"] == "F":
                pairs = step["pairs_by_task"]
                assert {t: p["given"] for t, p in pairs.items()} == {
                    t: d["given"] - d["dropped"] for t, d in data["by_task"].items()}
                assert all(p["given"] == p["train"] + p["validation"] + p["answer_too_long"] for p in pairs.values())
                assert "validation_lowered" in step and step["validation_loss_change"]["n"] >= 2
