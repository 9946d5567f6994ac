"""The coarsened KL divergence against a directly computed full-vocabulary one, on a tiny real model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from orderstudy.benchmarks.fidelity import kl


@pytest.fixture(scope="module")
def models():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    base = LlamaForCausalLM(config).eval()
    other = copy.deepcopy(base)
    with torch.no_grad():
        other.model.layers[0].mlp.down_proj.weight.mul_(3.0)
        other.lm_head.weight.mul_(4.0)   # sharper logits: a divergence well away from 0
    return base, other


SEQUENCES = [[5, 9, 14, 2, 77, 31, 8], [4, 4, 60, 12], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]]


def full_kl(base, other, seq):
    ids = torch.tensor([seq])
    with torch.no_grad():
        p = torch.log_softmax(base(input_ids=ids).logits[0, :-1].float(), -1)
        q = torch.log_softmax(other(input_ids=ids).logits[0, :-1].float(), -1)
    return float((p.exp() * (p - q)).sum(-1).mean())


def test_a_model_does_not_diverge_from_itself(models):
    base, _ = models
    ref = kl.reference(base, SEQUENCES, top_k=8, batch_size=2)
    assert kl.divergence(base, SEQUENCES, ref, batch_size=2) == pytest.approx([0.0] * 3, abs=1e-6)


def test_with_the_whole_vocabulary_kept_it_is_the_full_divergence(models):
    base, other = models
    ref = kl.reference(base, SEQUENCES, top_k=97, batch_size=2)
    got = kl.divergence(other, SEQUENCES, ref, batch_size=3)   # other batching: padding must not matter
    want = [full_kl(base, other, s) for s in SEQUENCES]
    assert got == pytest.approx(want, rel=1e-4, abs=1e-6)
    assert min(want) > 1e-3


def test_a_coarser_reference_bounds_the_divergence_from_below(models):
    base, other = models
    want = [full_kl(base, other, s) for s in SEQUENCES]
    coarse = kl.divergence(other, SEQUENCES, kl.reference(base, SEQUENCES, top_k=4))
    finer = kl.divergence(other, SEQUENCES, kl.reference(base, SEQUENCES, top_k=32))
    assert all(c <= f + 1e-6 <= w + 2e-6 for c, f, w in zip(coarse, finer, want))
    assert all(c > 0 for c in coarse)


def test_the_reference_survives_a_round_trip_on_disk(models, tmp_path):
    base, other = models
    ref = kl.reference(base, SEQUENCES, top_k=16)
    ref.save(tmp_path / "ref.npz")
    back = kl.Reference.load(tmp_path / "ref.npz")
    assert all(np.array_equal(a, b) for a, b in zip(ref.ids, back.ids))
    assert kl.divergence(other, SEQUENCES, back) == kl.divergence(other, SEQUENCES, ref)
    assert 0.0 < back.tail_mass() < 1.0


def test_texts_that_do_not_match_the_reference_are_refused(models):
    base, other = models
    ref = kl.reference(base, SEQUENCES, top_k=8)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        kl.reference(base, [[1]], top_k=8)
    with pytest.raises(ValueError, match="1 texts, but the reference holds 3"):
        kl.divergence(other, [[1, 2]], ref)
    with pytest.raises(ValueError, match="predicted positions"):
        kl.divergence(other, [s + [1] for s in SEQUENCES], ref)
