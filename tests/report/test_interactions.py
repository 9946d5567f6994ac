"""The interaction of two operations, s(X>Y) - s(X) - s(Y) + s(base), with its paired interval, on a small study."""

import json
import math

import pandas as pd
import pytest

from orderstudy.report import build_report
from orderstudy.report.interactions import interaction_orderings
from orderstudy.report.multiplicity import adjust
from orderstudy.report.notebook import summary_notebook


def _scores(study, ordering):
    return json.loads((study.paths.items / f"{ordering.replace('>', '-')}.json").read_text())


def test_interactions_combine_four_states_item_by_item(finished_study):
    report = build_report(finished_study.params_file, figures=False, outputs_dir=finished_study.outputs_dir)
    table = report.interactions.set_index("ordering")
    assert sorted(table.index) == ["F>P", "F>Q", "P>F", "P>Q", "Q>F", "Q>P"]
    main = report.main.set_index("ordering")
    for ordering, row in table.iterrows():
        x, y = row["first"], row["second"]
        for b in ("lawbench", "stem", "mmlu_law"):
            expected = main.loc[ordering, b] - main.loc[x, b] - main.loc[y, b] + main.loc["base", b]
            assert row[f"{b}_interaction"] == pytest.approx(expected)
            assert row[f"{b}_interaction_ci_low"] <= expected <= row[f"{b}_interaction_ci_high"]
            assert row[f"{b}_interaction_significant"] == (row[f"{b}_interaction_p"] < 0.05)
    # The stem interval by hand: the per-item contrast of the four states, a paired t interval over
    # 3 subjects of 20 items, equal weights; shrinkage moves each subject's variance a little.
    contrast = {}
    for ordering, c in (("F>P", 1), ("F", -1), ("P", -1), ("base", 1)):
        for task, items in _scores(finished_study, ordering)["stem"].items():
            for item, v in items.items():
                contrast[(task, item)] = contrast.get((task, item), 0.0) + c * v
    per_task = pd.Series(contrast).groupby(level=0)
    se = 100 * math.sqrt(sum(per_task.var(ddof=1) / 20) / 9)
    assert table.loc["F>P", "stem_interaction_ci_high"] - table.loc["F>P", "stem_interaction"] == pytest.approx(
        2.02 * se, rel=0.1)
    # One family per benchmark, adjusted; the CSV and the Markdown are written.
    assert report.interactions["stem_interaction_p_holm"].to_numpy() == pytest.approx(
        adjust(report.interactions["stem_interaction_p"].to_numpy(float), "holm"))
    assert "interactions.csv" in report.files and "interactions.md" in report.files
    assert "X → Y" in report.markdown["interactions"] and "Holm" in report.markdown["interactions"]


def test_a_compounding_damage_is_marked_and_a_missing_state_says_why(finished_study):
    # On stem, P and Q alone keep every item, P then Q loses every one: -100 points beyond the two.
    for ordering, value in (("base", 1.0), ("P", 1.0), ("Q", 1.0), ("P>Q", 0.0)):
        stem = ordering.replace(">", "-")
        items_path, result_path = finished_study.paths.items / f"{stem}.json", finished_study.paths.results / f"{stem}.json"
        items, result = json.loads(items_path.read_text()), json.loads(result_path.read_text())
        items["stem"] = {t: dict.fromkeys(s, value) for t, s in items["stem"].items()}
        for task in result["benchmarks"]["stem"]["tasks"].values():
            task["score"] = 100.0 * value
        result["benchmarks"]["stem"]["score"] = 100.0 * value
        items_path.write_text(json.dumps(items))
        result_path.write_text(json.dumps(result))
    report = build_report(finished_study.params_file, figures=False, outputs_dir=finished_study.outputs_dir)
    row = report.interactions.set_index("ordering").loc["P>Q"]
    assert row["stem_interaction"] == pytest.approx(-100.0)
    assert row["stem_interaction_significant"] and row["stem_interaction_significant_holm"]
    assert interaction_orderings(["base", "F", "P", "F>P"]) == [("F", "P")]
    assert interaction_orderings(["F", "P", "F>P"]) == []  # no base, no interaction


def test_the_summary_notebook_shows_the_interactions():
    sources = [cell.source for cell in summary_notebook().cells]
    assert any("report.markdown[\"interactions\"]" in s for s in sources)
    assert any(s.startswith("## Interactions") for s in sources)
