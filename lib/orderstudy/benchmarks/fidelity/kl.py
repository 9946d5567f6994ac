"""The KL divergence of a model's next-token distributions from a reference model's, text by text.

The reference (the base model) is run once and kept as its ``top_k`` most likely tokens at every
position and the probability left to the rest of the vocabulary (the tail). A state's divergence
is then computed against that coarsened reference: over ``top_k + 1`` outcomes (each kept token,
and "any other token"), ``KL(p || q) = Σ p_i (log p_i - log q_i) + p_tail (log p_tail - log q_tail)``.
Coarsening an outcome space never increases a KL divergence (the data-processing inequality), so
this is a lower bound of the full-vocabulary divergence, exact when ``top_k`` covers the whole
vocabulary, and close to it when the tail holds little mass (its share is recorded).

Keeping the whole vocabulary for every position would cost ``positions × vocabulary`` floats
(1.7 GB for 8,600 tokens of a 49,152-token vocabulary); the top 128 cost 9 MB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_TOP_K = 128


@dataclass
class Reference:
    """The reference model's top-k log-probabilities at every predicted position of every text."""

    ids: list[np.ndarray]         # per text: int32 [positions, k]
    logprobs: list[np.ndarray]    # per text: float32 [positions, k]
    tail_logprob: list[np.ndarray]  # per text: float32 [positions], log of the mass outside the top k

    def save(self, path) -> None:
        arrays = {}
        for i, (a, b, c) in enumerate(zip(self.ids, self.logprobs, self.tail_logprob)):
            arrays[f"ids_{i}"], arrays[f"logprobs_{i}"], arrays[f"tail_{i}"] = a, b, c
        with open(path, "wb") as fh:
            np.savez(fh, count=np.array(len(self.ids)), **arrays)

    @classmethod
    def load(cls, path) -> "Reference":
        with np.load(path) as data:
            n = int(data["count"])
            return cls([data[f"ids_{i}"] for i in range(n)], [data[f"logprobs_{i}"] for i in range(n)],
                       [data[f"tail_{i}"] for i in range(n)])

    def tail_mass(self) -> float:
        """Return the mean probability the reference puts outside its kept tokens."""
        return float(np.mean(np.concatenate([np.exp(t) for t in self.tail_logprob])))


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """Return ``log(1 - exp(x))`` for ``x <= 0``, stable near 0 and for very negative x."""
    x = x.clamp(max=-1e-7)
    return torch.where(x > -0.693, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def _batches(sequences: list[list[int]], batch_size: int):
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


@torch.no_grad()
def _logprobs(model, sequences: list[list[int]], index: list[int], pad_id: int) -> tuple[torch.Tensor, list[int]]:
    """Return float32 log-probabilities [batch, longest - 1, vocab] of the texts in ``index``."""
    lengths = [len(sequences[i]) for i in index]
    width = max(lengths)
    ids = torch.full((len(index), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(index), width), dtype=torch.long)
    for row, i in enumerate(index):
        ids[row, :lengths[row]] = torch.tensor(sequences[i])
        mask[row, :lengths[row]] = 1
    device = next(model.parameters()).device
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1]
    return torch.log_softmax(logits.float(), dim=-1).cpu(), lengths


def reference(model, sequences: list[list[int]], top_k: int = DEFAULT_TOP_K, batch_size: int = 4,
              pad_id: int = 0) -> Reference:
    """Return the reference's top-k next-token log-probabilities on ``sequences`` (token ids)."""
    if any(len(s) < 2 for s in sequences):
        raise ValueError("every text needs at least 2 tokens: one to predict from, one to predict")
    ids, logprobs, tails = [None] * len(sequences), [None] * len(sequences), [None] * len(sequences)
    for index in _batches(sequences, batch_size):
        lp, lengths = _logprobs(model, sequences, index, pad_id)
        k = min(top_k, lp.shape[-1])
        top, top_ids = lp.topk(k, dim=-1)
        tail = _log1mexp(torch.logsumexp(top, dim=-1))
        for row, i in enumerate(index):
            n = lengths[row] - 1
            ids[i] = top_ids[row, :n].numpy().astype(np.int32)
            logprobs[i] = top[row, :n].numpy()
            tails[i] = tail[row, :n].numpy()
    return Reference(ids, logprobs, tails)


def divergence(model, sequences: list[list[int]], ref: Reference, batch_size: int = 4, pad_id: int = 0) -> list[float]:
    """Return each text's mean KL divergence (nats per predicted token) of ``model`` from ``ref``."""
    if len(sequences) != len(ref.ids):
        raise ValueError(f"{len(sequences)} texts, but the reference holds {len(ref.ids)}")
    out = [0.0] * len(sequences)
    for index in _batches(sequences, batch_size):
        lp, lengths = _logprobs(model, sequences, index, pad_id)
        for row, i in enumerate(index):
            n = lengths[row] - 1
            if ref.ids[i].shape[0] != n:
                raise ValueError(f"text {i}: {n} predicted positions, the reference has {ref.ids[i].shape[0]}")
            p = torch.from_numpy(ref.logprobs[i])
            p_tail = torch.from_numpy(ref.tail_logprob[i])
            q = lp[row, :n].gather(-1, torch.from_numpy(ref.ids[i]).long())
            q_tail = _log1mexp(torch.logsumexp(q, dim=-1))
            kept = (p.exp() * (p - q)).sum(-1)
            tail = torch.where(p_tail > -80, p_tail.exp() * (p_tail - q_tail), torch.zeros_like(p_tail))
            out[i] = float((kept + tail).clamp(min=0.0).mean())
    return out
