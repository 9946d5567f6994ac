"""Fixtures for the LawBench tests: prediction directories in LawBench's published layout.

The tests run with ``--import-mode=importlib`` (pyproject.toml), so helpers are handed out as
fixtures rather than imported.
"""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

LIB_DIR = Path(__file__).resolve().parents[2] / "lib"

PROMPT_2_1 = "纠正下面法律文书句子中字词的拼写、冗余、缺失、乱序错误。\n句子：\n上诉证据足以认定指控实施。"

# Per task: (answer, a right prediction, a wrong prediction), in LawBench's answer forms.
TASK_ITEMS = {
    "1-1": ("答案:农民专业合作社设理事长一名。", "农民专业合作社设理事长一名。", "我不知道。"),
    "1-2": ("正确答案：B。", "[正确答案]B<eoa>", "[正确答案]A<eoa>"),
    "2-1": ("上述证据足以认定指控事实。", "上述证据足以认定指控事实。", "上诉证据足以认定指控实施。"),
    "2-2": ("争议焦点类别：责任认定。", "[争议焦点]责任认定<eoa>", "[争议焦点]利息<eoa>"),
    "2-3": ("类别:婚后有子女。", "[类别]婚后有子女<eoa>", "[类别]准予离婚<eoa>"),
    "2-4": ("婚姻家庭", "[类别]婚姻家庭<eoa>", "[类别]侵权<eoa>"),
    "2-5": ("回答:二轮摩托车", "二轮摩托车", "不知道"),
    "2-6": ("受害人:严某某", "受害人:严某某\n", "犯罪嫌疑人:李某某\n"),
    "2-7": ("法院判决被告赔偿。", "法院判决被告赔偿。", "无可奉告"),
    "2-8": ("[正确答案]C<eoa>", "[正确答案]C<eoa>", "[正确答案]E<eoa>"),
    "2-9": ("受伤;鉴定", "受伤;鉴定", "拘捕"),
    "2-10": ("查扣;退给", "查扣;退给", "扣押"),
    "3-1": ("法条:刑法第264条", "[法条]刑法第264条<eoa>", "[法条]刑法第234条<eoa>"),
    "3-2": ("根据刑法第十七条。", "根据刑法第十七条。", "不清楚"),
    "3-3": ("罪名:盗窃", "[罪名]盗窃<eoa>", "[罪名]抢劫<eoa>"),
    "3-4": ("刑期:12个月", "[刑期]12个月<eoa>", "[刑期]无法判断<eoa>"),
    "3-5": ("刑期:12个月", "[刑期]12个月<eoa>", "[刑期]无法判断<eoa>"),
    "3-6": ("正确答案:C。", "[正确答案]C<eoa>", "[正确答案]D<eoa>"),
    "3-7": ("上文涉及到的犯罪金额:8500.0元。", "[金额]8500元<eoa>", "[金额]8000元<eoa>"),
    "3-8": ("回答:可以起诉。", "回答:可以起诉。", "抱歉"),
}


def prediction_file(task: str, items: list[tuple[str, str]]) -> dict:
    """Return a LawBench prediction file's content for (prediction, answer) pairs."""
    prompt = [{"role": "HUMAN", "prompt": PROMPT_2_1}] if task == "2-1" else [{"role": "HUMAN", "prompt": "题目"}]
    return {str(i): {"origin_prompt": prompt, "prediction": p, "refr": a} for i, (p, a) in enumerate(items)}


def write_system(directory: Path, tasks=tuple(TASK_ITEMS)) -> Path:
    """Write one system's files: per task, item "0" right and item "1" wrong."""
    directory.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        answer, right, wrong = TASK_ITEMS[task]
        content = prediction_file(task, [(right, answer), (wrong, answer)])
        (directory / f"{task}.json").write_text(json.dumps(content, ensure_ascii=False, indent=1), encoding="utf-8")
    return directory


@pytest.fixture
def lawbench_files():
    """The helpers that write LawBench prediction files: ``write_system``, ``prediction_file``, …"""
    return SimpleNamespace(write_system=write_system, prediction_file=prediction_file, TASK_ITEMS=TASK_ITEMS,
                           LIB_DIR=LIB_DIR, PROMPT_2_1=PROMPT_2_1)
