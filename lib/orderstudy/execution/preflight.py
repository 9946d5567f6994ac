"""Checks a study's inputs before any work: the model, the data, the packages, the disk space."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from ..core import paths
from ..core.params import ParamsError


def preflight(study) -> None:
    """Check, before any work, what would otherwise fail late: model, data, disk space."""
    from ..checkpoints import models

    m = study.params.model
    try:
        # Where the study's loading will look (models.locate_source), checked here before any work.
        location, kwargs = models.locate_source(m.source, m.gguf_file, m.revision)
    except models.ModelError as exc:
        raise ParamsError(f"{study.params_file}: {exc}") from None
    if isinstance(location, Path) and not kwargs:  # a checkpoint directory: all its files, readable
        try:
            models.check_checkpoint(location)
        except models.ModelError as exc:
            raise ParamsError(f"{study.params_file}: key 'model.source': {exc}") from None
    if study.params.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise ParamsError(f"{study.params_file}: key 'executor': 'ray' needs the ray package, which is not installed "
                          "here (it is pinned in requirements.txt: pip install -r requirements.txt)")
    study.check_sources()  # a pruned shape transformers would refuse stops here, not after the work
    study.suite  # samples the benchmarks now: a missing or malformed data file stops the run here
    if study.trains:
        study.training_examples  # a missing or malformed training file stops it here too
    if study.calibrates:
        study.calibration_examples
    need = estimate_disk_bytes(study)
    free = shutil.disk_usage(study.paths.dir).free
    if need > free:
        raise ParamsError(f"{study.params_file}: the planned checkpoints need about {need / 2**30:.1f} GiB "
                          f"but {study.paths.dir} has {free / 2**30:.1f} GiB free; free space or run fewer orderings")


def estimate_disk_bytes(study) -> int:
    """Return a generous estimate of the bytes the study's missing states will take."""
    from ..checkpoints import models

    base = study.store.state("base")
    if study.store.is_complete(base, verify_hashes=False):
        base_bytes = base.record()["size_bytes"]
    else:
        src = paths.resolve(study.params.model.source)
        base_bytes = models.dir_size_bytes(src) if src.exists() else 0
    missing = set()
    for seed in study.params.seeds:  # each seed's own states; a shared state counts once
        seeded = study.for_seed(seed)
        missing |= {seeded.store.key(s) for s in seeded.plan.states
                    if not seeded.store.is_complete(seeded.store.state(s), verify_hashes=False)}
    return base_bytes * len(missing)
