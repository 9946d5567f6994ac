"""The report's tables as data frames, with machine-readable column names.

- ``main_table``: one row per ordering, reference row order. Its columns are a contract other
  tools read (``main.csv``): ordering, status, ``<b>`` (the mean over seeds), ``<b>_change_pct``,
  size_bytes (the whole checkpoint directory), ``<b>_ci_low``/``_ci_high``,
  ``<b>_change_ci_low``/``_ci_high``, ``<b>_change_significant`` (the change rate's own interval
  excludes zero; empty where that interval is unbounded), compression_ratio, error; and
  seeds (how many finished), ``<b>_seed_sd`` (the score's spread over them), weights_bytes (the
  weight files alone), compression_basis (what the ratio divides); ``build`` adds capped_tasks
  (``benchmark:task`` of the tasks whose generation budget was capped below their answers' length).
- ``transition_table``: the effect of one operation on each state it was applied to (the
  reference study's per-operation tables): ``<b>_diff`` (points) and ``<b>_change_pct`` with
  intervals, each with its own mark (``<b>_diff_significant``, ``<b>_change_significant``).
- ``order_effect_table``: the same operations in two orders, ``<b>_diff`` = B - A, paired over
  items and seeds; ``<b>_seed_sd``: how much that difference moves from seed to seed.

Every mark has its p-value beside it (``<b>_diff_p``, ``<b>_change_p``: from the same interval)
and, unless ``report.multiplicity`` is ``none``, the p-value and mark adjusted within its family
(``multiplicity.py``), named for the method: ``<b>_diff_p_holm``, ``<b>_diff_significant_holm``
(``_bh`` for Benjamini-Hochberg).

Scores and changes are in percent points and percent; printing them is ``markdown``'s job.
"""

from __future__ import annotations

import math

import pandas as pd

from ..core.plan import BASE
from . import labels, multiplicity
from .changes import how_orders_differ, order_pairs, transitions
from .estimates import Comparison, Estimates
from .load import NOT_RUN


def _comparison_columns(benchmark: str, c: Comparison, *, diff: bool) -> dict:
    columns = {}
    if diff:
        columns |= {f"{benchmark}_diff": c.diff, f"{benchmark}_diff_ci_low": c.diff_ci[0], f"{benchmark}_diff_ci_high": c.diff_ci[1],
                    f"{benchmark}_diff_significant": c.significant, f"{benchmark}_diff_p": c.p}
    # Each mark is its own interval's: the rate's from Fieller's interval printed beside it, none when unbounded.
    return columns | {
        f"{benchmark}_change_pct": c.change_pct,
        f"{benchmark}_change_ci_low": c.change_ci[0],
        f"{benchmark}_change_ci_high": c.change_ci[1],
        f"{benchmark}_change_significant": c.change_significant,
        f"{benchmark}_change_p": c.change_p,
    }


def _notes(comparisons: list[Comparison]) -> str:
    """Return why a row's cells are N/A: one note when all benchmarks share it, else one per benchmark."""
    notes = [c.note for c in comparisons]
    if notes and all(note == notes[0] for note in notes):
        return notes[0]
    return "; ".join(f"{c.benchmark}: {c.note}" for c in comparisons if c.note)


