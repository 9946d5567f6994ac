"""The report's figures, drawn from its tables and saved as PNG and SVG.

- ``change_heatmap``: change rates against the base, orderings by benchmarks, diverging colours
  centred at zero, each cell annotated (``*`` = interval excludes zero).
- ``score_size_figure``: score against size on disk, one panel per benchmark, with intervals and
  the Pareto front (no other ordering is both smaller and better).
- ``operation_effects_figure``: the change each operation causes, grouped by the state it was
  applied to, with paired intervals.

Figures are built on ``matplotlib.figure.Figure`` objects, not pyplot: saving one renders it with
the Agg canvas whatever backend is active, so drawing works headless, and a notebook's own
backend (inline) is left alone. The command line selects Agg anyway (``__main__``).
``save_figure`` writes a fixed pixel size (``size * DPI``).
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from functools import lru_cache
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import font_manager
from matplotlib.figure import Figure

from ..core.atomic import write_bytes
from ..core.plan import BASE
from . import labels
from .load import from_base, higher_is_better, unit

DPI = 100
HEATMAP_SIZE = (7.0, 7.5)  # inches; x DPI = pixels
SCORE_SIZE_SIZE = (13.0, 4.6)
OPERATION_EFFECTS_SIZE = (13.0, 4.6)
# Change rates beyond this are drawn in the extreme colour (the reference has +191%): one outlier
# should not wash out every other cell.
HEATMAP_LIMIT_PCT = 100.0

_TEXT = {
    "en": {
        "heatmap_title": "Change rate against the base model (%)",
        "heatmap_bar": "change rate (%)",
        "size_axis": "size on disk (MiB)",
        "score_axis": "score (%)",
        "pareto": "Pareto front (smaller and better)",
        "effect_title": "{operation}",
        "effect_axis": "change (points)",
        "effect_axis_unit": "change ({unit})",
        "state_axis": "applied to the model in state",
        "missing": "N/A",
    },
    "zh": {
        "heatmap_title": "相对原始模型的变化率 (%)",
        "heatmap_bar": "变化率 (%)",
        "size_axis": "模型大小 (MiB)",
        "score_axis": "得分 (%)",
        "pareto": "帕累托前沿（更小且更好）",
        "effect_title": "{operation}",
        "effect_axis": "变化（分）",
        "effect_axis_unit": "变化（{unit}）",
        "state_axis": "作用于状态",
        "missing": "不适用",
    },
}


@lru_cache(maxsize=None)
def _cjk_font() -> str | None:
    """Return the name of an installed font that has Chinese glyphs, if any."""
    for font in font_manager.fontManager.ttflist:
        if any(key in font.name for key in ("CJK", "WenQuanYi", "Hei", "Song", "Ming", "Noto Sans SC", "Source Han")):
            return font.name
    return None


def figure_language(language: str) -> str:
    """Return the language figures can be drawn in: ``zh`` only when a Chinese font is installed."""
    labels.check_language(language)
    if language == "zh" and _cjk_font() is None:
        _warn_no_cjk_font()
        return "en"
    return language


@lru_cache(maxsize=None)
def _warn_no_cjk_font() -> None:
    """Warn, once per process however many figures are drawn, that Chinese labels fall back to English."""
    warnings.warn("no font with Chinese glyphs is installed; figures are labelled in English "
                  "(install one, e.g. fonts-noto-cjk, to draw them in Chinese)", stacklevel=3)


@contextlib.contextmanager
def _style(language: str):
    """Apply the report's seaborn style (and a Chinese font for zh) only while drawing."""
    rc = {"font.family": [_cjk_font(), "sans-serif"]} if language == "zh" else {}
    with sns.axes_style("whitegrid", rc=rc), matplotlib.rc_context(rc):
        yield


def _code(ordering: str) -> str:
    """Return an ordering as short code for crowded axes: ``F>P>Q`` -> ``F→P→Q``."""
    return ordering.replace(">", "→")


