"""How a prompt becomes the model's tokens, and how a prompt is cut to fit a length: one renderer.

``prompt_ids`` renders a ``Prompt`` exactly as lm-eval does for a zero-shot task, and is the only
place that does: the generation budgets, the cut of an evaluated prompt to the model's context,
the lm-eval tasks' prompts (a test compares them token for token on every task), training pairs
and calibration text all go through it. Through the model's chat template (a system turn for the
task's description when it has one, a user turn, the generation prompt), or as plain text (the
description, then the user text), the study's top-level ``chat_template`` deciding for training,
calibration and evaluation alike. The text is then encoded as lm-eval's HFLM encodes a context:
with the tokenizer's own special tokens, unless the text already starts with its BOS token.

Two cuts, the same arguments in the same order ``(tokenizer, prompt, chat, limit)``:

- ``fit_left`` (evaluation): the user text loses tokens from its start until the prompt fits,
  as OpenCompass's and lm-eval's left truncation do (``benchmarks/budgets.py`` says why).
- ``fit_middle`` (training pairs): the user text loses its middle. ``encode_pair`` makes a
  supervised pair fit ``max_len`` without ever cutting the answer or its EOS: the head
  (LawBench's instruction: what to do and in which form to answer) and the tail (the end of the
  question: the options, the "答案:" cue) are kept, part of the case text between them goes, and
  the template is applied to the cut content, so its special tokens and turn structure are
  intact. This is OpenCompass's ``mode='mid'`` truncation, done on characters so the cut text is
  still text. A left cut would drop the instruction, and the model would learn the answer's form
  without being told it. A pair whose answer leaves no room for ``MIN_PROMPT_TOKENS`` of the
  prompt is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# A pair is trained on only if at least this many tokens of its prompt's content fit beside the
# answer (or the whole content, when shorter): an answer with next to no question teaches nothing.
MIN_PROMPT_TOKENS = 16


@dataclass(frozen=True)
class Prompt:
    """One item's prompt as lm-eval shows it: an optional system text (the task's description) and the user text.

    Through a chat template the two are a system and a user turn; as plain text they are joined,
    the description first: what lm-eval renders for a zero-shot task.
    """

    user: str
    system: str = ""

    def messages(self) -> list[dict[str, str]]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": self.user}]

    def text(self) -> str:
        return self.system + self.user

    def with_user(self, user: str) -> "Prompt":
        return replace(self, user=user)


def as_prompt(prompt) -> Prompt:
    return prompt if isinstance(prompt, Prompt) else Prompt(prompt)


def encode_context(tokenizer, text: str) -> list[int]:
    """Return ``text``'s token ids as lm-eval's HFLM encodes a context (its BOS rule included)."""
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos):
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(text)["input_ids"])


def render(tokenizer, prompt, chat: bool) -> str:
    """Return the prompt's text as the model reads it: through the chat template when ``chat`` and the tokenizer has one."""
    prompt = as_prompt(prompt)
    if chat and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(prompt.messages(), tokenize=False, add_generation_prompt=True)
    return prompt.text()


def prompt_ids(tokenizer, prompt, chat: bool) -> list[int]:
    """Return the token ids of ``prompt`` (a ``Prompt`` or a user text) as the evaluation presents it, ready for the answer."""
    return encode_context(tokenizer, render(tokenizer, prompt, chat))


def prompt_tokens(tokenizer, prompt, chat: bool) -> int:
    """Return how many tokens ``prompt`` takes as the model sees it."""
    return len(prompt_ids(tokenizer, prompt, chat))


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


def fit_middle(tokenizer, text: str, chat: bool, budget: int) -> tuple[list[int], int] | None:
    """Return ``(prompt ids, characters cut)`` for ``text`` within ``budget`` tokens, its middle cut, template included.

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
    fitted = fit_middle(tokenizer, prompt, chat, max_len - len(answer))
    if fitted is None:
        return None
    ids, cut = fitted
    return {"input_ids": ids + answer, "labels": [-100] * len(ids) + answer, "prompt_cut_chars": cut}


def fit_left(tokenizer, prompt, chat: bool, limit_tokens: int) -> tuple[str, int]:
    """Return the user text of ``prompt`` cut from the left so that the prompt takes at most ``limit_tokens``, and the tokens cut.

    An untouched prompt comes back as it is, with 0. The cut is on tokens of the user text; a cut
    inside a multi-byte character drops the broken piece too.
    """
    prompt = as_prompt(prompt)
    total = prompt_tokens(tokenizer, prompt, chat)
    if total <= limit_tokens:
        return prompt.user, 0
    ids = tokenizer(prompt.user, add_special_tokens=False)["input_ids"]
    drop = total - limit_tokens
    while drop < len(ids):
        kept = tokenizer.decode(ids[drop:], skip_special_tokens=False).lstrip("\ufffd")
        now = prompt_tokens(tokenizer, prompt.with_user(kept), chat)
        if now <= limit_tokens:
            return kept, total - now
        drop += max(1, now - limit_tokens)
    raise ValueError(f"the chat template alone takes more than {limit_tokens} tokens; nothing of the prompt fits")
