"""The words a report prints, in English or in the reference study's Chinese.

With ``language="zh"`` every row and column label is the one the reference study prints
(``lib/orderstudy/reference/reference_study.md``), so a new study can be laid next to it line by
line: 原始模型, 微调 → 剪枝 → 量化, 剪枝 → 剪枝微调, LawBench 变化率%, 模型大小, 不适用.
"""

from __future__ import annotations

from contextlib import contextmanager

from ..core.benchmark import display_name
from ..core.operation import get_operation, letters as registered_letters
from ..core.plan import BASE, parse_ordering

LANGUAGES = ("en", "zh")


# The names of the operations the result files read so far say they used ({letter: {"name",
# "name_zh", "title", "section"}}, the study's ``operations`` key); the registry (core) names the rest.
_SEEN_OPERATIONS: dict[str, dict[str, str]] = {}
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
        "size": "Directory",
        "weights": "Weights",
        "compression": "Compression",
        "status": "Status",
        "not_applicable": "N/A",
        "not_run": "not run",
        "failed": "failed",
        "order_effects": "Order effects",
        "pair": "Orderings compared (A vs B)",
        "differs_by": "How they differ",
        "diff": "B − A",
        "swap": "swap {a} and {b}",
        "rotation": "rotation",
        "adjacent": "adjacent",
        "significant": (
            "* the paired {confidence:.0%} interval beside it (of the change, or of the change rate) excludes "
            "zero: the change is larger than "
            "what the sampled items (and, with several seeds, the seeds) make scores vary by."
        ),
        "interval_note": (
            "Brackets: {confidence:.0%} intervals from the per-item scores, paired where two orderings are "
            "compared (same items, same seeds): Wilson score intervals with the effective sample size for a "
            "score; for a change in points the paired MOVER interval (Newcombe's hybrid score method, for 0/1 "
            "items the interval counterpart of McNemar's test); Fieller's interval for a change rate. Items "
            "vary within their task (each task its own variance, a task of few items shrunk toward the pooled "
            "one); with several seeds each ordering's own seed-to-seed variance is added; "
            "± after a score is its standard deviation over seeds (±0.00: a state no stochastic step decided, "
            "the same for every seed)."
        ),
        "no_interval": "{benchmark}: {reason}.",
        "aggregation_note": "Scores: {parts}.",
        "no_interval_short": "no interval",
        "compression_old": (
            "ratio of whole directories against the base as stored: these result files predate the weight "
            "sizes; rerun the orderings for the ratio against the base in bf16"
        ),
        "size_note": (
            "Weights: the weight files (*.safetensors) alone, what compression papers report; Directory: the "
            "whole checkpoint directory. Compression: what the base model's weights weigh in bf16 (2 bytes a "
            "value, from its tensor shapes, whatever dtype the study computes in) over the ordering's weights."
        ),
        "seed_model": (
            "Seeds: each difference is paired over the items within each of the {seeds} seeds and averaged over "
            "them; its interval adds the seed-to-seed variance (each ordering's own, over its seeds), "
            "so a * marks an order effect larger than both item sampling and seed noise. sd: the "
            "difference's standard deviation over the seeds."
        ),
        "one_seed": (
            "One seed: whether an order effect exceeds seed noise is not measured here (fine-tuning is "
            "stochastic; set seeds: [0, 1, 2])."
        ),
        "benchmark": "Benchmark",
        "items_col": "Items (tasks × per task)",
        "seeds_col": "Seeds",
        "se_col": "SE of a paired difference (points)",
        "mde_col": "Minimum detectable change (points, {power:.0%} power, {confidence:.0%})",
        "needed_col": "Items per task to detect {target:g} points",
        "more_seeds": "none: seed noise alone exceeds it; at least {seeds} seeds, then more items",
        "power_legend": (
            "A true change smaller than the minimum detectable change is found less often than {power:.0%} of "
            "the time at {confidence:.0%} confidence: an order effect below it is not resolved by this study, "
            "whatever its sign. SE: root mean square over the study's order-effect pairs (or its comparisons "
            "against the base), items and seeds, leaving out pairs whose two orderings score every item alike "
            "(both 0 everywhere, say): their SE is 0 and says nothing of how items vary. Items per task for "
            "{target:g} points: the same number in every task, from the observed variance (a projection)."
        ),
        "adjusted_mark": (
            "† the mark still holds after the {method} adjustment for the many tests of its family, {family} "
            "(report.multiplicity; a * without † is unadjusted, and chance alone gives some)."
        ),
        "method_holm": "Holm (family-wise error)",
        "method_bh": "Benjamini-Hochberg (false discovery rate)",
        "family_base": "the changes against the base on the same benchmark",
        "family_operation": "this operation's effects on the same benchmark (differences and change rates each a family)",
        "family_order": "the order effects on the same benchmark",
        "family_interaction": "the interactions on the same benchmark",
        "family_claims": "every claim on every benchmark (the study's primary family)",
        "family_families": "the differences between the methods' order effects on the same benchmark",
        "families_title": "Order effects by {operation} method ({families}): does each hold for every method?",
        "families_legend": (
            "B − A: the order effect in each method's own study, in points (a divergence in its unit), with its "
            "{confidence:.0%} paired interval and marks as in that method's order-effects table. The last columns: how "
            "much the effect differs from {first}'s, (B − A) − (B − A)_{first}, with the paired t interval of that "
            "contrast of four models on the same items; * there: the order effect depends on the method. Verdict: "
            "whether the effect is marked after its method's adjustment (†; * without one), in the same direction, "
            "for every method."
        ),
        "family_verdict": "Holds for",
        "family_verdict_0": "every method",
        "family_verdict_1": "some methods only",
        "family_verdict_2": "opposite directions",
        "family_verdict_3": "no method",
        "family_verdict_4": "no interval",
        "order_pair": "Orderings compared (A vs B)",
        "verdict_exploratory": "exploratory",
        "claims_adjusted": (
            "Verdicts after the {method} adjustment within {family}; where it changes a verdict the unadjusted one "
            "follows in brackets. Exploratory: the claim's direction was taken from the same items it is tested "
            "on (too few items a task to split them), so it is not counted in the family."
        ),
        "unadjusted": "unadjusted",
        "interactions": "Interactions: the effect of X then Y beyond the two effects alone",
        "interaction_pair": "X → Y",
        "interaction_col": "interaction",
        "interaction_legend": (
            "Interaction: s(X → Y) − s(X) − s(Y) + s(base), in points: what applying X then Y does beyond the sum "
            "of what X and Y do alone (negative: the damage compounds). Its {confidence:.0%} interval is a paired t "
            "interval on the per-item values of that contrast (the four states share items and seeds); * the "
            "interval excludes zero."
        ),
        "claims_title": "What the literature says, and what this study shows",
        "power_title": "What this study can detect",
        "claim": "Claim (source)",
        "tested_by": "Compared (expected better vs worse)",
        "verdict_supported": "supported",
        "verdict_contradicted": "contradicted",
        "verdict_not_resolved": "not resolved at this sample size",
        "verdict_not_tested": "not tested",
        "verdict_no_prediction": "no prediction",
        "claims_legend": (
            "Each cell: the verdict, then the difference (points) between the mean of the orderings the claim "
            "expects better and the mean of those it expects worse, with its paired {confidence:.0%} interval. "
            "Supported / contradicted: the interval lies above / below zero; not resolved: it contains zero or "
            "there is no interval."
        ),
        "failed_note": "failed at step {step}: {type}: {message}",
        "failed_note_nostep": "failed: {type}: {message}",
        "undefined_note": "{benchmark}: change rate undefined: {reason}",
        "capped_note": (
            "Capped (generation stopped before the answers' length, evaluation.max_new_tokens): {tasks}. "
            "These tasks' scores, and so their benchmark's, are bounded by that ceiling."
        ),
        "capped_task": "{benchmark} {task} at {tokens} new tokens (ceiling {ceiling})",
        "left_out_note": "**Warning: {n} result file(s) left out of every table, made by other params than the current ones:**",
        "project_written_note": (
            "LawBench‡ — {n} of its {total} tasks here ({tasks}) are items written for this project, not LawBench's "
            "(the packaged LawBench data lacks them; each result's lawbench_sources says where every task's items come "
            "from). LawBench's score above is the mean over all {total} tasks, these included."
        ),
        "lawbench_both_ways": "LawBench both ways: over all {total} tasks, and over LawBench's own {own} tasks only",
        "lawbench_all": "LawBench, all {total} tasks",
        "lawbench_own": "LawBench, its own {own} tasks",
    },
    "zh": {
        "ordering": "操作顺序描述",
        "comparison": "比较",
        "score": "",
        "change": "变化",
        "change_pct": "变化率%",
        "size": "模型大小",
        "weights": "权重大小",
        "compression": "压缩比",
        "status": "状态",
        "not_applicable": "不适用",
        "not_run": "未运行",
        "failed": "失败",
        "order_effects": "顺序效应",
        "pair": "比较 (A 与 B)",
        "differs_by": "差别",
        "diff": "B − A",
        "swap": "交换{a}与{b}",
        "rotation": "轮换",
        "adjacent": "相邻",
        "significant": "* 其旁的 {confidence:.0%} 配对区间（变化或变化率的）不含零：变化大于题目抽样（多个种子时还有种子）造成的波动。",
        "interval_note": (
            "括号内为基于逐题得分的 {confidence:.0%} 区间，两个顺序比较时为配对区间（同一组题目、同一组种子）："
            "单个得分用按有效样本量计算的 Wilson 区间；点数变化用配对 MOVER 区间（Newcombe 混合得分法，"
            "对 0/1 题目即 McNemar 检验对应的区间）；变化率用 Fieller 区间。题目在各自任务内波动（各任务单独估计方差，题目少的任务向合并估计收缩）；"
            "多个种子时加入各顺序自身的种子间方差；得分后的 ± 为各种子得分的标准差（±0.00：未经随机步骤的状态，各种子相同）。"
        ),
        "no_interval": "{benchmark}：{reason}。",
        "aggregation_note": "得分汇总方式：{parts}。",
        "no_interval_short": "无区间",
        "compression_old": "整个目录相对原始存储格式的比值：这些结果文件早于权重大小字段；重新运行后得到相对 bf16 原始模型的压缩比",
        "size_note": (
            "权重大小：仅权重文件（*.safetensors），即压缩论文报告的大小；模型大小：整个检查点目录。"
            "压缩比：原始模型权重按 bf16 计算的大小（每个值 2 字节，由张量形状得出，与研究所用计算精度无关）除以该顺序的权重大小。"
        ),
        "seed_model": (
            "种子：每个差值在 {seeds} 个种子内逐题配对后取平均；其区间加入种子间方差（各顺序自身在其种子上的估计），"
            "因此 * 表示顺序效应同时大于题目抽样误差和种子噪声。sd：差值在各种子间的标准差。"
        ),
        "one_seed": "单个种子：无法判断顺序效应是否超过种子噪声（微调具有随机性；设置 seeds: [0, 1, 2]）。",
        "benchmark": "基准",
        "items_col": "题目数（任务数 × 每任务）",
        "seeds_col": "种子数",
        "se_col": "配对差值的标准误（点）",
        "mde_col": "最小可检测变化（点，检验力 {power:.0%}，{confidence:.0%}）",
        "needed_col": "检测 {target:g} 点所需每任务题目数",
        "more_seeds": "无论多少题目都不够：仅种子噪声已超过；至少需要 {seeds} 个种子，再增加题目",
        "power_legend": (
            "小于最小可检测变化的真实变化，在 {confidence:.0%} 置信水平下被检出的概率低于 {power:.0%}："
            "低于该值的顺序效应本研究无法分辨，无论其方向。标准误：在本研究的顺序效应配对（或与原始模型的比较）上的均方根，"
            "含题目与种子；两个顺序在每道题上得分都相同的配对（例如都为 0）标准误为 0，不反映题目的变异，不计入。"
            "检测 {target:g} 点所需题目数：每个任务相同数量，由观测方差推算（仅为估计）。"
        ),
        "adjusted_mark": "† 经 {method} 多重比较校正（所在检验族：{family}）后标记仍成立（report.multiplicity；仅 * 无 † 为未校正，偶然也会出现）。",
        "method_holm": "Holm（族错误率）",
        "method_bh": "Benjamini-Hochberg（错误发现率）",
        "family_base": "同一基准上相对原始模型的全部变化",
        "family_operation": "同一基准上该操作的全部效应（差值与变化率各为一族）",
        "family_order": "同一基准上的全部顺序效应",
        "family_interaction": "同一基准上的全部交互作用",
        "family_claims": "全部论断在全部基准上的检验（本研究的主要检验族）",
        "family_families": "同一基准上各方法顺序效应之差",
        "families_title": "按{operation}方法（{families}）的顺序效应：每个效应是否对所有方法都成立？",
        "families_legend": (
            "B − A：各方法自身研究中的顺序效应（点；散度为其单位），附 {confidence:.0%} 配对区间与标记，同该方法的顺序效应表。"
            "最后几列：该效应与 {first} 的差，(B − A) − (B − A)_{first}，附四个模型在同一批题目上该对比的配对 t 区间；"
            "此处 * 表示顺序效应取决于方法。结论：效应是否对每个方法都在校正后仍被标记（†；不校正时为 *）且方向相同。"
        ),
        "family_verdict": "成立于",
        "family_verdict_0": "所有方法",
        "family_verdict_1": "仅部分方法",
        "family_verdict_2": "方向相反",
        "family_verdict_3": "无方法",
        "family_verdict_4": "无区间",
        "order_pair": "比较 (A 与 B)",
        "verdict_exploratory": "探索性",
        "claims_adjusted": "结论为经 {method} 校正后的结论（检验族：{family}）；校正改变结论时括号内给出未校正结论。探索性：论断的方向取自其检验所用的同一批题目（每任务题目太少，无法拆分），不计入检验族。",
        "unadjusted": "未校正",
        "interactions": "交互作用：先 X 后 Y 超出两者单独效应之和的部分",
        "interaction_pair": "X → Y",
        "interaction_col": "交互作用",
        "interaction_legend": (
            "交互作用：s(X → Y) − s(X) − s(Y) + s(原始模型)（点）：先 X 后 Y 超出 X 与 Y 单独效应之和的部分（负值：损失叠加）。"
            "其 {confidence:.0%} 区间为该对比逐题值上的配对 t 区间（四个状态共享题目与种子）；* 区间不含零。"
        ),
        "claims_title": "文献怎么说，本研究显示什么",
        "power_title": "本研究能检测到多大的变化",
        "claim": "论断（来源）",
        "tested_by": "比较（预期较好 vs 较差）",
        "verdict_supported": "支持",
        "verdict_contradicted": "反驳",
        "verdict_not_resolved": "在此样本量下无法判定",
        "verdict_not_tested": "未检验",
        "verdict_no_prediction": "无预测",
        "claims_legend": (
            "每格：结论，随后为论断预期较好的顺序的平均得分减去预期较差的顺序的平均得分（点），及其 {confidence:.0%} 配对区间。"
            "支持 / 反驳：区间完全高于 / 低于零；无法判定：区间包含零或没有区间。"
        ),
        "failed_note": "在步骤 {step} 失败：{type}: {message}",
        "failed_note_nostep": "失败：{type}: {message}",
        "undefined_note": "{benchmark}：变化率无定义：{reason}",
        "capped_note": "生成长度受限（evaluation.max_new_tokens 短于答案长度）：{tasks}。这些任务及其基准的得分以此上限为界。",
        "capped_task": "{benchmark} {task} 最多生成 {tokens} 个词元（上限 {ceiling}）",
        "left_out_note": "**警告：{n} 个结果文件由与当前参数不同的参数生成，未计入任何表格：**",
        "project_written_note": (
            "LawBench‡ —— 本研究的 {total} 个任务中有 {n} 个（{tasks}）的题目为本项目编写，并非 LawBench 原题"
            "（所附 LawBench 数据缺少这些任务；每个结果的 lawbench_sources 记录各任务题目的来源）。上表的 LawBench 得分为全部 {total} 个任务的平均，含这些任务。"
        ),
        "lawbench_both_ways": "LawBench 两种算法：全部 {total} 个任务，及仅 LawBench 原有的 {own} 个任务",
        "lawbench_all": "LawBench，全部 {total} 个任务",
        "lawbench_own": "LawBench，原有 {own} 个任务",
    },
}