def change_heatmap(main: pd.DataFrame, benchmarks, language: str = "en") -> Figure:
    """Return a heatmap of change rates (rows: orderings other than the base; columns: benchmarks)."""
    language = figure_language(language)
    text = _TEXT[language]
    rows = main[main["ordering"] != BASE]
    benchmarks = [b for b in benchmarks if not from_base(b)]   # a fidelity score is itself its change from the base
    values = rows[[f"{b}_change_pct" for b in benchmarks]].astype(float).to_numpy()
    annot = np.empty(values.shape, dtype=object)
    for i, (_, row) in enumerate(rows.iterrows()):
        for j, b in enumerate(benchmarks):
            if row["status"] != "ok":
                annot[i, j] = labels.word("not_applicable" if row["status"] == "failed" else "not_run", language)
            elif math.isnan(values[i, j]):
                annot[i, j] = text["missing"]
            else:
                # † where the mark holds after the multiplicity adjustment (main.csv's column named for it).
                adjusted = any(row.get(f"{b}_change_significant_{m}") is True for m in ("holm", "bh"))
                annot[i, j] = (f"{values[i, j]:+.1f}" + ("*" if row[f"{b}_change_significant"] is True else "")
                               + ("†" if adjusted else ""))
    finite = np.abs(values[np.isfinite(values)])
    limit = min(max(float(finite.max()) if finite.size else 1.0, 1.0), HEATMAP_LIMIT_PCT)
    frame = pd.DataFrame(values, index=[labels.ordering_label(o, language) for o in rows["ordering"]],
                         columns=[labels.benchmark_name(b) for b in benchmarks])
    with _style(language):
        fig = Figure(figsize=HEATMAP_SIZE, dpi=DPI, layout="constrained")
        ax = fig.add_subplot()
        ax.set_facecolor("#eeeeee")  # cells with no value (failed, not run) stay grey
        sns.heatmap(frame, ax=ax, cmap="RdBu", center=0.0, vmin=-limit, vmax=limit, annot=annot, fmt="",
                    linewidths=0.5, cbar_kws={"label": text["heatmap_bar"], "extend": "both"})
        # Annotations of NaN cells are skipped by seaborn; write them by hand.
        for i, j in zip(*np.where(~np.isfinite(values))):
            ax.text(j + 0.5, i + 0.5, annot[i, j], ha="center", va="center", color="#555555", fontsize=9)
        ax.set_title(text["heatmap_title"])
        ax.set_xlabel("")
        ax.set_ylabel("")
    return fig


def pareto_front(sizes, scores) -> np.ndarray:
    """Return which points no other point beats: as small or smaller and as good or better, one strictly.

    >>> pareto_front([1, 2, 3], [10, 30, 20]).tolist()
    [True, True, False]
    """
    sizes, scores = np.asarray(sizes, float), np.asarray(scores, float)
    front = np.isfinite(sizes) & np.isfinite(scores)
    for i in np.flatnonzero(front):
        others = (sizes <= sizes[i]) & (scores >= scores[i]) & ((sizes < sizes[i]) | (scores > scores[i]))
        front[i] = not others.any()
    return front


def score_size_figure(main: pd.DataFrame, benchmarks, language: str = "en") -> Figure:
    """Return score against size on disk, one panel per benchmark, with intervals and the Pareto front marked."""
    language = figure_language(language)
    text = _TEXT[language]
    ran = main[(main["status"] == "ok") & main["size_bytes"].notna()]
    sizes = ran["size_bytes"].astype(float).to_numpy() / 2**20
    palette = sns.color_palette("deep")
    with _style(language):
        fig = Figure(figsize=SCORE_SIZE_SIZE, dpi=DPI, layout="constrained")
        axes = fig.subplots(1, max(len(benchmarks), 1), squeeze=False)[0]
        for ax, b in zip(axes, benchmarks):
            scores = ran[b].astype(float).to_numpy()
            low = ran[f"{b}_ci_low"].astype(float).to_numpy()
            high = ran[f"{b}_ci_high"].astype(float).to_numpy()
            yerr = np.nan_to_num(np.vstack([scores - low, high - scores]), nan=0.0)
            # Better is higher for an accuracy, lower for a divergence from the base or a share of flips.
            front = pareto_front(sizes, scores if higher_is_better(b) else -scores)
            ax.errorbar(sizes, scores, yerr=yerr, fmt="o", color=palette[0], ecolor="#999999", capsize=3, zorder=2)
            if front.any():
                order = np.argsort(sizes[front])
                ax.plot(sizes[front][order], scores[front][order], "-", drawstyle="steps-post", color=palette[3],
                        zorder=1, label=text["pareto"])
                ax.scatter(sizes[front], scores[front], s=90, facecolors="none", edgecolors=palette[3], linewidths=1.5, zorder=3)
            ax.set_title(labels.benchmark_name(b))
            ax.set_xlabel(text["size_axis"])
            ax.set_ylabel(text["score_axis"] if unit(b) == "%" else f"{labels.benchmark_name(b)} ({unit(b)})")
            ax.margins(x=0.15, y=0.12)  # room for the labels inside the panel
        axes[0].legend(loc="best", fontsize=8)
        # Labels last, once the layout has placed the panels: they are placed in display space.
        fig.draw_without_rendering()
        for ax, b in zip(axes, benchmarks):
            label_points(ax, sizes, ran[b].astype(float).to_numpy(), [_code(o) for o in ran["ordering"]])
    return fig


