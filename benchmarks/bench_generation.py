"""Benchmark evaluation speed: new tokens per second on the study's own generation workload.

    python benchmarks/bench_generation.py params/smoke.yaml [--items 32] [--backends hf,vllm]
        [--batch-sizes auto,1,8] [--cache dynamic,static] [--json out.json]

Takes a sample of the study's LawBench prompts (the evaluation's generation requests, chat
template included), runs them on the study's base model through lm-eval's model objects with
each backend, batch size and KV cache asked for, and prints one row per run: prompts, prompt
tokens, new tokens, seconds and new tokens per second. A backend that cannot run here (vLLM off
CUDA or not installed) gets a row saying why. Then it prints the whole study's time: measured
(``outputs/<study>/last_run.json``, the notebooks' wall time) when the study has been run, and
``python -m orderstudy estimate``'s figure otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from orderstudy import atomic, backends, models, throughput
from orderstudy.runner import preflight
from orderstudy.study import Study


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("params")
    parser.add_argument("--items", type=int, default=32, help="prompts in the sample (default 32)")
    parser.add_argument("--backends", default="hf,vllm", help="comma-separated: hf, vllm (default both)")
    parser.add_argument("--batch-sizes", default="auto", help="comma-separated batch sizes for hf; auto = the evaluation's")
    parser.add_argument("--cache", default="dynamic", help="comma-separated KV caches for hf: dynamic, static")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    study = Study(args.params)
    preflight(study)
    params = study.suite.params
    model_dir = throughput.base_model_dir(study)
    tokenizer = models.load_tokenizer(model_dir)
    config = models.read_config(model_dir)
    generation, _ = throughput.workload(study.suite)
    if not generation:
        print(f"{study.params_file}: the study has no generation requests to time", file=sys.stderr)
        return 2
    prompts = throughput.sample(generation, args.items, study.params.seed)
    print(f"study {study.params.study}: {len(prompts)} of {len(generation)} generation prompts per model, "
          f"max_new_tokens {throughput.typical_budget(study.suite)} (mean task budget), device {study.device}, dtype {study.dtype}", flush=True)

    rows, model = [], None
    for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if name == "vllm":
            try:
                choice = backends.choose_backend("vllm", study.device, model_dir)
            except backends.BackendError as exc:
                rows.append({"backend": "vllm", "skipped": str(exc)})
                continue
            if choice.name != "vllm":
                rows.append({"backend": "vllm", "skipped": choice.reason})
                continue
            lm = backends.make_lm(choice, model_dir=model_dir, device=study.device, dtype=study.dtype,
                                  batch_size=0, seed=0, params=params)
            run = throughput.measure_generation(lm, tokenizer, prompts, throughput.typical_budget(study.suite), study.suite.chat_template)
            backends.release(lm)
            rows.append(_row("vllm", "scheduler", "paged", run))
            continue
        if name != "hf":
            parser.error(f"--backends: unknown backend {name!r}; use hf and/or vllm")
        model = model or models.load_model(model_dir, study.dtype, study.device)
        for batch_text in args.batch_sizes.split(","):
            batch = (throughput.batch_size_for(params, config, study, tokenizer, prompts, study.suite.chat_template, False)
                     if batch_text.strip() == "auto" else int(batch_text))
            for cache in [c.strip() for c in args.cache.split(",")]:
                run_params = params.model_copy(update={"cache_implementation": cache})
                model.generation_config.cache_implementation = None
                lm = backends.make_lm(backends.Backend("hf", "benchmark"), model_dir=model_dir, model=model,
                                      tokenizer=tokenizer, device=study.device, dtype=study.dtype, batch_size=batch,
                                      seed=0, params=run_params)
                run = throughput.measure_generation(lm, tokenizer, prompts, throughput.typical_budget(study.suite), study.suite.chat_template)
                rows.append(_row("hf", batch, cache, run))

    print(f"\n{'backend':8s} {'batch':>9s} {'cache':>8s} {'prompts':>8s} {'prompt_tok':>11s} {'new_tok':>8s} "
          f"{'seconds':>8s} {'new_tok/s':>10s}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['backend']:8s} skipped: {r['skipped']}")
            continue
        print(f"{r['backend']:8s} {str(r['batch_size']):>9s} {r['cache']:>8s} {r['prompts']:8d} {r['prompt_tokens']:11,d} "
              f"{r['new_tokens']:8,d} {r['seconds']:8.2f} {r['new_tokens_per_s']:10.1f}")

    study_time = _study_time(study)
    print(f"\nwhole study: {study_time['text']}")
    if args.json:
        atomic.write_json(Path(args.json), {"study": study.params.study, "device": study.device, "dtype": study.dtype,
                                      "rows": rows, "study_time": study_time})
    return 0


def _row(backend: str, batch, cache: str, run: dict) -> dict:
    run = dict(run)
    run.pop("answers")
    return {"backend": backend, "batch_size": batch, "cache": cache, **run}


def _study_time(study) -> dict:
    path = study.paths.dir / "last_run.json"
    if path.is_file():
        last = json.loads(path.read_text())
        ran = {o: r["seconds"] for o, r in last["orderings"].items() if r.get("ran")}
        return {"measured_s": last["seconds"], "orderings_run": len(ran),
                "text": f"{last['seconds']:.1f} s measured for its last run ({len(ran)} of "
                        f"{len(last['orderings'])} orderings ran; {path})"}
    result = throughput.estimate(study, items=8)
    return {"estimated_s": result["estimated_seconds"]["total"],
            "text": f"not run yet; estimated {result['estimated_seconds']['total']:.0f} s "
                    "(python -m orderstudy estimate, every state priced like the base)"}


if __name__ == "__main__":
    sys.exit(main())
