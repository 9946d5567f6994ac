"""The words a report prints, in English or in the reference study's Chinese.

With ``language="zh"`` every row and column label is the one the reference study prints
(``lib/orderstudy/reference/reference_study.md``), so a new study can be laid next to it line by
line: 原始模型, 微调 → 剪枝 → 量化, 剪枝 → 剪枝微调, LawBench 变化率%, 模型大小, 不适用.
"""

from __future__ import annotations

from ..plan import BASE, parse_ordering

LANGUAGES = ("en", "zh")

# How the reference study spells each benchmark; the study's own keys are lawbench, stem, mmlu_law.
BENCHMARK_NAMES = {"lawbench": "LawBench", "stem": "stem", "mmlu_law": "mmlu_law"}

_OPERATION = {
    "en": {"F": "fine-tune", "P": "prune", "Q": "quantize"},
    "zh": {"F": "微调", "P": "剪枝", "Q": "量化"},
}
_BASE = {"en": "base model", "zh": "原始模型"}
_ARROW = " → "
# A state named by its operations run together: 剪枝微调 (pruned, then fine-tuned). English needs
# a separator to stay readable.
_JOIN = {"en": " + ", "zh": ""}

_WORDS = {
    "en": {
        "ordering": "Ordering",
        "comparison": "Comparison",
        "score": "",
        "change": "change",
        "change_pct": "change %",
        "size": "Size",
        "compression": "Compression",
        "status": "Status",
        "not_applicable": "N/A",
        "not_run": "not run",
        "failed": "failed",
        "F": "Fine-tuning",
        "P": "Pruning",
        "Q": "Quantization",
        "order_effects": "Order effects",
        "pair": "Orderings compared (A vs B)",
        "differs_by": "How they differ",
        "diff": "B − A",
        "swap": "swap {a} and {b}",
        "rotation": "rotation",
        "adjacent": "adjacent",
        "significant": "* the {confidence:.0%} interval excludes zero.",
        "interval_note": (
            "Brackets: {confidence:.0%} bootstrap interval over the benchmark's items "
            "({resamples} resamples, seed {seed}); change intervals are paired (both models "
            "scored on the same resampled items)."
        ),
        "failed_note": "failed at step {step}: {type}: {message}",
        "failed_note_nostep": "failed: {type}: {message}",
        "undefined_note": "{benchmark}: change rate undefined: {reason}",
        "capped_note": (
            "Capped (generation stopped before the answers' length, evaluation.max_new_tokens): {tasks}. "
            "These tasks' scores, and so their benchmark's, are bounded by that ceiling."
        ),
        "capped_task": "{benchmark} {task} at {tokens} new tokens (ceiling {ceiling})",
    },
    "zh": {
        "ordering": "操作顺序描述",
        "comparison": "比较",
        "score": "",
        "change": "变化",
        "change_pct": "变化率%",
        "size": "模型大小",
        "compression": "压缩比",
        "status": "状态",
        "not_applicable": "不适用",
        "not_run": "未运行",
        "failed": "失败",
        "F": "微调",
        "P": "剪枝",
        "Q": "量化",
        "order_effects": "顺序效应",
        "pair": "比较 (A 与 B)",
        "differs_by": "差别",
        "diff": "B − A",
        "swap": "交换{a}与{b}",
        "rotation": "轮换",
        "adjacent": "相邻",
        "significant": "* {confidence:.0%} 区间不含零。",
        "interval_note": (
            "括号内为 {confidence:.0%} 自助法区间（对基准题目重抽样 {resamples} 次，种子 {seed}）；"
            "变化的区间为配对区间（两个模型使用同一组重抽样题目）。"
        ),
        "failed_note": "在步骤 {step} 失败：{type}: {message}",
        "failed_note_nostep": "失败：{type}: {message}",
        "undefined_note": "{benchmark}：变化率无定义：{reason}",
        "capped_note": "生成长度受限（evaluation.max_new_tokens 短于答案长度）：{tasks}。这些任务及其基准的得分以此上限为界。",
        "capped_task": "{benchmark} {task} 最多生成 {tokens} 个词元（上限 {ceiling}）",
    },
}


def check_language(language: str) -> str:
    """Return ``language`` if it is one the report speaks, else raise naming the choices."""
    if language not in LANGUAGES:
        raise ValueError(f"report language {language!r}: expected one of {', '.join(LANGUAGES)}")
    return language


def word(key: str, language: str) -> str:
    """Return the report's word for ``key`` in ``language``."""
    return _WORDS[check_language(language)][key]


def operation_name(op: str, language: str) -> str:
    """Return an operation's name: ``P`` -> ``prune`` / ``剪枝``."""
    return _OPERATION[check_language(language)][op]


def benchmark_name(benchmark: str) -> str:
    """Return a benchmark's printed name (``lawbench`` -> ``LawBench``), unknown ones unchanged."""
    return BENCHMARK_NAMES.get(benchmark, benchmark)


def ordering_label(ordering: str, language: str) -> str:
    """Return a main-table row name: ``F>P>Q`` -> ``fine-tune → prune → quantize`` / ``微调 → 剪枝 → 量化``."""
    ops = parse_ordering(ordering)
    if not ops:
        return _BASE[check_language(language)]
    return _ARROW.join(operation_name(op, language) for op in ops)


def state_label(state: str, language: str) -> str:
    """Return a model state's name, operations run together: ``Q>F`` -> ``量化微调`` / ``quantize + fine-tune``."""
    ops = parse_ordering(state)
    if not ops:
        return _BASE[check_language(language)]
    return _JOIN[language].join(operation_name(op, language) for op in ops)


def transition_label(before: str, after: str, language: str) -> str:
    """Return a per-operation row name: ``('P', 'P>F')`` -> ``剪枝 → 剪枝微调``."""
    return f"{state_label(before, language)}{_ARROW}{state_label(after, language)}"


def pair_label(a: str, b: str, language: str) -> str:
    """Return an order-effect row name: ``F → Q`` vs ``Q → F`` (the orderings, arrowed)."""
    return f"{ordering_label(a, language)}  vs  {ordering_label(b, language)}"


def state_from_label(label: str) -> str:
    """Return the state a Chinese state name stands for: ``量化微调`` -> ``Q>F``, ``原始模型`` -> ``base``.

    >>> state_from_label("微调剪枝量化")
    'F>P>Q'
    """
    label = label.strip()
    if label == _BASE["zh"]:
        return BASE
    by_name = {name: op for op, name in _OPERATION["zh"].items()}
    # Every Chinese operation name is two characters, so a run-together name splits evenly.
    parts = [label[i : i + 2] for i in range(0, len(label), 2)]
    unknown = [p for p in parts if p not in by_name]
    if unknown or not parts:
        raise ValueError(f"state name {label!r}: expected 原始模型 or a run of {', '.join(by_name)}")
    return ">".join(by_name[p] for p in parts)


def ordering_from_label(label: str) -> str:
    """Return the ordering a Chinese main-table row name stands for: ``微调 → 剪枝`` -> ``F>P``."""
    states = [state_from_label(part) for part in label.split("→")]
    if states == [BASE]:
        return BASE
    if BASE in states:
        raise ValueError(f"ordering name {label!r}: 原始模型 stands alone, it is not a step")
    return ">".join(states)