# Candidate offsets of a label from its point, in points: close first, then farther in eight
# directions (a leader line joins a far label to its point).
_OFFSETS = [(5, 4), (5, -10), (-5, 4), (-5, -10)] + [
    (round(r * math.cos(a)), round(r * math.sin(a))) for r in (16, 26, 38, 52, 68) for a in np.linspace(0, 2 * math.pi, 9)[:-1]]
_COINCIDE_PX = 4.0


def coincident_groups(points_px: np.ndarray, tolerance_px: float = _COINCIDE_PX) -> list[list[int]]:
    """Return the indices of points that lie on one another (within ``tolerance_px``), each group in input order.

    >>> coincident_groups(np.array([[0.0, 0.0], [10.0, 0.0], [1.0, 1.0], [30.0, 5.0]]))
    [[0, 2], [1], [3]]
    """
    groups: list[list[int]] = []
    for i, point in enumerate(points_px):
        for group in groups:
            if np.hypot(*(points_px[group[0]] - point)) <= tolerance_px:
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def label_points(ax, xs, ys, names, fontsize: float = 8.0) -> list:
    """Label points so that every label can be read: coincident points share one label, labels do not overlap.

    Points that lie on one another (several orderings of the same size and score) get one label
    listing them all. Each label then takes the first of ``_OFFSETS`` where it overlaps no label
    placed before it, no other point, and stays inside the panel; a label placed away from its
    point gets a leader line. Returns the label ``Text`` objects.
    """
    renderer = ax.figure._get_renderer()
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    keep = np.flatnonzero(np.isfinite(xs) & np.isfinite(ys))
    if keep.size == 0:
        return []
    points_px = ax.transData.transform(np.column_stack([xs[keep], ys[keep]]))
    panel = ax.get_window_extent(renderer)
    scale = ax.figure.dpi / 72.0
    marker = 4.0 * scale  # a point's marker, as an obstacle, in pixels
    placed_boxes, texts = [], []
    groups = sorted(coincident_groups(points_px), key=lambda g: (points_px[g[0]][0], -points_px[g[0]][1]))
    for group in groups:
        members = [names[keep[i]] for i in group]
        label = "\n".join(", ".join(members[i:i + 3]) for i in range(0, len(members), 3))
        others = [p for j, p in enumerate(points_px) if j not in group]
        chosen = None
        for dx, dy in _OFFSETS:
            text = ax.annotate(label, (xs[keep[group[0]]], ys[keep[group[0]]]), textcoords="offset points",
                               xytext=(dx, dy), fontsize=fontsize, ha="left" if dx >= 0 else "right",
                               va="bottom" if dy >= 0 else "top", annotation_clip=False)
            text.set_in_layout(False)
            box = text.get_window_extent(renderer).expanded(1.0, 1.0)
            inside = (box.x0 >= panel.x0 and box.x1 <= panel.x1 and box.y0 >= panel.y0 and box.y1 <= panel.y1)
            clear = not any(box.overlaps(other) for other in placed_boxes) and not any(
                box.x0 - marker <= p[0] <= box.x1 + marker and box.y0 - marker <= p[1] <= box.y1 + marker for p in others)
            if inside and clear:
                chosen = (text, box, dx, dy)
                break
            text.remove()
        if chosen is None:  # nowhere free: the nearest place, readable if not clear
            dx, dy = _OFFSETS[0]
            text = ax.annotate(label, (xs[keep[group[0]]], ys[keep[group[0]]]), textcoords="offset points",
                               xytext=(dx, dy), fontsize=fontsize, ha="left", va="bottom", annotation_clip=False)
            text.set_in_layout(False)
            chosen = (text, text.get_window_extent(renderer), dx, dy)
        text, box, dx, dy = chosen
        if math.hypot(dx, dy) > 12:  # away from its point: a leader line says which point it names
            text.remove()
            text = ax.annotate(label, (xs[keep[group[0]]], ys[keep[group[0]]]), textcoords="offset points",
                               xytext=(dx, dy), fontsize=fontsize, ha="left" if dx >= 0 else "right",
                               va="bottom" if dy >= 0 else "top", annotation_clip=False,
                               arrowprops={"arrowstyle": "-", "color": "#555555", "lw": 0.7, "shrinkA": 1, "shrinkB": 4})
            text.set_in_layout(False)
        placed_boxes.append(box)
        texts.append(text)
    return texts


