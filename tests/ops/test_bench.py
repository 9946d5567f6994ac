"""The operations benchmark runs each method in its own process and prints real figures."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orderstudy.core import paths

SCRIPT = paths.ROOT / "benchmarks" / "bench_operations.py"


@pytest.mark.e2e  # two fresh Python processes that import torch: most of a minute
def test_quick_benchmark_prints_a_table_of_real_figures(tiny_model):
    methods = ["Q:nf4", "F:qlora-adapter"]  # two processes: the second trains on the first's output
    done = subprocess.run([sys.executable, str(SCRIPT), "--model", str(tiny_model), "--quick", "--methods", *methods],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert "3,256,768 parameters" in lines[0]
    assert lines[1].split() == ["method", "seconds", "peak", "RSS", "MiB", "size", "MiB", "parameters"]
    rows = {}
    for line in lines[2:]:
        name, seconds, rss, size, parameters = line.split()
        rows[name] = (float(seconds), float(rss), float(size), int(parameters.replace(",", "")))
    assert list(rows) == methods
    for name, (seconds, rss, size, parameters) in rows.items():
        assert 0 < seconds < 120 and 200 < rss < 8000 and 0 < size < 20, (name, seconds, rss, size)
    # The adapter state holds the base's parameters and the adapter's (rank 4, 7 projections, 3
    # layers), and weighs the NF4 base plus the adapter.
    assert rows["Q:nf4"][3] == 3_256_768
    assert rows["F:qlora-adapter"][3] == 3_256_768 + 12_288
    assert 0 < rows["F:qlora-adapter"][2] - rows["Q:nf4"][2] < 0.1


QUANTIZED_CPU = paths.ROOT / "benchmarks" / "bench_quantized_cpu.py"


def test_quantized_cpu_benchmark_prints_each_path_side_by_side(tiny_model):
    done = subprocess.run([sys.executable, str(QUANTIZED_CPU), "--model", str(tiny_model), "--dtype", "float32",
                           "--batch", "2", "--length", "16", "--new-tokens", "4", "--repeats", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.stdout.startswith("CPU: ") and "AVX512-BF16: " in figures["cpu"]
    paths_run = figures["paths"]
    assert {"reference", "dense"} <= set(paths_run) and paths_run["reference"]["prefill_vs_reference"] == 1.0
    # float32: the reference kernel and the dense dequantized model compute the same logits.
    assert paths_run["reference"]["max_abs_logit_diff_vs_dequantized"] == 0.0
    assert paths_run["dense"]["max_abs_logit_diff_vs_dequantized_float32"] == 0.0
    for f in paths_run.values():
        assert f["prefill_tokens_per_s"] > 0 and f["decode_new_tokens_per_s"] > 0
    # Where this CPU has AVX512-BF16, bitsandbytes' repacked kernel is measured too, and it is not exact.
    assert ("repacked" in paths_run) == ("yes" in figures["cpu"].split("AVX512-BF16: ")[1])
    if "repacked" in paths_run:
        assert paths_run["repacked"]["max_abs_logit_diff_vs_dequantized"] > 1e-3
