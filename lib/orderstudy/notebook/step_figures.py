"""Figures of what one step did to the model, drawn from the states' records for the ordering notebook.

- ``loss_figure``: a fine-tune's training loss per step and its validation loss before and after.
- ``kept_figure``: what pruning kept, layer by layer (MLP channels and key/value groups, whole
  layers, or the weights of each linear layer, by the method).
- ``importance_figure``: the importance scores pruning ranked by, kept and removed apart.
- ``quantization_error_figure``: each quantized linear layer's relative weight error, by layer.
- ``parts_figure``: bytes on disk and parameters of each part of the model, before and after a step.
- ``task_scores_figure``: every task's score with its interval, one panel per benchmark.

Like the report's figures they are ``matplotlib.figure.Figure`` objects (no pyplot): drawing works
headless and leaves a notebook's backend alone; ``png_bytes`` renders one for display.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..core.benchmark import trait

DPI = 100
KEPT = "#3b7dd8"
REMOVED = "#d8553b"
MODULE_ORDER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CHANNEL_BINS = 32
_LAYER_MODULE = re.compile(r"layers\.(\d+)\.(?:\w+)\.(\w+)$")


def png_bytes(fig: Figure) -> bytes:
    """Return the figure rendered as PNG at its nominal size."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _layer_ticks(ax, n_layers: int) -> None:
    step = 1 if n_layers <= 16 else 2 if n_layers <= 32 else 4
    ax.set_yticks(range(0, n_layers, step))
    ax.set_ylabel("decoder layer")


# -- fine-tune --------------------------------------------------------------------------------

def loss_figure(info: dict, state: str) -> Figure:
    """Return the training loss per optimizer step, with the validation loss before (step 0) and after."""
    losses = info.get("train_losses") or []
    fig = Figure(figsize=(7.0, 3.4), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, marker=".", color=KEPT, label="training loss (one batch a step)")
    before, after = info.get("validation_loss_before"), info.get("validation_loss_after")
    if before is not None and after is not None:
        ax.plot([0, len(losses)], [before, after], "s--", color=REMOVED,
                label=f"validation loss on held-out pairs: {before:.3f} → {after:.3f}")
    if info.get("validation_loss_result") is not None:
        ax.plot([len(losses)], [info["validation_loss_result"]], "D", color="#555555",
                label=f"validation loss of the saved result: {info['validation_loss_result']:.3f}")
    ax.set_xlabel("optimizer step (0 = before training)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss (answer tokens)")
    method = {"lora": "LoRA", "qlora": "QLoRA"}.get(info.get("method"), info.get("method"))
    ax.set_title(f"{state}: {method}, {len(losses)} steps")
    ax.legend(fontsize=8)
    return fig


# -- prune ------------------------------------------------------------------------------------

def kept_matrices(info: dict, shape_before: dict) -> list[tuple[str, np.ndarray, list[str]]]:
    """Return ``(title, kept fraction [layers x columns], column labels)`` panels of what pruning kept.

    Width pruning: MLP channels in ``CHANNEL_BINS`` bins of channel index, and key/value groups;
    depth: whole layers; unstructured and 2:4: each linear layer's weights.
    """
    from ..operations.prune.records import mask_from_text

    layers = shape_before["layers"]
    panels = []
    if "kept_channels_by_layer" in info:
        channels = info["kept_channels_by_layer"]
        masks = np.array([mask_from_text(text, channels["size"]) for text in channels["layers"]], dtype=float)
        bins = np.array_split(np.arange(channels["size"]), min(CHANNEL_BINS, channels["size"]))
        matrix = np.stack([masks[:, b].mean(axis=1) for b in bins], axis=1)
        labels = [str(b[0]) for b in bins]
        panels.append((f"MLP channels ({info['mlp_channels_kept']} of {channels['size']} kept in every layer)", matrix, labels))
        groups = shape_before["key_value_heads"]
        kept = info.get("kept_groups_by_layer") or [list(range(groups))] * layers
        matrix = np.array([[1.0 if g in row else 0.0 for g in range(groups)] for row in kept])
        panels.append((f"key/value groups ({info['key_value_groups_kept']} of {groups} kept)", matrix,
                       [str(g) for g in range(groups)]))
    elif "layers_removed" in info:
        matrix = np.array([[0.0 if i in info["layers_removed"] else 1.0] for i in range(layers)])
        panels.append((f"whole layers ({len(info['layers_removed'])} of {layers} removed)", matrix, ["layer"]))
    elif "kept_fraction_by_module" in info:
        matrix = np.full((layers, len(MODULE_ORDER)), np.nan)
        for name, kept in info["kept_fraction_by_module"].items():
            match = _LAYER_MODULE.search(name)
            if match and match.group(2) in MODULE_ORDER:
                matrix[int(match.group(1)), MODULE_ORDER.index(match.group(2))] = kept
        panels.append((f"weights of each linear layer ({info.get('pattern', '')})", matrix, list(MODULE_ORDER)))
    return panels


