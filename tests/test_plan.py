import re

import pytest

from orderstudy.core.paths import ordering_filename, parse_run_filename, run_filename
from orderstudy.core.plan import (REFERENCE_ORDER, canonical_ordering, format_ordering, make_plan, parent, parse_ordering,
                                  prefixes)


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


# -- one accepted spelling set, one canonical name out -----------------------------------------

@pytest.mark.parametrize("text", ["F>P>Q", "F-P-Q", "F→P→Q", "FPQ", " F > P > Q ", "F → P → Q", "F - P - Q"])
def test_every_accepted_spelling_is_the_same_ordering(text):
    assert parse_ordering(text) == ("F", "P", "Q")
    assert canonical_ordering(text) == "F>P>Q"


@pytest.mark.parametrize("text,ops,canonical", [
    ("base", (), "base"), ("Q", ("Q",), "Q"), ("PF", ("P", "F"), "P>F"), ("P-F", ("P", "F"), "P>F"),
    ("Q→P→F", ("Q", "P", "F"), "Q>P>F"), ("QFP", ("Q", "F", "P"), "Q>F>P"),
])
def test_shorter_orderings_in_each_spelling(text, ops, canonical):
    assert parse_ordering(text) == ops
    assert canonical_ordering(text) == canonical
    assert format_ordering(ops) == canonical


@pytest.mark.parametrize("bad,msg", [
    ("FX", "unknown operation 'X'"), ("F-X", "unknown operation 'X'"), ("Base", "unknown operation 'Base'"),
    ("FPF", "repeated"), ("F-P-F", "repeated"), ("F>P-Q", "mixes the separators '>' and '-'"),
    ("F--P", "unknown operation ''"), ("fpq", "unknown operation 'fpq'"),
])
def test_a_bad_ordering_names_the_accepted_spellings(bad, msg):
    with pytest.raises(ValueError, match=re.escape(msg)) as err:
        parse_ordering(bad)
    if "repeated" not in msg:
        for spelling in ("'>'", "'-'", "'→'", "F>P>Q", "F-P-Q", "F→P→Q", "FPQ", "'base'"):
            assert spelling in str(err.value)


def test_letters_run_together_only_when_every_one_is_registered(monkeypatch):
    from orderstudy.core import plan as plan_module

    with pytest.raises(ValueError, match="unknown operation 'X'"):
        parse_ordering("XF")
    monkeypatch.setattr(plan_module, "registered_letters", lambda: ("F", "P", "Q", "X"))
    assert parse_ordering("XF") == ("X", "F") and parse_ordering("FPQX") == ("F", "P", "Q", "X")
    assert canonical_ordering("X-F") == "X>F"


def test_a_plan_of_mixed_spellings_is_the_canonical_plan():
    plan = make_plan(["FQP", "base", "P-F", "Q→F"])
    assert plan.orderings == ("base", "P>F", "Q>F", "F>Q>P")
    with pytest.raises(ValueError, match="listed twice"):
        make_plan(["FPQ", "F-P-Q"])


def test_the_file_name_form_stays_and_parses_back():
    assert ordering_filename("F>P>Q") == ordering_filename("FPQ") == ordering_filename("F→P→Q") == "F-P-Q"
    assert ordering_filename("base") == "base"
    assert run_filename("FPQ", 0) == "F-P-Q.seed0" and run_filename("P>F") == "P-F"
    assert parse_run_filename("F-P-Q.seed0") == ("F>P>Q", 0)
    for ordering in REFERENCE_ORDER:
        for seed in (None, 0, 12):
            assert parse_run_filename(run_filename(ordering, seed)) == (ordering, seed)
    with pytest.raises(ValueError, match="unknown operation 'notes'"):
        parse_run_filename("notes")


def test_an_ordering_run_takes_any_spelling_and_names_itself_canonically():
    from orderstudy.study.study import OrderingRun

    run = OrderingRun(None, "F-P-Q")  # what the ordering notebook's `ordering` parameter gives it
    assert run.ordering == "F>P>Q"
    assert run.states == ["base", "F", "F>P", "F>P>Q"]
