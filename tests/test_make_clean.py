"""`make clean` deletes the outputs of PARAMS' study only; `make clean-all` every study's, naming each;
the Makefile runs an active conda env's Python instead of building a second environment."""

import os
import subprocess
import sys

from orderstudy.core import paths


def _make(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # PY= the test's own interpreter: a worktree or a conda user has no .venv.
    return subprocess.run(["make", "-s", *args, f"PY={sys.executable}"], cwd=paths.ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


def test_make_clean_dry_run_names_the_params_study_and_no_other():
    proc = _make("-n", "clean", "PARAMS=params/smoke.yaml")
    assert proc.returncode == 0, proc.stderr
    assert 'rm -rf -- "outputs/smoke"' in proc.stdout
    assert "outputs/demo" not in proc.stdout and "find" not in proc.stdout


def test_make_clean_deletes_one_study_and_keeps_the_others(tmp_path):
    for study in ("smoke", "demo", "smoke-qwen2"):
        (tmp_path / study / "results").mkdir(parents=True)
        (tmp_path / study / "results" / "base.json").write_text("{}")
    (tmp_path / "README.md").write_text("kept")
    proc = _make("clean", "PARAMS=params/smoke.yaml", env={"ORDERSTUDY_OUTPUTS": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert f"deleting {tmp_path}/smoke/" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "demo", "smoke-qwen2"]


def test_make_clean_refuses_without_a_study_name_and_deletes_nothing(tmp_path):
    (tmp_path / "demo").mkdir()
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: ../..\n")
    proc = _make("clean", f"PARAMS={bad}", env={"ORDERSTUDY_OUTPUTS": str(tmp_path)})
    assert proc.returncode != 0
    assert "no study name read from" in proc.stderr and str(bad) in proc.stderr
    assert (tmp_path / "demo").is_dir()


def test_make_clean_all_names_every_study_it_deletes(tmp_path):
    for study in ("smoke", "demo"):
        (tmp_path / study).mkdir()
    (tmp_path / "README.md").write_text("kept")
    proc = _make("clean-all", env={"ORDERSTUDY_OUTPUTS": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert f"deleting {tmp_path}/smoke" in proc.stdout and f"deleting {tmp_path}/demo" in proc.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]


def test_an_active_conda_env_from_environment_yml_is_the_makefiles_python():
    conda = {"CONDA_DEFAULT_ENV": "orderstudy", "CONDA_PREFIX": "/opt/conda/envs/orderstudy"}
    proc = subprocess.run(["make", "-n", "summary"], cwd=paths.ROOT, capture_output=True, text=True,
                          env={**os.environ, **conda})
    assert "/opt/conda/envs/orderstudy/bin/python -m orderstudy summary params/demo.yaml" in proc.stdout
    assert ".venv/bin/python" not in proc.stdout and "-m venv" not in proc.stdout
    # another conda env is not taken for ours
    other = subprocess.run(["make", "-n", "summary"], cwd=paths.ROOT, capture_output=True, text=True,
                           env={**os.environ, "CONDA_DEFAULT_ENV": "base", "CONDA_PREFIX": "/opt/conda"})
    assert ".venv/bin/python -m orderstudy summary" in other.stdout
