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