def operation_effects_figure(transition_tables: dict[str, pd.DataFrame], benchmarks, language: str = "en") -> Figure:
    """Return grouped bars: for each operation, the change (points) it causes on each state it was applied to."""
    language = figure_language(language)
    text = _TEXT[language]
    palette = sns.color_palette("deep", len(benchmarks))
    operations = [op for op in labels.operation_letters() if op in transition_tables]
    # One row per unit: changes in points (accuracy, flips) share an axis; a divergence has its own.
    units = list(dict.fromkeys(unit(b) for b in benchmarks)) or ["%"]
    rows = [[b for b in benchmarks if unit(b) == u] for u in units]
    colour = {b: palette[k] for k, b in enumerate(benchmarks)}
    with _style(language):
        width_in, height_in = OPERATION_EFFECTS_SIZE
        fig = Figure(figsize=(width_in, height_in * (1 + 0.6 * (len(rows) - 1))), dpi=DPI, layout="constrained")
        grid = fig.subplots(len(rows), max(len(operations), 1), squeeze=False, sharey="row")
        cells = [(r, ax, op) for r in range(len(rows)) for ax, op in zip(grid[r], operations)]
        for r, ax, op in cells:
            row_benchmarks = rows[r]
            table = transition_tables[op]
            x = np.arange(len(table))
            width = 0.8 / max(len(row_benchmarks), 1)
            for k, b in enumerate(row_benchmarks):
                diff = table[f"{b}_diff"].astype(float).to_numpy()
                low = table[f"{b}_diff_ci_low"].astype(float).to_numpy()
                high = table[f"{b}_diff_ci_high"].astype(float).to_numpy()
                yerr = np.nan_to_num(np.vstack([diff - low, high - diff]), nan=0.0)
                offset = (k - (len(row_benchmarks) - 1) / 2) * width
                ax.bar(x + offset, np.nan_to_num(diff), width, yerr=yerr, capsize=2, color=colour[b],
                       label=labels.benchmark_name(b), error_kw={"elinewidth": 0.8, "ecolor": "#444444"})
                for xi in x[np.isnan(diff)]:
                    ax.text(xi + offset, 0, text["missing"], rotation=90, ha="center", va="bottom", fontsize=7, color="#777777")
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_xticks(x, [_code(before) for before in table["before"]])
            if r == 0:
                ax.set_title(text["effect_title"].format(operation=labels.operation_title(op, language)), fontsize=10)
            if r == len(rows) - 1:
                ax.set_xlabel(text["state_axis"])
        for r, u in enumerate(units):
            grid[r][0].set_ylabel(text["effect_axis"] if u == "%" else text["effect_axis_unit"].format(unit=u))
            grid[r][-1].legend(fontsize=8)
    return fig


