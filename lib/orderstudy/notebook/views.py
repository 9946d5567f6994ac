"""What the ordering notebook shows, section by section (kept here so the notebook stays thin).

Each ``*_section`` function returns a list of things to display — Markdown, tables, figures —
and ``show`` displays them (figures as PNG). Everything is read from the step summaries the run
returns, the states' records (``states/<key>/record.json``) and the stored evaluation, so a
notebook executed again, or opened in JupyterLab, shows what was run.
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

from . import step_figures
from ..checkpoints.inspect import PARTS
from ..core.benchmark import get_benchmark, trait
from ..core.operation import get_operation
from ..core.plan import BASE, parent, parse_ordering
from ..operations import finetune, prune, quantize

ANSWERS_SHOWN = 5


class Caption(str):
    """A figure's caption: shown as Markdown in italics under it."""


def show(items) -> None:
    """Display each item: figures as PNG images, captions and text as Markdown, the rest as IPython would."""
    from IPython.display import Image, Markdown, display

    for item in items:
        if isinstance(item, Figure):
            display(Image(data=step_figures.png_bytes(item), format="png"))
        elif isinstance(item, Caption):
            display(Markdown(f"<small><i>{item}</i></small>"))
        elif isinstance(item, str):
            display(Markdown(item))
        else:
            display(item)


def header(study, ordering: str) -> str:
    """Return a Markdown paragraph saying what this notebook runs."""
    ops = parse_ordering(ordering)
    steps = " → ".join(get_operation(o).name for o in ops) or "no operation (the base model)"
    family = ""
    if study.family:
        op = get_operation(study.family_operation)
        family = (f" · **family** `{study.family}` ({op.name} by {study.family}; the study's families: "
                  f"{', '.join(study.families)})")
    return (f"**Study** `{study.params.study}` · **ordering** `{ordering}`: {steps}{family}  \n"
            f"**model** `{study.params.model.source}` · **device** {study.device} · **dtype** {study.dtype} · "
            f"**params** `{study.params_file.name}` (hash {study.params.hash()})"
            + (f"  \n**changed in this notebook**, so the result goes beside the study's, to "
               f"`{study.result_path(ordering).relative_to(study.paths.dir.parent)}`" if study.changed else ""))


# -- a step -----------------------------------------------------------------------------------

def step_title(ordering: str, index: int) -> str:
    """Return the title of step ``index`` of an ordering (0: the base model), under its section's "Step n".

    >>> step_title("F>P>Q", 2)
    'Prune (P): `F` → `F>P`, operation 2 of 3'
    >>> step_title("F", 2)
    'None: `F` has 1 operation'
    >>> step_title("F", 0)
    'The model every operation starts from: `base`'
    """
    ops = parse_ordering(ordering)
    if index == 0:
        return f"The model every operation starts from: `{BASE}`"
    if index > len(ops):
        return f"None: `{ordering}` has {len(ops)} operation{'s' if len(ops) != 1 else ''}"
    op = ops[index - 1]
    before, after = ">".join(ops[:index - 1]) or BASE, ">".join(ops[:index])
    return f"{get_operation(op).name.capitalize()} ({op}): `{before}` → `{after}`, operation {index} of {len(ops)}"


def step_section(study, ordering: str, step: dict | None, index: int) -> list:
    """Return the heading of a step, whether its state was built or reused, and its parameters as run."""
    title = f"### {step_title(ordering, index)}"
    if step is None:
        return [title]
    record = study.store.state(step["state"]).record()
    if step["reused"]:
        status = (f"**Reused**: this state was already in the store (built in {record['seconds']:.1f} s by an "
                  "earlier run or cell); nothing was recomputed.")
    else:
        status = f"**Built** now in {record['seconds']:.1f} s."
    facts = (f"{status}  \nState `{step['state']}`, key `{step['key']}` · {record['size_bytes'] / 2**20:.2f} MiB on disk · "
             f"{step['n_params']:,} parameters · {'quantized' if record['quantized'] else 'full precision'} "
             f"({', '.join(sorted({d for p in record['parts']['parts'].values() if isinstance(p, dict) for d in p['dtypes']}))})")
    what = "The `model` section of the params file" if step["operation"] is None else \
        f"The `{get_operation(step['operation']).section}` parameters as run"
    return [title, facts, f"{what} (seed {study.store.build_seed(step['state'])}, dtype {record['dtype']}):", params_table(record)]