# How a benchmark's score was aggregated, as result files say it (Benchmark.aggregation), in Chinese.
_AGGREGATION_ZH = {
    "weighted by subject size (questions in the full data), as lm-eval's MMLU groups":
        "按科目题目数（完整数据）加权，同 lm-eval 的 MMLU 分组",
    "unweighted mean of the subjects": "各科目不加权平均",
    "unweighted mean of the tasks, as LawBench's leaderboard": "各任务不加权平均，同 LawBench 排行榜",
}


def aggregation(text: str, language: str) -> str:
    """Return how a score was aggregated (a result file's ``aggregation``) in ``language``."""
    return _AGGREGATION_ZH.get(text, text) if check_language(language) == "zh" else text


def check_language(language: str) -> str:
    """Return ``language`` if it is one the report speaks, else raise naming the choices."""
    if language not in LANGUAGES:
        raise ValueError(f"report language {language!r}: expected one of {', '.join(LANGUAGES)}")
    return language


def word(key: str, language: str) -> str:
    """Return the report's word for ``key`` in ``language``."""
    return _WORDS[check_language(language)][key]


def remember_operations(names: dict) -> None:
    """Keep the names a result file gives its operations (its ``operations`` key), for the labels."""
    for op, entry in (names or {}).items():
        if isinstance(entry, dict) and {"name", "name_zh", "section"} <= set(entry):
            _SEEN_OPERATIONS[op] = {k: str(v) for k, v in entry.items()}