_CAPTIONS = {
    "en": {
        "change_heatmap": (
            "**How much each ordering changed the score, against the base model.** One row per ordering "
            "(A → B: A applied first, then B), one column per benchmark. Each cell is the change rate, (score − base "
            "score) / base score × 100, in percent: blue cells scored better than the base model, red worse; the "
            "colours saturate at ±100%. A * marks a change whose {confidence} paired interval (over the items, and the "
            "seeds where a study has several) excludes zero, i.e. a change that the choice of sampled items and the "
            "seed are unlikely to explain; no * where a benchmark has too few items for an interval; *† where the mark "
            "still holds after the adjustment for the many changes against the base on that benchmark "
            "(report.multiplicity). N/A: the ordering failed, or the base model scored 0."),
        "score_vs_size": (
            "**Score against size on disk.** One panel per benchmark; one point per ordering. A score is the percent "
            "of the benchmark's sampled items answered right (LawBench: its own per-task metric, averaged over its tasks; "
            "MMLU groups: weighted by subject size); the size is the model's checkpoint on disk. The bars are "
            "{confidence} intervals over the items (Wilson; and the seeds, where a study has several). Circled points, joined by the red step line, are the Pareto front: no other "
            "ordering is both smaller and better. Orderings that land on the same point share one label; a label "
            "set away from its point has a line to it. Fidelity panels (KL to base, answers flipped) measure the "
            "distance from the base model: there lower is better, and the front is taken that way."),
        "operation_effects": (
            "**What each operation does, depending on what it is applied to.** One panel per operation (fine-tune, "
            "prune, quantize). Each group of bars is one state the operation was applied to (base: the base model; "
            "P: the pruned model, and so on), each bar one benchmark: the change in points, score after − score "
            "before, with {confidence} paired intervals (MOVER, over the items and seeds). Above zero the operation helped there; an "
            "operation whose bars change sign from one state to another is one whose effect depends on the order. "
            "Fidelity to the base (KL to base, in its own unit on its own row; answers flipped) rises as a state "
            "drifts: above zero the operation moved the model further from the base."),
    },
    "zh": {
        "change_heatmap": (
            "**各顺序相对原始模型的变化率。** 每行一个顺序（A → B：先 A 后 B），每列一个基准。格中数值为变化率 (得分 − 原始得分) / "
            "原始得分 × 100（%）：蓝色优于原始模型，红色较差，颜色在 ±100% 处饱和。* 表示其 {confidence} 配对区间（对题目及种子）不含零；题目太少、无法给出区间的基准不标 *；*† 表示"
            "经同一基准上相对原始模型全部变化的多重比较校正（report.multiplicity）后仍成立。不适用：该顺序失败，或原始模型得分为 0。"),
        "score_vs_size": (
            "**得分与磁盘大小。** 每个基准一幅，每个顺序一点；误差线为对题目（及种子）的 {confidence} Wilson 区间。圈出并以红色阶梯线相连的点"
            "构成帕累托前沿：没有其他顺序既更小又更好。落在同一点的顺序共用一个标签；离点较远的标签以细线连到其点。"
            "保真度（KL to base、Answers flipped）衡量与原始模型的距离：越低越好，前沿亦按此取。"),
        "operation_effects": (
            "**各操作的效果随其作用的状态而变。** 每个操作一幅；每组柱为该操作作用的一个状态，每根柱为一个基准："
            "得分变化（分，之后 − 之前）及 {confidence} 配对区间（MOVER，对题目及种子）。"
            "保真度（KL 单独一行，单位为其自身）上升表示模型离原始模型更远。"),
    },
}


def caption(name: str, language: str = "en", confidence: float = 0.95) -> str:
    """Return a figure's caption (Markdown) that a reader new to the study can follow without the README."""
    texts = _CAPTIONS.get(language, _CAPTIONS["en"])
    return texts[name].format(confidence=f"{confidence:.0%}")


def save_figure(fig: Figure, directory: Path, name: str) -> dict[str, Path]:
    """Save ``fig`` as ``<directory>/<name>.png`` and ``.svg``; return the two paths by format."""
    saved = {}
    for fmt in ("png", "svg"):
        buffer = io.BytesIO()
        # No bbox_inches="tight": the PNG keeps the figure's nominal size, figsize x DPI pixels.
        fig.savefig(buffer, format=fmt, dpi=DPI)
        path = Path(directory) / f"{name}.{fmt}"
        saved[fmt] = write_bytes(path, buffer.getvalue())
    return saved
