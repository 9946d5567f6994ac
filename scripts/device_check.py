#!/usr/bin/env python3
"""The device check's Python steps (scripts/device_check.sh runs them, each under a time limit).

    device_check.py machine [--allow-cpu] [--json PATH]   what this machine is: CUDA, versions, a bitsandbytes op
    device_check.py params SRC --out DST --model DIR --data DIR [--device cuda]
                                                          SRC with the model and data paths of this run
    device_check.py results STUDY_DIR [--json PATH]       per-ordering status and timings, then the main table

Only the standard library, PyYAML and (for ``machine``) what it reports on are imported, so each
step says clearly what is missing instead of failing on an import.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

# What the device check reports the versions of (and where each was imported from: kit or machine).
PACKAGES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "lm_eval", "datasets", "papermill",
            "ipykernel", "pydantic", "numpy", "pandas", "pyarrow", "tokenizers", "huggingface_hub")


def machine(allow_cpu: bool, json_path: Path | None) -> int:
    """Print what this machine runs the study with; return 3 if CUDA is needed and missing."""
    info: dict = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform(),
                  "cpus": os.cpu_count(), "packages": {}}
    for name in PACKAGES:
        try:
            module = importlib.import_module(name)
            info["packages"][name] = {"version": getattr(module, "__version__", "?"),
                                      "from": str(Path(module.__file__).parent.parent)}
        except Exception as exc:  # report every package, even when one is broken
            info["packages"][name] = {"version": None, "error": f"{type(exc).__name__}: {exc}"[:300]}
    for name, p in info["packages"].items():
        print(f"  {name:16s} {p['version'] or 'NOT IMPORTABLE: ' + p['error']}  {p.get('from', '')}")
    rc = 0
    try:
        import torch

        cuda = torch.cuda.is_available()
        info["torch_cuda"] = torch.version.cuda
        info["cuda_available"] = cuda
        if cuda:
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                           "capability": f"{props.major}.{props.minor}", "multiprocessors": props.multi_processor_count,
                           "bf16": torch.cuda.is_bf16_supported(), "count": torch.cuda.device_count()}
        print(f"torch {torch.__version__} (CUDA {torch.version.cuda}): CUDA available: {cuda}"
              + (f"; {info['gpu']}" if cuda else ""))
        if not cuda and not allow_cpu:
            print("FAILED: torch sees no CUDA device on this machine; the device check needs one "
                  "(DEVICE_CHECK_ALLOW_CPU=1 runs it on the CPU, for testing the script)")
            rc = 3
        else:
            info["bitsandbytes_check"] = _bitsandbytes_check("cuda" if cuda else "cpu")
            print(f"bitsandbytes NF4 round trip and matmul on {'cuda' if cuda else 'cpu'}: {info['bitsandbytes_check']}")
    except Exception as exc:
        print(f"FAILED: {type(exc).__name__}: {exc}")
        info["error"] = f"{type(exc).__name__}: {exc}"
        rc = 3
    if json_path:
        json_path.write_text(json.dumps(info, indent=1) + "\n")
    return rc


def _bitsandbytes_check(device: str) -> dict:
    """Return the errors of an NF4 round trip and of a 4-bit matmul against its dequantized weights."""
    import bitsandbytes as bnb
    import torch

    torch.manual_seed(0)
    w = torch.randn(1024, 1024, device=device, dtype=torch.bfloat16)
    q, state = bnb.functional.quantize_4bit(w, quant_type="nf4")
    back = bnb.functional.dequantize_4bit(q, state)
    x = torch.randn(16, 1024, device=device, dtype=torch.bfloat16)
    t0 = time.perf_counter()
    y = bnb.matmul_4bit(x, q.t(), quant_state=state)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    reference = x.float() @ back.float().t()
    return {"nf4_relative_error": round(float((back - w).float().norm() / w.float().norm()), 4),
            "matmul_relative_error": round(float((y.float() - reference).norm() / reference.norm()), 4),
            "first_matmul_ms": round(seconds * 1e3, 2)}


def derive_params(src: Path, out: Path, model: Path, data: Path, device: str | None) -> dict:
    """Write ``src`` with this run's model and data paths (absolute) to ``out``; return the params.

    The study's relative paths (``cache/...``) name the repository's cache, which does not travel
    to the device: the kit's copy is unpacked elsewhere. Of the study's seeds it keeps the first.
    """
    import yaml

    params = yaml.safe_load(src.read_text(encoding="utf-8"))
    params.setdefault("model", {})["source"] = str(model.resolve())
    evaluation = params.setdefault("evaluation", {})
    evaluation["lawbench_data"] = str((data / "lawbench").resolve())
    evaluation["mmlu_data"] = str((data / "mmlu").resolve())
    if device:
        params["device"] = device
    # The first seed only: the check's budget is the device's, sized for one run per ordering (the
    # CPU end-to-end tests run the smoke study's seeds).
    if isinstance(params.get("seeds"), list):
        params["seeds"] = params["seeds"][:1]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# {src} with the model and data paths of this device check\n"
                   + yaml.safe_dump(params, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return params


def results(study_dir: Path, json_path: Path | None) -> int:
    """Print each ordering's status, device, timings, size and scores, then the main table."""
    last_run = _read_json(study_dir / "last_run.json")
    ran = last_run.get("orderings", {})
    rows = []
    for path in sorted((study_dir / "results").glob("*.json")):
        r = _read_json(path)
        if not r.get("ordering"):
            continue
        # A run: the ordering, with its seed when the study has several (F>P>Q.seed1, as last_run.json names it).
        o = path.stem.replace("-", ">")
        work_s = sum(s.get("seconds") or 0 for s in r.get("steps", [])) + (r.get("evaluation") or {}).get("seconds", 0)
        rows.append({"ordering": o, "status": r.get("status"), "device": r.get("device"), "dtype": r.get("dtype"),
                     "run_s": ran.get(o, {}).get("seconds"), "work_s": round(work_s, 1),
                     "size_mib": round(r["size_bytes"] / 2**20, 2) if r.get("size_bytes") else None,
                     "scores": {b: v.get("score") for b, v in (r.get("benchmarks") or {}).items()},
                     "error": (r.get("error") or {}).get("message", "")[:200] or None})
    order = list(ran) + sorted({r["ordering"] for r in rows} - set(ran))  # runs, in the order they ran
    rows.sort(key=lambda r: order.index(r["ordering"]))
    print(f"{len(rows)} orderings with a result in {study_dir}"
          + (f"; the run took {last_run['seconds']} s" if "seconds" in last_run else "; the run did not finish (no last_run.json)"))
    print(f"{'run':9s} {'status':7s} {'device':6s} {'dtype':9s} {'run_s':>7s} {'work_s':>7s} {'MiB':>7s}  scores")
    for r in rows:
        scores = " ".join(f"{b}={v:.2f}" for b, v in r["scores"].items() if v is not None)
        print(f"{r['ordering']:9s} {r['status'] or '?':7s} {r['device'] or '?':6s} {r['dtype'] or '?':9s} "
              f"{_fmt(r['run_s']):>7s} {_fmt(r['work_s']):>7s} {_fmt(r['size_mib']):>7s}  {scores}"
              + (f"  ERROR {r['error']}" if r["error"] else ""))
    main_md = study_dir / "tables" / "main.md"
    if main_md.is_file():
        print(f"\n{main_md}:\n{main_md.read_text(encoding='utf-8')}")
    else:
        print(f"\n(no main table: {main_md} is missing)")
    if json_path:
        json_path.write_text(json.dumps({"last_run_seconds": last_run.get("seconds"), "orderings": rows}, indent=1) + "\n")
    ok = rows and all(r["status"] == "ok" for r in rows)
    return 0 if ok and main_md.is_file() else 1


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="device_check.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("machine")
    m.add_argument("--allow-cpu", action="store_true")
    m.add_argument("--json", type=Path)
    p = sub.add_parser("params")
    p.add_argument("src", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--device", choices=["cuda", "cpu", "auto"])
    r = sub.add_parser("results")
    r.add_argument("study_dir", type=Path)
    r.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.command == "machine":
        return machine(args.allow_cpu, args.json)
    if args.command == "params":
        derive_params(args.src, args.out, args.model, args.data, args.device)
        print(f"{args.out}: {args.src} with model {args.model}, data {args.data}" + (f", device {args.device}" if args.device else ""))
        return 0
    return results(args.study_dir, args.json)


if __name__ == "__main__":
    sys.exit(main())
