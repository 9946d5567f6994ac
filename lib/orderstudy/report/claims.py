"""What the literature says about order, and what this study shows: one verdict per claim and benchmark.

The claims are data (``claims.yaml`` in the package, plus ``report.claims_file`` for a user's own):
each names the orderings it expects to score higher than others. A claim's comparisons are pooled
into one contrast, the mean of its expected-better orderings minus the mean of its expected-worse
ones, paired over items and seeds (``Estimates.contrast``), and judged per benchmark:

- **supported**: the contrast's interval lies above zero;
- **contradicted**: it lies below zero;
- **not resolved at this sample size**: it contains zero, or the benchmark has no interval;
- **not tested**: an ordering it needs failed or did not run.

``rule: weaker_first`` (progressive intensity) decides each pair's direction from the study's own
data, per benchmark: the operation whose drop from the base, applied alone, is smaller is the
weaker, and the ordering applying it first is expected better; when the drops tie, the claim
makes no prediction there. A direction taken from the data and then tested on the same data
favours the claim, so **the items are split** (``Estimates.split_items``: each task's items
alternate between two halves): the drops are measured on the first half, the claim is tested on
the second. When a task has too few items for that (fewer than 4), the direction and the test
use every item and the verdict is **exploratory**: printed as such, and not counted in the
primary family.

**Multiplicity**: the claims are the study's primary family, every claim on every benchmark
together (exploratory ones left out); ``<b>_verdict_<method>`` is the verdict after
``report.multiplicity``'s adjustment (``multiplicity.py``), on the p-value of the same interval
(``<b>_p``, adjusted ``<b>_p_<method>``): a supported or contradicted claim whose adjusted
p-value is not below ``1 - confidence`` is not resolved after the adjustment.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..core import paths
from ..core.plan import BASE, format_ordering, parse_ordering
from . import labels, multiplicity
from .estimates import Comparison, Estimates
from .load import higher_is_better

SUPPORTED, CONTRADICTED, NOT_RESOLVED, NOT_TESTED, NO_PREDICTION, EXPLORATORY = (
    "supported", "contradicted", "not resolved", "not tested", "no prediction", "exploratory")


class ClaimsError(ValueError):
    """A claims file that cannot be used, naming the file, the entry and what was expected."""


@dataclass(frozen=True)
class Claim:
    id: str
    text: dict[str, str]  # language -> the claim in words
    source: str
    comparisons: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()  # (better, worse) orderings
    rule: str | None = None
    operations: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()

    def words(self, language: str) -> str:
        return self.text.get(language) or self.text["en"]

    def orderings(self) -> set[str]:
        found = {o for better, worse in self.comparisons for o in (*better, *worse)}
        return found | {o for pair in self.pairs for o in pair} | ({BASE, *self.operations} if self.rule else set())


def packaged_claims_file() -> Path:
    return Path(str(resources.files("orderstudy.report") / "claims.yaml"))


def load_claims(extra_file: str | None = None) -> list[Claim]:
    """Return the packaged claims, then those of ``extra_file`` (``report.claims_file``), checked."""
    claims = _read(packaged_claims_file())
    if extra_file:
        path = paths.resolve(extra_file)
        if not path.is_file():
            raise ClaimsError(f"report.claims_file: {path} does not exist (expected a YAML list of claims, "
                              f"in the form of {packaged_claims_file()})")
        claims += _read(path)
    seen = set()
    for claim in claims:
        if claim.id in seen:
            raise ClaimsError(f"claim id {claim.id!r} is defined twice (in {packaged_claims_file()} or report.claims_file); "
                              "give yours another id")
        seen.add(claim.id)
    return claims


def _ordering(value, where: str) -> str:
    if not isinstance(value, str):
        raise ClaimsError(f"{where}: expected an ordering such as 'F>P>Q', got {value!r}")
    try:
        return format_ordering(parse_ordering(value))
    except ValueError as exc:
        raise ClaimsError(f"{where}: {exc}") from None


def _side(value, where: str) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ClaimsError(f"{where}: expected one ordering or a non-empty list of them")
    return tuple(_ordering(v, where) for v in values)


def _read(path: Path) -> list[Claim]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ClaimsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, list):
        raise ClaimsError(f"{path}: expected a list of claims at the top level, got {type(raw).__name__}")
    claims = []
    for n, entry in enumerate(raw, start=1):
        where = f"{path}: claim {n}"
        if not isinstance(entry, dict):
            raise ClaimsError(f"{where}: expected a mapping with id, claim, source and comparisons")
        unknown = set(entry) - {"id", "claim", "source", "comparisons", "rule", "operations", "pairs"}
        if unknown:
            raise ClaimsError(f"{where}: unknown key {sorted(unknown)[0]!r} (allowed: id, claim, source, comparisons, "
                              "or rule, operations, pairs)")
        cid = entry.get("id")
        if not isinstance(cid, str) or not re.fullmatch(r"[A-Za-z0-9_]+", cid):
            raise ClaimsError(f"{where}: key 'id': expected a short name of letters, digits and _, got {cid!r}")
        where = f"{path}: claim {cid!r}"
        text = entry.get("claim")
        if isinstance(text, str):
            text = {"en": text}
        if not isinstance(text, dict) or not isinstance(text.get("en"), str):
            raise ClaimsError(f"{where}: key 'claim': expected {{en: ..., zh: ...}} (en required)")
        source = entry.get("source")
        if not isinstance(source, str) or not source.strip():
            raise ClaimsError(f"{where}: key 'source': expected where the claim comes from")
        rule = entry.get("rule")
        if rule is None:
            comparisons = entry.get("comparisons")
            if not isinstance(comparisons, list) or not comparisons:
                raise ClaimsError(f"{where}: key 'comparisons': expected a list of {{better: ..., worse: ...}}")
            parsed = []
            for i, c in enumerate(comparisons, start=1):
                if not isinstance(c, dict) or set(c) != {"better", "worse"}:
                    raise ClaimsError(f"{where}: comparison {i}: expected exactly the keys better and worse")
                parsed.append((_side(c["better"], f"{where}: comparison {i}: better"),
                               _side(c["worse"], f"{where}: comparison {i}: worse")))
            claims.append(Claim(cid, dict(text), " ".join(source.split()), tuple(parsed)))
        elif rule == "weaker_first":
            ops = entry.get("operations")
            known = labels.operation_letters()
            if not isinstance(ops, list) or len(ops) != 2 or any(op not in known for op in ops):
                raise ClaimsError(f"{where}: key 'operations': expected two of {', '.join(known)}")
            pairs = entry.get("pairs")
            if not isinstance(pairs, list) or not pairs or any(not isinstance(p, list) or len(p) != 2 for p in pairs):
                raise ClaimsError(f"{where}: key 'pairs': expected a list of [ordering, ordering]")
            parsed_pairs = tuple((_ordering(a, f"{where}: pairs"), _ordering(b, f"{where}: pairs")) for a, b in pairs)
            for a, b in parsed_pairs:
                if _first(a, ops) is None or {_first(a, ops), _first(b, ops)} != set(ops):
                    raise ClaimsError(f"{where}: pair [{a}, {b}]: each must apply both {ops[0]} and {ops[1]}, in "
                                      "opposite orders")
            claims.append(Claim(cid, dict(text), " ".join(source.split()), rule=rule, operations=tuple(ops),
                                pairs=parsed_pairs))
        else:
            raise ClaimsError(f"{where}: key 'rule': {rule!r} is not a rule this report knows (weaker_first)")
    return claims


def _first(ordering: str, ops) -> str | None:
    """Return which of two operations ``ordering`` applies first, None if it lacks one."""
    found = [op for op in parse_ordering(ordering) if op in ops]
    return found[0] if len(found) == 2 else None


@dataclass(frozen=True)
class Finding:
    """A claim tested on one benchmark."""

    claim: Claim
    benchmark: str
    verdict: str
    comparison: Comparison | None  # the pooled contrast (after = expected better)
    better: tuple[str, ...]
    worse: tuple[str, ...]
    why: str = ""  # what decided the direction (weaker_first), or why it is not tested
    exploratory: bool = False  # the direction came from the data the verdict is on (no split possible)


def _directions(est: Estimates, claim: Claim, benchmark: str,
                items: np.ndarray | None) -> tuple[list[tuple[str, str]], str]:
    """Return ``[(better, worse)]`` for a weaker_first claim on a benchmark, and how the weaker was chosen.

    ``items``: the half of the items the drops are measured on (item means there); None: every
    item, the reported scores.
    """
    drops = {}
    for op in claim.operations:
        missing = est.why_missing(op, benchmark) or est.why_missing(BASE, benchmark)
        if missing:
            return [], missing
        # How much the operation alone harms the score: a drop of an accuracy, a rise of a divergence.
        sign = 1 if higher_is_better(benchmark) else -1
        if items is None:
            drops[op] = sign * (est.score(BASE, benchmark) - est.score(op, benchmark))
        else:
            drops[op] = sign * (est.item_mean(BASE, benchmark, items) - est.item_mean(op, benchmark, items))
    x, y = claim.operations
    if drops[x] == drops[y]:
        return [], f"{x} and {y} alone {_harm(benchmark)} equally ({drops[x]:+.2f} points)"
    weaker = x if drops[x] < drops[y] else y
    on = "on one half of the items, tested on the other" if items is not None else "on every item: exploratory"
    why = f"weaker: {weaker} (alone, {_harm(benchmark)} from the base: {x} {drops[x]:+.2f}, {y} {drops[y]:+.2f} points, {on})"
    return [(a, b) if _first(a, claim.operations) == weaker else (b, a) for a, b in claim.pairs], why


def _harm(benchmark: str) -> str:
    return "drop the score" if higher_is_better(benchmark) else "raise the score (lower is better)"


def test_claim(est: Estimates, claim: Claim, benchmark: str) -> Finding:
    """Return the verdict of one claim on one benchmark."""
    why, tested_on, exploratory = "", None, False
    if claim.rule == "weaker_first":
        halves = est.split_items(benchmark)
        chosen_on, tested_on = halves if halves is not None else (None, None)
        exploratory = halves is None
        directed, why = _directions(est, claim, benchmark, chosen_on)
        if not directed:
            return Finding(claim, benchmark, NO_PREDICTION if "equally" in why else NOT_TESTED, None, (), (), why,
                           exploratory)
        comparisons = [((b,), (w,)) for b, w in directed]
    else:
        comparisons = list(claim.comparisons)
    # An ordering that failed or did not run leaves the claim's other comparisons to test it.
    absent = {o: reason for b, w in comparisons for o in (*b, *w) if (reason := est.why_missing(o, benchmark))}
    comparisons = [(tuple(o for o in b if o not in absent), tuple(o for o in w if o not in absent)) for b, w in comparisons]
    comparisons = [(b, w) for b, w in comparisons if b and w]
    left_out = f"left out: {'; '.join(dict.fromkeys(absent.values()))}" if absent else ""
    why = "; ".join(x for x in (why, left_out) if x)
    if not comparisons:
        return Finding(claim, benchmark, NOT_TESTED, None, (), (), why, exploratory)
    # The claim's comparisons pooled: the mean of every expected-better side against the mean of every expected-worse one.
    # Each comparison weighs the same in the pool whatever the size of its sides: every side is
    # repeated up to the least common multiple of the sides' sizes.
    size = math.lcm(*(len(side) for pair in comparisons for side in pair))
    better = tuple(o for b, _ in comparisons for o in b * (size // len(b)))
    worse = tuple(o for _, w in comparisons for o in w * (size // len(w)))
    result = est.contrast(worse, better, benchmark, tested_on)
    if math.isnan(result.diff):
        return Finding(claim, benchmark, NOT_TESTED, result, better, worse, result.note, exploratory)
    if result.significant is None:
        verdict = NOT_RESOLVED
    elif result.significant:
        # Better is higher for an accuracy, lower for a divergence from the base or a share of answers flipped.
        verdict = SUPPORTED if (result.diff > 0) == higher_is_better(benchmark) else CONTRADICTED
    else:
        verdict = NOT_RESOLVED
    return Finding(claim, benchmark, verdict, result, better, worse, why, exploratory)


def claims_table(est: Estimates, claims: list[Claim], language: str = "en") -> pd.DataFrame:
    """Return one row per claim: its words, source, and per benchmark the difference, interval and verdict.

    Per benchmark also the p-value of the verdict's interval (``<b>_p``), whether the verdict is
    exploratory, and unless ``report.multiplicity`` is ``none`` the adjusted p-value and verdict
    (``<b>_p_holm``, ``<b>_verdict_holm``): the claims are one family, every benchmark together.
    """
    rows = []
    for claim in claims:
        row = {"id": claim.id, "claim": claim.words(language), "source": claim.source}
        for b in est.study.benchmarks:
            f = test_claim(est, claim, b)
            c = f.comparison
            row |= {f"{b}_tested": _describe_sides(f, language), f"{b}_diff": c.diff if c else math.nan,
                    f"{b}_diff_ci_low": c.diff_ci[0] if c else math.nan, f"{b}_diff_ci_high": c.diff_ci[1] if c else math.nan,
                    f"{b}_seeds": c.seeds if c else 0, f"{b}_verdict": f.verdict, f"{b}_p": c.p if c else math.nan,
                    f"{b}_exploratory": f.exploratory,
                    f"{b}_note": "; ".join(x for x in (f.why, *_notes_on_differences(c)) if x)}
        rows.append(row)
    return _adjusted_verdicts(pd.DataFrame(rows), est.study.benchmarks, est.params.multiplicity, 1 - est.confidence)


def _adjusted_verdicts(frame: pd.DataFrame, benchmarks, method: str, alpha: float) -> pd.DataFrame:
    """Add ``<b>_p_<method>`` and ``<b>_verdict_<method>``: the claims' one family, exploratory verdicts left out."""
    if method == "none" or frame.empty:
        return frame
    cells = [(i, b) for i in frame.index for b in benchmarks if not frame.at[i, f"{b}_exploratory"]]
    adjusted = multiplicity.adjust([frame.at[i, f"{b}_p"] for i, b in cells], method)
    for b in benchmarks:
        frame[f"{b}_p_{method}"] = math.nan
    for (i, b), p in zip(cells, adjusted):
        frame.at[i, f"{b}_p_{method}"] = p
    for b in benchmarks:
        verdicts = []
        for i in frame.index:
            raw, p = frame.at[i, f"{b}_verdict"], frame.at[i, f"{b}_p_{method}"]
            if frame.at[i, f"{b}_exploratory"] and raw in (SUPPORTED, CONTRADICTED, NOT_RESOLVED):
                verdicts.append(EXPLORATORY)
            elif raw in (SUPPORTED, CONTRADICTED) and not p < alpha:
                verdicts.append(NOT_RESOLVED)
            else:
                verdicts.append(raw)
        frame[f"{b}_verdict_{method}"] = verdicts
    return frame


