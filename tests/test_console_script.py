"""The ``orderstudy`` command reaches every command line of the package: report, lawbench score, prepare."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orderstudy.core import paths

EXAMPLE = paths.ROOT / "params" / "examples" / "disc-law-sft.example.jsonl"


def _env():
    env = dict(os.environ)
    lib = str(paths.ROOT / "lib")
    env["PYTHONPATH"] = os.pathsep.join([lib] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def orderstudy(*args, script=None):
    command = [str(script)] if script else [sys.executable, "-m", "orderstudy"]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, env=_env(),
                          cwd=paths.ROOT, timeout=300)


@pytest.mark.parametrize("command, expected", [
    (("report", "--help"), "{build,html,compare,check-reference,calibrate,write-notebook}"),
    (("report", "html", "--help"), "--compare-with"),
    (("lawbench", "score", "--help"), "PERCENT"),
    (("prepare", "--help"), "{model,tiny,tiny-qwen2,data,all}"),
    (("prepare", "convert-finetune", "--help"), "IN.jsonl OUT.jsonl"),
])
def test_each_forwarded_command_has_its_own_help_under_the_orderstudy_name(command, expected):
    done = orderstudy(*command)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: orderstudy {' '.join(c for c in command if c != '--help')}")
    assert expected in done.stdout


def test_the_top_level_help_lists_the_forwarded_commands():
    done = orderstudy("--help")
    assert done.returncode == 0, done.stderr
    for command in ("run", "summary", "plan", "check", "estimate", "backends", "report", "lawbench", "prepare"):
        assert command in done.stdout


def test_prepare_convert_finetune_converts_the_example_file(tmp_path):
    out = tmp_path / "finetune.jsonl"
    done = orderstudy("prepare", "convert-finetune", EXAMPLE, out)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    source = [json.loads(line) for line in EXAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert f"{out}: {len(rows)} fine-tuning pairs" in done.stdout
    assert 0 < len(rows) <= len(source)
    assert all(row["answer"] and row["instruction"] for row in rows)


def test_lawbench_score_writes_the_csv(tmp_path):
    system = tmp_path / "predictions" / "mine"
    system.mkdir(parents=True)
    items = {"0": {"origin_prompt": [{"role": "HUMAN", "prompt": "题目"}], "prediction": "[正确答案]B<eoa>", "refr": "正确答案：B。"},
             "1": {"origin_prompt": [{"role": "HUMAN", "prompt": "题目"}], "prediction": "[正确答案]A<eoa>", "refr": "正确答案：B。"}}
    (system / "1-2.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "results.csv"
    done = orderstudy("lawbench", "score", tmp_path / "predictions", "--out", out, "--tasks", "1-2")
    assert done.returncode == 0, done.stderr
    row = dict(zip(*[line.split(",") for line in out.read_text(encoding="utf-8").splitlines()[:2]]))
    assert (row["system"], row["task"], row["metric"]) == ("mine", "1-2", "accuracy")
    assert float(row["score"]) == 50.0 and row["n"] == "2"     # one right of two, in percent


def test_report_check_reference_runs_under_the_orderstudy_name():
    done = orderstudy("report", "check-reference")
    assert done.returncode == 0, done.stderr
    assert "printed changes checked against the printed scores" in done.stdout


def test_the_installed_script_prints_its_help():
    # `make env` installs the package (editable) into the environment the tests run in.
    script = Path(sys.executable).parent / "orderstudy"
    assert script.exists(), f"{script}: missing; `make env` installs the package and its `orderstudy` command"
    done = orderstudy("--help", script=script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: orderstudy ") and "lawbench" in done.stdout
