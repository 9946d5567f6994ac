"""What the ordering notebook draws from each operation's record: the numbers behind its figures."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from orderstudy.checkpoints import models
from orderstudy.notebook import views as notebook_views, step_figures
from orderstudy.checkpoints.inspect import describe
from orderstudy.operations import prune
from orderstudy.operations.prune import records


def state_record(model_dir, info) -> dict:
    """Return the parts of a state record the views read, as the store writes them."""
    return {"info": info, "parts": describe(model_dir), "size_bytes": models.dir_size_bytes(model_dir),
            "quantized": models.is_quantized(model_dir)}


def test_kept_panels_show_each_layers_kept_channels_and_groups(states):
    info = states.record("P:width")
    shape = info["shape_before"]
    (title, channels, labels), (group_title, groups, group_labels) = step_figures.kept_matrices(info, shape)
    assert channels.shape == (3, step_figures.CHANNEL_BINS) and labels[:2] == ["0", "4"]
    # Each layer kept 64 of 128 channels: the bins' fractions average to a half, and a bin's
    # fraction is the share of its four channels in the layer's bitmask.
    assert channels.mean(axis=1) == pytest.approx([0.5, 0.5, 0.5])
    mask = records.mask_from_text(info["kept_channels_by_layer"]["layers"][1], 128)
    assert channels[1, 5] == mask[20:24].mean()
    assert groups.tolist() == [[1.0 if g in kept else 0.0 for g in range(2)] for kept in info["kept_groups_by_layer"]]
    assert "64 of 128" in title and "1 of 2" in group_title and group_labels == ["0", "1"]


def test_kept_panels_of_depth_and_unstructured_pruning(states):
    depth = states.record("P:depth")
    ((_, layers, _),) = step_figures.kept_matrices(depth, depth["shape_before"])
    assert layers[:, 0].tolist() == [0.0 if i in depth["layers_removed"] else 1.0 for i in range(3)]
    wanda = states.record("P:wanda")
    ((_, weights, modules),) = step_figures.kept_matrices(wanda, wanda["shape_before"])
    assert modules == list(step_figures.MODULE_ORDER) and weights == pytest.approx(np.full((3, 7), 0.5))


@pytest.mark.parametrize("steps", [("P:width",), ("P:width-activation",), ("P:mlp_channels",), ("P:depth",),
                                   ("P:magnitude",), ("P:2:4",), ("Q:nf4",), ("Q:int8",), ("F",), ("Q:nf4", "F")])
def test_every_operation_gets_its_figures_drawn_from_its_record(states, tiny_model, steps):
    info = states.record(*steps)
    before = state_record(states.get(*steps[:-1]), states.record(*steps[:-1]) if steps[:-1] else {})
    after = state_record(states.get(*steps), info)
    op = steps[-1][0]
    if op == "P":
        figures = [step_figures.kept_figure(info, info["shape_before"]), step_figures.importance_figure(info)]
    elif op == "Q":
        figures = [step_figures.quantization_error_figure(info)]
        frame = step_figures.quantization_error_frame(info)
        assert len(frame) == 21 and frame["layer"].tolist().count(0) == 7
    else:
        figures = [step_figures.loss_figure(info, "F")]
    parts = notebook_views.parts_table(before, after)
    figures.append(step_figures.parts_figure(parts, "before", "after"))
    for fig in figures:
        assert isinstance(fig, Figure) and fig.axes and len(step_figures.png_bytes(fig)) > 5_000
    assert parts.loc["all files", "MiB after"] == round(after["size_bytes"] / 2**20, 3)
    assert parts.loc["layers", "parameters after"] == after["parts"]["parts"]["layers"]["parameters"]
    assert parts.loc["layers", "parameters before"] == before["parts"]["parts"]["layers"]["parameters"]


def test_parts_table_says_what_shrank(states, tiny_model):
    before = state_record(tiny_model, {})
    parts = notebook_views.parts_table(before, state_record(states.get("Q:nf4"), states.record("Q:nf4")))
    assert parts.loc["layers", "stored after"] == "float32/uint8 (nf4)" and parts.loc["layers", "stored before"] == "float32"
    assert parts.loc["layers", "MiB after"] < 0.2 * parts.loc["layers", "MiB before"]
    assert parts.loc["lm_head", "stored after"] == "tied to embed_tokens"
    assert parts.loc["embed_tokens", "MiB after"] == parts.loc["embed_tokens", "MiB before"]
