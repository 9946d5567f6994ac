"""The contract every operation fills in (``OperationSpec``), and the registry of operations.

An operation is a package under ``orderstudy/operations/`` that declares one ``OperationSpec`` and
registers it with ``register_operation``; everything else (the plan of orderings, the params file,
the state store, the notebooks, the result files and so the report) reads the registry instead of
naming operations. The registry lives here, at the bottom layer, so that every layer can read it;
the operations package fills it in when ``orderstudy`` is imported.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict

from .fingerprint import code_fingerprint

# What a checkpoint can be when an operation receives it (operations/common.source_layout):
# standard full-precision weights, values + bitmask (sparse), bitsandbytes-quantized weights, or a
# LoRA adapter kept beside a quantized base.
LAYOUTS = frozenset({"standard", "sparse", "quantized", "adapter"})


class OperationParams(BaseModel):
    """The base of an operation's params section: a typo in a key is an error, values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def method_keys(cls) -> dict[str, tuple[str, ...]]:
        """Return, per method, the keys only that method reads; empty when the section has no methods.

        A section whose ``method`` is a list in the params file (``quantize.method: [nf4, gptq]``)
        makes one family of the study per method (``core.params``): each family's section keeps the
        keys its method reads and leaves out those only the others read.
        """
        return {}


def _never(params) -> bool:
    return False


@dataclass(frozen=True)
class OperationSpec:
    """One operation: who it is, what it needs and can take, and how it is applied."""

    letter: str                 # its letter in an ordering: F>P>Q
    name: str                   # English display name: "fine-tune"
    name_zh: str                # the reference study's Chinese name: "微调"
    section: str                # its section of the params file: "finetune"
    params_model: type[OperationParams]
    # apply(src_dir, dst_dir, params, ctx) -> record dict; reads one checkpoint, writes another.
    apply: Callable[[Path, Path, Any, Any], dict]
    title: str = ""             # English heading of its report table: "Fine-tuning" (default: name capitalised)
    # Whether its result depends on the seed, given its params: a state it made (or any descendant)
    # is built once per seed of the study, the others once for every seed.
    stochastic: Callable[[Any], bool] = _never
    # Whether it reads calibration text (OperationContext.calibration_examples), given its params.
    needs_calibration: Callable[[Any], bool] = _never
    # Whether it reads the study's training examples (OperationContext.training_examples).
    needs_training_data: bool = False
    # The source layouts (LAYOUTS) it can be applied to.
    applies_to: frozenset[str] = field(default=frozenset({"standard", "sparse"}))
    # check_source(load_config, params) -> problem or None: why applying it to the study's model
    # would fail, found before any work; ``load_config()`` gives the model's config (None when out
    # of reach). The problem names the params key to change.
    check_source: Callable[[Callable[[], Any], Any], str | None] | None = None
    # The Python files or directories whose code decides its results (fingerprinted into the keys
    # of the states it makes); empty: the file that defines ``apply``.
    code: tuple[Path, ...] = ()
    # When set, replaces the code fingerprint in the keys, verbatim: set it to the fingerprint the
    # states were built with (their record's ``code``) to keep them across a change of the code that
    # does not change what it computes; change it when a change does (docs/caching.md).
    fingerprint_version: str | None = None

    def __post_init__(self):
        if len(self.letter) != 1 or not self.letter.isalpha() or not self.letter.isupper():
            raise ValueError(f"operation {self.name!r}: letter {self.letter!r} must be one capital letter")
        if not self.section.isidentifier():
            raise ValueError(f"operation {self.name!r}: params section {self.section!r} must be a Python identifier")
        unknown = set(self.applies_to) - LAYOUTS
        if unknown:
            raise ValueError(f"operation {self.name!r}: applies_to {sorted(unknown)}: expected layouts among {sorted(LAYOUTS)}")

    @property
    def heading(self) -> str:
        """Return the English heading of the operation's report table."""
        return self.title or self.name.capitalize()

    def fingerprint(self) -> str:
        """Return what identifies the operation's code in a state key: ``fingerprint_version`` or its source hash."""
        if self.fingerprint_version is not None:
            return self.fingerprint_version
        return code_fingerprint(self.code or (Path(inspect.getsourcefile(self.apply)),))

    def names(self) -> dict[str, str]:
        """Return what a result file records of the operation, for readers without the registry."""
        return {"name": self.name, "name_zh": self.name_zh, "title": self.heading, "section": self.section}


_REGISTRY: dict[str, OperationSpec] = {}
# Top-level keys of the params file that are not operation sections (core/params.py fills it in).
RESERVED_SECTIONS: set[str] = set()


def register_operation(spec: OperationSpec) -> OperationSpec:
    """Return ``spec`` after adding it to the registry; its letter, name and section must be new."""
    if _REGISTRY.get(spec.letter) is spec:
        return spec  # registering the same spec twice (a module imported again) changes nothing
    for other in _REGISTRY.values():
        if other.letter == spec.letter or other.section == spec.section or other.name == spec.name:
            raise ValueError(f"operation {spec.name!r} ({spec.letter}, section {spec.section!r}) clashes with the "
                             f"registered {other.name!r} ({other.letter}, section {other.section!r})")
    if spec.section in RESERVED_SECTIONS:
        raise ValueError(f"operation {spec.name!r}: params section {spec.section!r} is already a key of the params file")
    _REGISTRY[spec.letter] = spec
    return spec


def unregister_operation(letter: str) -> None:
    """Remove an operation from the registry (tests that register one of their own)."""
    _REGISTRY.pop(letter, None)


def operations() -> tuple[OperationSpec, ...]:
    """Return the registered operations, in the order they were registered."""
    return tuple(_REGISTRY.values())


def letters() -> tuple[str, ...]:
    """Return the registered operations' letters, in registry order."""
    return tuple(_REGISTRY)


def get_operation(letter: str) -> OperationSpec:
    """Return the registered operation with ``letter``, or raise ``KeyError`` naming the known ones."""
    try:
        return _REGISTRY[letter]
    except KeyError:
        raise KeyError(f"operation {letter!r} is not registered; known: {', '.join(_REGISTRY) or 'none'}") from None
