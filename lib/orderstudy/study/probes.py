"""A few held-out prompts answered greedily before and after a fine-tune, so a reader sees what it changed.

The prompts are fine-tuning pairs the fine-tune held out for its validation loss (the same split
``ops.finetune.apply`` makes: the pairs that fit ``finetune.max_seq_len``, shuffled with the study's
seed), so they are never trained on and never in the evaluation sample. Of those, the
``PROBE_COUNT`` with the shortest prompts are asked, through the chat template as the evaluation
asks, with ``PROBE_NEW_TOKENS`` greedy new tokens: deterministic, and a few seconds even on a CPU.

A state's answers are stored beside it (``states/<key>/probes/<probe key>.json``, the key hashing
the prompts and the generation settings), and a fine-tune's before-and-after beside the F state,
so taking the step again, in a papermill run or in JupyterLab, reads them instead of generating
again, and both give the same result file. A study whose states are made before its notebooks
run (vLLM, Ray) makes the probes with them (``Study.finetune_probes``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..core import atomic
from ..checkpoints import numerics
from ..operations.finetune import training as finetune
from ..checkpoints import storage
from ..operations.common import load_tokenizer
from ..core.params import stable_hash
from ..core.prompts import prompt_ids
from .store import State

PROBE_COUNT = 3
PROBE_NEW_TOKENS = 32
FORMAT = 2  # 2: a 4-bit state answers as the evaluation scores it


def held_out_pairs(study, tokenizer_dir: Path) -> tuple[list[dict], bool]:
    """Return ``(pairs, held_out)``: the fine-tune's validation pairs, or its training pairs when it holds none out.

    Mirrors ``ops.finetune.apply``: the pairs whose prompt fits ``finetune.max_seq_len``, split by
    ``split_examples`` with the study's seed (the shuffle depends only on their number, so the
    split of the raw pairs is the split of the encoded ones).
    """
    params = study.params.finetune
    tokenizer = load_tokenizer(tokenizer_dir)
    fitting = [x for x in study.training_examples
               if finetune.encode_example(tokenizer, x["prompt"], x["answer"], params.max_seq_len,
                                          study.params.chat_template) is not None]
    train, validation = finetune.split_examples(fitting, params.validation_fraction, study.seed)
    return (validation, True) if validation else (train, False)


def choose(pairs: list[dict], count: int = PROBE_COUNT) -> list[dict]:
    """Return the ``count`` pairs with the shortest prompts (ties by id): quick to ask, easy to read.

    >>> [p["id"] for p in choose([{"id": "b", "prompt": "xx"}, {"id": "a", "prompt": "yyy"}, {"id": "c", "prompt": "z"}], 2)]
    ['c', 'b']
    """
    return sorted(pairs, key=lambda p: (len(p["prompt"]), p["id"]))[:count]


def probe_key(pairs: list[dict], chat: bool = True, quantized_on_cpu: str = numerics.EQUIVALENT) -> str:
    """Return the hash of what decides a state's answers besides the state: the prompts and the settings."""
    return stable_hash({"prompts": [[p["id"], p["prompt"]] for p in pairs], "new_tokens": PROBE_NEW_TOKENS,
                        "chat": chat, "greedy": True, "quantized_on_cpu": quantized_on_cpu, "format": FORMAT})


def answers(state: State, pairs: list[dict], dtype: str, device: str, show: Callable = print, chat: bool = True,
            quantized_on_cpu: str = numerics.EQUIVALENT) -> list[str]:
    """Return the state's greedy answers to ``pairs``' prompts, generated once and then read from its directory."""
    key = probe_key(pairs, chat, quantized_on_cpu)
    path = state.dir / "probes" / f"{key}.json"
    if path.is_file():
        stored = atomic.read_json(path)
        if stored.get("key") == key and stored.get("state") == state.key:
            return stored["answers"]
    show(f"answering {len(pairs)} held-out prompts with {state.name} ...")
    generated = generate(state.model_dir, [p["prompt"] for p in pairs], dtype, device, chat=chat,
                         quantized_on_cpu=quantized_on_cpu)
    atomic.write_json(path, {"key": key, "state": state.key, "new_tokens": PROBE_NEW_TOKENS,
                             "ids": [p["id"] for p in pairs], "answers": generated})
    return generated


def generate(model_dir: Path, prompts: list[str], dtype: str, device: str, new_tokens: int = PROBE_NEW_TOKENS,
             chat: bool = True, quantized_on_cpu: str = numerics.EQUIVALENT) -> list[str]:
    """Return the greedy answers of the model in ``model_dir`` to ``prompts``, one prompt at a time (no padding),
    in the study's prompt format (``chat``: through the chat template).

    A 4-bit state answers as the evaluation scores it (``numerics.answers_as_equivalent``): on a
    CPU, by default, as its evaluation-equivalent dense model (bitsandbytes' reference kernel
    decodes several times slower).
    """
    import torch
    from transformers import GenerationConfig

    from ..checkpoints import models

    tokenizer = load_tokenizer(model_dir)
    if numerics.answers_as_equivalent(models.quantization_config(model_dir), device, quantized_on_cpu):
        model, _ = storage.load_dense(model_dir, dtype, device)
    else:
        model = storage.load(model_dir, dtype, device)
    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id)
    out = []
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([prompt_ids(tokenizer, prompt, chat)], device=model.device)
            generated = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
            out.append(tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=True).strip())
    del model
    return out


def before_after(study, before: State, after: State, show: Callable = print) -> dict:
    """Return the probes of a fine-tune from ``before`` to ``after``: each prompt, its gold answer and both answers.

    Stored beside ``after`` once made (``probes/before-after-<key>.json``): the F state's key
    already hashes what chooses the prompts (the training data, the seed, ``max_seq_len``, the
    prompt format), so a notebook that meets the step again reads them without encoding the
    training pairs again (seconds in a fresh kernel).
    """
    chat, how = study.params.chat_template, study.params.evaluation.quantized_on_cpu
    key = stable_hash({"before": before.key, "after": after.key, "count": PROBE_COUNT, "new_tokens": PROBE_NEW_TOKENS,
                       "chat": chat, "quantized_on_cpu": how, "format": FORMAT})
    path = after.dir / "probes" / f"before-after-{key}.json"
    if path.is_file():
        stored = atomic.read_json(path)
        if stored.get("key") == key:
            return stored["probes"]
    pairs, held_out = held_out_pairs(study, before.model_dir)
    chosen = choose(pairs)
    old = answers(before, chosen, study.dtype, study.device, show, chat, how)
    new = answers(after, chosen, study.dtype, study.device, show, chat, how)
    made = {"held_out": held_out, "new_tokens": PROBE_NEW_TOKENS,
            "items": [{"id": p["id"], "prompt": p["prompt"], "gold": p["answer"], "before": a, "after": b}
                      for p, a, b in zip(chosen, old, new)]}
    atomic.write_json(path, {"key": key, "before": before.key, "after": after.key, "probes": made})
    return made
