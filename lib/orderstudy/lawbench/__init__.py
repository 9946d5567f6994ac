"""A faithful re-implementation of LawBench's scoring (github.com/open-compass/LawBench, Apache-2.0).

Public API::

    from orderstudy.lawbench.tasks import TASK_IDS, TASK_NAMES, TASK_METRICS
    from orderstudy.lawbench.scoring import TaskScore, score_task, score_item, lawbench_average

and the command ``python -m orderstudy.lawbench score PREDICTIONS_DIR --out results.csv``.
Original items for the tasks the packaged data lacks (1-2, 2-8, 3-6) are in ``data/original``
(see ``original``).
"""

from .errors import LawBenchInputError
from .scoring import TaskScore, lawbench_average, score_item, score_task
from .tasks import TASK_IDS, TASK_METRICS, TASK_NAMES

__all__ = [
    "LawBenchInputError", "TaskScore", "lawbench_average", "score_item", "score_task",
    "TASK_IDS", "TASK_METRICS", "TASK_NAMES",
]
