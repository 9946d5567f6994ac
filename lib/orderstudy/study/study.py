"""One study: its parameters, plan, state store and evaluation, as the notebooks use them.

``Study(params_file).run_ordering("F>P>Q")`` gets every state on the ordering's path (reusing
the ones already built), evaluates the final state (reusing a stored evaluation), and writes the
ordering's result file. A failure is recorded in the result with its step, error and traceback.

A study with several seeds (``seeds: [0, 1, 2]``) runs each ordering once per seed:
``Study(params_file, seed=1)`` is the study as seed 1 sees it. Its stochastic steps use seed 1;
the states no stochastic step decides, the evaluation sample and the fine-tuning data are the
same for every seed (``params.sample_seed``), so the seeds' scores are paired item by item.

The ordering notebook takes the same pieces one section at a time: ``study.ordering_run(ordering)``
gives an ``OrderingRun`` with ``step(i)``, ``evaluate()`` and ``finish()``.
"""

from __future__ import annotations

import random
import time
import traceback
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Callable

from ..benchmarks import data
from ..core import atomic, paths, results
from ..checkpoints import inspect as checkpoint_info, models, provenance
from ..evaluation import engine as evaluation, scores as benchmark_scores
from . import probes
from ..operations.common import OperationContext, source_layout
from ..operations import prune, quantize
from ..operations.finetune.training import finetune_warning
from ..core.benchmark import get_benchmark
from ..core.operation import OperationSpec, get_operation, operations
from ..core.params import ParamsError, StudyParams, load_params, stable_hash
from ..core.plan import BASE, all_orderings, canonical_ordering, last_operation, make_plan, parent, parse_ordering, prefixes
from .store import State, StateStore, versions