def kept_figure(info: dict, shape_before: dict) -> Figure:
    """Return heatmaps of the fraction pruning kept, rows = decoder layers (0 at the top)."""
    panels = kept_matrices(info, shape_before)
    widths = [max(2, min(m.shape[1], 12)) for _, m, _ in panels] or [1]
    width = min(9.0, 3.0 + 0.5 * sum(widths))
    fig = Figure(figsize=(width, max(3.0, 0.16 * shape_before["layers"] + 1.6)), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, max(len(panels), 1), squeeze=False, gridspec_kw={"width_ratios": widths})[0]
    image = None
    for ax, (title, matrix, labels) in zip(axes, panels):
        image = ax.imshow(matrix, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        step = max(1, len(labels) // 8)
        ax.set_xticks(range(0, len(labels), step), labels[::step], fontsize=7,
                      rotation=45 if len(labels) > 8 else 0)
        _layer_ticks(ax, matrix.shape[0])
    if panels[0][2] and panels[0][1].shape[1] == CHANNEL_BINS:
        axes[0].set_xlabel("channel index (bins)")
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="fraction kept", shrink=0.9)
    return fig


def _histogram_bars(ax, histogram: dict, xlabel: str) -> None:
    edges = np.array(histogram["log10_edges"])
    if edges.size < 2:
        ax.text(0.5, 0.5, "no scores", ha="center", va="center", transform=ax.transAxes)
        return
    width = np.diff(edges)
    kept, removed = np.array(histogram["kept"]), np.array(histogram["removed"])
    ax.bar(edges[:-1], removed, width=width, align="edge", color=REMOVED, label=f"removed ({removed.sum():,})")
    ax.bar(edges[:-1], kept, width=width, align="edge", bottom=removed, color=KEPT, label=f"kept ({kept.sum():,})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend(fontsize=8)


def importance_figure(info: dict) -> Figure:
    """Return the distribution of the scores pruning ranked by, what it kept and what it removed."""
    fig = Figure(figsize=(10.0, 3.4), dpi=DPI, layout="constrained")
    if "channel_score_histogram" in info:
        left, right = fig.subplots(1, 2)
        kind = "activation output" if info.get("importance") == "activation" else "‖gate row‖·‖up row‖·‖down column‖"
        _histogram_bars(left, info["channel_score_histogram"], f"log10 MLP channel importance ({kind})")
        left.set_title("MLP channels, all layers", fontsize=9)
        scores = info.get("group_scores_by_layer") or []
        kept = info.get("kept_groups_by_layer")
        for layer, row in enumerate(scores):
            for group, score in enumerate(row):
                is_kept = kept is None or group in kept[layer]
                right.scatter(layer, score, s=22, color=KEPT if is_kept else REMOVED, marker="o" if is_kept else "x")
        right.scatter([], [], color=KEPT, marker="o", label="kept")
        right.scatter([], [], color=REMOVED, marker="x", label="removed")
        right.set_xlabel("decoder layer")
        right.xaxis.set_major_locator(MaxNLocator(integer=True))
        right.set_ylabel("group importance")
        right.set_title("key/value groups, by layer", fontsize=9)
        right.legend(fontsize=8)
    elif "angular_distances" in info:
        ax = fig.add_subplot()
        distances = info["angular_distances"]
        colors = [REMOVED if i in info["layers_removed"] else KEPT for i in range(len(distances))]
        ax.bar(range(len(distances)), distances, color=colors)
        ax.set_xlabel("decoder layer (red: removed)")
        ax.set_ylabel("angular distance, input to output")
        ax.set_title("how much each layer changes the hidden state on calibration text", fontsize=9)
    elif "score_histogram" in info:
        ax = fig.add_subplot()
        _histogram_bars(ax, info["score_histogram"], f"log10 weight score ({info.get('score', '|W|')})")
        ax.set_title("every weight of the decoder's linear layers", fontsize=9)
    return fig


# -- quantize ---------------------------------------------------------------------------------

def quantization_error_frame(info: dict) -> pd.DataFrame:
    """Return one row per quantized linear layer: ``layer``, ``module``, ``relative_error``."""
    rows = []
    for name, error in (info.get("weight_error") or {}).get("by_module", {}).items():
        match = _LAYER_MODULE.search(name)
        rows.append({"layer": int(match.group(1)) if match else None, "module": match.group(2) if match else name,
                     "relative_error": error})
    return pd.DataFrame(rows, columns=["layer", "module", "relative_error"])


def quantization_error_figure(info: dict) -> Figure:
    """Return each quantized linear layer's relative weight error ``||W - deq(Q(W))|| / ||W||``, by layer."""
    frame = quantization_error_frame(info)
    fig = Figure(figsize=(9.0, 3.6), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    in_layers = frame.dropna(subset=["layer"])
    for module in [m for m in MODULE_ORDER if m in set(in_layers["module"])]:
        part = in_layers[in_layers["module"] == module].sort_values("layer")
        ax.plot(part["layer"], 100 * part["relative_error"], marker=".", label=module)
    for _, row in frame[frame["layer"].isna()].iterrows():
        ax.axhline(100 * row["relative_error"], color="#777777", linestyle=":", label=f"{row['module']}")
    ax.set_xlabel("decoder layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("relative weight error (%)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{info.get('method', '')}: ‖W − deq(Q(W))‖ / ‖W‖ of each linear layer", fontsize=10)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    return fig


# -- any step ---------------------------------------------------------------------------------

def parts_figure(parts: pd.DataFrame, before_name: str, after_name: str) -> Figure:
    """Return MiB on disk and parameters by part of the model, before and after a step (``parts_table``'s frame).

    Each bar is labelled with its value: a part that shrank from 0.66 to 0.12 MiB beside a 12 MiB
    embedding would otherwise be invisible.
    """
    fig = Figure(figsize=(10.0, 0.45 * len(parts) + 1.2), dpi=DPI, layout="constrained")
    left, right = fig.subplots(1, 2)
    y = np.arange(len(parts))
    for ax, column, label, fmt in ((left, "MiB", "size on disk (MiB)", "{:.2f}"),
                                   (right, "parameters", "parameters (millions)", "{:.3g}")):
        scale = 1.0 if column == "MiB" else 1e-6
        before = parts[f"{column} before"].astype(float) * scale
        after = parts[f"{column} after"].astype(float) * scale
        for values, offset, color, name in ((before, -0.2, "#bbbbbb", before_name), (after, 0.2, KEPT, after_name)):
            bars = ax.barh(y + offset, values.fillna(0), height=0.4, color=color, label=name)
            ax.bar_label(bars, labels=["" if np.isnan(v) else fmt.format(v) for v in values], fontsize=7, padding=2)
        ax.set_yticks(y, parts.index)
        ax.invert_yaxis()
        ax.set_xlabel(label)
        ax.margins(x=0.15)
    fig.legend(*left.get_legend_handles_labels(), loc="outside upper center", ncol=2, fontsize=8)
    return fig


def task_scores_figure(tasks: pd.DataFrame, confidence: float) -> Figure:
    """Return each task's score with its interval, one panel per benchmark, the benchmark's score dashed."""
    benchmarks = list(dict.fromkeys(tasks["benchmark"]))
    heights = [max(3, (tasks["benchmark"] == b).sum()) for b in benchmarks]
    fig = Figure(figsize=(8.0, 1.2 + 0.22 * sum(heights) + 0.5 * len(benchmarks)), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(benchmarks), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, bench in zip(axes, benchmarks):
        part = tasks[tasks["benchmark"] == bench]
        y = np.arange(len(part))
        score = part["score_pct"].astype(float).to_numpy()
        low = part["ci_low"].astype(float).to_numpy()
        high = part["ci_high"].astype(float).to_numpy()
        xerr = np.nan_to_num(np.vstack([score - low, high - score]), nan=0.0)
        ax.errorbar(score, y, xerr=xerr, fmt="o", color=KEPT, ecolor="#888888", capsize=2, markersize=4)
        ax.set_yticks(y, part["task"], fontsize=7)
        ax.invert_yaxis()
        mean = part["benchmark_score"].iloc[0]
        unit = trait(bench, "unit")
        if unit == "%":
            ax.set_xlim(-3, 103)
            ax.axvline(mean, color=REMOVED, linestyle="--", linewidth=1, label=f"{bench}: {mean:.1f}%")
        else:   # a divergence in its own unit, not a percentage
            ax.axvline(mean, color=REMOVED, linestyle="--", linewidth=1, label=f"{bench}: {mean:.3f} {unit}")
        ax.legend(fontsize=8, loc="lower right")
    axes[-1].set_xlabel(f"score (% where not said otherwise), bars: {confidence:.0%} interval over the task's items")
    return fig

