"""Generation tasks (1-1, 2-7, 3-2, 3-8): ROUGE-L F over jieba-segmented Chinese, as LawBench computes it.

LawBench (``utils/function_utils.py: compute_rouge``) segments both texts with jieba, joins the
words with spaces, replaces a hypothesis that is empty after segmentation with "无内容", and takes
rouge-chinese's ROUGE-L "f" for each pair; the task score is the mean over items. rouge-chinese
1.0.3 computes ROUGE-L on the whole word sequences (one LCS, F = 2PR/(P+R+1e-8)). 1-1 removes
"答案:" from the answer first, the other three use it as it is. No abstention is defined.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from .errors import LawBenchInputError


@lru_cache(maxsize=1)
def _jieba():
    """Return jieba, its logger quietened (it prints "Building prefix dict…" at level DEBUG/INFO)."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


@lru_cache(maxsize=1)
def _rouge():
    from rouge_chinese import Rouge

    # Only ROUGE-L is used; the values are the same as with rouge-chinese's default metrics.
    return Rouge(metrics=["rouge-l"])


def segment(text: str) -> str:
    """Return ``text`` cut into words by jieba (default mode, HMM on) and joined with spaces."""
    return " ".join(_jieba().cut(text))


def rouge_l(prediction: str, answer: str) -> float:
    """Return rouge-chinese's ROUGE-L F of the segmented prediction against the segmented answer."""
    hypothesis = segment(prediction)
    if hypothesis.strip() == "":
        hypothesis = "无内容"
    reference = segment(answer)
    if reference.strip() == "":
        raise LawBenchInputError("the answer is empty; ROUGE-L needs a reference text")
    return float(_rouge().get_scores([hypothesis], [reference])[0]["rouge-l"]["f"])


def score_recitation(prediction: str, answer: str) -> tuple[float, bool]:
    """Return (ROUGE-L, False) for 1-1 法条背诵, whose answers start with "答案:" (removed)."""
    return rouge_l(prediction, answer.replace("答案:", "")), False


def score_generation(prediction: str, answer: str) -> tuple[float, bool]:
    """Return (ROUGE-L, False) for 2-7 舆情摘要, 3-2 法条预测(基于场景) and 3-8 咨询."""
    return rouge_l(prediction, answer), False
