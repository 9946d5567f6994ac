"""A faithful re-implementation of LawBench's scoring (github.com/open-compass/LawBench, Apache-2.0).

Public API::

    from orderstudy.benchmarks.lawbench.tasks import TASK_IDS, TASK_NAMES, TASK_METRICS
    from orderstudy.benchmarks.lawbench.scoring import TaskScore, score_task, score_item, lawbench_average

and the command ``python -m orderstudy.benchmarks.lawbench score PREDICTIONS_DIR --out results.csv``
(``cli``; scores in percent). Original items for the tasks the packaged data lacks (1-2, 2-8,
3-6) are in ``data/original`` (``original``); they are not LawBench's.

Fidelity. Every task follows LawBench's ``evaluation/evaluation_functions`` rule for rule,
quirks included (option counting, substring label matching, cn2an numerals, the order in
which numbers are read, jieba + rouge-chinese ROUGE-L, CJRC character F1, the skipped 赔偿 /
死刑 / 无期 items, the normalised log distance), using the same libraries. Two places differ:

* 2-1 (``correction``): ChERRANT's alignment, merging, typing and counting are reproduced
  exactly; its substitution costs are ChERRANT's when its own data files (``cilin.txt``,
  ``confusion_dict.txt``) come from a LawBench checkout, and without them fall back to the
  packaged thesaurus (the same costs at character level) without a confusion set; its
  10-second timeout is replaced by a fixed alignment budget.
* 2-6: the abstention rate LawBench computes is reported; LawBench's published CSV shows 0
  because of a misspelt key.

Versions: jieba 0.42.1, rouge-chinese 1.0.3, cn2an 0.5.24 (LawBench lists 0.5.22), pypinyin
0.49.0 (as LawBench lists) and opencc-python-reimplemented 0.1.7 (LawBench uses the OpenCC 1.1.6
binding; the pure-Python port's t2s tables may differ from it in rare characters).
"""

from .errors import LawBenchInputError
from .scoring import TaskScore, lawbench_average, score_item, score_task
from .tasks import TASK_IDS, TASK_METRICS, TASK_NAMES

__all__ = [
    "LawBenchInputError", "TaskScore", "lawbench_average", "score_item", "score_task",
    "TASK_IDS", "TASK_METRICS", "TASK_NAMES",
]
