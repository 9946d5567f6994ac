"""Every path the project uses, defined once.

Relative paths in a params file are resolved against the repository root (``ROOT``), so a study
runs the same from the Makefile, from a notebook in ``notebooks/`` or from the tests.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("ORDERSTUDY_ROOT", Path(__file__).resolve().parents[2]))

PARAMS_DIR = ROOT / "params"
NOTEBOOKS_DIR = ROOT / "notebooks"
OUTPUTS_DIR = Path(os.environ.get("ORDERSTUDY_OUTPUTS", ROOT / "outputs"))
# Prepared inputs (the base model converted to safetensors, benchmark data converted to their
# own layouts). Expensive to remake and never a result, so `make clean` leaves it alone.
CACHE_DIR = Path(os.environ.get("ORDERSTUDY_CACHE", ROOT / "cache"))
MODELS_CACHE = CACHE_DIR / "models"
DATA_CACHE = CACHE_DIR / "data"
WHEELS_CACHE = CACHE_DIR / "wheels"
# HIT's 同义词词林扩展版, which LawBench 2-1 (ChERRANT) prices substitutions with.
THESAURUS_FILE = DATA_CACHE / "cilin" / "cilin_ex.txt"
# ChERRANT's own data files, copied from a LawBench checkout by `LAWBENCH=<checkout> make data`.
CHERRANT_DATA = DATA_CACHE / "cherrant"

ORDERING_NOTEBOOK = NOTEBOOKS_DIR / "ordering.ipynb"
SUMMARY_NOTEBOOK = NOTEBOOKS_DIR / "summary.ipynb"


def resolve(path: str | os.PathLike) -> Path:
    """Return ``path`` as an absolute path, relative ones taken from the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ROOT / p


class StudyPaths:
    """The output locations of one study: ``outputs/<study>/...``."""

    def __init__(self, study: str, outputs_dir: Path | None = None):
        self.study = study
        self.dir = (outputs_dir or OUTPUTS_DIR) / study
        self.states = self.dir / "states"
        self.results = self.dir / "results"
        self.items = self.dir / "items"
        self.notebooks = self.dir / "notebooks"
        self.tables = self.dir / "tables"
        self.figures = self.dir / "figures"
        self.data = self.dir / "data"
        self.logs = self.dir / "logs"

    def result(self, ordering: str) -> Path:
        return self.results / f"{ordering_filename(ordering)}.json"

    def notebook(self, ordering: str) -> Path:
        return self.notebooks / f"{ordering_filename(ordering)}.ipynb"


def ordering_filename(ordering: str) -> str:
    """Return the file stem of an ordering: ``F>P>Q`` -> ``F-P-Q`` (``>`` is unsafe in shells)."""
    return ordering.replace(">", "-")
