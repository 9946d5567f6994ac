"""Figures are drawn from a finished study: non-empty PNGs of the expected pixel size, and SVGs."""

import struct

import numpy as np
import pytest

from orderstudy.report import build_report
from orderstudy.report import figures as figs
from orderstudy.report.build import FIGURE_NAMES

EXPECTED_SIZE = {
    "change_heatmap": figs.HEATMAP_SIZE,
    "score_vs_size": figs.SCORE_SIZE_SIZE,
    "operation_effects": figs.OPERATION_EFFECTS_SIZE,
}


def png_size(path):
    """Return (width, height) from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_figures_are_written_at_their_pixel_size(finished_study):
    report = build_report(finished_study.params_file, outputs_dir=finished_study.outputs_dir)
    for name in FIGURE_NAMES:
        png = finished_study.paths.figures / f"{name}.png"
        svg = finished_study.paths.figures / f"{name}.svg"
        width_in, height_in = EXPECTED_SIZE[name]
        assert png_size(png) == (round(width_in * figs.DPI), round(height_in * figs.DPI))
        assert png.stat().st_size > 10_000  # drawn, not blank
        assert svg.read_text()[:200].lstrip().startswith(("<?xml", "<svg")) and svg.stat().st_size > 10_000
        assert report.figures[name] == png


def test_pareto_front():
    front = figs.pareto_front([100, 100, 50, 200, np.nan], [30, 40, 35, 45, 99])
    assert front.tolist() == [False, True, True, True, False]


def test_chinese_figures_fall_back_to_english_without_a_font(monkeypatch):
    monkeypatch.setattr(figs, "_cjk_font", lambda: None)
    figs._warn_no_cjk_font.cache_clear()
    with pytest.warns(UserWarning, match="no font with Chinese glyphs"):
        assert figs.figure_language("zh") == "en"


def test_score_size_labels_name_every_ordering_once_and_never_overlap():
    import re

    import pandas as pd

    from orderstudy.core.plan import REFERENCE_ORDER, parse_ordering

    # Sizes depend only on whether P and Q ran, and the scores take four values: as in the smoke
    # study, many orderings land on the same point.
    rng = np.random.default_rng(0)
    rows = []
    for ordering in REFERENCE_ORDER:
        ops = parse_ordering(ordering)
        row = {"ordering": ordering, "status": "ok",
               "size_bytes": 272.6e6 * (0.7 if "P" in ops else 1) * (0.4 if "Q" in ops else 1)}
        for b in ("lawbench", "stem"):
            score = float(rng.choice([0.0, 4.5, 9.1, 13.6]))
            row.update({b: score, f"{b}_ci_low": max(0.0, score - 5), f"{b}_ci_high": score + 5})
        rows.append(row)
    fig = figs.score_size_figure(pd.DataFrame(rows), ("lawbench", "stem"))
    figs.save_figure(fig, __import__("tempfile").mkdtemp(), "score_vs_size")  # the final layout
    renderer = fig._get_renderer()
    for ax in fig.axes:
        texts = [t for t in ax.texts if t.get_text()]
        named = [n for t in texts for n in re.split(r",\s*|\n", t.get_text())]
        assert sorted(named) == sorted(o.replace(">", "→") for o in REFERENCE_ORDER)
        assert len(texts) < len(REFERENCE_ORDER)  # coinciding orderings share a label
        boxes = [t.get_window_extent(renderer) for t in texts]
        overlapping = [(texts[i].get_text(), texts[j].get_text()) for i in range(len(boxes))
                       for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]
        assert not overlapping


def test_every_figure_has_a_caption_in_both_languages():
    for name in FIGURE_NAMES:
        for language in ("en", "zh"):
            text = figs.caption(name, language, 0.9)
            assert "90%" in text and len(text) > 80
