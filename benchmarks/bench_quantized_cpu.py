"""Benchmark: the ways a bitsandbytes 4-bit model can compute on this CPU, side by side.

    python benchmarks/bench_quantized_cpu.py [--model DIR] [--method nf4] [--dtype auto]

For one model quantized in memory (NF4 by default, the study's dtype), in one process:

- ``reference``: the study's path (``numerics.pin_bnb_cpu_path``): dequantize, then torch linear;
- ``repacked``: bitsandbytes' AVX512-BF16 kernel after its repacking (only on a CPU that has
  AVX512-BF16; the study never uses it);
- ``dense``: the dense model holding the dequantized weights (what the reference computes).

It prints, per path: prefill tokens/s (a batch of 8 x 128 tokens), greedy decoding new tokens/s
(batch 8, 32 new tokens), and the largest logit difference from the dense dequantized model in
the study's dtype and in float32; then the ratios against the reference. The last line is the
figures as JSON. Which CPU it ran on is printed first.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from orderstudy.checkpoints import models, numerics  # noqa: E402
from orderstudy.core import paths  # noqa: E402
from orderstudy.checkpoints import storage  # noqa: E402
from orderstudy.operations.common import OperationContext  # noqa: E402
from orderstudy.operations.quantize import bnb as quantize  # noqa: E402
from orderstudy.operations.quantize import QuantizeParams  # noqa: E402


def cpu_name() -> str:
    """Return the CPU's model name and whether it has native bf16, from /proc/cpuinfo."""
    name = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {torch.get_num_threads()} torch threads, AVX512-BF16: {'yes' if models.cpu_has_native_bf16() else 'no'}"


def prefill_tokens_per_s(model, batch: int, length: int, repeats: int) -> float:
    """Return tokens/s of a forward pass over a ``batch`` x ``length`` block of token ids."""
    ids = torch.randint(100, 1000, (batch, length), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(input_ids=ids[:, :8])  # warm-up (and, on the repacked path, the repacking)
        started = time.perf_counter()
        for _ in range(repeats):
            model(input_ids=ids)
    return batch * length * repeats / (time.perf_counter() - started)


def decode_tokens_per_s(model, batch: int, new_tokens: int) -> float:
    """Return new tokens/s of greedy generation for ``batch`` prompts of 16 tokens."""
    ids = torch.randint(100, 1000, (batch, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.generate(input_ids=ids, max_new_tokens=2, do_sample=False, min_new_tokens=2, pad_token_id=0)
        started = time.perf_counter()
        model.generate(input_ids=ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    return batch * new_tokens / (time.perf_counter() - started)


def run(model_dir: Path, method: str, dtype: str, batch: int, length: int, new_tokens: int, repeats: int) -> dict:
    """Return the figures of every path available on this CPU."""
    import bitsandbytes as bnb

    ctx = OperationContext(dtype=dtype, device="cpu", progress=lambda m: None)
    params = QuantizeParams(method=method)
    sequences = [list(range(200, 200 + length))]
    figures = {"cpu": cpu_name(), "model": str(model_dir), "method": method, "dtype": dtype, "paths": {}}
    with tempfile.TemporaryDirectory(prefix="bench-q-") as tmp:
        quantize.apply(model_dir, Path(tmp) / "q", params, ctx)
        q_dir = Path(tmp) / "q"
        dense = storage.load_dense(q_dir, dtype, "cpu")[0]
        dense32 = storage.load_dense(q_dir, "float32", "cpu")[0]
        paths_to_run = ["reference", "dense"]
        if models.cpu_has_native_bf16():
            paths_to_run.insert(1, "repacked")
        for name in paths_to_run:
            if name == "dense":
                model = dense
            elif name == "reference":
                model = models.load_model(q_dir, dtype, "cpu")
            else:
                from transformers import AutoModelForCausalLM

                # bitsandbytes' own behaviour on this CPU: built with the flag on, repacked at the first forward.
                model = AutoModelForCausalLM.from_pretrained(q_dir, dtype=models.DTYPES[dtype], device_map="cpu").eval()
                assert any(m.support_avx512bf16_for_cpu for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))
            prefill = prefill_tokens_per_s(model, batch, length, repeats)
            decode = decode_tokens_per_s(model, batch, new_tokens)
            figures["paths"][name] = {
                "kernel": numerics.kernel_path(model, "cpu")["kernel"],
                "prefill_tokens_per_s": round(prefill, 1),
                "decode_new_tokens_per_s": round(decode, 2),
                "max_abs_logit_diff_vs_dequantized": numerics.agreement(model, dense, sequences)["max_abs_logit_diff"],
                "max_abs_logit_diff_vs_dequantized_float32": numerics.agreement(model, dense32, sequences)["max_abs_logit_diff"],
            }
    ref = figures["paths"]["reference"]
    for name, f in figures["paths"].items():
        f["prefill_vs_reference"] = round(f["prefill_tokens_per_s"] / ref["prefill_tokens_per_s"], 3)
        f["decode_vs_reference"] = round(f["decode_new_tokens_per_s"] / ref["decode_new_tokens_per_s"], 3)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(paths.MODELS_CACHE / "SmolLM2-135M-Instruct"))
    parser.add_argument("--method", default="nf4", choices=["nf4", "fp4"])
    parser.add_argument("--dtype", default="auto", help="auto: the study's choice on this CPU")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    dtype = models.resolve_dtype(args.dtype, "cpu")
    figures = run(Path(args.model), args.method, dtype, args.batch, args.length, args.new_tokens, args.repeats)
    print(f"CPU: {figures['cpu']}")
    print(f"model: {figures['model']} ({figures['method']}, compute dtype {dtype})")
    print(f"{'path':10s} {'prefill tok/s':>14s} {'decode tok/s':>13s} {'x ref':>6s} {'x ref':>6s} {'|dlogit| dtype':>15s} {'|dlogit| fp32':>14s}")
    for name, f in figures["paths"].items():
        print(f"{name:10s} {f['prefill_tokens_per_s']:14.1f} {f['decode_new_tokens_per_s']:13.2f} "
              f"{f['prefill_vs_reference']:6.2f} {f['decode_vs_reference']:6.2f} "
              f"{f['max_abs_logit_diff_vs_dequantized']:15.5f} {f['max_abs_logit_diff_vs_dequantized_float32']:14.5f}")
    if "repacked" not in figures["paths"]:
        print("repacked: not available (this CPU has no AVX512-BF16; bitsandbytes never repacks here)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
