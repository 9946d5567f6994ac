"""End-to-end tier with GPTQ as the quantizer: params/smoke-gptq.yaml (base, Q, P>Q, Q>P) through the runner.

Every ordering runs ok; Q's decoder weighs under half of the base's in bf16; the records name the
library, its version, the group size and the calibration items (none of them an evaluated item);
P after Q runs GPTQ again, recalibrated on the pruned model; each evaluation says what it scored
(the dense equivalent on a CPU) and how close that is to GPTQModel's own kernel.
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


def test_the_smoke_study_runs_with_gptq(tmp_path, default_model_dir, lawbench_dir, mmlu_dir):
    from orderstudy.prepare import prepare_tiny

    prepare_tiny()
    out = tmp_path / "outputs"
    env = {**os.environ, "ORDERSTUDY_OUTPUTS": str(out)}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "orderstudy", "run", "params/smoke-gptq.yaml", "--quiet"],
                          cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=3600)
    print(f"smoke-gptq study: {time.perf_counter() - started:.0f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    d = out / "smoke-gptq"
    run = json.loads((d / "last_run.json").read_text())
    assert sorted(run["orderings"]) == sorted(ORDERINGS)
    assert not {o: r["error"] for o, r in run["orderings"].items() if r["status"] != "ok"}
    results = {o: json.loads((d / "results" / f"{paths.ordering_filename(o)}.json").read_text()) for o in ORDERINGS}
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
    evaluated = json.loads((d / results["Q"]["items_file"]).read_text())["lawbench"]
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
