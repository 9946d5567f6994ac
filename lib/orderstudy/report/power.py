"""What the study can detect: per benchmark, the smallest change its samples detect, and what more would take.

For each benchmark: its items (tasks × items a task), Kish's effective number of items, the
seeds, the spread of one item's paired difference between two orderings, the standard error of
a typical paired difference, and from it the **minimum detectable change** (points) at the
report's confidence and power (``report.power``, 80% by default): the δ that solves
``δ = (t_{1-α/2, df} + t_{power, df}) × se(δ)``, where ``se(δ)² = se² + g · δ (100 - δ)`` grows
with the true change (``intervals.detectable_difference``; ``g`` from the benchmark's
``sum_t w_t² / n_t``, half of it for 0/1 items, a fifth for partial credit). A true difference
that large is found (its interval excludes zero) with that probability, which the calibration
test simulates (75-85% for 80%); smaller ones mostly are not, whatever they are. The former
``(t + t) × se`` at the observed se was reached only 55-70% of the time: a paired difference's
standard error is larger at a real change than at the near-null pairs it is observed on.

"Typical" is the root mean square of the standard errors over the study's order-effect pairs
(the comparisons the study is about), or over its comparisons against the base when no pair
has scores. A pair whose two orderings score every item alike (both 0 on every item, as heavily
pruned models do, or the same answers) has a standard error of exactly 0 and says nothing of how
items vary: it is left out (``uninformative``), else it would shrink the typical error and the
minimum detectable change below what the intervals the report draws can resolve.

Then the items per task that would detect ``report.target_change_points`` (5 points by default),
with the same t quantiles and the same growth: the items' part of the variance shrinks with more
items, the seeds' part does not, and when that alone exceeds what the target allows the answer
is "more seeds", not more items (a target equal to today's minimum detectable change needs
today's items).

A benchmark with a task of one item has no interval (``intervals.py``); its planning numbers
still come from the spread of all its items' differences around their mean, which overstates
the within-task spread: they say roughly how many items it would take.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..core.plan import BASE
from . import intervals, labels
from .changes import order_pairs
from .estimates import Estimates


def _pairs(est: Estimates, benchmark: str) -> tuple[list[tuple[str, str]], str]:
    ok = [o for o in est.study.orderings if not est.why_missing(o, benchmark)]
    pairs = [(a, b) for a, b in order_pairs(ok)]
    if pairs:
        return pairs, "order effects"
    return [(BASE, o) for o in ok if o != BASE and BASE in ok], "against the base"


def benchmark_power(est: Estimates, benchmark: str) -> dict:
    """Return one benchmark's row of the power table (see the module's docstring)."""
    data = est.items.get(benchmark)
    params = est.params
    row = {"benchmark": benchmark}
    if data is None:
        return row | {"intervals": False, "note": "no per-item scores"}
    design = data.design
    n = design.items_per_task
    row |= {"tasks": len(design.tasks), "items": int(n.sum()),
            "items_per_task": f"{n.min()}" if n.min() == n.max() else f"{n.min()}-{n.max()}",
            "effective_items": round(design.effective_items, 1), "seeds": len(est.study.seeds)}
    pairs, basis = _pairs(est, benchmark)
    noises, uninformative = [], 0
    for a, b in pairs:
        seeds = tuple(sorted(set(est.study.ok_seeds(a)) & set(est.study.ok_seeds(b))))
        arm_a, arm_b = est.arm(a, benchmark, seeds), est.arm(b, benchmark, seeds)
        if seeds and arm_a is not None and arm_b is not None:
            noise = intervals.pair_noise(design, arm_a, arm_b)
            if noise.item + noise.seed == 0.0:
                uninformative += 1
            else:
                noises.append(noise)
    reason = est.no_interval_reason(benchmark)
    row |= {"intervals": not reason, "comparisons": len(noises), "uninformative": uninformative,
            "basis": basis if noises else ""}
    if not noises and uninformative:
        alike = (f"all {uninformative} pairs of orderings score every item alike: how items vary cannot be "
                 "estimated, so neither what the study detects nor what more items would take")
        return row | {"note": f"{reason}; {alike}" if reason else alike}
    if not noises or all(math.isnan(x.item) for x in noises):
        return row | {"note": reason or "no pair of orderings with scores"}
    item = float(np.nanmean([x.item for x in noises]))
    seed = float(np.mean([x.seed for x in noises]))
    df = float(np.median([x.df for x in noises]))
    growth = float(np.mean([x.growth for x in noises]))
    se = math.sqrt(item + seed)
    noise = intervals.PairNoise(item, seed, df, growth)
    needed = intervals.items_needed(design, noise, params.target_change_points, params.confidence, params.power)
    row |= {
        "item_diff_sd_points": math.sqrt(item / design.variance_factor),
        "se_points": se,
        "seed_share": seed / (item + seed) if item + seed > 0 else math.nan,
        "mde_points": math.nan if reason else intervals.detectable_difference(se, df, params.confidence, params.power,
                                                                              growth),
        "target_points": params.target_change_points,
        "items_per_task_needed": needed,
        "seeds_needed": intervals.seeds_needed(noise, len(est.study.seeds), params.target_change_points,
                                               params.confidence, params.power) if math.isinf(needed) else math.nan,
        "note": reason,
    }
    return row


def power_table(est: Estimates) -> pd.DataFrame:
    """Return one row per benchmark: items, seeds, typical standard error, minimum detectable change, items needed."""
    columns = ["benchmark", "tasks", "items", "items_per_task", "effective_items", "seeds", "intervals", "comparisons",
               "uninformative", "basis", "item_diff_sd_points", "se_points", "seed_share", "mde_points", "target_points",
               "items_per_task_needed", "seeds_needed", "note"]
    return pd.DataFrame([benchmark_power(est, b) for b in est.study.benchmarks], columns=columns)


def power_markdown(frame: pd.DataFrame, language: str = "en", confidence: float = 0.95, power: float = 0.8) -> str:
    """Return the power table as Markdown, with a line on how to read it."""
    from .load import unit
    from .markdown import is_missing, pipe_table

    header = [labels.word(k, language) for k in ("benchmark", "items_col", "seeds_col", "se_col", "mde_col", "needed_col")]
    target = frame["target_points"].dropna()
    target = float(target.iloc[0]) if len(target) else math.nan
    header[4] = header[4].format(power=power, confidence=confidence)
    header[5] = header[5].format(target=target)
    rows = []
    for _, row in frame.iterrows():
        if is_missing(row.get("tasks")):
            rows.append([labels.benchmark_name(row["benchmark"])] + [labels.word("not_applicable", language)] * 5)
            continue
        items = f"{int(row['items'])} ({int(row['tasks'])} × {row['items_per_task']})"
        own = unit(row["benchmark"])   # a divergence's SE and MDE are in its own unit, not points
        se = "" if is_missing(row["se_points"]) else f"{row['se_points']:.2f}" if own == "%" else f"{row['se_points']:.3f} {own}"
        mde = labels.word("no_interval_short", language) if not row["intervals"] else (
            "" if is_missing(row["mde_points"]) else "> 100" if row["mde_points"] > 100 and own == "%"
            else f"{row['mde_points']:.1f}" if own == "%" else f"{row['mde_points']:.3f} {own}")
        needed = row["items_per_task_needed"]
        if own != "%":   # the target is in points: it says nothing of a divergence
            needed_text = labels.word("not_applicable", language)
        elif is_missing(needed):
            needed_text = ""
        elif math.isinf(needed):
            needed_text = labels.word("more_seeds", language).format(seeds=int(row["seeds_needed"]))
        else:
            needed_text = f"{int(needed)}"
        rows.append([labels.benchmark_name(row["benchmark"]), items, str(int(row["seeds"])), se, mde, needed_text])
    legend = labels.word("power_legend", language).format(power=power, confidence=confidence, target=target)
    return pipe_table(header, rows) + "\n" + legend + "\n"