def params_table(record: dict) -> pd.DataFrame:
    """Return the parameters a state was made with, one row each, and the data it read."""
    rows = [{"parameter": k, "value": _cell(v)} for k, v in record["params"].items()]
    rows += [{"parameter": f"input: {k}", "value": _cell(v)} for k, v in (record.get("inputs") or {}).items()]
    return pd.DataFrame(rows).set_index("parameter")


def _cell(value) -> str:
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def step_effect(study, step: dict | None) -> list:
    """Return what a step did to the model: figures and tables for its operation, each with a caption."""
    if step is None:
        return []
    state = study.store.state(step["state"])
    record = state.record()
    info = record["info"]
    if step["operation"] is None:
        return ["Bytes on disk and parameters by part of the model:", parts_table(None, record)]
    before = study.store.state(parent(step["state"])).record()
    parts = parts_table(before, record)
    items = EFFECT_VIEWS.get(step["operation"], _record_effect)(step, info)
    items += [step_figures.parts_figure(parts, parent(step["state"]), step["state"]), Caption(
        f"Size on disk and parameters of each part of the model, before ({parent(step['state'])}) and after "
        f"({step['state']}) this step: the embedding, the decoder layers, the final norm and the output head "
        "(\"tied\" when it shares the embedding's weights). A quantized weight counts its unpacked parameters.")]
    items += [parts]
    return items


def _finetune_effect(step: dict, info: dict) -> list:
    """Return a fine-tune's loss curves and its before-and-after probes."""
    items: list = [step_figures.loss_figure(info, step["state"]), Caption(
        "The training loss of each optimizer step (on that step's batch, so it jumps) and the loss on the "
        f"{_count(info['validation_examples'], 'held-out pair')} before training (step 0) and after. Losses are on the "
        "answer tokens only. The held-out loss going down means the model learned something that carries over "
        "to pairs it did not train on.")]
    items += [probes_markdown(step.get("probes"))]
    return items


def _prune_effect(step: dict, info: dict) -> list:
    """Return what a pruning kept and how the removed weights scored."""
    items: list = []
    shape = info["shape_before"]
    items += [step_figures.kept_figure(info, shape), Caption(_kept_caption(info))]
    items += [step_figures.importance_figure(info), Caption(_importance_caption(info))]
    return items


def _quantize_effect(step: dict, info: dict) -> list:
    """Return how far each quantized weight is from the one it replaced."""
    items: list = []
    error = info["weight_error"]
    items += [step_figures.quantization_error_figure(info), Caption(
        f"How far each quantized weight matrix is from the one it replaced: ‖W − deq(Q(W))‖ / ‖W‖ (Frobenius "
        f"norms), {info['quantized_modules']} linear layers quantized as {info['method']}, mean "
        f"{100 * error['mean']:.1f}%, largest {100 * error['max']:.1f}%. Layers with few input columns per "
        "quantization block, or with outlier weights, lose more. Modules left in full precision "
        f"({', '.join(info['skip_modules']) or 'none'}) and the embedding are not shown.")]
    return items


def _record_effect(step: dict, info: dict) -> list:
    """Return what an operation with no view of its own recorded, one row per entry of its record."""
    rows = [{"entry": k, "value": _cell(v)} for k, v in info.items()]
    return [f"What the {get_operation(step['operation']).name} step recorded:",
            pd.DataFrame(rows, columns=["entry", "value"]).set_index("entry")]


# What each operation's step shows; an operation without one gets its record as a table.
EFFECT_VIEWS = {finetune.SPEC.letter: _finetune_effect, prune.SPEC.letter: _prune_effect,
                quantize.SPEC.letter: _quantize_effect}


