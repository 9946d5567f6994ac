"""What the report compares: change rates, and which pairs of model states are put side by side.

Three kinds of comparison, each a pair ``(a, b)`` read as "from a to b":

- against the base: ``("base", o)`` for every ordering ``o`` (the main table's change rates);
- one operation added (the reference study's per-operation tables): ``(S, S>X)``, the effect of
  operation ``X`` on a model in state ``S``; the reference calls ``Q>F`` 量化微调, so its row
  量化微调 → 量化微调剪枝 is ``("Q>F", "Q>F>P")``;
- the same operations in another order (the order-effect table the reference lacks):
  ``("Q>F", "F>Q")``.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..core.plan import all_orderings, format_ordering, parse_ordering
from . import labels


def change_rate(score, base_score):
    """Return ``(score - base) / base * 100``, NaN where the base score is 0 (undefined).

    Works on floats and on numpy arrays alike.

    >>> round(change_rate(15.53, 7.85), 2)
    97.83
    >>> change_rate(1.0, 0.0)
    nan
    """
    score = np.asarray(score, dtype=float)
    base_score = np.asarray(base_score, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(base_score != 0, (score - base_score) / np.where(base_score != 0, base_score, 1.0) * 100.0, np.nan)
    return rate.item() if rate.ndim == 0 else rate


def reference_rank(ordering: str) -> int:
    """Return an ordering's row in the main table (the reference study's order for F, P, Q; unknown ones last)."""
    order = all_orderings()
    return order.index(ordering) if ordering in order else len(order)


def transitions(orderings, operation: str) -> list[tuple[str, str]]:
    """Return every ``(S, S>operation)`` pair whose two states are both among ``orderings``.

    Sorted by the length of ``S`` and then by the reference row order of ``S``, as the reference
    study lists them (base first, then single operations, then pairs).

    >>> transitions(["base", "F", "P", "P>F", "Q"], "F")
    [('base', 'F'), ('P', 'P>F')]
    """
    known = labels.operation_letters()
    if operation not in known:
        raise ValueError(f"operation {operation!r}: expected one of {', '.join(known)}")
    present = set(orderings)
    pairs = []
    for state in present:
        ops = parse_ordering(state)
        after = format_ordering(ops + (operation,))
        if operation not in ops and after in present:
            pairs.append((state, after))
    return sorted(pairs, key=lambda pair: (len(parse_ordering(pair[0])), reference_rank(pair[0])))


def order_pairs(orderings) -> list[tuple[str, str]]:
    """Return every pair of orderings that apply the same operations in a different order.

    Pairs keep the reference row order (``a`` is listed before ``b``); groups come by size, so the
    three two-operation pairs precede the fifteen pairs among the six triples.

    >>> order_pairs(["F>Q", "Q>F", "F"])
    [('Q>F', 'F>Q')]
    """
    groups: dict[frozenset, list[str]] = {}
    for ordering in sorted(set(orderings), key=reference_rank):
        groups.setdefault(frozenset(parse_ordering(ordering)), []).append(ordering)
    pairs = []
    for ops in sorted(groups, key=lambda g: (len(g), min(reference_rank(o) for o in groups[g]))):
        pairs.extend(itertools.combinations(groups[ops], 2))
    return pairs


def how_orders_differ(a: str, b: str) -> tuple[str, tuple[str, str] | None, bool]:
    """Return how two orderings of the same operations differ: ``("swap", (x, y), adjacent)`` or ``("rotation", None, False)``.

    A swap exchanges the positions of two operations (``F>P>Q`` vs ``F>Q>P`` swaps P and Q,
    adjacent); any two different orderings of three operations are a swap or a rotation.

    >>> how_orders_differ("F>P>Q", "Q>P>F")
    ('swap', ('F', 'Q'), False)
    """
    ops_a, ops_b = parse_ordering(a), parse_ordering(b)
    if sorted(ops_a) != sorted(ops_b) or ops_a == ops_b:
        raise ValueError(f"orderings {a!r} and {b!r}: expected the same operations in a different order")
    moved = [i for i, (x, y) in enumerate(zip(ops_a, ops_b)) if x != y]
    if len(moved) == 2:
        i, j = moved
        return "swap", (ops_a[i], ops_a[j]), j - i == 1
    return "rotation", None, False

