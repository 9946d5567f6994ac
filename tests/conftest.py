"""Shared fixtures: a tiny real model made on the fly, the prepared data, a scratch outputs dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orderstudy.core import paths

DEFAULT_MODEL = paths.MODELS_CACHE / "SmolLM2-135M-Instruct"
# LawBench's own files (all 20 tasks, ChERRANT's data): a lawbench/ folder in $ORDERSTUDY_SHARED, by
# default in a `shared` folder beside the repository. A plain clone has none: the tests that read it skip.
LAWBENCH_REFERENCE = Path(os.environ.get("ORDERSTUDY_SHARED", paths.ROOT.parent / "shared")) / "lawbench"
LAWBENCH_DATA = paths.DATA_CACHE / "lawbench"
MMLU_DATA = paths.DATA_CACHE / "mmlu"


def _require(path: Path, target: str) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make {target}` first (make test does it)")
    return path


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    return _require(DEFAULT_MODEL, "model")


@pytest.fixture(scope="session")
def lawbench_dir() -> Path:
    return _require(LAWBENCH_DATA / "sources.json", "data").parent


@pytest.fixture(scope="session")
def mmlu_dir() -> Path:
    return _require(MMLU_DATA / "subjects.json", "data").parent


@pytest.fixture(scope="session")
def lawbench_reference() -> Path:
    """LawBench's own files: ``data/{zero_shot,one_shot}/<task>.json`` and ``evaluation-utils-data/``."""
    if not (LAWBENCH_REFERENCE / "data" / "zero_shot").is_dir() or not (LAWBENCH_REFERENCE / "evaluation-utils-data").is_dir():
        pytest.skip(f"{LAWBENCH_REFERENCE} is absent: LawBench's own data and ChERRANT files are not on this machine "
                    "(set ORDERSTUDY_SHARED to the folder that holds lawbench/)")
    return LAWBENCH_REFERENCE


@pytest.fixture(scope="session")
def smollm2_tokenizer(default_model_dir):
    """SmolLM2-135M-Instruct's real tokenizer (chat template included), which budgets are counted in."""
    from orderstudy.checkpoints.models import load_tokenizer

    return load_tokenizer(default_model_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, default_model_dir) -> Path:
    """A 4-layer Llama with random weights and SmolLM2's real tokenizer (chat template included)."""
    from orderstudy.prepare import prepare_tiny

    return prepare_tiny(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def smoke(tmp_path_factory, default_model_dir, lawbench_dir, mmlu_dir):
    """Run `python -m orderstudy run params/smoke.yaml` once into a scratch outputs directory.

    Session-wide: the end-to-end tests read it, and the Ray test compares its own run against it,
    so CI runs the in-process smoke study once.
    """
    out = tmp_path_factory.mktemp("e2e") / "outputs"
    env = {**os.environ, "ORDERSTUDY_OUTPUTS": str(out)}
    proc = subprocess.run([sys.executable, "-m", "orderstudy", "run", "params/smoke.yaml", "--quiet"],
                          cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"dir": out / "smoke", "env": env, "stdout": proc.stdout}


@pytest.fixture
def outputs_dir(tmp_path, monkeypatch) -> Path:
    """Point the study outputs at a scratch directory for this test."""
    out = tmp_path / "outputs"
    monkeypatch.setattr(paths, "OUTPUTS_DIR", out)
    monkeypatch.setenv("ORDERSTUDY_OUTPUTS", str(out))
    return out


def write_params(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
