"""The orderings of a study and the tree of model states they share.

An ordering is written with ``>`` between operation letters (``F>P>Q`` = fine-tune, then prune,
then quantize); the base model is ``base``. ``F-P-Q``, ``F→P→Q`` and ``FPQ`` are read as the same
ordering (``parse_ordering``), and every name the package writes is the ``>`` form. Every prefix of an ordering is a model state, so the
16 orderings need only 15 operation steps: ``F>P>Q`` and ``F>Q>P`` both start from ``F``. The
letters are those of the registered operations (``core.operation``), in registry order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import permutations

from .operation import letters as registered_letters

BASE = "base"

# The reference study's row order (lib/orderstudy/reference/), which every table keeps.
REFERENCE_ORDER: tuple[str, ...] = (
    "base", "F", "P", "Q",
    "P>F", "P>Q", "Q>F", "Q>P", "F>P", "F>Q",
    "F>P>Q", "F>Q>P", "P>F>Q", "Q>F>P", "Q>P>F", "P>Q>F",
)


def all_orderings(letters: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Return every permutation of every subset of ``letters`` (default: the registered ones), base first.

    For the reference study's three operations the order is its row order (REFERENCE_ORDER);
    for any other set, by length, then lexicographically by the letters' order in ``letters``.

    >>> len(all_orderings(("A", "B", "C", "D"))), all_orderings(("B", "A"))
    (65, ('base', 'B', 'A', 'B>A', 'A>B'))
    """
    return _all_orderings(tuple(registered_letters() if letters is None else letters))


@lru_cache(maxsize=None)
def _all_orderings(letters: tuple[str, ...]) -> tuple[str, ...]:
    if sorted(letters) == sorted(REFERENCE_ORDER[1:4]):
        return REFERENCE_ORDER
    rank = {op: i for i, op in enumerate(letters)}
    found = [ops for n in range(len(letters) + 1) for ops in permutations(letters, n)]
    return tuple(format_ordering(ops) for ops in sorted(found, key=lambda ops: (len(ops), [rank[o] for o in ops])))


# The separators an ordering may be typed with: ``F>P>Q``, ``F-P-Q`` (the file-name form, and safe
# unquoted in a shell) and ``F→P→Q`` (the tables' and figures' form); or no separator, ``FPQ``.
SEPARATORS: tuple[str, ...] = (">", "-", "→")


def accepted_spellings(known: tuple[str, ...] | None = None) -> str:
    """Return the accepted spellings of an ordering, as error messages name them.

    >>> accepted_spellings(("F", "P", "Q"))
    "operation letters (F, P, Q) joined by '>', '-' or '→' (F>P>Q, F-P-Q, F→P→Q) or run together (FPQ), or 'base'"
    """
    known = registered_letters() if known is None else known
    examples = ", ".join(sep.join(known) for sep in SEPARATORS)
    joined = ", ".join(repr(sep) for sep in SEPARATORS[:-1]) + f" or {SEPARATORS[-1]!r}"
    return (f"operation letters ({', '.join(known)}) joined by {joined} ({examples}) "
            f"or run together ({''.join(known)}), or {BASE!r}")


