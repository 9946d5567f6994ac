"""Which evaluation backend each kind of model state gets, and why, on real checkpoints.

vLLM itself needs CUDA and is not installed here; what is tested is the decision for every layout
the operations write (the same code path a CUDA machine runs), and the errors for a backend that
cannot run.
"""

from __future__ import annotations

import pytest

from orderstudy import backends


@pytest.mark.parametrize("steps, loadable", [
    ((), True),                              # dense base
    (("P:width",), True),                    # pruned: smaller shapes, said by its config
    (("P:depth",), True),
    (("Q:nf4",), True),                      # bitsandbytes 4-bit
    (("Q:fp4",), True),
    (("Q:int8",), False),                    # bitsandbytes 8-bit: not loaded by vLLM
    (("Q:nf4", "F:adapter"), False),         # LoRA adapter beside a quantized base
    (("P:magnitude-sparse",), False),        # values + bitmask
])
def test_vllm_loads_standard_dense_and_4bit_states_only(states, steps, loadable):
    ok, why = backends.vllm_loadable(states.get(*steps))
    assert ok is loadable, why


def test_auto_takes_transformers_off_cuda_and_says_why(states):
    base = states.get()
    choice = backends.choose_backend("auto", "cpu", base)
    assert choice.name == "hf" and "CUDA only" in choice.reason
    assert backends.choose_backend("hf", "cuda", base).name == "hf"


@pytest.mark.skipif(backends.vllm_available(), reason="vllm is installed here")
def test_on_cuda_without_vllm_auto_falls_back_and_vllm_is_an_error(states):
    base = states.get()
    choice = backends.choose_backend("auto", "cuda", base)
    assert choice.name == "hf" and "not installed" in choice.reason
    with pytest.raises(backends.BackendError, match="make env-vllm"):
        backends.choose_backend("vllm", "cuda", base)


def test_asking_for_vllm_on_a_cpu_is_an_error_naming_the_key(states):
    with pytest.raises(backends.BackendError, match="evaluation.backend: 'vllm' runs on CUDA only"):
        backends.choose_backend("vllm", "cpu", states.get())


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
