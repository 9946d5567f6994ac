"""LawBench's 20 tasks: their ids, Chinese names, metrics and the names LawBench's code uses.

The ids, names and metrics follow LawBench's README (github.com/open-compass/LawBench); the
metric short names describe what LawBench's evaluation code computes, which for 2-2 is accuracy
(the README's table says F1, but ``evaluation_functions/jdzy.py`` scores one label per item).
"""

from __future__ import annotations

TASK_IDS: tuple[str, ...] = (
    "1-1", "1-2",
    "2-1", "2-2", "2-3", "2-4", "2-5", "2-6", "2-7", "2-8", "2-9", "2-10",
    "3-1", "3-2", "3-3", "3-4", "3-5", "3-6", "3-7", "3-8",
)

TASK_NAMES: dict[str, str] = {
    "1-1": "法条背诵",
    "1-2": "知识问答",
    "2-1": "文件校对",
    "2-2": "纠纷焦点识别",
    "2-3": "婚姻纠纷鉴定",
    "2-4": "问题主题识别",
    "2-5": "阅读理解",
    "2-6": "命名实体识别",
    "2-7": "舆情摘要",
    "2-8": "论点挖掘",
    "2-9": "事件检测",
    "2-10": "触发词提取",
    "3-1": "法条预测(基于事实)",
    "3-2": "法条预测(基于场景)",
    "3-3": "罪名预测",
    "3-4": "刑期预测(无法条内容)",
    "3-5": "刑期预测(给定法条内容)",
    "3-6": "案例分析",
    "3-7": "犯罪金额计算",
    "3-8": "咨询",
}

TASK_METRICS: dict[str, str] = {
    "1-1": "rouge_l",
    "1-2": "accuracy",
    "2-1": "f0.5",
    "2-2": "accuracy",
    "2-3": "f1",
    "2-4": "accuracy",
    "2-5": "rc_f1",
    "2-6": "soft_f1",
    "2-7": "rouge_l",
    "2-8": "accuracy",
    "2-9": "f1",
    "2-10": "soft_f1",
    "3-1": "f1",
    "3-2": "rouge_l",
    "3-3": "f1",
    "3-4": "norm_log_distance",
    "3-5": "norm_log_distance",
    "3-6": "accuracy",
    "3-7": "accuracy",
    "3-8": "rouge_l",
}

# The module names LawBench's evaluation code uses for each task (evaluation_functions/<name>.py),
# so a reader can find the rule each scorer re-implements.
LAWBENCH_FUNCTIONS: dict[str, str] = {
    "1-1": "ftcs", "1-2": "jec_kd",
    "2-1": "wsjd", "2-2": "jdzy", "2-3": "wbfl", "2-4": "zxfl", "2-5": "ydlj", "2-6": "xxcq",
    "2-7": "yqzy", "2-8": "lblj", "2-9": "sjjc", "2-10": "sjjc (compute_cfcy)",
    "3-1": "ljp_article", "3-2": "cjft", "3-3": "ljp_accusation", "3-4": "ljp_imprison",
    "3-5": "ljp_imprison", "3-6": "jec_ac", "3-7": "jetq", "3-8": "flzx",
}


def check_task(task: str) -> str:
    """Return ``task`` unchanged if it is one of LawBench's task ids; raise ``ValueError`` otherwise."""
    if task not in TASK_NAMES:
        raise ValueError(f"unknown LawBench task {task!r}; expected one of {', '.join(TASK_IDS)}")
    return task