def parts_table(before: dict | None, after: dict) -> pd.DataFrame:
    """Return parameters, MiB and storage (dtype, quantization) of each part of the model, before and after."""
    sides = {"before": before, "after": after} if before is not None else {"": after}
    rows = []
    for part in PARTS:
        row = {"part": part}
        present = False
        for side, record in sides.items():
            entry = record["parts"]["parts"].get(part) if record else None
            suffix = f" {side}" if side else ""
            if entry == "tied":
                row.update({f"parameters{suffix}": None, f"MiB{suffix}": 0.0, f"stored{suffix}": "tied to embed_tokens"})
                present = True
            elif entry:
                stored = "/".join(entry["dtypes"]) + (f" ({entry['quantization']})" if entry.get("quantization") else "")
                row.update({f"parameters{suffix}": entry["parameters"], f"MiB{suffix}": round(entry["bytes"] / 2**20, 3),
                            f"stored{suffix}": stored})
                present = True
            else:
                row.update({f"parameters{suffix}": None, f"MiB{suffix}": None, f"stored{suffix}": "—"})
        if present:
            rows.append(row)
    total = {"part": "all files"}
    for side, record in sides.items():
        suffix = f" {side}" if side else ""
        total.update({f"parameters{suffix}": record["parts"]["parameters"],
                      f"MiB{suffix}": round(record["size_bytes"] / 2**20, 3), f"stored{suffix}": ""})
    frame = pd.DataFrame(rows + [total]).set_index("part")
    for column in [c for c in frame.columns if c.startswith("parameters")]:
        frame[column] = frame[column].astype("Int64")
    return frame


def _kept_caption(info: dict) -> str:
    if "kept_channels_by_layer" in info:
        return ("What width pruning kept, layer by layer (rows). Left: the MLP's intermediate channels, in "
                f"{step_figures.CHANNEL_BINS} bins of channel index, colour = fraction of the bin kept; every layer "
                "keeps the same number, so the checkpoint stays a standard one. Right: attention heads, removed in "
                "whole key/value groups so grouped-query attention stays valid (yellow kept, purple removed).")
    if "layers_removed" in info:
        return f"Depth pruning removed decoder layers {info['layers_removed']} (purple) and kept the others (yellow)."
    return ("The fraction of each linear layer's weights that pruning kept (set to zero: the rest), layer by layer; "
            "the tensors keep their shape.")


def _importance_caption(info: dict) -> str:
    if "channel_score_histogram" in info:
        how = ("the size of its contribution to the layer's output on calibration text" if info.get("importance") == "activation"
               else "the product of the norms of its gate row, up row and down column")
        return (f"The importance scores the pruning ranked by. Left: every MLP channel of every layer ({how}), on a "
                "log scale; the blue ones were kept, the red ones removed (each layer keeps its own best, so the "
                "colours overlap where layers differ). Right: each key/value group's score (its value rows times its "
                "heads' output columns), by layer.")
    if "angular_distances" in info:
        return ("Each layer's angular distance between its input and output hidden states on calibration text: the "
                "layers that change the hidden state least (red) were removed.")
    return f"The score of every weight ({info.get('score', '|W|')}), log scale: blue kept, red set to zero."


def probes_markdown(probes: dict | None) -> str:
    """Return the held-out prompts and the answers before and after the fine-tune, as a Markdown table."""
    if not probes or not probes.get("items"):
        return "_No held-out prompts to show._"
    where = ("held-out fine-tuning pairs (never trained on, never in the evaluation sample)" if probes["held_out"]
             else "training pairs (finetune.validation_fraction is 0: nothing is held out)")
    rows = [[_short(p["prompt"], 160), _short(p["gold"], 100), _short(p["before"], 120), _short(p["after"], 120)]
            for p in probes["items"]]
    return (f"**The same prompts before and after.** {_count(len(rows), 'prompt')} from {where}, answered greedily (at most "
            f"{probes['new_tokens']} new tokens, through the chat template as the evaluation asks):\n\n"
            + markdown_table(["prompt", "gold answer", "before", "after"], rows))


def _count(n: int, noun: str) -> str:
    """Return ``n noun`` with the noun in the plural when needed.

    >>> _count(1, "held-out pair"), _count(3, "prompt")
    ('1 held-out pair', '3 prompts')
    """
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def markdown_table(header: list[str], rows: list[list]) -> str:
    """Return a Markdown table; pipes in cells are escaped.

    >>> print(markdown_table(["a", "b"], [["x|y", 1]]))
    | a | b |
    |---|---|
    | x\\|y | 1 |
    """
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# -- the evaluation ---------------------------------------------------------------------------

