"""Every path the project uses, defined once.

Relative paths in a params file are resolved against the repository root (``ROOT``), so a study
runs the same from the Makefile, from a notebook in ``notebooks/`` or from the tests.
"""

from __future__ import annotations

import os
from pathlib import Path

from .plan import BASE, canonical_ordering, parse_ordering

ROOT = Path(os.environ.get("ORDERSTUDY_ROOT", Path(__file__).resolve().parents[3]))

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
    """The output locations of one study: ``outputs/<study>/...``.

    A study of several families (``quantize.method: [nf4, gptq]``) keeps each family's runs under
    ``outputs/<study>/<family>/`` (``family``): its results, items, notebooks, tables and figures.
    The model states, the evaluation data and the logs stay at ``outputs/<study>/``, one store for
    every family, so a state no family differs in (``F``, ``P``, ``P>F``) is built once.
    """

    def __init__(self, study: str, outputs_dir: Path | None = None, family: str | None = None):
        self.study = study
        self.family = family
        self.study_dir = (outputs_dir or OUTPUTS_DIR) / study
        self.dir = self.study_dir / family if family else self.study_dir
        self.states = self.study_dir / "states"
        self.results = self.dir / "results"
        self.items = self.dir / "items"
        self.notebooks = self.dir / "notebooks"
        self.tables = self.dir / "tables"
        self.figures = self.dir / "figures"
        self.data = self.study_dir / "data"
        self.logs = self.study_dir / "logs"

    def of_family(self, family: str | None) -> "StudyPaths":
        """Return the paths of one family of this study (this study's own paths for None)."""
        return StudyPaths(self.study, self.study_dir.parent, family)

    def result(self, ordering: str, seed: int | None = None) -> Path:
        """Return a run's result file; ``seed`` None in a study of one seed (``run_filename``)."""
        return self.results / f"{run_filename(ordering, seed)}.json"

    def notebook(self, ordering: str, seed: int | None = None) -> Path:
        return self.notebooks / f"{run_filename(ordering, seed)}.ipynb"


def ordering_filename(ordering: str) -> str:
    """Return the file stem of an ordering in any accepted spelling: ``F>P>Q`` -> ``F-P-Q`` (``>`` is unsafe in shells).

    >>> ordering_filename("F>P>Q"), ordering_filename("FPQ"), ordering_filename("base")
    ('F-P-Q', 'F-P-Q', 'base')
    """
    return "-".join(parse_ordering(ordering)) or BASE


def run_filename(ordering: str, seed: int | None = None) -> str:
    """Return the file stem of one run (an ordering with one seed): ``F-P-Q``, or ``F-P-Q.seed1``.

    A study of one seed names its files after the ordering alone; a study of several seeds names
    every run's files after its seed too, the first seed's included.

    >>> run_filename("F>P>Q"), run_filename("F>P>Q", 1)
    ('F-P-Q', 'F-P-Q.seed1')
    """
    stem = ordering_filename(ordering)
    return stem if seed is None else f"{stem}.seed{seed}"


def parse_run_filename(stem: str) -> tuple[str, int | None]:
    """Return ``(ordering, seed)`` from a run's file stem, the inverse of ``run_filename``.

    The ordering comes back in its canonical spelling; a stem that is no ordering raises ``ValueError``.

    >>> parse_run_filename("F-P-Q.seed12"), parse_run_filename("base")
    (('F>P>Q', 12), ('base', None))
    """
    name, dot, seed = stem.partition(".seed")
    if dot and not seed.isdigit():
        raise ValueError(f"{stem!r}: expected <ordering> or <ordering>.seed<N>")
    return canonical_ordering(name), int(seed) if dot else None
