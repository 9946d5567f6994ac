"""`orderstudy estimate` for a GPU study on a machine that cannot run it: counted from the plan, priced from documented rates."""

import json
import os
import subprocess
import sys

import pytest
import yaml

import orderstudy.benchmarks  # noqa: F401  (registers the benchmarks)
from orderstudy.core import paths
from orderstudy.core.params import load_params
from orderstudy.evaluation import planning


def test_documented_shapes_give_the_published_parameter_counts():
    # The model cards: Qwen2.5-1.5B-Instruct 1.54 B parameters, Llama-3.2-1B-Instruct 1.24 B, SmolLM2-135M 135 M.
    for source, published in (("Qwen/Qwen2.5-1.5B-Instruct", 1.54e9), ("meta-llama/Llama-3.2-1B-Instruct", 1.24e9),
                              ("HuggingFaceTB/SmolLM2-135M-Instruct", 134.5e6)):
        assert planning.parameter_count(planning.KNOWN_MODELS[source]) == pytest.approx(published, rel=0.01), source


def test_the_count_from_a_config_matches_the_model_it_describes(tiny_model_dir, tmp_path):
    from orderstudy.checkpoints import models

    params_file = tmp_path / "tiny.yaml"
    params_file.write_text(f"study: tiny\ndevice: cpu\nmodel: {{source: {tiny_model_dir}}}\norderings: [base, Q]\n"
                           "evaluation: {benchmarks: [mmlu_law], mmlu_items_per_subject: 3}\n", encoding="utf-8")
    params = load_params(params_file)
    shape, where = planning.model_shape(params)
    assert where == str(tiny_model_dir / "config.json")
    real = sum(p.numel() for p in models.load_model(tiny_model_dir, "float32", "cpu").parameters())
    assert planning.parameter_count(shape) == pytest.approx(real, rel=0.02)   # norms left out
    # With the model's tokenizer here, prompt tokens are counted, not estimated.
    result = planning.plan_estimate(params, "L4-24GB", planning.local_tokenizer(params))
    items = result["items"]["mmlu_law"]
    assert items["items"] == 9 and items["counted"] == "tokens counted with the model's tokenizer"
    assert result["size"] == {"orderings": 2, "seeds": 1, "steps": {"F": 0, "P": 0, "Q": 1}, "steps_total": 1, "evaluations": 2}
    assert result["per_model"]["prompt_tokens"] == items["prompt_tokens"] * planning.MMLU_CHOICES


def test_estimate_on_the_qwen_params_offline_without_cuda_the_model_or_the_data(tmp_path):
    params = yaml.safe_load((paths.ROOT / "params" / "qwen2.5-1.5b-law.yaml").read_text(encoding="utf-8"))
    params["evaluation"]["lawbench_data"] = str(tmp_path / "no-lawbench")
    params["finetune"]["data"] = str(tmp_path / "no-data.jsonl")
    params_file = tmp_path / "qwen.yaml"
    params_file.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(paths.ROOT / "lib"), os.environ.get("PYTHONPATH")]))}
    out = tmp_path / "estimate.json"
    done = subprocess.run([sys.executable, "-m", "orderstudy", "estimate", str(params_file), "--json", str(out)],
                          cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "NOT MEASURED here, estimated from documented rates" in text
    assert "hub id 'Qwen/Qwen2.5-1.5B-Instruct' is not in the local Hugging Face cache" in text
    assert "no-lawbench" in text and "no-data.jsonl" in text
    result = json.loads(out.read_text())
    assert result["measured"] is False
    # 16 orderings, 3 seeds: the 11 orderings with F are made once per seed, the other 5 once.
    assert result["size"] == {"orderings": 16, "seeds": 3, "steps": {"F": 15, "P": 11, "Q": 11}, "steps_total": 37,
                              "evaluations": 38}
    lawbench = result["items"]["lawbench"]
    assert lawbench["items"] == 20 * 500 and "500 items per task as LawBench publishes" in lawbench["counted"]
    assert result["items"]["mmlu_law"]["items"] == 1763      # the prepared MMLU data is here: counted
    assert "estimated from characters" in result["items"]["mmlu_law"]["counted"]
    # kl: one forward over each held-out text (every item evaluated: all 512 from MMLU's other subjects); flip: no call.
    assert result["items"]["kl"] == {"items": 512, "tasks": 1, "prompt_tokens": 512 * 256, "request": "divergence",
                                     "counted": "512 held-out texts of at most 256 tokens"}
    assert result["items"]["flip"]["items"] == 0 and result["items"]["flip"]["prompt_tokens"] == 0
    assert result["model"]["parameters"] == planning.parameter_count(planning.KNOWN_MODELS["Qwen/Qwen2.5-1.5B-Instruct"])
    # Fine-tuning: 15 LoRA runs of 1000 steps x 8 x 1024 tokens at 4 N FLOPs per token, 40% of an A100's 312 TFLOP/s.
    n = result["model"]["parameters"]
    assert result["estimated_seconds"]["fine_tuning"] == pytest.approx(15 * 1000 * 8 * 1024 * 4 * n / (0.4 * 312e12))
    assert result["memory_bytes"]["weights_bf16"] == 2 * n
    assert 20 * 2**30 < result["memory_bytes"]["finetune_peak"] < 40 * 2**30
    assert "estimated GPU memory" in text and "fine-tuning, peak" in text


def test_a_model_with_no_config_here_and_no_documented_shape_is_a_clear_error(tmp_path, capsys, monkeypatch):
    from orderstudy.cli import main

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    params_file = tmp_path / "unknown.yaml"
    params_file.write_text("study: unknown\ndevice: cuda\nmodel: {source: someone/unknown-model}\n"
                           "evaluation: {benchmarks: [mmlu_law], mmlu_items_per_subject: 1}\n", encoding="utf-8")
    assert main(["estimate", str(params_file)]) == 2
    err = capsys.readouterr().err
    assert "model.source 'someone/unknown-model': no config.json here and not one of the documented models" in err
