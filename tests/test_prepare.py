"""Preparing the tiny model where only SmolLM2's tokenizer files travel (the device check)."""

import hashlib
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
