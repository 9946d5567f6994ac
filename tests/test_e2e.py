"""End-to-end tier: the smoke study (all 16 orderings, two seeds, tiny settings) through papermill.

The study itself runs once per test session (``smoke`` in conftest.py), shared with test_e2e_ray.py.
"""

import csv
import json
import re
import subprocess
import sys

import pytest

from orderstudy.core import paths
from orderstudy.core.plan import REFERENCE_ORDER

pytestmark = pytest.mark.e2e

SEEDS = (0, 1)
# Magnitude pruning and quantization draw nothing at random: these states are built once for both seeds.
SHARED = {"base", "P", "Q", "P>Q", "Q>P"}


def _result(study_dir, ordering, seed):
    return json.loads((study_dir / "results" / f"{paths.run_filename(ordering, seed)}.json").read_text())


def _main_rows(study_dir):
    with open(study_dir / "tables" / "main.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_all_sixteen_orderings_run_through_papermill_once_per_seed(smoke):
    d = smoke["dir"]
    run = json.loads((d / "last_run.json").read_text())
    assert run["executor"] == "local" and "ray" not in run and run["seeds"] == list(SEEDS)
    # One run per ordering and seed, the first seed's study first.
    assert [(r["ordering"], r["seed"]) for r in run["orderings"].values()] == [(o, s) for s in SEEDS for o in REFERENCE_ORDER]
    assert list(run["orderings"])[:2] == ["base.seed0", "F.seed0"]
    failed = {o: r["error"] for o, r in run["orderings"].items() if r["status"] != "ok"}
    assert not failed, failed
    # 16 states for the first seed; the second adds only the 11 a fine-tune decided: 27, not 32.
    seeded = [o for o in REFERENCE_ORDER if o not in SHARED]
    assert sorted(run["steps_built"]) == sorted(SHARED | {f"{o}.seed{s}" for o in seeded for s in SEEDS})
    assert run["states_planned"] == 27 and set(run["states_shared"]) == SHARED
    assert "2 seeds [0, 1]: 32 runs, 27 model states (5 shared by every seed)" in smoke["stdout"]
    for ordering in REFERENCE_ORDER:
        first, second = _result(d, ordering, 0), _result(d, ordering, 1)
        assert (first["seed"], second["seed"]) == SEEDS
        # The same items for both seeds: the seeds are paired.
        assert first["sample_ids"] == second["sample_ids"]
        if ordering in SHARED:  # one state, evaluated once: the second seed reused all of it
            assert first["state_key"] == second["state_key"] and first["benchmarks"] == second["benchmarks"]
            assert all(s["reused"] for s in second["steps"]) and second["evaluation"]["reused"]
            assert (d / "items" / f"{paths.ordering_filename(ordering)}.seed0.json").read_text() == \
                (d / "items" / f"{paths.ordering_filename(ordering)}.seed1.json").read_text()
        else:  # its own state for each seed, from the first fine-tune on
            assert first["state_key"] != second["state_key"]
            assert [s["seed"] for s in second["steps"]] == [None if s["state"] in SHARED else 1 for s in second["steps"]]
        for seed in SEEDS:
            nb = d / "notebooks" / f"{paths.run_filename(ordering, seed)}.ipynb"
            assert nb.is_file(), nb
            assert ordering in nb.read_text(encoding="utf-8")
        # How the evaluation ran is in the result and in the notebook's overview.
        runtime = first["evaluation"]["runtime"]
        assert runtime["backend"] == "hf" and runtime["generation"]["batch_size"] == 8
        assert runtime["generation"]["new_tokens"] > 0 and runtime["loglikelihood"]["items"] == 44
        assert "new_tokens_per_s" in nb.read_text(encoding="utf-8")
    # Two seeds of a fine-tune are two trainings: different data order, different losses.
    f0, f1 = (_result(d, "F", s)["steps"][-1]["train_losses"] for s in SEEDS)
    assert f0 != f1
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
        result = _result(smoke["dir"], o, 0)
        state_dir = smoke["dir"] / "states" / result["state_key"] / "model"
        assert size[o] == sum(f.stat().st_size for f in state_dir.rglob("*") if f.is_file())
        assert int(float(by[o]["weights_bytes"])) == sum(f.stat().st_size for f in state_dir.glob("*.safetensors"))
    # Two seeds: means over them, their spread zero exactly where the state is shared.
    for o, r in by.items():
        assert r["seeds"] == "2"
        for bench in ("lawbench", "stem", "mmlu_law"):
            per_seed = [_result(smoke["dir"], o, s)["benchmarks"][bench]["score"] for s in SEEDS]
            assert float(r[bench]) == pytest.approx(sum(per_seed) / 2, abs=1e-4)
            if o in SHARED:
                assert float(r[f"{bench}_seed_sd"]) == pytest.approx(0, abs=1e-6)
    # LawBench has one item a task: no interval and no significance mark, and the tables say why.
    # The MMLU groups have two a subject: intervals over items and both seeds.
    assert all(r["lawbench_ci_low"] == "" for r in rows)
    assert all(r["lawbench_change_significant"] == "" for r in rows if r["ordering"] != "base")
    for r in rows:
        assert float(r["stem_ci_low"]) <= float(r["stem"]) <= float(r["stem_ci_high"])
    md = (smoke["dir"] / "tables" / "main.md").read_text()
    # LawBench‡: the smoke study scores the 3 tasks whose items were written for this project too.
    assert re.search(r"LawBench‡: (\d+) of its \1 tasks have fewer than 2 items", md) and "lawbench_items_per_task ≥ 2" in md
    assert "LawBench‡ — 3 of its 13 tasks here (1-2, 2-8, 3-6) are items written for this project" in md
    check_power_and_claims(smoke["dir"])


# -- what the power and claims tables must say, recomputed from the result and items files with plain
# arithmetic (not with the report's code) -------------------------------------------------------------

BENCHMARKS = ("lawbench", "stem", "mmlu_law")


def _score(study_dir, ordering, benchmark):
    """Return an ordering's score: the mean of its seeds' result-file scores."""
    return sum(_result(study_dir, ordering, s)["benchmarks"][benchmark]["score"] for s in SEEDS) / len(SEEDS)


def _items(study_dir, ordering, seed, benchmark):
    """Return the ordering's per-item scores on a benchmark, as (task, id) -> score."""
    items = json.loads((study_dir / _result(study_dir, ordering, seed)["items_file"]).read_text())[benchmark]
    return {(task, i): v for task, scores in items.items() for i, v in scores.items()}


def order_effect_pairs():
    """Return every pair of orderings applying the same operations in another order (3 + 15 = 18)."""
    return [(a, b) for i, a in enumerate(REFERENCE_ORDER) for b in REFERENCE_ORDER[i + 1:]
            if sorted(a.split(">")) == sorted(b.split(">")) and len(a.split(">")) > 1]


def alike_pairs(study_dir, benchmark):
    """Return how many order-effect pairs differ by the same amount on every item and every seed."""
    alike = 0
    for a, b in order_effect_pairs():
        per_item = [{s: _items(study_dir, o, s, benchmark) for s in SEEDS} for o in (a, b)]
        keys = per_item[0][SEEDS[0]].keys()
        diffs = [sum(per_item[1][s][k] - per_item[0][s][k] for s in SEEDS) / len(SEEDS) for k in keys]
        seed_diffs = [_result(study_dir, b, s)["benchmarks"][benchmark]["score"]
                      - _result(study_dir, a, s)["benchmarks"][benchmark]["score"] for s in SEEDS]
        if max(diffs) - min(diffs) < 1e-12 and max(seed_diffs) - min(seed_diffs) < 1e-9:
            alike += 1
    return alike


def claim_sides(study_dir, benchmark):
    """Return each packaged claim's (better, worse) orderings on a benchmark, None where it predicts nothing."""
    drop = {op: _score(study_dir, "base", benchmark) - _score(study_dir, op, benchmark) for op in ("P", "Q")}
    weaker = None if drop["P"] == drop["Q"] else min(drop, key=drop.get)
    intensity = [("P>Q", "Q>P"), ("F>P>Q", "F>Q>P"), ("P>F>Q", "Q>F>P"), ("P>Q>F", "Q>P>F")]
    first = {a: "P" if a.index("P") < a.index("Q") else "Q" for a, _ in intensity}
    return {
        "prune_before_quantize": (["P>Q", "F>P>Q", "P>F>Q"], ["Q>P", "F>Q>P", "Q>F>P"]),
        # in each pair the ordering that applies the weaker of P and Q first is expected better
        "progressive_intensity": None if weaker is None else (
            [a if first[a] == weaker else b for a, b in intensity], [b if first[a] == weaker else a for a, b in intensity]),
        "quantize_last": (["F>P>Q", "P>F>Q"], ["F>Q>P", "Q>F>P", "Q>P>F", "P>Q>F"]),
        "finetune_recovers": (["P>F", "Q>F"], ["P", "Q"]),
    }


def check_power_and_claims(study_dir):
    """Assert the power and claims tables' outcomes against the result and items files."""
    power = {p["benchmark"]: p for p in csv.DictReader(open(study_dir / "tables" / "power.csv", encoding="utf-8"))}
    # LawBench: one item a task, so no interval anywhere; the pairs whose items all differ alike say nothing.
    items = _items(study_dir, "base", 0, "lawbench")
    assert len(items) == 13 and len({task for task, _ in items}) == 13
    alike = alike_pairs(study_dir, "lawbench")
    lawbench = power["lawbench"]
    assert lawbench["intervals"] == "False"
    assert (int(lawbench["comparisons"]), int(lawbench["uninformative"])) == (18 - alike, alike)
    if alike == 18:  # the tiny model scores every LawBench item alike in every ordering: nothing to plan from
        assert "all 18 pairs of orderings score every item alike" in lawbench["note"]
        assert lawbench["items_per_task_needed"] == "" and lawbench["mde_points"] == ""
    else:
        assert float(lawbench["items_per_task_needed"]) >= 2 and lawbench["mde_points"] == ""
    stem = power["stem"]
    assert stem["intervals"] == "True" and float(stem["mde_points"]) > 0
    assert stem["items"] == "38" and stem["seeds"] == "2" and stem["tasks"] == "19"
    assert int(stem["comparisons"]) + int(stem["uninformative"]) == 18

    claims = {c["id"]: c for c in csv.DictReader(open(study_dir / "tables" / "claims.csv", encoding="utf-8"))}
    assert list(claims) == ["prune_before_quantize", "progressive_intensity", "quantize_last", "finetune_recovers"]
    for benchmark in BENCHMARKS:
        for cid, sides in claim_sides(study_dir, benchmark).items():
            row = claims[cid]
            if sides is None:  # P and Q alone drop the score equally: the claim predicts no direction
                assert row[f"{benchmark}_verdict"] == "no prediction" and row[f"{benchmark}_diff"] == ""
                continue
            better, worse = sides
            diff = (sum(_score(study_dir, o, benchmark) for o in better) / len(better)
                    - sum(_score(study_dir, o, benchmark) for o in worse) / len(worse))
            assert float(row[f"{benchmark}_diff"]) == pytest.approx(diff, rel=1e-5, abs=1e-4), (cid, benchmark)
            if benchmark == "lawbench":  # no interval: never resolved
                assert row["lawbench_verdict"] == "not resolved" and row["lawbench_diff_ci_low"] == ""
                continue
            low, high = float(row[f"{benchmark}_diff_ci_low"]), float(row[f"{benchmark}_diff_ci_high"])
            assert low <= float(row[f"{benchmark}_diff"]) <= high
            # The verdict is the interval's: above zero supported, below contradicted, else not resolved.
            expected = "supported" if low > 0 else "contradicted" if high < 0 else "not resolved"
            assert row[f"{benchmark}_verdict"] == expected, (cid, benchmark, low, high)


def test_a_rerun_with_nothing_changed_does_no_model_work(smoke):
    proc = subprocess.run([sys.executable, "-m", "orderstudy", "run", "params/smoke.yaml", "--quiet"],
                          cwd=paths.ROOT, env=smoke["env"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((smoke["dir"] / "last_run.json").read_text())
    assert not any(r["ran"] for r in run["orderings"].values())
    assert run["steps_built"] == []
    assert proc.stdout.count("up to date, not rerun") == 32


def test_benchmark_script_prints_real_figures(smoke):
    proc = subprocess.run([sys.executable, "benchmarks/bench_study.py", "params/smoke.yaml"],
                          cwd=paths.ROOT, env=smoke["env"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["steps_executed"] == 0 and figures["rerun_notebooks"] == 0
    assert figures["first_run_s"] > 0 and figures["peak_kernel_rss_mib"] > 0
    assert "== per ordering ==" in proc.stdout and "F>P>Q" in proc.stdout
    # The smoke study was made before: nothing evaluated or built in this run, so no phase to set beside a floor.
    assert figures["floors"] == {} and "floors: nothing was evaluated or built in this run" in proc.stdout


def test_the_busy_machine_benchmark_times_each_thread_setting_alone_and_beside_busy_processes(smoke):
    """``make bench --busy``: a short generation alone and beside one busy process per core, per OpenMP setting."""
    probe = ("import json, sys; sys.path.insert(0, 'benchmarks'); from bench_study import busy_machine; "
             "print(json.dumps(busy_machine('params/smoke.yaml')))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=paths.ROOT, env=smoke["env"], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(figures) == {"cores", "passive", "short_spin", "active"} and figures["cores"] >= 1
    for name in ("passive", "short_spin", "active"):
        times = figures[name]
        assert times["alone_s"] > 0 and times["busy_s"] > 0
        assert times["slowdown"] == round(times["busy_s"] / times["alone_s"], 2)
    assert "GOMP_SPINCOUNT=10000 KMP_BLOCKTIME=1" in proc.stdout and "(the study's setting)" in proc.stdout


def test_results_record_the_training_pairs_the_overlaps_and_the_provenance(smoke):
    results = {(o, seed): _result(smoke["dir"], o, seed) for o in REFERENCE_ORDER for seed in SEEDS}
    for result in results.values():
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
