"""The reference study's printed changes, reproduced from its printed scores by the report's own tables."""

from pathlib import Path

import numpy as np
import pytest

from orderstudy.core.plan import REFERENCE_ORDER
from orderstudy.report import reference
from orderstudy.report.__main__ import main

SEED = Path(__file__).resolve().parents[3] / "shared" / "seed"

# The reference's own slips: printed changes that no true scores behind its printed (rounded)
# scores can give. (table, row, column, printed value)
SLIPS = [
    # 6.74 -> -14.14%; -14.01% is what a score of 6.75 gives. The quantization table's
    # 剪枝微调 → 剪枝微调量化 row (-1.31, -16.27%) agrees with 6.74, so the main table's rate is the slip.
    ("main", "剪枝 → 微调 → 量化", "LawBench 变化率%", -14.01),
    # F 3.69 -> F>P 2.51 is -31.98%; -19.81% is F>P against the base (the main table's value):
    # the row's "from" state is 微调 but its rate was taken from 原始模型.
    ("剪枝", "微调 → 微调剪枝", "stem 变化率%", -19.81),
]


def test_vendored_copy_is_the_seed():
    seeds = sorted(SEED.glob("000_*.txt"))
    if not seeds:
        pytest.skip("the reference study's original text is not beside this checkout")
    assert reference.REFERENCE_FILE.read_text(encoding="utf-8") == seeds[0].read_text(encoding="utf-8")


def test_parses_every_printed_table():
    ref = reference.load_reference()
    assert tuple(ref.scores.index) == REFERENCE_ORDER
    assert ref.not_applicable == ("Q>P>F", "P>Q>F")
    assert ref.scores.at["F", "lawbench"] == 15.53 and ref.change_pct.at["F", "lawbench"] == 97.83
    assert ref.sizes["base"] == "5.8G"
    per_table = ref.transitions.groupby("operation")["row"].nunique().to_dict()
    assert per_table == {"F": 3, "P": 5, "Q": 5}
    quantize = ref.transitions[(ref.transitions.operation == "Q") & (ref.transitions.benchmark == "lawbench")]
    assert set(zip(quantize.before, quantize.after)) == {("base", "Q"), ("F", "F>Q"), ("P", "P>Q"), ("F>P", "F>P>Q"), ("P>F", "P>F>Q")}


def test_inconsistent_cells_are_exactly_the_reference_slips():
    cells = reference.inconsistent_cells()
    assert [(c.table, c.row, c.column, c.printed) for c in cells] == SLIPS
    assert "原始模型 (base) instead of from 微调 (F)" in cells[1].explanation
    assert "6.75" in cells[0].explanation


def test_every_other_printed_change_is_reproduced():
    checked = reference.reproduced_changes()
    # 14 orderings x 3 rates in the main table, 3 x 3 rates, 10 x 3 x 2 changes in the others.
    assert len(checked) == 42 + 9 + 60
    assert (~checked.consistent).sum() == len(SLIPS)
    # The report's own value always lies in the range the rounding allows...
    assert ((checked.computed >= checked.low - 1e-9) & (checked.computed <= checked.high + 1e-9)).all()
    # ...while a fixed 0.01 tolerance would wrongly flag some consistent cells: why intervals are used.
    naive = np.abs(np.round(checked.computed, 2) - checked.printed) > 0.005
    assert (naive & checked.consistent).sum() > 0


def test_interval_arithmetic():
    assert reference.diff_range(1.79, 1.60) == pytest.approx((0.18, 0.20))
    low, high = reference.change_rate_range(15.53, 7.85)
    assert low < 97.83 < high
    assert reference.change_rate_range(1.0, 0.0) == (-100.0, float("inf"))


def test_check_reference_command(capsys):
    assert main(["check-reference"]) == 0
    out = capsys.readouterr().out
    assert "2 cannot be reproduced" in out
    assert "微调 → 微调剪枝 | stem 变化率%" in out and "剪枝 → 微调 → 量化 | LawBench 变化率%" in out