def evaluation_section(study, scores: dict) -> list:
    """Return the benchmark scores, every task's score with its interval, and how the evaluation ran."""
    confidence = study.params.report.confidence
    # Aggregated once, when the evaluation was summarized: the stored scores are the result file's.
    benchmarks = scores.get("benchmarks", {})
    tasks = task_scores(benchmarks, scores["items"], confidence, study.suite.lawbench_sources)
    runtime = scores.get("runtime") or {}
    where = (f"read from the store (this state was evaluated before, in {scores['seconds']:.1f} s)" if scores["reused"]
             else f"evaluated now in {scores['seconds']:.1f} s")
    items = [f"Scores {where}, in percent; each benchmark's score is aggregated from its tasks' as follows: "
             + "; ".join(f"{get_benchmark(b).display_name}, {v.get('aggregation', '')}" for b, v in benchmarks.items()) + ".",
             benchmark_table(benchmarks),
             step_figures.task_scores_figure(tasks, confidence), Caption(
                 f"Every task's score (dots) with its {confidence:.0%} interval from the task's sampled items (Wilson, "
                 "as the report's); the dashed line is the benchmark's score. With one item a task has no interval, "
                 "and with a few the interval is wide: read differences between tasks with care."),
             "Every task: score, interval, items scored, the share of answers LawBench could not use "
             "(`abstention_pct`), how many tokens it could generate (`max_new_tokens`) and whether its gold answers "
             "need more (`capped`: its score can only understate the model); for LawBench, where its items come from "
             "(`items_from`: LawBench's own, or written for this project where the packaged data lacks the task).",
             tasks.drop(columns=["benchmark_score"]),
             f"**How the evaluation ran**: {evaluated_as(runtime)}; batch sizes and speed by phase:",
             runtime_table(scores)]
    return items


def evaluated_as(runtime: dict) -> str:
    """Return in words which engine scored the state, and what it scored (the state, or an equivalent of it)."""
    text = f"engine `{runtime.get('backend')}` ({runtime.get('engine_reason') or runtime.get('backend_reason')})"
    copy = runtime.get("equivalent_copy")
    if copy:
        text += f", scoring an evaluation-equivalent dense copy of {copy['copy_of']} (agreement {copy['agreement_with_state']})"
    elif (runtime.get("numerics") or {}).get("evaluated_as"):
        text += f", scoring {runtime['numerics']['evaluated_as']}"
    return text


def benchmark_table(benchmarks: dict) -> pd.DataFrame:
    """Return one row per benchmark of an evaluation's aggregated scores: score (percent), items, how it was scored."""
    return pd.DataFrame([{"benchmark": b, "score_pct": v["score"], "items": v["n_items"], "scoring": v["scoring"]}
                         for b, v in benchmarks.items()])


def task_scores(benchmarks: dict, items: dict, confidence: float, lawbench_sources: dict | None = None) -> pd.DataFrame:
    """Return one row per task of an evaluation's aggregated scores: score (percent), its interval, items, abstention rate.

    ``lawbench_sources`` (the suite's): a LawBench task's ``items_from`` says whether its items are
    LawBench's or written for this project.
    """
    def items_from(bench: str, task: str) -> str:
        source = (lawbench_sources or {}).get(task) if bench == "lawbench" else None
        if source is None:
            return ""
        return "LawBench" if source.get("lawbench") else "written for this project (not LawBench's) ‡"

    rows = []
    for bench, v in benchmarks.items():
        for task, t in v["tasks"].items():
            low, high = task_interval(items[bench][task], task, t["score"], confidence, continuous=not trait(bench, "bounded"))
            rows.append({"benchmark": bench, "task": task, "score_pct": t["score"], "ci_low": low, "ci_high": high,
                         "items": t["n"], "abstention_pct": None if "abstention_rate" not in t else round(100 * t["abstention_rate"], 1),
                         "max_new_tokens": t.get("max_new_tokens"), "capped": t.get("capped"),
                         "items_from": items_from(bench, task), "benchmark_score": v["score"]})
    return pd.DataFrame(rows)


def task_interval(item_scores: dict[str, float], task: str, reported: float, confidence: float,
                  continuous: bool = False) -> tuple[float, float]:
    """Return the interval (percent) of one task's score for one model; NaNs with fewer than two items.

    The report's score interval (``report.intervals.score_interval``: Wilson with the items'
    effective sample size) on a benchmark of this one task, around the reported score (it differs
    from the item mean for a corpus-level metric such as LawBench 2-1). ``continuous``: a
    divergence's task (``kl``), its score and interval in its own unit (the t interval of a mean).
    """
    import numpy as np

    from ..report import intervals

    values = np.array(list(item_scores.values()), dtype=float)
    if values.size < intervals.MIN_ITEMS_PER_TASK:
        return math.nan, math.nan
    design = intervals.Design(tasks=(task,), task_of=np.zeros(values.size, dtype=int), weights=np.array([1.0]),
                              continuous=continuous)
    arm = intervals.Arm(values=values[None, :], reported=np.array([reported / design.unit]))
    estimate = intervals.score_interval(design, arm, confidence)
    return estimate.low, estimate.high


