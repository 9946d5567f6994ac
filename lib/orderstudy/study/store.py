"""The state store: one directory per model state, named by its key, built once and reused.

A state's key hashes its parent's key, the operation, the operation's parameters, the data it
used and the fingerprint of the operation's code (``OperationSpec.fingerprint``; for the base, the
model source and dtype). Changing any of these gives a new key, so that state and everything
after it are rebuilt, and nothing else (docs/caching.md). The seed is in the key only of a state
that a stochastic step decided (its own operation or an ancestor's: ``OperationSpec.stochastic``):
base, Q and P with magnitude importance are the same for every seed, stored once and shared.

A state directory holds:

    states/<key>/model/        a standard Hugging Face checkpoint
    states/<key>/record.json   how it was made, what it is, and a manifest of the model files
    states/<key>/evals/<suite key>.json   its scores on an evaluation suite, once evaluated
    states/<key>/probes/<probe key>.json  its answers to a fine-tune's held-out prompts (probes.py)

Building is idempotent and safe under concurrency: look the state up; otherwise take its lock,
look again (someone may have just built it), build in a temporary directory and rename it into
place. A state whose files do not match its manifest is discarded and rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..core import atomic
from ..core.operation import get_operation
from ..checkpoints import models
from ..core.plan import BASE, last_operation, parent, parse_ordering
from ..core.params import StudyParams, stable_hash

# 2: the base records its provenance, a fine-tune its pairs per task and a held-out loss interval, a
# width pruning the fractions it removed (every state is rebuilt once so that its record has them).
RECORD_VERSION = 2


@dataclass(frozen=True)
class State:
    """A model state on disk."""

    name: str          # the ordering prefix, e.g. "F>P"
    key: str
    dir: Path

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"

    @property
    def record_path(self) -> Path:
        return self.dir / "record.json"

    def record(self) -> dict:
        return atomic.read_json(self.record_path)


def file_manifest(model_dir: Path) -> dict[str, dict]:
    """Return ``{relative path: {"bytes", "sha256"}}`` for every file of a checkpoint."""
    manifest = {}
    for f in sorted(Path(model_dir).rglob("*")):
        if f.is_file():
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            manifest[str(f.relative_to(model_dir))] = {"bytes": f.stat().st_size, "sha256": h.hexdigest()}
    return manifest


def versions() -> dict[str, str | None]:
    """Return the versions of Python and the packages that decide a result; None for a package not installed.

    None, not a word: a reader checking that a version was recorded must not take "not installed" for one.
    """
    import importlib.metadata as md

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "bitsandbytes", "lm_eval", "orderstudy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


class StateStore:
    """Finds, verifies and builds the model states of one study."""

    def __init__(self, root: Path, params: StudyParams, dtype: str, device: str,
                 step_inputs: Callable[[str], dict] | None = None, seed: int | None = None,
                 family: tuple[str, str] | None = None):
        self.root = Path(root)
        # (family, operation letter) in a study of families: a state that applies the operation is the family's.
        self.family = family
        self.params = params
        self.dtype = dtype
        self.device = device
        # The seed of this store's stochastic steps (one of params.seeds).
        self.seed = params.seeds[0] if seed is None else seed
        # For operations that read data (fine-tuning), what identifies that data in the key.
        self._step_inputs = step_inputs or (lambda op: {})
        self._keys: dict[str, str] = {}

    def seeded(self, state: str) -> bool:
        """Return whether a stochastic step made ``state`` (its own or an ancestor's), so that it differs by seed."""
        return any(get_operation(op).stochastic(self.params.operation_params(op)) for op in parse_ordering(state))

    def build_seed(self, state: str) -> int:
        """Return the seed ``state`` is built with: this store's seed if the state is seeded, else 0.

        A state no stochastic step decides has no seed in its key; building it with a fixed seed
        keeps it a function of its key, whichever seed asked for it first.
        """
        return self.seed if self.seeded(state) else 0

    def of_family(self, state: str) -> bool:
        """Return whether ``state`` is one family's: it applies the operation the families differ in (never, for one family)."""
        return bool(self.family) and self.family[1] in parse_ordering(state)

    def label(self, state: str) -> str:
        """Return the state's name with its family where it has one and its seed where the seed decides it.

        ``F>P.seed1`` (several seeds); ``Q>P.gptq`` (a state of the gptq family, which applies the
        operation the families differ in); ``F>P`` (a state every family shares).
        """
        label = state
        if self.of_family(state):
            label += f".{self.family[0]}"
        return f"{label}.seed{self.seed}" if len(self.params.seeds) > 1 and self.seeded(state) else label

    # -- keys ---------------------------------------------------------------------------------
    def key(self, state: str) -> str:
        """Return the cache key of ``state`` (an ordering prefix)."""
        if state not in self._keys:
            if state == BASE:
                m = self.params.model
                spec = {"source": m.source, "gguf_file": m.gguf_file, "revision": m.revision, "dtype": self.dtype}
            else:
                op = last_operation(state)
                spec = {"parent": self.key(parent(state)), "operation": op,
                        "params": self.params.operation_params(op).model_dump(mode="json"),
                        "inputs": self._step_inputs(op), "dtype": self.dtype,
                        "code": self.code_fingerprint(op)}
                if self.seeded(state):
                    spec["seed"] = self.seed
            self._keys[state] = stable_hash({"record_version": RECORD_VERSION, **spec})
        return self._keys[state]

    def code_fingerprint(self, op: str) -> str:
        """Return the fingerprint of operation ``op``'s code that its states' keys hold."""
        return get_operation(op).fingerprint()

    def state(self, name: str) -> State:
        key = self.key(name)
        return State(name, key, self.root / key)

    # -- lookup -------------------------------------------------------------------------------
    def is_complete(self, state: State, verify_hashes: bool = True) -> bool:
        """Return whether ``state`` is on disk, complete, and matches its recorded manifest."""
        if not state.record_path.is_file() or not state.model_dir.is_dir():
            return False
        try:
            record = state.record()
        except (ValueError, OSError):
            return False
        if record.get("key") != state.key or "manifest" not in record:
            return False
        manifest = record["manifest"]
        for rel, meta in manifest.items():
            f = state.model_dir / rel
            if not f.is_file() or f.stat().st_size != meta["bytes"]:
                return False
        if verify_hashes and file_manifest(state.model_dir) != manifest:
            return False
        return True

    @contextmanager
    def lock(self, state: State) -> Iterator[None]:
        """Hold an exclusive lock on ``state`` (another process wanting it waits)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{state.key}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- building -----------------------------------------------------------------------------
    def get(self, name: str, build: Callable[[str, Path, Path | None], dict],
            on_event: Callable[[str, State, dict], None] | None = None) -> tuple[State, bool]:
        """Return ``(state, reused)``, building the state (and its parents first) if needed.

        ``build(name, out_model_dir, parent_model_dir)`` makes the checkpoint and returns the
        operation's record.
        """
        on_event = on_event or (lambda *a: None)
        parent_state = None
        if name != BASE:
            parent_state, _ = self.get(parent(name), build, on_event)
        state = self.state(name)
        if self.is_complete(state):
            on_event("reused", state, state.record())
            return state, True
        with self.lock(state):
            if self.is_complete(state):
                on_event("reused", state, state.record())
                return state, True
            if state.dir.exists():
                on_event("discarded", state, {"reason": "incomplete or does not match its manifest"})
                shutil.rmtree(state.dir)
            # Leftovers of a build that was killed (no cleanup runs on SIGKILL or power loss).
            for stale in self.root.glob(f".{state.key}.*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)
            on_event("building", state, {})
            started = time.perf_counter()
            with atomic.directory(state.dir) as tmp:
                info = build(name, tmp / "model", parent_state.model_dir if parent_state else None)
                record = self._record(state, parent_state, info, tmp / "model", time.perf_counter() - started)
                atomic.write_json(tmp / "record.json", record)
            on_event("built", state, record)
            return state, False

    def _record(self, state: State, parent_state: State | None, info: dict, model_dir: Path, seconds: float) -> dict:
        from ..checkpoints import inspect as checkpoint_info

        manifest = file_manifest(model_dir)
        op = last_operation(state.name)
        return {
            "record_version": RECORD_VERSION,
            "state": state.name,
            "key": state.key,
            "parent": parent_state.key if parent_state else None,
            "operation": op,
            "params": self.params.operation_params(op).model_dump(mode="json") if op else self.params.model.model_dump(mode="json"),
            "inputs": self._step_inputs(op) if op else {},
            "code": self.code_fingerprint(op) if op else None,
            "seed": self.seed if self.seeded(state.name) else None,
            "info": info,
            "quantized": models.is_quantized(model_dir),
            "quantization_config": models.quantization_config(model_dir),
            "size_bytes": sum(m["bytes"] for m in manifest.values()),
            "parts": checkpoint_info.describe(model_dir),
            "seconds": round(seconds, 3),
            "dtype": self.dtype,
            "device": self.device,
            "versions": versions(),
            "host": platform.node(),
            "pid": os.getpid(),
            "manifest": manifest,
        }
