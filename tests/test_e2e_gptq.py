"""End-to-end tier with GPTQ as the quantizer: params/smoke-families.yaml (NF4 and GPTQ) through the runner.

GPTQ alone (params/smoke-gptq.yaml: base, Q, P>Q, Q>P) is the GPTQ family of that study: the
same params, so the same state and result keys (checked), and its runs are those. Every ordering
runs ok; Q's decoder weighs under half of the base's in bf16; the records name the library, its
version, the group size and the calibration items (none of them an evaluated item); P after Q
runs GPTQ again, recalibrated on the pruned model; each evaluation says what it scored (the dense
equivalent on a CPU) and how close that is to GPTQModel's own kernel. The two families share
base, F and P, built once, and their order effects are set side by side.
"""

import json
import os
import subprocess
import sys
import time
from importlib.metadata import version

import pytest

from orderstudy.checkpoints.inspect import describe
from orderstudy.core import paths

pytestmark = pytest.mark.e2e
ORDERINGS = ("base", "Q", "P>Q", "Q>P")


def _run(params: str, out) -> subprocess.CompletedProcess:
    env = {**os.environ, "ORDERSTUDY_OUTPUTS": str(out)}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "orderstudy", "run", params, "--quiet"],
                          cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=3600)
    print(f"{params}: {time.perf_counter() - started:.0f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def families_run(tmp_path_factory, default_model_dir, lawbench_dir, mmlu_dir):
    """The outputs directory after params/smoke-families.yaml ran, and the run's stdout."""
    from orderstudy.prepare import prepare_tiny

    prepare_tiny()
    out = tmp_path_factory.mktemp("gptq") / "outputs"
    return out, _run("params/smoke-families.yaml", out).stdout


def test_the_smoke_study_runs_with_gptq(families_run, monkeypatch):
    from orderstudy.study.study import Study

    out, _ = families_run
    d = out / "smoke-families" / "gptq"
    results = {o: json.loads((d / "results" / f"{paths.ordering_filename(o)}.json").read_text()) for o in ORDERINGS}
    assert {o: r["status"] for o, r in results.items()} == dict.fromkeys(ORDERINGS, "ok")
    # params/smoke-gptq.yaml run alone makes these very states and results: the same keys.
    monkeypatch.setattr(paths, "OUTPUTS_DIR", out)
    alone = Study("params/smoke-gptq.yaml")
    assert {o: alone.store.key(o) for o in ORDERINGS} == {o: r["state_key"] for o, r in results.items()}
    assert {o: alone.result_key(o) for o in ORDERINGS} == {o: r["result_key"] for o, r in results.items()}
    d = out / "smoke-families"
    model = {o: d / "states" / r["state_key"] / "model" for o, r in results.items()}


    # Q's quantized weights: the decoder's linear layers under half of the base's in bf16.
    base, q = describe(model["base"]), describe(model["Q"])
    assert q["parts"]["layers"]["quantization"] == "gptq"
    assert q["parts"]["layers"]["bytes"] < base["parts"]["layers"]["parameters"] * 2 / 2
    assert results["Q"]["size_bytes"] < results["base"]["size_bytes"]

    info = {o: json.loads((d / "states" / r["state_key"] / "record.json").read_text())["info"] for o, r in results.items()}
    assert results["Q"]["steps"][-1]["library"] == "GPTQModel" and results["Q"]["steps"][-1]["group_size"] == 32
    step = info["Q"]
    assert step["library"] == "GPTQModel" and step["library_version"] == version("gptqmodel")
    assert step["group_size"] == 32 and step["bits"] == 4
    items = step["calibration"]["item_ids"]
    assert len(items) == 8 and step["calibration_data"]["source"].startswith("finetune")
    evaluated = json.loads((d / "gptq" / results["Q"]["items_file"]).read_text())["lawbench"]
    evaluated_ids = {i if "/" in i else f"{task}/{i}" for task, scores in evaluated.items() for i in scores}
    assert evaluated_ids and all(i.split("/")[0] in evaluated for i in items)   # ids of the same form: task/index
    assert not set(items) & evaluated_ids

    # P after Q: dequantized, pruned, GPTQ run again on the pruned model.
    assert results["Q>P"]["steps"][-1]["requantized_as"] == "gptq"
    p_after = info["Q>P"]
    assert p_after["dequantized_first"] and p_after["requantized_as"] == "gptq"
    assert p_after["requantization"]["calibrated"] and p_after["requantization"]["library"] == "GPTQModel"
    assert p_after["requantize_calibration_data"]["source"].startswith("finetune")
    for o in ("Q", "P>Q", "Q>P"):
        assert results[o]["quantized"]
        numerics = results[o]["evaluation"]["runtime"]["numerics"]
        assert numerics["evaluated_as"].startswith("evaluation-equivalent dense model"), o
        assert numerics["vs_gptq_kernel"]["greedy_token_agreement"] > 0.5, o


def _read(path):
    return json.loads(path.read_text())


def test_the_two_family_smoke_study_shares_what_the_families_share(families_run):
    """params/smoke-families.yaml: NF4 and GPTQ over base, F, P, Q, F>Q, Q>F, P>Q, Q>P, end to end."""
    import pandas as pd

    out, stdout = families_run
    d = out / "smoke-families"
    run = _read(d / "last_run.json")
    orderings = ("base", "F", "P", "Q", "F>Q", "Q>F", "P>Q", "Q>P")
    assert run["families"] == ["nf4", "gptq"]
    assert sorted(run["orderings"]) == sorted(f"{f}/{o}" for f in ("nf4", "gptq") for o in orderings)
    assert not {o: r["error"] for o, r in run["orderings"].items() if r["status"] != "ok"}
    # base, F and P built once; every state with Q once per family.
    assert sorted(run["steps_built"]) == sorted(["base", "F", "P"] + [f"{s}.{f}" for f in ("nf4", "gptq")
                                                                     for s in ("Q", "F>Q", "Q>F", "P>Q", "Q>P")])
    assert "2 families (quantize.method: nf4, gptq)" in stdout
    results = {f: {o: _read(d / f / "results" / f"{paths.ordering_filename(o)}.json") for o in orderings}
               for f in ("nf4", "gptq")}
    for f in ("nf4", "gptq"):
        for o in orderings:
            assert results[f][o]["family"] == {"name": f, "operation": "Q", "families": ["nf4", "gptq"]}
            assert (d / f / "notebooks" / f"{paths.ordering_filename(o)}.ipynb").is_file()
        assert (d / f / "notebooks" / "summary.ipynb").is_file() and (d / f / "tables" / "main.csv").is_file()
    # A shared state is one state, evaluated once: the same key, scores and items in both families.
    for o in ("base", "F", "P"):
        nf4, gptq = results["nf4"][o], results["gptq"][o]
        assert nf4["state_key"] == gptq["state_key"] and nf4["benchmarks"] == gptq["benchmarks"]
        assert _read(d / "nf4" / nf4["items_file"]) == _read(d / "gptq" / gptq["items_file"])
    for o in ("Q", "F>Q", "Q>F", "P>Q", "Q>P"):
        assert results["nf4"][o]["state_key"] != results["gptq"][o]["state_key"]
        assert results["nf4"][o]["steps"][-1]["label"] == f"{o}.nf4"
    # F after GPTQ with the default merge policy: LoRA on the dequantized GPTQ weights, merged into a dense
    # model (no calibration text read: none recorded); finetune.merge: requantize runs GPTQ again (tests/ops).
    q_f = _read(d / "states" / results["gptq"]["Q>F"]["state_key"] / "record.json")["info"]
    assert q_f["merge"] == "dequantize" and q_f["base_quantization"] == "gptq" and not q_f["result_quantized"]
    assert "requantize_calibration_data" not in q_f and not results["gptq"]["Q>F"]["quantized"]
    assert results["gptq"]["Q"]["size_bytes"] < results["gptq"]["base"]["size_bytes"]

    # The families side by side: each pair with Q, on every benchmark, and the difference of their effects.
    table = pd.read_csv(d / "tables" / "families.csv")
    assert sorted(set(zip(table["a"], table["b"]))) == sorted({("P>Q", "Q>P"), ("Q>F", "F>Q")})
    assert set(table["benchmark"]) == {"lawbench", "stem", "mmlu_law"}
    main = {f: pd.read_csv(d / f / "tables" / "main.csv").set_index("ordering") for f in ("nf4", "gptq")}
    row = table[(table["a"] == "P>Q") & (table["benchmark"] == "stem")].iloc[0]
    effect = {f: main[f].loc["Q>P", "stem"] - main[f].loc["P>Q", "stem"] for f in ("nf4", "gptq")}
    assert row["nf4_diff"] == pytest.approx(effect["nf4"], abs=1e-3)   # main.csv rounds to 4 decimals
    assert row["gptq_vs_nf4"] == pytest.approx(effect["gptq"] - effect["nf4"], abs=1e-3)
    assert row["gptq_vs_nf4_ci_low"] <= row["gptq_vs_nf4"] <= row["gptq_vs_nf4_ci_high"]   # stem has 2 items a subject
    lawbench = table[table["benchmark"] == "lawbench"]
    assert lawbench["verdict"].eq("no interval").all()   # one item a task: no interval, no verdict
    assert "Order effects by quantize method (nf4, gptq)" in (d / "tables" / "families.md").read_text()
    summary = (d / "gptq" / "notebooks" / "summary.ipynb").read_text()
    assert "Order effects by quantize method (nf4, gptq)" in summary and "family **gptq**" in summary

    # Nothing changed: a rerun runs no notebook and builds nothing.
    again = _run("params/smoke-families.yaml", out)
    rerun = _read(d / "last_run.json")
    assert rerun["steps_built"] == [] and not any(r["ran"] for r in rerun["orderings"].values()), again.stdout[-2000:]
