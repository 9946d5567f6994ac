"""End-to-end tier: JupyterLab opens the executed F>P>Q notebook in headless Chromium, and shows its sections.

Needs a ``chromium`` binary: skipped without one, except where ``ORDERSTUDY_REQUIRE_BROWSER`` is
set (CI sets it and installs Chromium: ``.ci/run``).
"""

from __future__ import annotations

import os
import struct

import pytest

from orderstudy.notebook import browser_check

pytestmark = pytest.mark.e2e

SECTIONS = ("The base model", "Step 1", "Step 2", "Step 3", "Evaluation", "The result file")


def test_jupyterlab_shows_the_notebooks_sections_and_figures(smoke):
    try:
        browser_check.chromium_binary()
    except browser_check.BrowserCheckError as exc:
        if os.environ.get("ORDERSTUDY_REQUIRE_BROWSER"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    out = smoke["dir"] / "browser"
    report = browser_check.check_notebook(smoke["dir"] / "notebooks" / "F-P-Q.seed0.ipynb", out, expect=SECTIONS)
    for title in SECTIONS + ("Fine-tune (F)", "Prune (P)", "Quantize (Q)"):
        assert any(h.startswith(title) for h in report.headings), (title, report.headings)
    assert report.images >= 8  # F: 2, P: 3, Q: 2, the evaluation: 1
    assert set(report.screenshots) == {"top", "Step 1", "Step 2", "Step 3"}
    for path in report.screenshots.values():
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == browser_check.WINDOW
    print(f"\nbrowser check: {report.seconds} s; screenshots in {out}")
