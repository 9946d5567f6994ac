"""Multiplicity: which marks form a family, and the family-wise (Holm) or false-discovery (Benjamini-Hochberg) adjustment.

A study prints about 150 marks; at 95% each, chance alone marks about one in twenty
comparisons without a difference. The report declares its families and adjusts within each,
by ``report.multiplicity``:

- ``holm`` (the default): Holm's step-down method keeps the chance of **any** false mark in a
  family at or below ``1 - confidence``, under any dependence between its tests (the
  comparisons share items, seeds and often an ordering, so they are correlated). What a
  reviewer accepts for claims a paper states.
- ``bh``: Benjamini and Hochberg's step-up method keeps the expected **share** of false marks
  among the marked at or below ``1 - confidence`` (for independent or positively dependent
  tests): more marks, for screening many cells.
- ``none``: the raw marks only.

The families, each adjusted on its own:

- the changes against the base, per benchmark (the main table's change-rate marks);
- the effect of one operation, per operation and benchmark (the per-operation tables: their
  difference marks and their change-rate marks, each a family);
- the order effects, per benchmark (``order_effects.csv``);
- the interactions of two operations, per benchmark (``interactions.csv``);
- the claims, the study's primary family: every claim tested on every benchmark, together.

Each test's p-value comes from the interval that gives its raw mark (``intervals.Estimate.p``:
one less the largest confidence at which that interval still excludes zero), so the raw mark is
``p < 1 - confidence`` and the adjusted mark is the adjusted ``p < 1 - confidence``. A cell with
no interval has no p-value and is not counted in its family.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

METHODS = ("holm", "bh", "none")
NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg", "none": ""}


def check_method(method: str) -> str:
    """Return ``method`` if it is one of ``METHODS``, else raise naming the key and what is allowed."""
    if method not in METHODS:
        raise ValueError(f"report.multiplicity: {method!r} is not a method this report knows; expected one of "
                         f"{', '.join(METHODS)} (holm: family-wise, bh: false discovery rate, none: raw marks only)")
    return method


def adjust(p_values, method: str) -> np.ndarray:
    """Return the adjusted p-values of one family (NaN stays NaN and is not counted in the family's size).

    Holm: the ``k``-th smallest of ``m`` p-values times ``m - k + 1``, made non-decreasing, capped at 1.
    Benjamini-Hochberg: the ``k``-th smallest times ``m / k``, made non-increasing from the largest down.

    >>> adjust([0.01, 0.04, 0.03, 0.005], "holm").round(4).tolist()
    [0.03, 0.06, 0.06, 0.02]
    >>> adjust([0.01, 0.04, 0.03, 0.005], "bh").round(4).tolist()
    [0.02, 0.04, 0.04, 0.02]
    """
    check_method(method)
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, math.nan)
    known = ~np.isnan(p)
    m = int(known.sum())
    if m == 0:
        return out
    if method == "none":
        return p.copy()
    order = np.argsort(p[known], kind="stable")
    ranked = p[known][order]
    k = np.arange(1, m + 1)
    if method == "holm":
        adjusted = np.maximum.accumulate(np.minimum(ranked * (m - k + 1), 1.0))
    else:
        adjusted = np.minimum.accumulate(np.minimum(ranked * m / k, 1.0)[::-1])[::-1]
    back = np.empty(m)
    back[order] = adjusted
    out[known] = back
    return out


def column(name: str, method: str) -> str:
    """Return the adjusted column of ``name``: ``stem_diff_significant`` -> ``stem_diff_significant_holm``."""
    return f"{name}_{method}"


def add_adjusted(frame: pd.DataFrame, p_column: str, mark_column: str, method: str, alpha: float,
                 rows=None) -> pd.DataFrame:
    """Add ``<p_column>_<method>`` and ``<mark_column>_<method>`` to ``frame``: one family, its ``rows`` (default: all).

    The adjusted mark is empty where the raw one is (no interval), and never set where the raw
    one is not (an adjustment only takes marks away).
    """
    if method == "none" or p_column not in frame:
        return frame
    rows = frame.index if rows is None else rows
    p = frame[p_column].astype(float)
    adjusted = pd.Series(math.nan, index=frame.index)
    adjusted.loc[rows] = adjust(p.loc[rows].to_numpy(), method)
    frame[column(p_column, method)] = adjusted
    raw = frame[mark_column] if mark_column in frame else pd.Series(pd.NA, index=frame.index)
    marks = [pd.NA if (r is None or r is pd.NA or math.isnan(q)) else bool(r) and bool(q < alpha)
             for r, q in zip(raw, adjusted)]
    frame[column(mark_column, method)] = pd.array(marks, dtype="boolean")
    return frame
