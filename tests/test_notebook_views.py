"""The ordering notebook's tables: a task's interval from the report's bootstrap, titles of its sections."""

import math

import pytest

from orderstudy.notebook import views as notebook_views


def test_a_tasks_interval_is_the_reports_wilson_interval_around_the_reported_score():
    items = {f"t/{i}": float(i % 2) for i in range(40)}  # half right: 50%
    low, high = notebook_views.task_interval(items, "t", 50.0, 0.95)
    # A binomial proportion of 40 items at 0.5: about ±15 points at 95% (Wilson, t quantile, 39 df).
    assert 33 < low < 37 and 63 < high < 67 and (50 - low) == pytest.approx(high - 50, abs=1e-6)
    # A corpus-level score (LawBench 2-1) that differs from the item mean: the interval is around it.
    s_low, s_high = notebook_views.task_interval(items, "t", 55.0, 0.95)
    assert s_low < 55 < s_high and s_low == pytest.approx(low + 5, abs=1.0) and s_high == pytest.approx(high + 5, abs=1.0)
    # Every item right: not a zero-width interval at 100 (Wilson), and none from a single item.
    all_right = notebook_views.task_interval({f"t/{i}": 1.0 for i in range(5)}, "t", 100.0, 0.95)
    assert all_right[1] == 100.0 and 30 < all_right[0] < 80
    assert all(math.isnan(v) for v in notebook_views.task_interval({"t/0": 1.0}, "t", 100.0, 0.95))


@pytest.mark.parametrize("ordering,index,title", [
    ("Q>P>F", 1, "Quantize (Q): `base` → `Q`, operation 1 of 3"),
    ("Q>P>F", 3, "Fine-tune (F): `Q>P` → `Q>P>F`, operation 3 of 3"),
    ("base", 1, "None: `base` has 0 operations"),
])
def test_each_section_names_its_operation_and_the_states_it_joins(ordering, index, title):
    assert notebook_views.step_title(ordering, index) == title
