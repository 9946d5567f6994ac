"""The command line reads orderings in every accepted spelling and gives the canonical one on."""

import contextlib
import io
import re
from types import SimpleNamespace

import pytest

from orderstudy import cli
from orderstudy.core.params import ParamsError
from orderstudy.core.plan import make_plan
from orderstudy.execution.runner import selected_orderings


def test_run_orderings_in_any_spelling_reach_the_runner_canonical(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "run_study", lambda params, orderings, log_output: seen.update(params=params, orderings=orderings))
    assert cli.main(["run", "p.yaml", "--orderings", "FPQ", "P-F", "Q→F", "F>Q", "base"]) == 0
    assert seen == {"params": "p.yaml", "orderings": ["F>P>Q", "P>F", "Q>F", "F>Q", "base"]}


def test_a_bad_ordering_on_the_command_line_is_a_usage_error_naming_the_spellings(monkeypatch, capsys):
    monkeypatch.setattr(cli, "run_study", lambda *a, **k: pytest.fail("ran with a bad ordering"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "p.yaml", "--orderings", "F", "FPX"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --orderings: ordering 'FPX': unknown operation 'X'" in err
    assert "(F>P>Q, F-P-Q, F→P→Q) or run together (FPQ), or 'base'" in err


def test_the_run_help_shows_orderings_a_shell_does_not_redirect():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    help_text = " ".join(out.getvalue().split())
    assert "e.g. base F P-F F-P-Q" in help_text and "FPQ" in help_text
    assert ">" not in re.sub(r'"[^"]*"', "", help_text)  # every > is inside quotes


def test_selected_orderings_match_the_plan_in_any_spelling():
    study = SimpleNamespace(plan=make_plan(["base", "P>F", "F>P>Q"]), params_file="s.yaml")
    assert selected_orderings(study, ["FPQ", "P-F"]) == ["P>F", "F>P>Q"]
    with pytest.raises(ParamsError, match=r"--orderings Q>F: not in the study's plan"):
        selected_orderings(study, ["Q-F"])
    with pytest.raises(ParamsError, match="--orderings: ordering 'FF': an operation is repeated"):
        selected_orderings(study, ["FF"])


# -- check: every missing input at once, offline, in seconds ------------------------------------

def test_check_lists_every_missing_input_in_one_run_in_seconds(tmp_path):
    import os
    import subprocess
    import sys
    import time

    import torch

    from orderstudy.core import paths

    if torch.cuda.is_available():
        pytest.skip("the device problem needs a machine without CUDA")
    params_file = tmp_path / "missing.yaml"
    params_file.write_text(f"study: missing\ndevice: cuda\nmodel: {{source: {tmp_path / 'no-model'}}}\n"
                           f"orderings: [base, F]\nfinetune: {{data: {tmp_path / 'no-pairs.jsonl'}}}\n"
                           f"evaluation: {{benchmarks: [lawbench], lawbench_data: {tmp_path / 'no-lawbench'}}}\n",
                           encoding="utf-8")
    env = {**os.environ, "ORDERSTUDY_OUTPUTS": str(tmp_path / "outputs")}
    env.pop("HF_HUB_OFFLINE", None)  # the check goes offline by itself
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "orderstudy", "check", str(params_file)], cwd=paths.ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - started
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert [line.split("key '")[1].split("'")[0] for line in errors] == \
        ["device", "model.source", "evaluation.lawbench_data", "finetune.data"]
    assert all(line.startswith(f"error: {params_file}: key '") for line in errors)
    assert "expected 'cpu', or 'auto'" in errors[0]
    assert f"'{tmp_path / 'no-model'}' is neither an existing directory" in errors[1]
    assert f"{tmp_path / 'no-lawbench'} does not exist; expected a directory of LawBench task files" in errors[2]
    assert f"{tmp_path / 'no-pairs.jsonl'} does not exist; expected 'lawbench' or a JSONL file" in errors[3]
    assert f"{params_file}: 4 problem(s) with the study's inputs" in proc.stderr
    assert seconds < 15, f"check took {seconds:.1f} s"
    assert not (tmp_path / "outputs" / "missing").exists()


def _fake_hub_cache(root, repo_id):
    """A Hugging Face cache holding ``repo_id``'s config.json at main, laid out as huggingface_hub writes it."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "config.json").write_text("{}")
    return root


def test_a_hub_id_is_looked_up_in_the_local_cache_only(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from orderstudy.core.params import load_params
    from orderstudy.execution.preflight import input_problems

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(_fake_hub_cache(tmp_path / "hub", "org/cached")))

    def problems(source, offline=True):
        path = tmp_path / "hub.yaml"
        path.write_text(f"study: hub\nmodel: {{source: {source}}}\norderings: [base]\n"
                        f"evaluation: {{benchmarks: [stem], mmlu_data: {tmp_path}}}\n")
        return {p.key: p.message for p in input_problems(load_params(path), offline=offline)}

    cached, missing = problems("org/cached"), problems("org/absent")
    assert "model.source" not in cached and "evaluation.mmlu_data" in cached  # the other problems still come
    assert missing["model.source"].startswith(f"hub id 'org/absent' is not in the local Hugging Face cache ({tmp_path / 'hub'})")
    assert "huggingface-cli download org/absent" in missing["model.source"]
    assert "model.source" not in problems("org/absent", offline=False)  # online, the study downloads it


def test_check_finds_missing_mmlu_subjects_cherrant_tables_and_calibration_text(tmp_path):
    from orderstudy.benchmarks.data import LAW_SUBJECTS
    from orderstudy.core.params import load_params
    from orderstudy.execution.preflight import input_problems

    mmlu = tmp_path / "mmlu"
    mmlu.mkdir()
    (mmlu / f"{LAW_SUBJECTS[0]}.jsonl").write_text("{}\n")
    (tmp_path / "lawbench" / "zero_shot").mkdir(parents=True)
    (tmp_path / "empty-checkout").mkdir()
    path = tmp_path / "p.yaml"
    path.write_text(f"study: p\nmodel: {{source: {tmp_path / 'm'}}}\norderings: [base, P]\n"
                    f"prune: {{method: wanda, calibration_data: {tmp_path / 'calib.jsonl'}}}\n"
                    f"evaluation: {{benchmarks: [lawbench, mmlu_law], lawbench_tasks: ['1-1', '2-1'], "
                    f"lawbench_data: {tmp_path / 'lawbench'}, mmlu_data: {mmlu}, cherrant_data: {tmp_path / 'empty-checkout'}}}\n")
    found = {p.key: p.message for p in input_problems(load_params(path))}
    assert list(found) == ["model.source", "evaluation.lawbench_data", "evaluation.mmlu_data",
                           "evaluation.cherrant_data", "prune.calibration_data"]
    assert found["evaluation.lawbench_data"].startswith(f"{tmp_path / 'lawbench'} lacks 2 LawBench task file(s) "
                                                        "(zero_shot/1-1.json, zero_shot/2-1.json)")
    assert found["evaluation.mmlu_data"].startswith(f"{mmlu} lacks {len(LAW_SUBJECTS) - 1} MMLU subject file(s)")
    assert found["evaluation.cherrant_data"].startswith(f"{tmp_path / 'empty-checkout'} holds no ChERRANT tables")
    assert found["prune.calibration_data"].startswith(f"{tmp_path / 'calib.jsonl'} does not exist")
    # Width pruning by magnitude reads no calibration text: its file is not asked for.
    path.write_text(path.read_text().replace("method: wanda", "method: width"))
    assert "prune.calibration_data" not in {p.key for p in input_problems(load_params(path))}


def test_offline_hub_sets_and_restores_the_offline_switches(monkeypatch):
    import os

    from orderstudy.execution.preflight import hub_offline, offline_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    assert not hub_offline()
    with offline_hub():
        assert hub_offline() and os.environ["HF_HUB_OFFLINE"] == "1"
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["TRANSFORMERS_OFFLINE"] == "0"
