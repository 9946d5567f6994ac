"""How many tokens each task may generate, and how a prompt is fitted into the model's context.

**Generation budget.** A task's budget comes from its own gold answers, counted in the model's
tokenizer over every item of the task file the study samples from (not only the sample, so the
budget does not move with the sample size or the seed):

    budget = max(MIN_TOKENS, ceil(HEADROOM * p99)),  then at most ``evaluation.max_new_tokens``

- ``p99``: the nearest-rank 99th percentile of the answers' token counts, the length that 99% of
  them do not exceed. Gold answers cut at the budget then score within a point of uncut ones on
  every LawBench task (``tests/test_budgets.py`` checks it on all 20 tasks).
- ``HEADROOM`` (x1.25): a model's answer in the expected form is rarely the gold answer token for
  token; it restates the question or cites the article in full ("根据《…法》第…条规定：").
- ``MIN_TOKENS`` (32): for one-label tasks (p99 of 9-13 tokens) a short lead-in such as
  "正确答案是：" must not cut off the label.

Generation stops at the end of the answer (EOS or the chat template's end-of-turn), so a budget
costs time only for a model that does not stop. A task whose budget exceeds the cap generates
the cap and is marked ``capped`` in every result and table, with its ceiling: the score of its
gold answers cut at the cap.

**Prompts longer than the context.** OpenCompass, which ran LawBench for its paper (max_out_len
1,024), tokenizes every prompt with ``truncation=True, max_length=max_seq_len - max_out_len`` and
its model configs set ``truncation_side='left'`` (``opencompass/models/huggingface.py`` and
``huggingface_above_v4_33.py``, whose default is left too; the optional ``mode='mid'`` that keeps
both ends is not what its LawBench runs used): a prompt that does not fit loses its beginning.
lm-eval's HFLM and vLLM backends do the same by themselves (left, at ``max_length -
max_gen_toks``). Here the cut is made once, when the suite is built, the same for every backend:
the user message loses tokens from its start until the prompt, through the chat template, plus
the task's budget fit the model's context (``max_position_embeddings``, as lm-eval resolves it).
The template's own tokens stay; the scorer still reads the whole prompt (2-1 takes its sentence
from it). Every result counts the cut prompts per task. The cut and every token count here go
through the one prompt renderer (``core/prompts.py``: ``prompt_ids``, ``fit_left``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

QUANTILE = 0.99
HEADROOM = 1.25
MIN_TOKENS = 32


@dataclass(frozen=True)
class Budget:
    """One task's generation budget and how it was derived (every field is recorded in results)."""

    max_new_tokens: int       # what the task generates at most
    needed_tokens: int        # the rule's budget before the cap
    answer_tokens_p99: int    # the 99th percentile of the gold answers' token counts
    answers: int              # gold answers the percentile is taken over
    answers_over_budget: int  # of those, how many are longer than max_new_tokens
    capped: bool              # the cap is below HEADROOM x p99: the task's answers do not fit

    def record(self) -> dict:
        return asdict(self)


def answer_tokens(tokenizer, answers: list[str]) -> list[int]:
    """Return each answer's length in tokens, as the model would generate it (no special tokens)."""
    if not answers:
        return []
    return [len(ids) for ids in tokenizer(list(answers), add_special_tokens=False)["input_ids"]]


def percentile(lengths: list[int], q: float = QUANTILE) -> int:
    """Return the nearest-rank ``q`` quantile of ``lengths``: the smallest value that ``q`` of them do not exceed.

    >>> percentile(list(range(1, 101)))
    99
    >>> percentile([5, 40])
    40
    """
    if not lengths:
        raise ValueError("no lengths to take a percentile of")
    ordered = sorted(lengths)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def derive(lengths: list[int], cap: int) -> Budget:
    """Return the budget for answers of these token lengths, at most ``cap`` tokens.

    >>> b = derive([10] * 99 + [400], cap=96)
    >>> b.max_new_tokens, b.needed_tokens, b.capped
    (32, 32, False)
    >>> b = derive([300] * 100, cap=96)
    >>> b.max_new_tokens, b.needed_tokens, b.capped, b.answers_over_budget
    (96, 375, True, 100)
    """
    p99 = percentile(lengths)
    needed = max(MIN_TOKENS, math.ceil(HEADROOM * p99))
    budget = min(needed, cap)
    # MIN_TOKENS is room for a lead-in, not for the answer: a cap below it alone caps nothing.
    return Budget(max_new_tokens=budget, needed_tokens=needed, answer_tokens_p99=p99, answers=len(lengths),
                  answers_over_budget=sum(n > budget for n in lengths), capped=math.ceil(HEADROOM * p99) > cap)


def cut(tokenizer, text: str, max_tokens: int) -> str:
    """Return ``text`` cut after its first ``max_tokens`` tokens, as a generation stopped there reads."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)


def end_of_turn(tokenizer) -> str | None:
    """Return the special token the chat template closes an assistant turn with, ``None`` without one.

    SmolLM2 and Qwen2.5 close it with their EOS (``<|im_end|>``); some templates use another token
    (Llama 3's ``<|eot_id|>``), which must stop generation too.
    """
    if not getattr(tokenizer, "chat_template", None):
        return None
    marker = "ORDERSTUDYMARKER"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}], tokenize=False)
    except Exception:  # a template that refuses this conversation shape says nothing about its end token
        return None
    after = text[text.rfind(marker) + len(marker):].strip()
    specials = sorted(set(tokenizer.all_special_tokens) | set(getattr(tokenizer, "added_tokens_encoder", {})),
                      key=len, reverse=True)
    return next((s for s in specials if s and after.startswith(s)), None)


def stop_sequences(tokenizer, chat: bool) -> list[str]:
    """Return the strings that end a generation: the EOS token and, through the template, its end-of-turn token."""
    stops = [tokenizer.eos_token] if tokenizer.eos_token else []
    turn_end = end_of_turn(tokenizer) if chat else None
    if turn_end and turn_end not in stops:
        stops.append(turn_end)
    return stops
