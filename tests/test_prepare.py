"""Preparing the tiny model where only SmolLM2's tokenizer files travel (the device check)."""

import hashlib
import json
import shutil

import pytest

from orderstudy.prepare import TOKENIZER_FILES, PrepareError, prepare_tiny


def _digests(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_tiny_model_from_the_tokenizer_files_alone_is_the_same_model(tmp_path, default_model_dir, tiny_model_dir):
    tokenizer = tmp_path / "tokenizer"
    tokenizer.mkdir()
    for name in TOKENIZER_FILES:
        shutil.copy(default_model_dir / name, tokenizer / name)
    made = prepare_tiny(tmp_path / "tiny", tokenizer_dir=tokenizer)
    assert _digests(made) == _digests(tiny_model_dir)
    assert "model.safetensors" in _digests(made)


def test_a_tokenizer_directory_without_the_tokenizer_files_is_refused(tmp_path):
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "tokenizer.json").write_text("{}")
    with pytest.raises(PrepareError, match="tokenizer_config.json, chat_template.jinja"):
        prepare_tiny(tmp_path / "tiny", tokenizer_dir=tmp_path / "tokenizer")
    assert not (tmp_path / "tiny").exists()


def test_tiny_qwen2_has_qkv_biases_and_an_untied_head(tmp_path, default_model_dir):
    from safetensors import safe_open

    from orderstudy.prepare import prepare_tiny_qwen2

    made = prepare_tiny_qwen2(tmp_path / "q")
    with safe_open(made / "model.safetensors", "pt") as st:
        keys = set(st.keys())
        bias = st.get_tensor("model.layers.0.self_attn.q_proj.bias")
    assert {"lm_head.weight", "model.embed_tokens.weight", "model.layers.0.self_attn.k_proj.bias",
            "model.layers.0.self_attn.v_proj.bias"} <= keys
    assert bias.shape == (64,) and bias.abs().sum() > 0  # biases that matter, as trained ones do
    assert _digests(made)["tokenizer.json"] == _digests(default_model_dir)["tokenizer.json"]


def test_make_data_with_a_lawbench_checkout(lawbench_reference, tmp_path, monkeypatch, smollm2_tokenizer):
    """`LAWBENCH=<checkout> make data`: LawBench's own 20 tasks, and ChERRANT's tables where `auto` finds them."""
    from orderstudy.evaluation import engine as evaluation
    from orderstudy.core import paths
    from orderstudy.core.params import EvaluationParams
    from orderstudy.prepare import copy_lawbench_checkout
    from orderstudy.benchmarks.lawbench.tasks import TASK_IDS

    checkout = tmp_path / "LawBench"
    (checkout / "evaluation" / "utils").mkdir(parents=True)
    (checkout / "data").symlink_to(lawbench_reference / "data")
    with pytest.raises(PrepareError, match="evaluation/utils/data/cilin.txt and confusion_dict.txt"):
        copy_lawbench_checkout(checkout, tmp_path / "lawbench", tmp_path / "cherrant")
    (checkout / "evaluation" / "utils" / "data").symlink_to(lawbench_reference / "evaluation-utils-data")
    out = copy_lawbench_checkout(checkout, tmp_path / "lawbench", tmp_path / "cherrant")
    for task in TASK_IDS:
        for setting in ("zero_shot", "one_shot"):
            assert (out / setting / f"{task}.json").read_bytes() == (lawbench_reference / "data" / setting / f"{task}.json").read_bytes()
    sources = json.loads((out / "sources.json").read_text())
    assert all(sources[t]["lawbench"] for t in TASK_IDS) and len(sources) == 20
    record = json.loads((tmp_path / "cherrant" / "source.json").read_text())
    assert record["confusion_dict.txt"] == "aafa202dc451fb79a0a2cfc77b965009daa39d0cedd03e25074c1a35b7ac67b2"
    # The default params (lawbench_data in the cache, cherrant_data auto) now score 2-1 as LawBench does.
    monkeypatch.setattr(paths, "CHERRANT_DATA", tmp_path / "cherrant")
    params = EvaluationParams(benchmarks=("lawbench",), lawbench_data=str(out), lawbench_tasks=("2-1", "3-6"),
                              lawbench_items_per_task=1)
    suite = evaluation.build_suite(params, 0, tmp_path / "suite", smollm2_tokenizer, 8192)
    assert suite.cherrant["kind"] == "lawbench" and suite.lawbench_sources["3-6"]["lawbench"] is True
