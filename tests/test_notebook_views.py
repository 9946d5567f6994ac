"""The ordering notebook's tables: a task's interval from the report's bootstrap, titles of its sections."""

import math

import pytest

from orderstudy import notebook_views
from orderstudy.params import ReportParams


def test_a_tasks_interval_is_the_bootstrap_of_its_items_around_the_reported_score():
    params = ReportParams(bootstrap_resamples=2000)
    items = {f"t/{i}": float(i % 2) for i in range(40)}  # half right: 50%
    low, high = notebook_views.task_interval(items, "stem", "t", 50.0, params)
    # A binomial proportion of 40 items at 0.5: about ±15.5 points at 95%.
    assert 33 < low < 37 and 63 < high < 67
    # A corpus-level score (LawBench 2-1) that differs from the item mean: the interval follows it.
    shifted = notebook_views.task_interval(items, "stem", "t", 55.0, params)
    assert shifted == pytest.approx((low + 5, high + 5), abs=1e-9)
    assert all(math.isnan(v) for v in notebook_views.task_interval({"t/0": 1.0}, "stem", "t", 100.0, params))


@pytest.mark.parametrize("ordering,index,title", [
    ("Q>P>F", 1, "Quantize (Q): `base` → `Q`, operation 1 of 3"),
    ("Q>P>F", 3, "Fine-tune (F): `Q>P` → `Q>P>F`, operation 3 of 3"),
    ("base", 1, "None: `base` has 0 operations"),
])
def test_each_section_names_its_operation_and_the_states_it_joins(ordering, index, title):
    assert notebook_views.step_title(ordering, index) == title