def parse_ordering(text: str) -> tuple[str, ...]:
    """Return the operation letters of an ordering, ``()`` for the base model.

    Every spelling a user may type gives the same letters: ``F>P>Q``, ``F-P-Q``, ``F→P→Q`` and,
    when every character is a registered operation's letter, ``FPQ``; ``base`` is the base model.
    ``format_ordering`` writes the letters back in the one canonical form (``F>P>Q``).

    >>> parse_ordering("F>P>Q"), parse_ordering("F-P-Q"), parse_ordering("F→P→Q"), parse_ordering("FPQ")
    (('F', 'P', 'Q'), ('F', 'P', 'Q'), ('F', 'P', 'Q'), ('F', 'P', 'Q'))
    >>> parse_ordering("base")
    ()
    """
    if not isinstance(text, str):
        raise ValueError(f"ordering {text!r}: expected a string, {accepted_spellings()}")
    text = text.strip()
    if text == BASE:
        return ()
    known = registered_letters()
    used = [sep for sep in SEPARATORS if sep in text]
    if len(used) > 1:
        raise ValueError(f"ordering {text!r}: mixes the separators {' and '.join(map(repr, used))}; "
                         f"write {accepted_spellings(known)}")
    if used:
        ops = tuple(part.strip() for part in text.split(used[0]))
    elif text in known:
        ops = (text,)
    elif any(ch in known for ch in text):  # letters run together: FPQ; a stray character is named
        ops = tuple(text)
    else:
        ops = (text,)
    unknown = [op for op in ops if op not in known]
    if unknown:
        raise ValueError(f"ordering {text!r}: unknown operation {unknown[0]!r}; write {accepted_spellings(known)}")
    if len(set(ops)) != len(ops):
        raise ValueError(f"ordering {text!r}: an operation is repeated; each of {', '.join(known)} may appear once")
    return ops


def format_ordering(ops: tuple[str, ...]) -> str:
    """Return the canonical name of an ordering: ``('F', 'P')`` -> ``F>P``, ``()`` -> ``base``."""
    return ">".join(ops) if ops else BASE


def canonical_ordering(text: str) -> str:
    """Return the canonical name of an ordering typed in any accepted spelling (``parse_ordering``).

    >>> [canonical_ordering(t) for t in ("FPQ", "F-P-Q", "F → P → Q", "P>F", "base")]
    ['F>P>Q', 'F>P>Q', 'F>P>Q', 'P>F', 'base']
    """
    return format_ordering(parse_ordering(text))


def ordering_argument(text: str) -> str:
    """Return an ordering typed on a command line in its canonical spelling; argparse's ``type=`` for orderings.

    ``F-P-Q`` and ``FPQ`` need no quotes in a shell (a bare ``>`` redirects) and name the same
    ordering as ``F>P>Q``; a bad one is argparse's usage error, naming the accepted spellings.
    """
    import argparse

    try:
        return canonical_ordering(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def prefixes(ordering: str) -> list[str]:
    """Return the states an ordering passes through, the base first and itself last."""
    ops = parse_ordering(ordering)
    return [format_ordering(ops[:i]) for i in range(len(ops) + 1)]


def parent(state: str) -> str | None:
    """Return the state a state is made from, ``None`` for the base."""
    ops = parse_ordering(state)
    return format_ordering(ops[:-1]) if ops else None


def last_operation(state: str) -> str | None:
    ops = parse_ordering(state)
    return ops[-1] if ops else None


@dataclass(frozen=True)
class Plan:
    """The orderings to run and the distinct operation steps they need."""

    orderings: tuple[str, ...]

    @property
    def states(self) -> list[str]:
        """Every distinct state, parents before children, base first."""
        seen: dict[str, None] = {}
        for ordering in self.orderings:
            for state in prefixes(ordering):
                seen.setdefault(state, None)
        return sorted(seen, key=lambda s: (len(parse_ordering(s)), _reference_rank(s)))

    @property
    def steps(self) -> list[str]:
        """The states made by an operation (every state but the base)."""
        return [s for s in self.states if s != BASE]

    @property
    def naive_step_count(self) -> int:
        """How many operation steps running each ordering from scratch would take."""
        return sum(len(parse_ordering(o)) for o in self.orderings)


def _reference_rank(state: str) -> int:
    order = all_orderings()
    return order.index(state) if state in order else len(order)


def make_plan(orderings: list[str] | tuple[str, ...] | str = "all") -> Plan:
    """Return the plan for ``orderings`` (``"all"``: ``all_orderings()``, 16 for three operations), in that row order."""
    if orderings == "all":
        return Plan(all_orderings())
    canonical = [canonical_ordering(o) for o in orderings]
    if len(set(canonical)) != len(canonical):
        raise ValueError(f"orderings {list(orderings)}: an ordering is listed twice")
    return Plan(tuple(sorted(canonical, key=_reference_rank)))