def _with_boolean(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with its ``*_significant`` columns as nullable booleans (empty = no interval)."""
    for column in frame.columns:
        if column.endswith("_significant") or "_significant_" in column:
            frame[column] = frame[column].astype("boolean")
    return frame


def _adjusted(est: Estimates, frame: pd.DataFrame, quantity: str, rows=None) -> pd.DataFrame:
    """Add the adjusted p-value and mark of ``<b>_<quantity>`` for every benchmark: one family per benchmark.

    ``quantity``: ``diff`` or ``change``; ``rows``: the family's rows (default: all). The method
    is ``report.multiplicity`` (``multiplicity.py`` declares the families).
    """
    method, alpha = est.params.multiplicity, 1 - est.confidence
    for b in est.study.benchmarks:
        frame = multiplicity.add_adjusted(frame, f"{b}_{quantity}_p", f"{b}_{quantity}_significant", method, alpha, rows)
    return frame


def adjusted_columns(columns: list[str], method: str) -> list[str]:
    """Return ``columns`` with each ``*_p`` and ``*_significant`` column followed by its adjusted one (none for ``none``)."""
    if method == "none":
        return list(columns)
    out = []
    for name in columns:
        out.append(name)
        if name.endswith("_p") or name.endswith("_significant"):
            out.append(multiplicity.column(name, method))
    return out


def compression(study, ordering: str) -> tuple[float, str]:
    """Return ``(ratio, basis)``: what the base would weigh in bf16 over the ordering's weight files.

    The base in bf16 whatever dtype the study computes in (a CPU without bf16 stores the base in
    fp32, and an NF4 model against it would look twice as small as a paper would print). Older
    result files without those sizes give the whole directories' ratio, and the basis says so.
    """
    result, base = study.results.get(ordering), study.results.get(BASE)
    if result is None or not result.ok:
        return math.nan, ""
    base_bf16 = result.base_bf16_weights_bytes or (base.base_bf16_weights_bytes if base is not None else None)
    if result.weights_bytes and base_bf16:
        return base_bf16 / result.weights_bytes, "weights vs base in bf16"
    if base is not None and base.ok and base.size_bytes and result.size_bytes:
        return base.size_bytes / result.size_bytes, "directories vs base as stored"
    return math.nan, ""


def main_table(est: Estimates, language: str = "en") -> pd.DataFrame:
    """Return one row per ordering: status, scores, change rates against the base, size, intervals, error."""
    study, rows = est.study, []
    for ordering in study.orderings:
        result = study.results.get(ordering)
        row = {"ordering": ordering, "label": labels.ordering_label(ordering, language), "status": study.status(ordering),
               "seeds": len(study.ok_seeds(ordering))}
        comparisons = [est.compare(BASE, ordering, b) for b in study.benchmarks]
        for b in study.benchmarks:
            row[b] = est.score(ordering, b)
        for b, c in zip(study.benchmarks, comparisons):
            row[f"{b}_change_pct"] = c.change_pct
        row["size_bytes"] = result.size_bytes if result is not None else None
        row["weights_bytes"] = result.weights_bytes if result is not None else None
        row["compression_ratio"], row["compression_basis"] = compression(study, ordering)
        for b, c in zip(study.benchmarks, comparisons):
            low, high = est.score_ci(ordering, b)
            row |= {f"{b}_ci_low": low, f"{b}_ci_high": high, f"{b}_seed_sd": study.seed_sd(ordering, b)}
            row |= {k: v for k, v in _comparison_columns(b, c, diff=False).items() if k != f"{b}_change_pct"}
        row["n_params"] = result.n_params if result is not None else None
        row["quantized"] = result.quantized if result is not None else None
        row["error"] = result.error_text() if result is not None else ""
        # A failed or missing ordering says so in status and error; notes are for what else is N/A.
        if row["status"] != "ok":
            row["note"] = ""
        elif study.status(BASE) != "ok":
            row["note"] = f"no change rates: the base model {study.status(BASE)}"
        elif ordering == BASE and study.missing_seeds(BASE):
            row["note"] = f"{BASE}: {study.missing_seeds(BASE)}"
        else:
            row["note"] = _notes(comparisons)
        rows.append(row)
    frame = pd.DataFrame(rows)
    # The changes against the base, one family per benchmark (the base's own row is no test).
    frame = _adjusted(est, frame, "change", rows=frame.index[frame["ordering"] != BASE])
    frame["size_bytes"] = frame["size_bytes"].astype("Int64")
    frame["weights_bytes"] = frame["weights_bytes"].astype("Int64")
    frame["n_params"] = frame["n_params"].astype("Int64")
    frame["quantized"] = frame["quantized"].astype("boolean")
    return _with_boolean(frame)


def _pair_status(est: Estimates, *orderings: str) -> str:
    """Return ``failed`` if either ordering failed, else ``not run`` if either did not run, else ``ok``."""
    statuses = {est.study.status(o) for o in orderings}
    return next((s for s in ("failed", NOT_RUN) if s in statuses), "ok")


def transition_table(est: Estimates, operation: str, language: str = "en") -> pd.DataFrame:
    """Return the effect of ``operation`` on every state it was applied to: S -> S>operation.

    One row per pair of the study's orderings that differ by that operation added last (base ->
    F, P -> P>F, Q -> Q>F, P>Q -> P>Q>F, Q>P -> Q>P>F for fine-tuning).
    """
    rows = []
    for before, after in transitions(est.study.orderings, operation):
        row = {"operation": operation, "before": before, "after": after,
               "label": labels.transition_label(before, after, language), "status": _pair_status(est, before, after)}
        comparisons = [est.compare(before, after, b) for b in est.study.benchmarks]
        for b, c in zip(est.study.benchmarks, comparisons):
            row |= {f"{b}_before": c.before_score, f"{b}_after": c.after_score}
            row |= _comparison_columns(b, c, diff=True)
        row["note"] = _notes(comparisons)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=_transition_columns(est, "none"))
    # The effect of one operation, per benchmark: its differences a family, its change rates another.
    frame = _adjusted(est, _adjusted(est, frame, "diff"), "change")
    return _with_boolean(frame[_transition_columns(est, est.params.multiplicity)])


def _transition_columns(est: Estimates, method: str) -> list[str]:
    columns = ["operation", "before", "after", "label", "status"]
    for b in est.study.benchmarks:
        columns += [f"{b}_before", f"{b}_after", f"{b}_diff", f"{b}_diff_ci_low", f"{b}_diff_ci_high",
                    f"{b}_diff_significant", f"{b}_diff_p", f"{b}_change_pct", f"{b}_change_ci_low",
                    f"{b}_change_ci_high", f"{b}_change_significant", f"{b}_change_p"]
    return adjusted_columns(columns, method) + ["note"]


def transition_tables(est: Estimates, language: str = "en") -> dict[str, pd.DataFrame]:
    """Return ``transition_table`` for each operation the report knows (``labels.operation_letters``), keyed by letter."""
    return {op: transition_table(est, op, language) for op in labels.operation_letters()}


def differs_by(a: str, b: str, language: str = "en") -> str:
    """Return how two orderings of the same operations differ, in words: ``swap prune and quantize (adjacent)``."""
    kind, swapped, adjacent = how_orders_differ(a, b)
    if kind == "rotation":
        return labels.word("rotation", language)
    x, y = (labels.operation_name(op, language) for op in swapped)
    text = labels.word("swap", language).format(a=x, b=y)
    return f"{text} ({labels.word('adjacent', language)})" if adjacent else text


def order_effect_table(est: Estimates, language: str = "en") -> pd.DataFrame:
    """Return, for each pair of orderings of the same operations, the score difference B - A with a paired interval."""
    rows = []
    for a, b in order_pairs(est.study.orderings):
        row = {"a": a, "b": b, "label": labels.pair_label(a, b, language), "differs_by": differs_by(a, b, language),
               "status": _pair_status(est, a, b)}
        comparisons = [est.compare(a, b, bench) for bench in est.study.benchmarks]
        for bench, c in zip(est.study.benchmarks, comparisons):
            row |= {f"{bench}_a": c.before_score, f"{bench}_b": c.after_score, f"{bench}_diff": c.diff,
                    f"{bench}_diff_ci_low": c.diff_ci[0], f"{bench}_diff_ci_high": c.diff_ci[1],
                    f"{bench}_diff_significant": c.significant, f"{bench}_diff_p": c.p, f"{bench}_seeds": c.seeds,
                    f"{bench}_seed_sd": c.seed_sd}
        row["note"] = _notes(comparisons)
        rows.append(row)
    columns = ["a", "b", "label", "differs_by", "status"]
    for bench in est.study.benchmarks:
        columns += [f"{bench}_a", f"{bench}_b", f"{bench}_diff", f"{bench}_diff_ci_low", f"{bench}_diff_ci_high",
                    f"{bench}_diff_significant", f"{bench}_diff_p", f"{bench}_seeds", f"{bench}_seed_sd"]
    # The order effects, one family per benchmark.
    frame = _adjusted(est, pd.DataFrame(rows, columns=columns + ["note"]), "diff")
    return _with_boolean(frame[adjusted_columns(columns, est.params.multiplicity) + ["note"]])