def _notes_on_differences(c: Comparison | None) -> list[str]:
    """Return a comparison's notes that concern its difference (a claim shows no change rate)."""
    return [n for n in (c.note.split("; ") if c and c.note else []) if "change rate" not in n and "change-rate" not in n]


def _verdict_words(verdict: str, language: str) -> str:
    return labels.word("verdict_" + verdict.replace(" ", "_"), language)


def _describe_sides(f: Finding, language: str) -> str:
    if not f.better:
        return ""
    better = sorted(set(f.better), key=f.better.index)
    worse = sorted(set(f.worse), key=f.worse.index)
    return f"{', '.join(better)} vs {', '.join(worse)}"


def claims_markdown(frame: pd.DataFrame, benchmarks, language: str = "en", confidence: float = 0.95,
                    method: str = "none") -> str:
    """Return the claims section's table as Markdown: a row per claim, a verdict with its interval per benchmark.

    With an adjustment (``method``) the verdict shown is the adjusted one, followed by the raw one
    where they differ; an exploratory verdict says so.
    """
    from .markdown import _Footnotes, digits, format_change, pipe_table

    notes = _Footnotes()
    header = [labels.word("claim", language), labels.word("tested_by", language)]
    header += [labels.benchmark_name(b) for b in benchmarks]
    rows = []
    for _, row in frame.iterrows():
        tested = sorted({row[f"{b}_tested"] for b in benchmarks if row[f"{b}_tested"]})
        cells = []
        for b in benchmarks:
            raw = row[f"{b}_verdict"]
            shown = row.get(f"{b}_verdict_{method}", raw) if method != "none" else raw
            verdict, raw_words = _verdict_words(shown, language), _verdict_words(raw, language)
            if shown == EXPLORATORY:
                verdict += f": {raw_words}"
            elif shown != raw:
                verdict += f" ({labels.word('unadjusted', language)}: {raw_words})"
            diff = format_change(row[f"{b}_diff"], row[f"{b}_diff_ci_low"], row[f"{b}_diff_ci_high"], percent=False,
                                 places=digits(b))
            cell = f"{verdict} {diff}".strip()
            if row[f"{b}_note"]:
                cell += notes.mark(f"{row['id']}, {labels.benchmark_name(b)}: {row[f'{b}_note']}")
            cells.append(cell)
        claim = f"{row['claim']} ({row['source']})"
        rows.append([claim, "; ".join(tested) or labels.word("not_applicable", language)] + cells)
    legend = labels.word("claims_legend", language).format(confidence=confidence)
    if method != "none":
        legend += " " + labels.word("claims_adjusted", language).format(
            method=labels.word(f"method_{method}", language), family=labels.word("family_claims", language))
    return pipe_table(header, rows) + "\n" + notes.render() + legend + "\n"
