"""Tasks scored on numbers read out of the prediction: 3-1 (articles), 3-4/3-5 (prison terms), 3-7 (amounts).

Chinese numerals are turned into digits with cn2an's ``transform(text, "cn2an")``, as LawBench does
(``evaluation_functions/ljp_article.py``, ``ljp_imprison.py``); the regular expressions and the
order in which candidate numbers are taken are LawBench's, quirks included (see each function).
"""

from __future__ import annotations

import math
import re
import warnings
from functools import lru_cache

import cn2an

from .errors import LawBenchInputError
from .labels import set_f1

# 3-4/3-5: the log-distance given to an abstention, and the normaliser of the published score
# ("Normalized log-distance" = (log 216 - mean distance) / log 216).
LOG_216 = math.log(216)


@lru_cache(maxsize=4096)
def to_digits(text: str) -> str:
    """Return ``text`` with its Chinese numerals written in digits (cn2an, warnings silenced).

    cn2an warns (``UserWarning``) about every run of numeral characters it cannot read and leaves
    that run as it was; the warnings say nothing a scorer can act on.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cn2an.transform(text, "cn2an")


# ---------------------------------------------------------------------------------------------
# 3-1 法条预测(基于事实): F1 between the article numbers of the answer and those of the prediction.

def answer_articles(answer: str) -> set[int]:
    """Return the article numbers of a 3-1 answer ``法条:刑法第264、67条``."""
    if not (answer.startswith("法条:刑法第") and answer.endswith("条")):
        raise LawBenchInputError(f"answer {answer!r} is not in LawBench's form '法条:刑法第<n>、<n>条'")
    numbers = answer.replace("法条:刑法第", "").replace("条", "").split("、")
    if not all(n.isdigit() for n in numbers):
        raise LawBenchInputError(f"answer {answer!r}: article numbers must be digits")
    articles = {int(n) for n in numbers}
    if max(articles) > 490:
        raise LawBenchInputError(f"answer {answer!r}: the Criminal Law has 490 articles")
    return articles


def predicted_articles(prediction: str) -> set[int]:
    """Return the article numbers LawBench reads from a 3-1 prediction.

    The prediction is cut at every "、"; in each piece, "第…款" spans are deleted, "第…条" is
    replaced by what is between 第 and 条, numerals become digits, and the first number left in the
    piece is taken. So "第二百六十四条第一款" gives 264, but so does the first number of any piece,
    e.g. a year in "2016年起…、".
    """
    articles = set()
    for chunk in prediction.split("、"):
        chunk = chunk.replace("万元", "元")
        chunk = re.sub(r"第(.*?)款", "", chunk)
        chunk = re.sub(r"第(.*?)条", lambda match: match.group(1), chunk)
        numbers = re.findall(r"\d+", to_digits(chunk))
        if numbers:
            articles.add(int(numbers[0]))
    return articles


def score_articles(prediction: str, answer: str) -> tuple[float, bool]:
    """Return (F1, abstained) for 3-1; an abstention is a prediction in which no number is found."""
    gold = answer_articles(answer)
    predicted = predicted_articles(prediction)
    return set_f1(predicted, gold), not predicted


# ---------------------------------------------------------------------------------------------
# 3-4 / 3-5 刑期预测: log distance between predicted and true months, normalised by log(216).

def answer_months(answer: str) -> int | None:
    """Return the months of a 3-4/3-5 answer ``刑期:21个月``; ``None`` for 死刑/无期, which LawBench leaves out."""
    if "死刑" in answer or "无期" in answer:
        return None
    if not (answer.startswith("刑期:") and answer.endswith("个月")):
        raise LawBenchInputError(f"answer {answer!r} is not in LawBench's form '刑期:<n>个月'")
    months = answer.replace("刑期:", "").replace("个月", "")
    if not months.isdigit():
        raise LawBenchInputError(f"answer {answer!r}: the number of months must be digits")
    return int(months)


def predicted_months(prediction: str) -> int | None:
    """Return the months LawBench reads from a prison-term prediction, ``None`` when it finds none.

    After numerals become digits: the first "<n>个月", else the first "<n>月", else 12 times the
    first "<n>年". So "1年6个月" reads as 6 months and a date such as "2016年3月" as 3 months.
    """
    text = to_digits(prediction)
    months = [int(m) for m in re.findall(r"(\d+)个月", text)] + [int(m) for m in re.findall(r"(\d+)月", text)]
    if months:
        return months[0]
    years = re.findall(r"(\d+)年", text)
    if years:
        return int(years[0]) * 12
    return None


def log_distance(prediction: str, true_months: int) -> tuple[float, bool]:
    """Return (|log(true+1) - log(predicted+1)|, abstained); an abstention costs log(216)."""
    months = predicted_months(prediction)
    if months is None:
        return LOG_216, True
    return abs(math.log(true_months + 1) - math.log(months + 1)), False


def score_prison_term(prediction: str, answer: str) -> tuple[float, bool]:
    """Return (1 - distance/log 216 clipped to [0, 1], abstained) for 3-4/3-5; NaN for 死刑/无期 items.

    The task score is LawBench's (log 216 - mean distance) / log 216, computed from the unclipped
    distances, so it equals the mean of these item scores unless a prediction is more than 216
    times too long or too short (then the item is clipped to 0 here but counts below 0 there).
    """
    true_months = answer_months(answer)
    if true_months is None:
        return float("nan"), False
    distance, abstained = log_distance(prediction, true_months)
    return min(1.0, max(0.0, 1.0 - distance / LOG_216)), abstained


# ---------------------------------------------------------------------------------------------
# 3-7 犯罪金额计算: right when the answer's amount is among the numbers written in the prediction.

def answer_amount(answer: str) -> float:
    """Return the amount of a 3-7 answer ``上文涉及到的犯罪金额:8500.0元。``."""
    prefix = "上文涉及到的犯罪金额:"
    if not (answer.startswith(prefix) and answer.endswith("元。")):
        raise LawBenchInputError(f"answer {answer!r} is not in LawBench's form '{prefix}<amount>元。'")
    amount = answer.replace(prefix, "")
    if "千元" in amount or "万" in amount:
        raise LawBenchInputError(f"answer {answer!r}: the amount must be in 元, without 千元 or 万")
    try:
        return float(amount.replace("元。", ""))
    except ValueError:
        raise LawBenchInputError(f"answer {answer!r}: the amount is not a number") from None


def score_amount(prediction: str, answer: str) -> tuple[float, bool]:
    """Return (1.0 if the amount is one of the prediction's numbers else 0.0, no number in it).

    Numbers are read with LawBench's ``\\d+\\.?\\d*`` and compared as floats: "8500元" and
    "8500.00元" match 8500.0, but "8,500元" (two numbers) and "八千五百元" (no digits; LawBench
    does not convert numerals here) do not.
    """
    amount = answer_amount(answer)
    numbers = [float(n) for n in re.findall(r"\d+\.?\d*", prediction)]
    return (1.0 if amount in numbers else 0.0), not numbers
