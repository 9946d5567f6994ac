"""Benchmark each operation method: wall time, peak memory, size on disk, parameters.

    python benchmarks/bench_operations.py [--model DIR] [--quick] [--methods P:wanda Q:nf4 ...]

Every method runs in its own Python process on the default model (SmolLM2-135M-Instruct in
float32), so its peak resident memory (``ru_maxrss``) is its own: loading, the operation and
saving, plus the interpreter with torch imported. The time is the operation's ``apply`` alone.
Pruning and quantizing start from the base model; LoRA too, and QLoRA from the NF4 model the
``Q:nf4`` run makes (``F:gptq-requantize``: LoRA on the ``Q:gptq`` model, merged, GPTQ run
again on the merged model). Fine-tuning runs 2 steps; calibration (pruning's and GPTQ's) uses the
default 32 sequences of 256 tokens. Training and calibration text are MMLU jurisprudence questions with their answers (short
enough for 256 tokens; ``make data``). ``--quick`` shrinks everything for a tiny model, on one thread.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_MODEL = "cache/models/SmolLM2-135M-Instruct"
METHODS = ["P:width", "P:mlp_channels", "P:depth", "P:magnitude", "P:wanda", "P:2:4", "P:wanda+sparse",
           "Q:nf4", "Q:fp4", "Q:int8", "Q:gptq",
           "F:lora", "F:qlora-dequantize", "F:qlora-requantize", "F:qlora-adapter", "F:gptq-requantize"]
# The quantized state each fine-tune on a quantized model starts from (made first, in its own process).
QUANTIZED_SOURCE = {"F:qlora": "Q:nf4", "F:gptq": "Q:gptq"}


def operation_params(method: str, quick: bool):
    """Return ``(operation letter, params)`` for a method name of ``METHODS``."""
    from orderstudy.operations.finetune import FinetuneParams
    from orderstudy.operations.prune import PruneParams
    from orderstudy.operations.quantize import QuantizeParams

    op, name = method.split(":", 1)
    calibration = {"calibration_samples": 4, "calibration_seq_len": 32} if quick else {}
    if op == "P":
        prune_method, _, storage = name.partition("+")
        return "P", PruneParams(method=prune_method, storage=storage or "dense", **calibration)
    if op == "Q":
        if name == "gptq":
            # Groups must divide every layer's input width: SmolLM2-135M's 576 takes 64, the tiny model's 64 takes 32.
            return "Q", QuantizeParams(method="gptq", group_size=32 if quick else 64, **calibration)
        return "Q", QuantizeParams(method=name)
    merge = name.split("-", 1)[1] if "-" in name else "dequantize"
    size = {"batch_size": 2, "lora_r": 4, "validation_fraction": 0.25} if quick else {}
    return "F", FinetuneParams(max_steps=1 if quick else 2, merge=merge, **size)


def examples(count: int) -> list[dict]:
    """Return ``count`` prompt/answer pairs from MMLU's jurisprudence questions."""
    from orderstudy.core import paths

    path = paths.DATA_CACHE / "mmlu" / "jurisprudence.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `make data` first")
    pairs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()[:count]):
        row = json.loads(line)
        options = "\n".join(f"{letter}. {choice}" for letter, choice in zip("ABCD", row["choices"]))
        answer = "ABCD"[row["answer"]]
        pairs.append({"id": f"mmlu/jurisprudence/{n}", "prompt": f"{row['question']}\n{options}",
                      "answer": f"{answer}. {row['choices'][row['answer']]}"})
    return pairs


def run_one(method: str, src: Path, dst: Path, quick: bool) -> dict:
    """Apply one method (in this process) and return its figures."""
    from orderstudy.checkpoints import models
    from orderstudy.core.operation import get_operation
    from orderstudy.operations.common import OperationContext

    op, params = operation_params(method, quick)
    pairs = examples(12 if quick else 40)
    ctx = OperationContext(dtype="float32", device="cpu", seed=0, training_examples=pairs,
                           calibration_examples=pairs, requantize_params=operation_params("Q:gptq", quick)[1],
                           requantize_examples=pairs, progress=lambda message: None)
    started = time.perf_counter()
    record = get_operation(op).apply(src, dst, params, ctx)
    seconds = time.perf_counter() - started
    return {"method": method, "seconds": round(seconds, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "size_mib": round(models.dir_size_bytes(dst) / 2**20, 2), "parameters": record["parameters"]}


def run_in_child(method: str, src: Path, dst: Path, quick: bool) -> dict:
    """Run one method in a fresh Python process and return its figures."""
    command = [sys.executable, __file__, "--child", method, "--src", str(src), "--dst", str(dst)]
    if quick:
        command.append("--quick")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{method} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    """Return the figures as an aligned text table."""
    lines = [f"{'method':22s} {'seconds':>8s} {'peak RSS MiB':>13s} {'size MiB':>9s} {'parameters':>12s}"]
    for r in rows:
        lines.append(f"{r['method']:22s} {r['seconds']:8.2f} {r['peak_rss_mib']:13.1f} {r['size_mib']:9.2f} "
                     f"{r['parameters']:12,d}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="checkpoint directory (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny settings, for a tiny model")
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS, metavar="METHOD",
                        help=f"methods to run (default: all of {' '.join(METHODS)})")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--dst", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        if args.quick:
            import torch

            torch.set_num_threads(1)  # a tiny model gains nothing from more, and cores may be shared
        print(json.dumps(run_one(args.child, Path(args.src), Path(args.dst), args.quick)))
        return 0

    from orderstudy.core import paths

    model = paths.resolve(args.model)
    if not (model / "config.json").is_file():
        raise SystemExit(f"{model}: not a checkpoint directory (no config.json); run `make model` or pass --model")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-operations-") as tmp:
        work = Path(tmp)
        sources = {q: work / q.replace(":", "-") for q in QUANTIZED_SOURCE.values()}
        order = sorted(args.methods, key=lambda m: (m not in sources, METHODS.index(m)))
        for prefix, q in QUANTIZED_SOURCE.items():
            if any(m.startswith(prefix) for m in order) and q not in order:
                run_in_child(q, model, sources[q], args.quick)  # a fine-tune's source, not itself reported
        for method in order:
            quantized = next((q for prefix, q in QUANTIZED_SOURCE.items() if method.startswith(prefix)), None)
            src = sources[quantized] if quantized else model
            dst = sources.get(method) or work / method.replace(":", "-").replace("+", "-")
            rows.append(run_in_child(method, src, dst, args.quick))
            print(f"  {method}: {rows[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    rows.sort(key=lambda r: METHODS.index(r["method"]))
    from orderstudy.checkpoints import inspect as checkpoint_info, models

    base = checkpoint_info.describe(model)
    print(f"model: {model} (float32{', --quick' if args.quick else ''}): "
          f"{models.dir_size_bytes(model) / 2**20:.2f} MiB on disk, {base['parameters']:,} parameters")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
