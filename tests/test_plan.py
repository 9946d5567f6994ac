import pytest

from orderstudy.core.plan import REFERENCE_ORDER, make_plan, parent, parse_ordering, prefixes


def test_sixteen_orderings_share_prefixes_in_fifteen_steps():
    plan = make_plan("all")
    assert plan.orderings == REFERENCE_ORDER
    assert len(plan.orderings) == 16
    assert len(plan.steps) == 15
    assert plan.naive_step_count == 33
    assert plan.states[0] == "base"
    # Every state comes after its parent, so building in this order never waits.
    seen = set()
    for state in plan.states:
        assert parent(state) is None or parent(state) in seen
        seen.add(state)


def test_reference_row_order_and_the_two_orderings_the_reference_could_not_run():
    assert REFERENCE_ORDER[:4] == ("base", "F", "P", "Q")
    assert REFERENCE_ORDER[-2:] == ("Q>P>F", "P>Q>F")


def test_prefixes_and_subset_plan_keep_reference_order():
    assert prefixes("F>P>Q") == ["base", "F", "F>P", "F>P>Q"]
    plan = make_plan(["F>Q>P", "base", "Q"])
    assert plan.orderings == ("base", "Q", "F>Q>P")
    assert plan.steps == ["F", "Q", "F>Q", "F>Q>P"]


@pytest.mark.parametrize("bad,msg", [("F>F", "repeated"), ("F>X", "unknown operation 'X'"), ("", "unknown operation")])
def test_bad_orderings_say_what_is_wrong(bad, msg):
    with pytest.raises(ValueError, match=msg):
        parse_ordering(bad)


def test_an_ordering_listed_twice_is_an_error():
    with pytest.raises(ValueError, match="listed twice"):
        make_plan(["F>P", "F > P"])