class Study:
    """A study loaded from its params file, as one of its seeds (default: the first) and one of its families sees it.

    A study of several families (``quantize.method: [nf4, gptq]``, ``StudyParams.families``) is
    seen one family at a time (default: the first): ``Study(params_file, family="gptq")`` runs with
    that family's params (``StudyParams.for_family``), writes its runs under
    ``outputs/<study>/<family>/`` and shares the state store with the other families.
    """

    def __init__(self, params_file: str | Path, params: StudyParams | None = None, seed: int | None = None,
                 family: str | None = None):
        self.params_file = paths.resolve(params_file)
        given = params or load_params(self.params_file)
        self.families = given.families
        if family is not None and family not in self.families:
            raise ParamsError(f"{self.params_file}: family {family!r} was asked for, but the study's families are "
                              + (", ".join(self.families) if self.families else
                                 "none (no operation's method is a list: every run is the study's own)"))
        self.family = family if family is not None else (self.families[0] if self.families else None)
        # The operation the families differ in (Q): a state that applies it belongs to one family.
        self.family_operation = given.family_operation
        self.params = given.for_family(self.family) if self.families else given
        if seed is not None and seed not in self.params.seeds:
            raise ParamsError(f"{self.params_file}: key 'seeds': seed {seed} was asked for, but the study's seeds are "
                              f"{list(self.params.seeds)}; add it there or ask for one of them")
        self.seed = self.params.seeds[0] if seed is None else int(seed)
        self.paths = paths.StudyPaths(self.params.study)
        # Where this family's runs go: the study's own directories for a study of one family.
        self.family_paths = self.paths.of_family(self.family)
        # Params that are not the file's (changed in a notebook run by hand) write their results
        # beside the study's, under scratch/<their hash>/, never over the results the file made.
        # The states are keyed by their own params, so the study's store holds them safely.
        self.changed = params is not None and given.hash() != load_params(self.params_file).hash()
        self.run_paths = (paths.StudyPaths(self.params.hash(), self.family_paths.dir / "scratch") if self.changed
                          else self.family_paths)
        self.device = models.resolve_device(self.params.device)
        self.dtype = models.resolve_dtype(self.params.dtype, self.device)
        self.plan = make_plan(self.params.orderings)
        self.store = StateStore(self.paths.states, self.params, self.dtype, self.device, self._step_inputs, self.seed,
                                (self.family, self.family_operation) if self.family else None)
        # The params as given, every family's (what for_seed and for_family start from).
        self.source_params = given

    def for_seed(self, seed: int) -> "Study":
        """Return the same study as ``seed`` sees it (the same family)."""
        return Study(self.params_file, self.source_params, seed, self.family)

    def for_family(self, family: str) -> "Study":
        """Return the same study as ``family`` sees it (the same seed)."""
        return Study(self.params_file, self.source_params, self.seed, family)

    def for_each_family(self) -> list["Study"]:
        """Return the study as each of its families sees it (this seed); ``[self]`` for a study of one family."""
        return [self if f == self.family else self.for_family(f) for f in self.families] or [self]

    def variants(self) -> list["Study"]:
        """Return the study as each of its runs' (family, seed) sees it: the first family's seeds first."""
        return [fam if seed == fam.seed else fam.for_seed(seed)
                for fam in self.for_each_family() for seed in self.params.seeds]

    @property
    def run_seed(self) -> int | None:
        """The seed in this study's run file names: None when the study has one seed (``F-P-Q.json``)."""
        return self.seed if len(self.params.seeds) > 1 else None

    def run_name(self, ordering: str) -> str:
        """Return how runs are named in messages and ``last_run.json``: ``F>P>Q``, ``F>P>Q.seed1``, ``gptq/F>P>Q``."""
        name = ordering if self.run_seed is None else f"{ordering}.seed{self.seed}"
        return f"{self.family}/{name}" if self.family else name

    def result_path(self, ordering: str) -> Path:
        """Return this seed's result file of ``ordering`` (under ``scratch/<hash>/`` when the params are not the file's)."""
        return self.run_paths.result(ordering, self.run_seed)

    def notebook_path(self, ordering: str) -> Path:
        """Return this seed's executed notebook of ``ordering`` (under its family's directory in a study of families)."""
        return self.family_paths.notebook(ordering, self.run_seed)

    # -- inputs -------------------------------------------------------------------------------
    @cached_property
    def engine(self):
        """The one engine that evaluates every state of the study (``backends.choose_engine``)."""
        from ..evaluation.backends import choose_engine

        return choose_engine(self.params, self.device)

    @cached_property
    def suite(self) -> evaluation.EvalSuite:
        """The evaluation suite: sampled items and lm-eval task files, shared by all states."""
        tokenizer, context = self.base_tokenizer
        return evaluation.build_suite(self.params.evaluation, self.params.sample_seed, self.paths.data, tokenizer, context,
                                      self.engine, self.params.chat_template)

    @cached_property
    def base_tokenizer(self) -> tuple[object, int]:
        """The base model's tokenizer and context length: every state has them (budgets are counted in them)."""
        m = self.params.model
        location, kwargs = models.locate_source(m.source, m.gguf_file, m.revision)
        base = self.store.state(BASE)
        if (kwargs or not isinstance(location, Path)) and self.store.is_complete(base, verify_hashes=False):
            location, kwargs = base.model_dir, {}   # the base made from a GGUF or hub source: read it, not the source
        return models.tokenizer_and_context(location, **kwargs)

    @cached_property
    def content_index(self) -> data.ContentIndex:
        """The normalized questions and prompts of every evaluated item, that no training pair may share."""
        ev = self.params.evaluation
        return data.ContentIndex([item for bench, ids in self.suite.sample_ids.items()
                                  for item in get_benchmark(bench).evaluated_items(ev, ids)])

    @cached_property
    def _training(self) -> tuple[list[dict], dict]:
        ft, ev = self.params.finetune, self.params.evaluation
        no_pool = {}
        if ft.data == "lawbench":
            tasks = evaluation.lawbench_task_ids(ev)
            drawn = data.lawbench_training(paths.resolve(ev.lawbench_data), tasks,
                                           ft.train_items_per_task, ev.lawbench_items_per_task, self.params.sample_seed)
            if "lawbench" in self.suite.sample_ids:
                data.check_disjoint({t: [{"id": i} for i in ids] for t, ids in self.suite.sample_ids["lawbench"].items()}, drawn)
            no_pool = data.training_pools(paths.resolve(ev.lawbench_data), tasks)
        else:
            drawn = data.jsonl_training(ft.data)
        return self._without_overlaps(drawn, "finetune.data", ft.data, no_pool)

    def _without_overlaps(self, drawn: list[dict], key: str, source: str, no_pool: dict) -> tuple[list[dict], dict]:
        """Return the pairs that share no content with an evaluated item, and the report of what was dropped."""
        kept, by_task = data.drop_overlaps(drawn, self.content_index)
        if not kept:
            raise data.DataError(f"{key}: all {len(drawn)} pairs of {source} have the question or prompt of an evaluated "
                                 "item; give data that the evaluation does not ask")
        report = {"source": source, "pairs": len(kept), "overlaps_dropped": len(drawn) - len(kept),
                  "compared_with": f"{self.content_index.items} evaluated items, by normalized question and whole prompt",
                  "by_task": by_task}
        if no_pool:
            report["no_training_pool"] = no_pool
        return kept, report

    @property
    def training_examples(self) -> list[dict]:
        """The fine-tuning pairs: none is an evaluated item, by index or by content."""
        return self._training[0]

    @property
    def training_report(self) -> dict:
        """Where the fine-tuning pairs come from, per task: drawn, dropped as overlaps, tasks without a pool."""
        return self._training[1]

    def calibration_of(self, op: str) -> tuple[list[dict], dict]:
        """Return the calibration text of operation ``op`` and where it comes from: its section's
        ``calibration_data``, the fine-tuning pairs by default (``finetune``), never an evaluated item
        (a file's pairs that share content with one are dropped and counted)."""
        section = get_operation(op).section
        source = getattr(self.params.operation_params(op), "calibration_data", "finetune")
        if source not in self._calibrations:
            if source == "finetune":
                self._calibrations[source] = (self.training_examples,
                                              dict(self.training_report, source="finetune (the fine-tuning pairs)"))
            else:
                self._calibrations[source] = self._without_overlaps(
                    data.jsonl_training(source), f"{section}.calibration_data", source, {})
        return self._calibrations[source]

    @cached_property
    def _calibrations(self) -> dict[str, tuple[list[dict], dict]]:
        return {}

    @property
    def calibration_examples(self) -> list[dict]:
        """Pruning's calibration text: the fine-tuning pairs by default, never an evaluated item."""
        return self.calibration_of(prune.SPEC.letter)[0]

    @property
    def calibration_report(self) -> dict:
        return self.calibration_of(prune.SPEC.letter)[1]

    def uses(self, op: str) -> bool:
        """Return whether any step of the study's plan applies operation ``op`` (its letter: ``F``, ``P``, ``Q``)."""
        return any(op in parse_ordering(s) for s in self.plan.steps)

    @property
    def used_operations(self) -> tuple[OperationSpec, ...]:
        """The registered operations the plan's steps apply, in registry order."""
        return tuple(spec for spec in operations() if self.uses(spec.letter))

    @property
    def trains(self) -> bool:
        """Whether a planned step reads the training examples (fine-tuning)."""
        return any(spec.needs_training_data for spec in self.used_operations)

    @property
    def calibrates(self) -> bool:
        """Whether a planned step reads calibration text, given its params."""
        return any(self._calibrates(spec.letter) for spec in self.used_operations)

    def _calibrates(self, op: str) -> bool:
        return get_operation(op).needs_calibration(self.params.operation_params(op))

    def _step_inputs(self, op: str) -> dict:
        """Return what identifies the data an operation reads, for its states' keys."""
        if not self.uses(op):
            return {}
        inputs = {}
        if get_operation(op).needs_training_data:
            inputs.update({"training_data": _content_hash(self.training_examples), "examples": len(self.training_examples)})
        if self._calibrates(op):
            inputs["calibration_data"] = _content_hash(self.calibration_of(op)[0])
        return {**inputs, "chat_template": self.params.chat_template} if inputs else {}

    # -- states -------------------------------------------------------------------------------
    def _build(self, name: str, out_dir: Path, parent_dir: Path | None) -> dict:
        if name == BASE:
            m = self.params.model
            loaded = models.materialize_source(m.source, m.gguf_file, m.revision, self.dtype, out_dir)
            return {"source": m.source, "parameters": loaded["parameters"],
                    "provenance": provenance.base_provenance(m.source, m.gguf_file, m.revision, out_dir, loaded["hub_commit"])}
        op = last_operation(name)
        spec = get_operation(op)
        layout = source_layout(parent_dir)
        if layout not in spec.applies_to:
            raise ValueError(f"{name}: {spec.name} ({op}) applies to {', '.join(sorted(spec.applies_to))} checkpoints; "
                             f"the state it follows ({parent(name)}) is {layout}")
        seed = self.store.build_seed(name)
        calibrates = self._calibrates(op)
        ctx = OperationContext(
            dtype=self.dtype, device=self.device, seed=seed,
            training_examples=self.training_examples if spec.needs_training_data else [],
            calibration_examples=self.calibration_of(op)[0] if calibrates else [],
            chat_template=self.params.chat_template)
        # A calibrated quantizer's state (GPTQ) is quantized again, calibrated on the new model, when
        # pruning follows it or a fine-tune merges into it: that step reads the quantizer's calibration text.
        Q = quantize.SPEC.letter
        requantizes = op != Q and layout in ("quantized", "adapter") and self.uses(Q) and self._calibrates(Q)
        if requantizes:
            ctx.requantize_params = self.params.operation_params(Q)
            ctx.requantize_examples = self.calibration_of(Q)[0]
        _seed_everything(seed)
        info = spec.apply(parent_dir, out_dir, self.params.operation_params(op), ctx)
        if spec.needs_training_data:
            info["training_data"] = self.training_report
        if calibrates:
            info["calibration_data"] = self.calibration_of(op)[1]
        if requantizes and "requantization" in info:  # a merge policy that dequantizes reads no calibration text
            info["requantize_calibration_data"] = self.calibration_of(Q)[1]
        return info

    def check_sources(self) -> None:
        """Raise ``ParamsError`` when a planned operation cannot apply to the model (before any work).

        E.g. width pruning to a shape transformers refuses (``OperationSpec.check_source``).
        """
        m = self.params.model
        for spec in self.used_operations:
            if spec.check_source is not None:
                problem = spec.check_source(lambda: models.load_config(m.source, m.gguf_file, m.revision),
                                            self.params.operation_params(spec.letter))
                if problem:
                    raise ParamsError(f"{self.params_file}: {problem}")

    def get_state(self, name: str, show: Callable = print) -> tuple[State, bool]:
        """Return ``(state, reused)`` for an ordering prefix, building what is missing."""
        def event(kind: str, state: State, record: dict) -> None:
            if kind == "building":
                op = last_operation(state.name)
                show(f"[{self.params.study}] building {self.store.label(state.name)} ({get_operation(op).name if op else 'base model'}) ...")
            elif kind == "discarded":
                show(f"[{self.params.study}] discarding {self.store.label(state.name)}: {record['reason']}")
        return self.store.get(name, self._build, event)

    def finetune_probes(self, name: str, show: Callable = print) -> dict | None:
        """Return the before-and-after probes of state ``name`` when a fine-tune made it (``probes``), else None.

        Gets both states first; the probes are made once and stored beside the F state.
        """
        op = last_operation(name)
        if op is None or not get_operation(op).needs_training_data:
            return None
        before, _ = self.get_state(parent(name), show)
        after, _ = self.get_state(name, show)
        return probes.before_after(self, before, after, show)

    def stored_evaluation(self, state: State) -> dict | None:
        """Return the state's stored scores on the study's suite, ``None`` if not evaluated yet."""
        path = state.dir / "evals" / f"{self.suite.key}.json"
        if path.is_file():
            stored = atomic.read_json(path)
            if stored.get("suite") == self.suite.key and stored.get("state") == state.key:
                if not benchmark_scores.is_aggregated_as(stored.get("benchmarks", {}), self.params.evaluation):
                    # Aggregated otherwise than the params now say (mmlu_weight_by_size changed): the
                    # item scores stand; the benchmark scores are aggregated again, and stored so.
                    stored["benchmarks"] = benchmark_scores.aggregate(stored["benchmarks"], self.params.evaluation)
                    atomic.write_json(path, stored)
                return stored
        return None

    def evaluate_state(self, state: State, show: Callable = print, engines=None) -> dict:
        """Return the state's scores on the study's suite, evaluating once and storing the result.

        ``engines`` (``backends.VllmEngines``) keeps vLLM engines across the states of one process.
        """
        stored = self.stored_evaluation(state)
        if stored is not None:
            stored["reused"] = True
            return stored
        path = state.dir / "evals" / f"{self.suite.key}.json"
        base = self._base_for(state, show, engines) if self.suite.compared else None
        show(f"[{self.params.study}] evaluating {self.store.label(state.name)} on "
             f"{', '.join([*self.suite.benchmarks, *self.suite.compared])} ...")
        _seed_everything(self.params.sample_seed)  # greedy decoding: the same for every seed
        started = time.perf_counter()
        scores = evaluation.evaluate(self.suite, model_dir=state.model_dir, device=self.device, dtype=self.dtype,
                                     state=state, engines=engines, base=base)
        stored = {"suite": self.suite.key, "state": state.key, "seconds": round(time.perf_counter() - started, 2), **scores}
        atomic.write_json(path, stored)
        stored["reused"] = False
        return stored

    def _base_for(self, state: State, show: Callable, engines) -> "evaluation.Base":
        """Return the base the fidelity benchmarks compare ``state`` with; its answers from its own evaluation.

        A state's flips need the base's answers: the base is evaluated first when it was not (stored,
        it is read). The base compared with itself needs nothing more.
        """
        base_state = self.store.state(BASE)
        if state.key == base_state.key:
            return evaluation.Base(state.model_dir, state.key, self.dtype, self.device, is_self=True)
        needs_answers = any(self.suite.request_type(b) == "agreement" for b in self.suite.compared)
        answers = self.evaluate_state(self.get_state(BASE, show)[0], show, engines)["answers"] if needs_answers else None
        return evaluation.Base(base_state.model_dir, base_state.key, self.dtype, self.device, answers)

    # -- orderings ----------------------------------------------------------------------------
    def result_key(self, ordering: str) -> str:
        """Return the hash that decides whether this seed's result of an ordering is up to date."""
        return stable_hash({"state": self.store.key(ordering), "suite": self.suite.key, "schema": results.SCHEMA_VERSION,
                            "seed": self.seed, "mmlu_weight_by_size": self.params.evaluation.mmlu_weight_by_size})

    def current_result_keys(self) -> dict[str, str]:
        """Return, per result file name (``F-P-Q.json``, ``F-P-Q.seed1.json``), the result key the params file gives it.

        Every ordering of the registered operations is keyed, planned or not, for every seed: a
        result file whose ``result_key`` differs, or that is not among these, was made by other
        params, and the summary leaves it out (``report.load``).
        """
        keys = {}
        orderings = dict.fromkeys((*all_orderings(), *self.plan.orderings))
        for seed in self.params.seeds:
            seeded = self if seed == self.seed else self.for_seed(seed)
            seeded.__dict__.setdefault("suite", self.suite)  # one suite for every seed (same sample)
            for ordering in orderings:
                keys[f"{paths.run_filename(ordering, seeded.run_seed)}.json"] = seeded.result_key(ordering)
        return keys

    def load_result(self, ordering: str) -> dict | None:
        path = self.result_path(ordering)
        try:
            return atomic.read_json(path) if path.is_file() else None
        except ValueError:
            return None

    def is_up_to_date(self, ordering: str) -> bool:
        """Return whether the ordering has a finished, successful result for the current params."""
        result = self.load_result(ordering)
        return bool(result) and result.get("status") == "ok" and result.get("result_key") == self.result_key(ordering)

    def ordering_run(self, ordering: str, show: Callable = print) -> "OrderingRun":
        """Return an ordering's run, to be taken step by step (the ordering notebook's sections)."""
        return OrderingRun(self, ordering, show)

    def run_ordering(self, ordering: str, show: Callable = print) -> dict:
        """Return the ordering's result after getting its states and scores; also written to disk.

        The composition of ``OrderingRun``'s steps, as the notebook runs them section by section.
        On failure the result is written with status ``failed`` and the error re-raised, so the
        notebook shows it too. An interrupt (Ctrl-C) writes nothing: the ordering reruns next time.
        """
        run = self.ordering_run(ordering, show)
        for index in range(len(run.states)):
            run.step(index)
        run.evaluate()
        return run.finish()

    def write_result(self, ordering: str, result: dict) -> Path:
        """Write this seed's result file of ``ordering``, validated against the result schema (a misfit raises)."""
        return results.write_result(self.result_path(ordering), result)

    def result_record(self, ordering: str, steps: list[dict], status: str, error: dict | None) -> dict:
        """Return this seed's result of an ordering with its identity filled in and no scores yet.

        The ordering run adds the final state's sizes and scores to it; a failed run writes it as
        it is, with ``error`` (type, message, traceback, the step that failed).
        """
        return {
            "schema": results.SCHEMA_VERSION,
            "study": self.params.study,
            "ordering": ordering,
            "seed": self.seed,
            # The family in a study of several (the method of the operation they differ in), else None.
            "family": ({"name": self.family, "operation": self.family_operation, "families": list(self.families)}
                       if self.family else None),
            "status": status,
            "error": error,
            "size_bytes": None,
            "n_params": None,
            "benchmarks": {},
            "steps": steps,
            "state_key": self.store.key(ordering),
            "result_key": self.result_key(ordering),
            "params_file": str(self.params_file),
            "params_hash": self.params.hash(),
            "sample_ids": self.suite.sample_ids,
            "lawbench_sources": self.suite.lawbench_sources,
            "versions": versions(),
            "device": self.device,
            "dtype": self.dtype,
            "provenance": self._base_provenance(),
            "engine": {**self.engine.key(), "reason": self.engine.reason},
            # The names of the operations the plan applies, so that a reader without the registry
            # (the report) can label them: {"F": {"name", "name_zh", "title", "section"}, ...}.
            "operations": {spec.letter: spec.names() for spec in self.used_operations},
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def _base_provenance(self) -> dict | None:
        """Return where the base model comes from (the base state's record), None before it is built."""
        base = self.store.state(BASE)
        if not base.record_path.is_file():
            return None
        try:
            return base.record().get("info", {}).get("provenance")
        except ValueError:
            return None


def _content_hash(examples: list[dict]) -> str:
    """Return the hash of what a model is trained or calibrated on: each pair's id, prompt and answer, in order
    (not the metadata beside them, so that describing the pairs better changes no state)."""
    return stable_hash([{k: e[k] for k in ("id", "prompt", "answer")} for e in examples])


class OrderingRun:
    """One ordering taken step by step: ``step(i)`` for each state on its path, ``evaluate()``, ``finish()``.

    The ordering notebook calls one method per section; ``Study.run_ordering`` calls them all in
    order, so both write the same result file. A step already taken can be taken again (a cell
    executed twice): the state is found in the store and reused, and the step's entry replaced.
    Steps skipped are taken by ``evaluate`` and ``finish``, so the result always lists every state.
    A failure in any of them writes the result with status ``failed``, the step, the error and its
    traceback, then re-raises; an interrupt (Ctrl-C) writes nothing.
    """

    def __init__(self, study: Study, ordering: str, show: Callable = print):
        self.study = study
        self.ordering = canonical_ordering(ordering)  # the notebook's parameter, in any accepted spelling
        self.show = show
        self.states = prefixes(ordering)  # the base first, the ordering's final state last
        self.steps: dict[str, dict] = {}
        self.scores: dict | None = None
        self._final: State | None = None
        self._base_model_dir: Path | None = None

    def step(self, index: int) -> dict | None:
        """Return the summary of state ``index`` on the path (0: the base), getting the state; None past the end.

        An F step also answers a few held-out prompts before and after (``probes``), stored beside
        the states so that taking the step again does not generate them again.
        """
        if index >= len(self.states):
            return None
        name = self.states[index]
        with self._recorded(name):
            started = time.perf_counter()
            state, reused = self.study.get_state(name, self.show)
            record = state.record()
            summary = _step_summary(name, state, record, reused, time.perf_counter() - started,
                                    self.study.store.label(name),
                                    self.study.store.seed if self.study.store.seeded(name) else None)
            if record.get("operation") and get_operation(record["operation"]).needs_training_data:
                summary["probes"] = self.study.finetune_probes(name, self.show)
        self.steps[name] = summary
        if name == BASE:
            self._base_model_dir = state.model_dir
        if name == self.states[-1]:
            self._final = state
        self.show(f"[{self.study.params.study}] {self.study.store.label(name)}: {'reused' if reused else 'built'} "
                  f"({record['size_bytes'] / 2**20:.1f} MiB, {_n_params(record):,} parameters)")
        warning = finetune_warning(summary)
        if warning:
            self.show(f"[{self.study.params.study}] warning: {warning}")
        return summary

    def evaluate(self) -> dict:
        """Return the final state's scores on the study's suite (stored ones if evaluated before)."""
        self._take_missing_steps()
        with self._recorded(f"evaluate {self.ordering}"):
            self.scores = self.study.evaluate_state(self._final, self.show)
        return self.scores

    def finish(self) -> dict:
        """Return the ordering's result, written to ``results/<ordering>.json`` with its per-item scores."""
        if self.scores is None:
            self.evaluate()
        study, scores = self.study, self.scores
        stem = paths.run_filename(self.ordering, study.run_seed)
        items_rel = f"items/{stem}.json"
        atomic.write_json(study.run_paths.dir / items_rel, scores["items"])
        if scores["lawbench_predictions"]:
            # The model's raw LawBench answers, so they can be rescored (python -m orderstudy.benchmarks.lawbench).
            atomic.write_json(study.run_paths.items / f"{stem}.lawbench_predictions.json", scores["lawbench_predictions"])
        final = self._final.record()
        result = study.result_record(self.ordering, self._steps_in_order(), status="ok", error=None)
        result.update({
            "size_bytes": final["size_bytes"],
            # The weight files alone (what a compression paper reports), and what the base model
            # would weigh in bf16 whatever dtype the study computes in: the compression ratio's base.
            "weights_bytes": final["parts"]["weights_bytes"],
            "base_bf16_weights_bytes": checkpoint_info.bf16_weights_bytes(self._base_model_dir),
            "n_params": _n_params(final),
            "quantized": final["quantized"],
            "benchmarks": scores["benchmarks"],
            "items_file": items_rel,
            "evaluation": {"reused": scores["reused"], "seconds": scores["seconds"], "suite": study.suite.key,
                           "runtime": scores.get("runtime")},
            # The study's training and calibration data: pairs per task, overlaps with the evaluation dropped.
            # calibration: each calibrating operation's text by its section (prune, quantize).
            "training_data": {"finetune": study.training_report if study.trains else None,
                              "calibration": {spec.section: study.calibration_of(spec.letter)[1]
                                              for spec in study.used_operations
                                              if study._calibrates(spec.letter)} or None},
        })
        study.write_result(self.ordering, result)
        return result

    def _take_missing_steps(self) -> None:
        for index, name in enumerate(self.states):
            if name not in self.steps:
                self.step(index)

    def _steps_in_order(self) -> list[dict]:
        return [self.steps[name] for name in self.states if name in self.steps]

    @contextmanager
    def _recorded(self, where: str):
        """Write a failed result naming ``where`` if the block raises (anything but an interrupt)."""
        try:
            yield
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            result = self.study.result_record(self.ordering, self._steps_in_order(), status="failed", error={
                "type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc(), "step": where})
            self.study.write_result(self.ordering, result)
            raise


def _n_params(record: dict) -> int | None:
    info = record.get("info", {})
    return info.get("parameters")


def _step_summary(name: str, state: State, record: dict, reused: bool, seconds: float, label: str,
                  seed: int | None) -> dict:
    info = record.get("info", {})
    # label: the state with its seed where the seed decides it (F>P.seed1); seed: None for a state
    # every seed shares.
    summary = {"state": name, "label": label, "seed": seed, "operation": record.get("operation"), "key": state.key,
               "reused": reused,
               "seconds": round(seconds, 3), "build_seconds": record.get("seconds"),
               "size_bytes": record["size_bytes"], "n_params": _n_params(record), "quantized": record["quantized"]}
    for k in ("validation_loss_before", "validation_loss_after", "train_losses", "method", "merge",
              "intermediate_size_after", "dequantized_first",
              # fine-tuning: did it lower the held-out loss (a paired interval), which pairs it trained on
              "validation_loss_change", "validation_lowered", "pairs_by_task", "examples_too_long", "prompts_cut",
              "training_data", "calibration_data",
              # width pruning: the fractions really removed
              "mlp_channels_removed_fraction", "heads_removed_fraction",
              # GPTQ: the library and its settings; a step after it: what it was quantized again as
              "library", "library_version", "bits", "group_size", "desc_act", "requantized_as"):
        if k in info:
            summary[k] = info[k]
    return summary


def _seed_everything(seed: int) -> None:
    """Seed every random source an operation or evaluation may use, and ask for determinism."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # Deterministic kernels where torch has them; warn (not fail) where an op has none.
    torch.use_deterministic_algorithms(True, warn_only=True)


def current_result_keys(params_file: str | Path, family: str | None = None) -> tuple[dict[str, str] | None, str]:
    """Return the result keys the params file gives every run of ``family`` (``Study.current_result_keys``) and "", or None and why not.

    The keys need the base model's tokenizer and the benchmark data; where they are absent (a
    study's outputs read on another machine) the summary says that its results were not checked.
    """
    try:
        return Study(params_file, family=family or None).current_result_keys(), ""
    except (models.ModelError, data.DataError, ParamsError, OSError) as exc:
        return None, f"{type(exc).__name__}: {' '.join(str(exc).split())}"
