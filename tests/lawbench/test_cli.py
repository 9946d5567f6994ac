"""``python -m orderstudy.benchmarks.lawbench score``: one row per (system, task), an average row, errors per system."""

import csv
import json
import os
import subprocess
import sys

import pytest

from orderstudy.benchmarks.lawbench import TASK_IDS
from orderstudy.benchmarks.lawbench.cli import COLUMNS, main


def run_cli(lib_dir, *args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(lib_dir)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run([sys.executable, "-m", "orderstudy.benchmarks.lawbench", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def read_rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_end_to_end_good_and_broken_system(tmp_path, lawbench_files):
    predictions = tmp_path / "predictions"
    lawbench_files.write_system(predictions / "good")
    broken = lawbench_files.write_system(predictions / "broken")
    (broken / "1-1.json").write_text('{"0": {"prediction": "x", "refr": ', encoding="utf-8")       # malformed
    content = json.loads((broken / "1-2.json").read_text(encoding="utf-8"))
    del content["1"]["refr"]                                                                    # no answer
    (broken / "1-2.json").write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    (broken / "3-8.json").unlink()                                                              # missing
    (predictions / ".hidden").mkdir()                                                           # ignored
    out = tmp_path / "results" / "results.csv"

    done = run_cli(lawbench_files.LIB_DIR, "score", predictions, "--out", out)

    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: system broken")]
    assert len(errors) == 3
    assert any("1-1.json: malformed JSON" in e for e in errors)
    assert any("1-2.json: item \"1\" has no 'refr'" in e for e in errors)
    assert any("3-8.json: missing task file" in e for e in errors)
    assert "1 of 2 systems could not be scored: broken" in done.stderr
    assert "Building prefix dict" not in done.stderr          # jieba stays quiet

    rows = read_rows(out)
    assert list(rows[0]) == list(COLUMNS)
    assert {r["system"] for r in rows} == {"good"}
    assert [r["task"] for r in rows] == list(TASK_IDS) + ["average"]
    by_task = {r["task"]: r for r in rows}
    assert all(r["unit"] == "percent" and r["n"] == "2" for t, r in by_task.items() if t != "average")
    # Item "0" is right and item "1" wrong in every task.
    assert float(by_task["1-2"]["score"]) == pytest.approx(50.0)
    assert float(by_task["1-2"]["abstention_rate"]) == 0.0
    assert float(by_task["3-7"]["score"]) == pytest.approx(50.0)
    assert float(by_task["2-1"]["score"]) == pytest.approx(100 * round(1.25 * 0.5 / 0.75, 4))   # corpus F0.5
    assert float(by_task["3-4"]["abstention_rate"]) == pytest.approx(50.0)
    assert by_task["1-2"]["task_name"] == "知识问答" and by_task["1-2"]["metric"] == "accuracy"
    average = by_task["average"]
    assert average["n_tasks"] == "20" and average["n"] == "40"
    task_scores = [float(by_task[t]["score"]) for t in TASK_IDS]
    assert float(average["score"]) == pytest.approx(sum(task_scores) / 20, abs=1e-5)


def test_help_states_the_scale(lawbench_files):
    done = run_cli(lawbench_files.LIB_DIR, "score", "--help")
    assert done.returncode == 0 and "PERCENT" in done.stdout


def test_selected_tasks_only(tmp_path, lawbench_files, capsys):
    lawbench_files.write_system(tmp_path / "p" / "a", tasks=("1-2", "3-6"))
    out = tmp_path / "r.csv"
    assert main(["score", str(tmp_path / "p"), "--out", str(out), "--tasks", "3-6,1-2"]) == 0
    rows = read_rows(out)
    assert [r["task"] for r in rows] == ["1-2", "3-6", "average"]
    assert rows[-1]["n_tasks"] == "2" and float(rows[-1]["score"]) == pytest.approx(50.0)


def test_allow_missing_averages_over_present_tasks(tmp_path, lawbench_files):
    lawbench_files.write_system(tmp_path / "p" / "a", tasks=("2-4", "2-9", "3-3"))
    out = tmp_path / "r.csv"
    assert main(["score", str(tmp_path / "p"), "--out", str(out)]) == 1           # 17 files missing
    assert read_rows(out) == []
    assert main(["score", str(tmp_path / "p"), "--out", str(out), "--allow-missing"]) == 0
    rows = read_rows(out)
    assert [r["task"] for r in rows] == ["2-4", "2-9", "3-3", "average"] and rows[-1]["n_tasks"] == "3"


def test_bad_directories(tmp_path, lawbench_files, capsys):
    out = tmp_path / "r.csv"
    assert main(["score", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "not a directory" in capsys.readouterr().err
    system = lawbench_files.write_system(tmp_path / "only", tasks=("1-2",))
    assert main(["score", str(system), "--out", str(out)]) == 2
    assert "holds task files itself" in capsys.readouterr().err


def test_unknown_task_option(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["score", str(tmp_path), "--out", str(tmp_path / "r.csv"), "--tasks", "1-1,9-9"])
    assert exit_info.value.code == 2


def test_missing_thesaurus_stops_before_any_system_is_scored(tmp_path, lawbench_files, monkeypatch, capsys):
    from orderstudy.core import paths
    from orderstudy.benchmarks.lawbench import correction

    lawbench_files.write_system(tmp_path / "p" / "a", tasks=("2-1", "3-6"))
    out = tmp_path / "r.csv"
    monkeypatch.setattr(paths, "THESAURUS_FILE", tmp_path / "cilin_ex.txt")
    correction.thesaurus.cache_clear()
    try:
        assert main(["score", str(tmp_path / "p"), "--out", str(out), "--tasks", "2-1,3-6"]) == 2
        assert "run `python -m orderstudy.prepare data`" in capsys.readouterr().err and not out.exists()
        assert main(["score", str(tmp_path / "p"), "--out", str(out), "--tasks", "3-6"]) == 0   # 2-1 not asked for
    finally:
        monkeypatch.undo()
        correction.thesaurus.cache_clear()
