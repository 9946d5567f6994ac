"""The sparse format restores exactly what it stored, weighs what its zeros allow, and fails loudly."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from orderstudy.checkpoints import sparse_format, storage


def test_pack_and_unpack_are_exact():
    torch.manual_seed(0)
    weight = torch.randn(37, 29)
    weight[weight.abs() < 0.7] = 0
    values, mask = sparse_format.pack(weight)
    assert values.numel() == int((weight != 0).sum()) and mask.numel() == (37 * 29 + 7) // 8
    assert torch.equal(sparse_format.unpack(values, mask, [37, 29]), weight)


def test_a_damaged_file_is_named(tmp_path):
    values, mask = sparse_format.pack(torch.tensor([[0.0, 1.0, 2.0, 0.0]]))
    with pytest.raises(ValueError, match="damaged"):
        sparse_format.unpack(values[:1], mask, [1, 4])


def test_round_trip_of_a_pruned_model(states, run_logits):
    sparse_dir = states.get("P:wanda-sparse")
    assert storage.layout(sparse_dir) == "sparse"
    assert not (sparse_dir / "model.safetensors").exists()
    marker = json.loads((sparse_dir / sparse_format.MARKER).read_text())
    assert marker["format"] == sparse_format.FORMAT_NAME and marker["sparse_tensors"] == 3 * 7
    model = sparse_format.load_sparse(sparse_dir, "float32", "cpu")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied again
    assert torch.equal(run_logits(model), run_logits(storage.load(states.get("P:wanda"), "float32", "cpu")))


def test_from_pretrained_alone_fails_loudly_rather_than_loading_something_else(states):
    with pytest.raises(OSError):
        AutoModelForCausalLM.from_pretrained(states.get("P:wanda-sparse"))


def test_an_unknown_format_version_is_refused(states, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(states.get("P:wanda-sparse"), copy)
    (copy / sparse_format.MARKER).write_text(json.dumps({"format": sparse_format.FORMAT_NAME, "version": 99}))
    with pytest.raises(ValueError, match="version 99"):
        sparse_format.load_sparse(copy, "float32", "cpu")
