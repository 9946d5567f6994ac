"""Small tables and plots the ordering notebook shows (kept here so the notebook stays thin)."""

from __future__ import annotations

import pandas as pd

from .plan import OPERATION_NAMES, parse_ordering


def header(study, ordering: str) -> str:
    """Return a Markdown paragraph saying what this notebook runs."""
    ops = parse_ordering(ordering)
    steps = " → ".join(OPERATION_NAMES[o] for o in ops) or "no operation (the base model)"
    return (f"**Study** `{study.params.study}` · **ordering** `{ordering}`: {steps}  \n"
            f"**model** `{study.params.model.source}` · **device** {study.device} · **dtype** {study.dtype} · "
            f"**params** `{study.params_file.name}` (hash {study.params.hash()})")


def steps_table(result: dict) -> pd.DataFrame:
    """Return one row per state on the ordering's path."""
    rows = []
    for s in result["steps"]:
        rows.append({
            "state": s["state"], "operation": OPERATION_NAMES.get(s["operation"], "base"),
            "reused": s["reused"], "size_MiB": round(s["size_bytes"] / 2**20, 1),
            "parameters": s["n_params"], "quantized": s["quantized"],
            "build_s": s["build_seconds"], "key": s["key"],
        })
    return pd.DataFrame(rows)


def finetune_losses(result: dict):
    """Plot the training loss of each fine-tuning step; return the figure (None if no F step)."""
    import matplotlib.pyplot as plt

    ft = [s for s in result["steps"] if s.get("train_losses")]
    if not ft:
        print("No fine-tuning step on this ordering.")
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    for s in ft:
        ax.plot(range(1, len(s["train_losses"]) + 1), s["train_losses"], marker=".",
                label=f"{s['state']} (validation {s['validation_loss_before']:.3f} → {s['validation_loss_after']:.3f})")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def benchmark_table(result: dict) -> pd.DataFrame:
    """Return one row per benchmark: score (percent), items, how it was scored."""
    return pd.DataFrame([{"benchmark": b, "score_pct": v["score"], "items": v["n_items"], "scoring": v["scoring"]}
                         for b, v in result.get("benchmarks", {}).items()])


def task_table(result: dict) -> pd.DataFrame:
    """Return one row per task of every benchmark."""
    rows = []
    for b, v in result.get("benchmarks", {}).items():
        for task, t in v["tasks"].items():
            rows.append({"benchmark": b, "task": task, "score_pct": t["score"], "items": t["n"],
                         "abstention_pct": None if "abstention_rate" not in t else round(100 * t["abstention_rate"], 1)})
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
