"""Figures are drawn from a finished study: non-empty PNGs of the expected pixel size, and SVGs."""

import struct

import matplotlib.image
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
        pixels = matplotlib.image.imread(png)[..., :3].reshape(-1, 3)
        assert (pixels < 0.9).any(axis=1).mean() > 0.05  # drawn, not blank: over 5% of the pixels not white
        svg_text = svg.read_text()
        assert svg_text[:200].lstrip().startswith(("<?xml", "<svg")) and svg_text.count("<path") > 20
        assert report.figures[name] == png


@pytest.fixture
def drawn(finished_study):
    """The finished study's report (tables only) and its three figures, as Figure objects."""
    report = build_report(finished_study.params_file, outputs_dir=finished_study.outputs_dir, figures=False)
    benchmarks = report.study.benchmarks
    return report, {
        "change_heatmap": figs.change_heatmap(report.main, benchmarks),
        "score_vs_size": figs.score_size_figure(report.main, benchmarks),
        "operation_effects": figs.operation_effects_figure(report.transitions, benchmarks),
    }


def test_the_heatmap_shows_every_change_rate_of_the_main_table(drawn, finished_study):
    report, figures = drawn
    fig = figures["change_heatmap"]
    ax, bar = fig.axes  # the heatmap and its colour bar
    rows = report.main[report.main["ordering"] != "base"]
    expected = rows[[f"{b}_change_pct" for b in report.study.benchmarks]].astype(float).to_numpy()
    assert expected.shape == (15, 3)
    shown = ax.collections[0].get_array()  # row by row, masked where the table has no value
    np.testing.assert_allclose(np.ma.filled(shown.astype(float), np.nan).reshape(expected.shape), expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["LawBench", "stem", "mmlu_law"]
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "fine-tune"
    # The colour range is symmetric around 0 and reaches the largest change (up to 100%).
    largest = min(max(float(np.nanmax(np.abs(expected))), 1.0), 100.0)
    assert ax.collections[0].get_clim() == pytest.approx((-largest, largest))
    assert bar.get_ylim() == pytest.approx((-largest, largest))
    # The failed and the not-run orderings' cells are written in words, every other one as a signed percentage.
    cells = [t.get_text() for t in ax.texts]
    failed_row = list(rows["ordering"]).index(finished_study.failed)
    assert cells.count("N/A") == 3 and cells.count("not run") == 3
    assert f"{expected[0, 0]:+.1f}" in [c.rstrip("*†") for c in cells]
    # A cell is marked * where main.csv's change is, and † only where its Holm-adjusted mark holds too.
    marks = rows[[f"{b}_change_significant_holm" for b in report.study.benchmarks]].fillna(False).to_numpy().ravel()
    assert [c.endswith("†") for c in cells] == list(marks)
    assert np.isnan(expected[failed_row]).all()


def _brute_force_front(xs, ys):
    """Return which points no other point dominates (as small or smaller, as good or better, one strictly)."""
    return [not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for x2, y2 in zip(xs, ys)) for x, y in zip(xs, ys)]


def test_the_score_size_figure_has_a_point_per_finished_ordering_and_marks_its_front(drawn):
    report, figures = drawn
    fig = figures["score_vs_size"]
    ran = report.main[report.main["status"] == "ok"]
    assert len(ran) == 14  # 16 orderings less the failed one and the one not run
    sizes_mib = ran["size_bytes"].astype(float).to_numpy() / 2**20
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["LawBench", "stem", "mmlu_law"]
    for ax, b in zip(axes, report.study.benchmarks):
        xs, ys = ax.lines[0].get_data()  # the error bars' markers: one a finished ordering
        np.testing.assert_allclose(xs, sizes_mib)
        np.testing.assert_allclose(ys, ran[b].astype(float).to_numpy())
        front = ax.collections[-1].get_offsets()  # the circled points
        expected = _brute_force_front(sizes_mib, ys)
        assert sorted(map(tuple, np.asarray(front).round(6))) == sorted(
            (round(x, 6), round(y, 6)) for x, y, f in zip(sizes_mib, ys, expected) if f)
        assert 1 <= sum(expected) < len(ys)
        assert ax.get_xlabel() and ax.get_ylabel()


def test_the_operation_effects_figure_has_a_bar_per_state_and_benchmark(drawn):
    report, figures = drawn
    fig = figures["operation_effects"]
    assert [ax.get_title() for ax in fig.axes] == ["Fine-tuning", "Pruning", "Quantization"]
    for ax, op in zip(fig.axes, ("F", "P", "Q")):
        table = report.transitions[op]
        bars = [p for p in ax.patches]
        assert len(bars) == len(table) * 3
        per_benchmark = len(table)
        for k, b in enumerate(report.study.benchmarks):
            heights = [bar.get_height() for bar in bars[k * per_benchmark:(k + 1) * per_benchmark]]
            np.testing.assert_allclose(heights, np.nan_to_num(table[f"{b}_diff"].astype(float).to_numpy()))
        assert [t.get_text() for t in ax.get_xticklabels()] == [s.replace(">", "→") for s in table["before"]]


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
