"""How a prompt becomes the model's tokens, and how a training pair is made to fit a length.

``prompt_ids`` renders a prompt the way the evaluation does: as a user turn through the model's
chat template (with the generation prompt), or as plain text, the study's top-level
``chat_template`` deciding for training, calibration and evaluation alike.

``encode_pair`` makes a supervised pair fit ``max_len`` without ever cutting the answer or its EOS:
when the prompt is too long, its user content is cut in the middle — the head (LawBench's
instruction: what to do and in which form to answer) and the tail (the end of the question: the
options, the "答案:" cue) are kept, part of the case text between them goes — and the template is
applied to the cut content, so its special tokens and turn structure are intact. This is
OpenCompass's ``mode='mid'`` truncation, done on characters so the cut text is still text. A
left cut would drop the instruction, and the model would learn the answer's form without being
told it. A pair whose answer leaves no room for ``MIN_PROMPT_TOKENS`` of the prompt is dropped.
"""

from __future__ import annotations

# A pair is trained on only if at least this many tokens of its prompt's content fit beside the
# answer (or the whole content, when shorter): an answer with next to no question teaches nothing.
MIN_PROMPT_TOKENS = 16


def prompt_ids(tokenizer, text: str, chat: bool) -> list[int]:
    """Return the token ids of ``text`` as the evaluation presents it, ready for the answer.

    Through the chat template when ``chat`` and the tokenizer has one (as lm-eval's
    ``apply_chat_template=True``), else the plain text as lm-eval encodes a context.
    """
    if chat and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    return list(tokenizer(text)["input_ids"])


def answer_ids(tokenizer, answer: str) -> list[int]:
    """Return the answer's token ids followed by the EOS token, which training must learn to emit."""
    return list(tokenizer(answer, add_special_tokens=False)["input_ids"]) + (
        [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


def cut_middle(tokenizer, text: str, keep_tokens: int) -> str:
    """Return ``text`` with its middle removed so that about ``keep_tokens`` of its tokens remain.

    The first half of the kept tokens and the last half are kept, cut at character boundaries.
    """
    try:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    except NotImplementedError:  # a slow (Python) tokenizer has no offsets: cut characters in proportion
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        chars = len(text) * max(keep_tokens, 0) // max(n, 1)
        return text if keep_tokens >= n else text[:(chars + 1) // 2] + text[len(text) - chars // 2:]
    n = len(offsets)
    if keep_tokens >= n:
        return text
    if keep_tokens <= 0:
        return ""
    head = (keep_tokens + 1) // 2
    tail = keep_tokens - head
    return text[:offsets[head - 1][1]] + (text[offsets[n - tail][0]:] if tail else "")


def fit_prompt(tokenizer, text: str, chat: bool, budget: int) -> tuple[list[int], int] | None:
    """Return ``(prompt ids, characters cut)`` for ``text`` within ``budget`` tokens, template included.

    ``None`` when even the template with ``MIN_PROMPT_TOKENS`` of the content does not fit.
    """
    ids = prompt_ids(tokenizer, text, chat)
    if len(ids) <= budget:
        return ids, 0
    overhead = len(prompt_ids(tokenizer, "", chat))
    content = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    keep = budget - overhead
    if keep < min(MIN_PROMPT_TOKENS, content):
        return None
    # Text cut at a token boundary may tokenize to a token or two more once joined: shrink until it fits.
    while keep >= min(MIN_PROMPT_TOKENS, content):
        cut = cut_middle(tokenizer, text, keep)
        ids = prompt_ids(tokenizer, cut, chat)
        if len(ids) <= budget:
            return ids, len(text) - len(cut)
        keep -= len(ids) - budget
    return None


def encode_pair(tokenizer, prompt: str, answer: str, max_len: int, chat: bool) -> dict | None:
    """Return ``{"input_ids", "labels", "prompt_cut_chars"}`` for one pair within ``max_len`` tokens.

    Labels mask the prompt with -100; the whole answer and its EOS are always there. ``None`` when
    the answer leaves no room for the prompt (see ``MIN_PROMPT_TOKENS``).
    """
    answer = answer_ids(tokenizer, answer)
    fitted = fit_prompt(tokenizer, prompt, chat, max_len - len(answer))
    if fitted is None:
        return None
    ids, cut = fitted
    return {"input_ids": ids + answer, "labels": [-100] * len(ids) + answer, "prompt_cut_chars": cut}
