"""Single-answer questions (1-2, 2-2, 2-4, 2-8, 3-6): LawBench's option-counting judge.

LawBench (``utils/function_utils.py: multi_choice_judge``) does not parse an answer out of the
prediction. It checks, for every option, whether the option's text occurs anywhere in the
prediction: an item is correct when the right option occurs and no other option does, and it is
an abstention when no option occurs at all. So "答案是A" is right, "A，不是B" is wrong (two
options occur), and for letter options any capital A-E anywhere in the text counts, even inside
an English word. These quirks are kept on purpose: they are how the published numbers were made.
"""

from __future__ import annotations

from .errors import LawBenchInputError

LETTERS_ABCD = ("A", "B", "C", "D")
LETTERS_ABCDE = ("A", "B", "C", "D", "E")

# 2-2 纠纷焦点识别: the 16 dispute-focus labels of evaluation_functions/jdzy.py, in its order.
DISPUTE_FOCI = (
    "诉讼主体", "租金情况", "利息", "本金争议", "责任认定", "责任划分", "损失认定及处理",
    "原审判决是否适当", "合同效力", "财产分割", "责任承担", "鉴定结论采信问题", "诉讼时效", "违约",
    "合同解除", "肇事逃逸",
)

# 2-4 问题主题识别: the 20 consultation topics of evaluation_functions/zxfl.py, in its order.
CONSULTATION_TOPICS = (
    "婚姻家庭", "劳动纠纷", "交通事故", "债权债务", "刑事辩护", "合同纠纷", "房产纠纷", "侵权",
    "公司法", "医疗纠纷", "拆迁安置", "行政诉讼", "建设工程", "知识产权", "综合咨询", "人身损害",
    "涉外法律", "海事海商", "消费权益", "抵押担保",
)

# LawBench leaves out of 2-2's score the items whose label is 赔偿, which is not among the 16
# options ("todo: dataset imperfection" in jdzy.py); they still count in the abstention rate's n.
JDZY_EXCLUDED_LABEL = "赔偿"


def judge(prediction: str, options: tuple[str, ...], answer: str) -> tuple[float, bool]:
    """Return (1.0 if only the right option occurs in the prediction else 0.0, no option occurs)."""
    if answer not in options:
        raise LawBenchInputError(f"answer option {answer!r} is not one of {', '.join(options)}")
    found = {option for option in options if option in prediction}
    if not found:
        return 0.0, True
    return (1.0 if found == {answer} else 0.0), False


def letter_answer(answer: str, prefixes: tuple[str, ...], letters: tuple[str, ...]) -> str:
    """Return the option letter of a LawBench answer such as ``正确答案：B。`` or ``[正确答案]C<eoa>``."""
    for prefix in prefixes:
        if answer.startswith(prefix) and len(answer) > len(prefix) and answer[len(prefix)] in letters:
            return answer[len(prefix)]
    expected = " or ".join(f"'{p}X…'" for p in prefixes)
    raise LawBenchInputError(f"answer {answer!r} is not in LawBench's form {expected} with X one of {''.join(letters)}")


# LawBench checks 1-2's answers against the full-width colon and 3-6's against the ASCII one,
# as its data has them; either colon is accepted here, which changes no score (the letter is
# read from the same place).
_EXAM_PREFIXES = ("正确答案：", "正确答案:")


def score_exam(prediction: str, answer: str) -> tuple[float, bool]:
    """Return (score, abstained) for 1-2 知识问答 and 3-6 案例分析 (options A-D)."""
    return judge(prediction, LETTERS_ABCD, letter_answer(answer, _EXAM_PREFIXES, LETTERS_ABCD))


def score_argument(prediction: str, answer: str) -> tuple[float, bool]:
    """Return (score, abstained) for 2-8 论点挖掘 (options A-E, answer ``[正确答案]C<eoa>``)."""
    return judge(prediction, LETTERS_ABCDE, letter_answer(answer, ("[正确答案]",), LETTERS_ABCDE))


def dispute_focus_label(answer: str) -> str:
    """Return the label of a 2-2 answer ``争议焦点类别：责任认定。`` (LawBench's ``answer[7:-1]``)."""
    prefix = "争议焦点类别："
    if not answer.startswith(prefix) or len(answer) <= len(prefix) + 1:
        raise LawBenchInputError(f"answer {answer!r} is not in LawBench's form '{prefix}<label>。'")
    return answer[len(prefix):-1]


def score_dispute_focus(prediction: str, answer: str) -> tuple[float, bool]:
    """Return (score, abstained) for 2-2 纠纷焦点识别; the score is NaN for 赔偿 items LawBench leaves out."""
    label = dispute_focus_label(answer)
    if label == JDZY_EXCLUDED_LABEL:
        return float("nan"), False
    return judge(prediction, DISPUTE_FOCI, label)


def score_topic(prediction: str, answer: str) -> tuple[float, bool]:
    """Return (score, abstained) for 2-4 问题主题识别, whose answer is the bare topic (``婚姻家庭``)."""
    return judge(prediction, CONSULTATION_TOPICS, answer)
