"""Extraction tasks scored on characters: 2-5 (reading comprehension), 2-6 (entities), 2-10 (triggers).

All three rest on the CAIL/CJRC reading-comprehension F1 (LawBench's ``utils/rc_f1.py``): text is
lower-cased, every character that is neither a letter nor a digit is dropped (Chinese characters
count as letters), and the F1 is taken over the remaining characters as a multiset.
"""

from __future__ import annotations

import re
from collections import Counter

from .errors import LawBenchInputError


def rc_tokens(text: str) -> list[str]:
    """Return the characters CJRC's F1 compares: lower-cased letters and digits, in order."""
    return [ch for ch in text.lower() if ch.isdigit() or ch.isalpha()]


def rc_f1(gold: str, predicted: str) -> float:
    """Return CJRC's character F1; when either side has no characters, 1 if both are empty else 0."""
    gold_tokens, predicted_tokens = rc_tokens(gold), rc_tokens(predicted)
    if not gold_tokens or not predicted_tokens:
        return float(gold_tokens == predicted_tokens)
    same = sum((Counter(gold_tokens) & Counter(predicted_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(predicted_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def score_reading(prediction: str, answer: str) -> tuple[float, bool]:
    """Return (F1, False) for 2-5 阅读理解; the answer's ``回答:`` is removed first. No abstention is defined."""
    return rc_f1(answer.replace("回答:", ""), prediction), False


# ---------------------------------------------------------------------------------------------
# 2-6 命名实体识别 (LawBench's utils/comprehension_scores.py: compute_ie_f1)

ENTITY_TYPES = ("犯罪嫌疑人", "受害人", "被盗货币", "物品价值", "盗窃获利", "被盗物品", "作案工具", "时间", "地点", "组织机构")


def answer_entities(answer: str) -> dict[str, str]:
    """Return {type: text} of a 2-6 answer ``受害人:严某某;被盗物品:手机`` (empty answer: no entities)."""
    entities = {}
    if answer.strip() == "":
        return entities
    for segment in answer.split(";"):
        parts = segment.split(":")
        if len(parts) < 2:
            raise LawBenchInputError(f"answer {answer!r}: segment {segment!r} is not '<type>:<text>'")
        entities[parts[0]] = parts[1]
    return entities


def predicted_entities(prediction: str) -> dict[str, str]:
    """Return {type: text} as LawBench reads them from a prediction.

    For every occurrence of a type name followed by ":" or "：" (and not within the last two
    characters), the text is what follows, up to the first newline or space, so in
    "受害人:严某某;被盗物品:手机" the 受害人 text runs on to the end: "严某某;被盗物品:手机".
    A later occurrence of a type replaces an earlier one; "无" and "未提及" are ignored.
    """
    entities = {}
    for etype in ENTITY_TYPES:
        for match in re.finditer(etype, prediction):
            end = match.end()
            if end >= len(prediction) - 2:
                continue
            if prediction[end] in (":", "："):
                text = re.split("\n| ", prediction[end + 1:].strip())[0].strip()
                if text not in ("无", "未提及"):
                    entities[etype] = text
    return entities


def score_entities(prediction: str, answer: str) -> tuple[float, bool]:
    """Return (soft F1, abstained) for 2-6.

    Precision and recall are the sums of the CJRC F1 of each predicted type's text against the
    answer's text of the same type, over the number of predicted and answered types; F1 is
    2PR/(P+R+1e-10). An answer without entities scores 1 when the prediction has none, else 0.
    An abstention is a prediction without entities when the answer has some.
    """
    gold = answer_entities(answer)
    predicted = predicted_entities(prediction)
    if not gold:
        return (1.0 if not predicted else 0.0), False
    matched = [rc_f1(gold[etype], text) for etype, text in predicted.items() if etype in gold]
    precision = sum(matched) / len(predicted) if predicted else 0.0
    recall = sum(matched) / len(gold)
    return 2 * precision * recall / (precision + recall + 1e-10), not predicted


# ---------------------------------------------------------------------------------------------
# 2-10 触发词提取 (LawBench's evaluation_functions/sjjc.py: compute_cfcy)

def score_triggers(prediction: str, answer: str) -> tuple[float, bool]:
    """Return (soft F1, False) for 2-10; no abstention is defined.

    Answer and prediction are cut at ";" and compared position by position (the i-th predicted
    word against the i-th answer word, CJRC F1); precision and recall divide the sum by the
    number of predicted and answer words, and F1 is 2PR/(P+R+1e-10). The right words in another
    order, or separated by "；" or "、", score less.
    """
    answers = answer.split(";")
    predictions = prediction.split(";")
    matched = [rc_f1(a, p) for a, p in zip(answers, predictions)]
    precision = sum(matched) / len(predictions)
    recall = sum(matched) / len(answers)
    return 2 * precision * recall / (precision + recall + 1e-10), False
