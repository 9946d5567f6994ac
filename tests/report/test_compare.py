"""Two studies side by side, and the command line that builds and compares."""

import pandas as pd
import pytest

from orderstudy.report import compare_studies
from orderstudy.report.__main__ import main


def test_two_studies_side_by_side(tmp_path, study_writer):
    a = study_writer(tmp_path / "a", "ratio50", seed=0)
    b = study_writer(tmp_path / "b", "ratio30", seed=5)
    comparison = compare_studies(a.params_file, b.paths.dir, out_dir=tmp_path / "cmp", outputs_dir=a.outputs_dir)
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv").set_index("ordering")
    assert {"lawbench_a", "lawbench_b", "lawbench_diff", "status_a", "status_b", "size_bytes_a"} <= set(table.columns)
    assert table.at["F", "lawbench_diff"] == pytest.approx(comparison.b.main.set_index("ordering").at["F", "lawbench"] - comparison.a.main.set_index("ordering").at["F", "lawbench"], abs=1e-3)
    assert table.at[a.failed, "status_a"] == "failed"
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert md.startswith("A = ratio50") and "B = ratio30" in md and "LawBench B − A" in md


def test_command_line_build_and_compare(tmp_path, study_writer, capsys):
    a = study_writer(tmp_path / "a", "one")
    b = study_writer(tmp_path / "b", "two", seed=2)
    assert main(["build", str(a.paths.dir), "--no-figures"]) == 0
    assert (a.paths.tables / "main.csv").exists() and not a.paths.figures.exists()
    assert main(["compare", str(a.paths.dir), str(b.paths.dir), "--out", str(tmp_path / "cmp"), "--language", "zh"]) == 0
    out = capsys.readouterr().out
    assert "操作顺序描述" in out and "compare.md" in out