def runtime_table(scores: dict) -> pd.DataFrame:
    """Return how each evaluation phase ran: backend, items, batch size, seconds, new tokens per second."""
    runtime = scores.get("runtime") or {}
    rows = []
    for phase in ("loglikelihood", "generation"):
        if phase in runtime:
            r = runtime[phase]
            rows.append({"phase": phase, "engine": r.get("engine", runtime["backend"]), "items": r["items"],
                         "batch_size": r["batch_size"], "longest_prompt_tokens": r.get("longest_prompt_tokens"),
                         "seconds": r["seconds"], "prompt_tokens": r.get("prompt_tokens"), "new_tokens": r.get("new_tokens"),
                         "new_tokens_per_s": r.get("new_tokens_per_s"), "tokens_per_s": r.get("tokens_per_s")})
    return pd.DataFrame(rows)


def lawbench_answers(study, scores: dict, count: int = ANSWERS_SHOWN) -> str:
    """Return a few scored LawBench answers as Markdown: question, gold answer, the model's answer, its score.

    The first sampled item of each of the first ``count`` tasks, so every ordering shows the same
    questions.
    """
    import json

    predictions = scores.get("lawbench_predictions") or {}
    items = (scores.get("items") or {}).get("lawbench", {})
    if not predictions:
        return "_LawBench is not among this study's benchmarks._"
    rows = []
    for task, name in study.suite.benchmarks["lawbench"].items():
        if len(rows) == count or task not in predictions:
            continue
        lines = (study.suite.tasks_dir / "data" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        first = json.loads(lines[0])
        score = items.get(task, {}).get(first["id"])
        rows.append([task, _short(first["prompt"], 200), _short(first["answer"], 80),
                     _short(predictions[task].get(first["id"], ""), 160) or "_(empty)_",
                     "left out by LawBench" if score is None else f"{score:.2f}"])
    return ("**A few scored LawBench answers** (the first sampled item of each of the first tasks; score 0–1 by "
            "LawBench's rule for the task):\n\n" + markdown_table(["task", "question", "gold", "model's answer", "score"], rows))


# -- the result -------------------------------------------------------------------------------

def steps_table(result: dict) -> pd.DataFrame:
    """Return one row per state on the ordering's path."""
    rows = []
    for s in result["steps"]:
        rows.append({
            "state": s["state"], "operation": get_operation(s["operation"]).name if s["operation"] else BASE,
            "reused": s["reused"], "size_MiB": round(s["size_bytes"] / 2**20, 2),
            "parameters": s["n_params"], "quantized": s["quantized"],
            "build_s": s["build_seconds"], "key": s["key"],
        })
    return pd.DataFrame(rows)


def result_overview(result: dict) -> pd.Series:
    """Return the headline fields of a result, with how its evaluation ran (backend, batch, speed)."""
    keys = ("ordering", "status", "size_bytes", "n_params", "quantized", "device", "dtype", "params_hash", "finished_at")
    overview = {k: result.get(k) for k in keys}
    runtime = (result.get("evaluation") or {}).get("runtime") or {}
    if runtime:
        overview["evaluation_engine"] = f"{runtime['backend']} ({runtime.get('engine_reason', '')})"
        for phase in ("generation", "loglikelihood"):
            if phase in runtime:
                overview[f"{phase}_engine"] = runtime[phase].get("engine", runtime["backend"])
                overview[f"{phase}_batch_size"] = runtime[phase]["batch_size"]
        if runtime.get("equivalent_copy"):
            copy = runtime["equivalent_copy"]
            overview["evaluated_as"] = f"evaluation-equivalent dense copy ({copy['copy_of']})"
            overview["copy_agreement"] = copy["agreement_with_state"]
        if "generation" in runtime:
            overview["new_tokens_per_s"] = runtime["generation"].get("new_tokens_per_s")
    return pd.Series(overview)