def _names(op: str) -> dict[str, str]:
    if op in _SEEN_OPERATIONS:
        return _SEEN_OPERATIONS[op]
    try:
        return get_operation(op).names()
    except KeyError:
        raise ValueError(f"operation {op!r}: no result file names it and it is not registered; "
                         f"known: {', '.join(operation_letters())}") from None


def operation_letters() -> tuple[str, ...]:
    """Return the letters of the operations an ordering may hold (the registry's: ``core.plan`` reads no other)."""
    return registered_letters()


def operation_name(op: str, language: str) -> str:
    """Return an operation's name: ``P`` -> ``prune`` / ``剪枝``."""
    names = _names(op)
    return names["name_zh"] if check_language(language) == "zh" else names["name"]


def operation_title(op: str, language: str) -> str:
    """Return the heading of an operation's table: ``P`` -> ``Pruning`` / ``剪枝``."""
    names = _names(op)
    return names["name_zh"] if check_language(language) == "zh" else names.get("title") or names["name"].capitalize()


def operation_section(op: str) -> str:
    """Return an operation's params section, which names its table files: ``P`` -> ``prune``."""
    return _names(op)["section"]


# A mark a benchmark's name carries in the tables and figures of the report being made, with its
# note under each table: "‡" on LawBench when some of its tasks are not LawBench's (build.py).
_MARKS: dict[str, str] = {}


@contextmanager
def marked_benchmarks(marks: dict[str, str]):
    """Within the block, benchmark names carry ``marks`` (``{"lawbench": "‡"}``); after it, what they carried before."""
    saved = dict(_MARKS)
    _MARKS.clear()
    _MARKS.update(marks)
    try:
        yield
    finally:
        _MARKS.clear()
        _MARKS.update(saved)


def benchmark_name(benchmark: str) -> str:
    """Return a benchmark's printed name (``lawbench`` -> ``LawBench``, as the registry names it), unknown ones unchanged."""
    return display_name(benchmark) + _MARKS.get(benchmark, "")


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
    by_name = {operation_name(op, "zh"): op for op in operation_letters()}
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
