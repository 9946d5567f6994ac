"""Benchmark evaluation speed on the study's own workload: both engines, and the evaluation's efficiency.

    python benchmarks/bench_generation.py params/demo.yaml [--items 32] [--backends hf,vllm]
        [--batch-sizes auto,1,8] [--cache dynamic,static] [--json out.json]

Takes a sample of the study's LawBench prompts (the evaluation's generation requests, chat
template included), runs them on the study's base model through lm-eval's model objects with
each engine, batch size and KV cache asked for, and prints one row per run: prompts, prompt
tokens, new tokens, seconds and new tokens per second; then vLLM's new tokens/s over
transformers' (at the evaluation's batch size). An engine that cannot run here gets a row saying
why (``make bench-gen`` runs in the vLLM environment, which has both).

With --efficiency (``make bench-gen`` passes it), the **evaluation efficiency**: the base state evaluated as a study evaluates it (its engine,
every benchmark; the engine already started, as for every state after the first of its shape),
tokens processed (prompt and generated) per second, over the tokens per second of one plain
batched forward pass of the same model in the same process (transformers, batch 8 x 256 tokens):
the part of the hardware's speed on this model the evaluation gets. Last, the whole study's
time: measured (``outputs/<study>/last_run.json``) when it has been run, estimated otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from orderstudy.execution.threads import quiet_threads

quiet_threads()   # as `make study` does, before torch (imported by orderstudy.study.study) loads OpenMP

from orderstudy.checkpoints import models  # noqa: E402
from orderstudy.core import atomic  # noqa: E402
from orderstudy.evaluation import backends, throughput  # noqa: E402
from orderstudy.execution.preflight import preflight  # noqa: E402
from orderstudy.study.study import Study  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("params")
    parser.add_argument("--items", type=int, default=32, help="prompts in the sample (default 32)")
    parser.add_argument("--backends", default="hf,vllm", help="comma-separated: hf, vllm (default both)")
    parser.add_argument("--batch-sizes", default="auto", help="comma-separated batch sizes for hf; auto = the evaluation's")
    parser.add_argument("--cache", default="dynamic", help="comma-separated KV caches for hf: dynamic, static")
    parser.add_argument("--efficiency", action="store_true",
                        help="also evaluate the base state as the study does and print the evaluation efficiency")
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
    prompts = throughput.sample(generation, args.items, study.params.sample_seed)
    print(f"study {study.params.study}: {len(prompts)} of {len(generation)} generation prompts per model, "
          f"max_new_tokens {throughput.typical_budget(study.suite)} (mean task budget), device {study.device}, dtype {study.dtype}", flush=True)

    rows, model = [], None
    engines = backends.VllmEngines(study.dtype, study.device, params)
    for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if name == "vllm":
            if backends.vllm_device() != study.device:
                rows.append({"backend": "vllm", "skipped": f"no vLLM build for {study.device} in this environment "
                                                          "(make bench-gen runs in .venv-vllm; make env-vllm)"})
                continue
            lm = engines.lm_for(model_dir)
            run = throughput.measure_generation(lm, tokenizer, prompts, throughput.typical_budget(study.suite), study.suite.chat_template)
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
                lm = backends.make_hf_lm(model=model, tokenizer=tokenizer, device=study.device, batch_size=batch,
                                         params=run_params)
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
    ratio = engine_ratio(rows, throughput.batch_size_for(params, config, study, tokenizer, prompts,
                                                         study.suite.chat_template, False))
    if ratio is not None:
        print(f"\nvLLM / transformers (batch {ratio['hf_batch']}), new tokens/s: {ratio['ratio']:.2f}")

    efficiency = evaluation_efficiency(study, model_dir, tokenizer, engines) if args.efficiency else None
    engines.close()
    if efficiency:
        print(f"\nevaluation efficiency ({efficiency['engine']}): {efficiency['tokens']:,} tokens in "
              f"{efficiency['seconds']:.1f} s = {efficiency['tokens_per_s']:,.0f} tokens/s during the base state's "
              f"evaluation; plain forward (transformers, batch {FORWARD_SHAPE[0]} x {FORWARD_SHAPE[1]}) "
              f"{efficiency['forward_tokens_per_s']:,.0f} tokens/s; efficiency {efficiency['efficiency']:.2f}")

    study_time = _study_time(study)
    print(f"\nwhole study: {study_time['text']}")
    if args.json:
        atomic.write_json(Path(args.json), {"study": study.params.study, "device": study.device, "dtype": study.dtype,
                                            "rows": rows, "ratio": ratio, "efficiency": efficiency,
                                            "study_time": study_time})
    return 0


FORWARD_SHAPE = (8, 256)


def engine_ratio(rows: list[dict], hf_batch: int) -> dict | None:
    """Return vLLM's new tokens/s over transformers' at the evaluation's batch size, when both ran."""
    vllm = [r for r in rows if r["backend"] == "vllm" and "skipped" not in r]
    hf = [r for r in rows if r["backend"] == "hf" and r.get("batch_size") == hf_batch and r.get("cache") == "dynamic"]
    if not vllm or not hf or not hf[0]["new_tokens_per_s"]:
        return None
    return {"hf_batch": hf_batch, "ratio": round(vllm[0]["new_tokens_per_s"] / hf[0]["new_tokens_per_s"], 3)}


def plain_forward_tokens_per_s(model_dir, study, repeats: int = 3) -> float:
    """Return tokens/s of one batched forward pass of the model (the best of ``repeats``), no generation."""
    import time

    import torch

    model = models.load_model(model_dir, study.dtype, study.device)
    vocab = model.config.get_text_config().vocab_size
    ids = torch.randint(0, vocab, FORWARD_SHAPE, generator=torch.Generator().manual_seed(0)).to(study.device)
    best = float("inf")
    with torch.inference_mode():
        model(input_ids=ids[:, :16])  # warm-up
        for _ in range(repeats):
            started = time.perf_counter()
            model(input_ids=ids)
            if study.device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - started)
    del model
    return ids.numel() / best


def evaluation_efficiency(study, model_dir, tokenizer, engines) -> dict:
    """Return tokens processed per second in the base state's evaluation over a plain forward's tokens/s."""
    from orderstudy.evaluation import engine as evaluation

    state = study.get_state("base", show=lambda *a: None)[0]
    kept = engines if study.engine.name == "vllm" else None
    if kept is not None:
        kept.lm_for(state.model_dir)   # started beforehand, as for every state but the first of its shape
    # The base compared with itself, for a study with fidelity benchmarks (kl, flip).
    base = evaluation.Base(state.model_dir, state.key, study.dtype, study.device, is_self=True)
    scores = evaluation.evaluate(study.suite, model_dir=state.model_dir, device=study.device, dtype=study.dtype,
                                 state=state, tokenizer=tokenizer, engines=kept, base=base)
    runtime = scores["runtime"]
    tokens = sum(runtime[p]["prompt_tokens"] + runtime[p].get("new_tokens", 0)
                 for p in ("loglikelihood", "generation") if p in runtime)
    tokens += sum(t.get("tokens", 0) for t in (scores["benchmarks"].get("kl") or {}).get("tasks", {}).values())
    seconds = runtime["timings"]["total_s"]
    forward = plain_forward_tokens_per_s(model_dir, study)
    return {"engine": study.engine.describe(), "tokens": tokens, "seconds": seconds,
            "tokens_per_s": round(tokens / seconds, 1), "forward_tokens_per_s": round(forward, 1),
            "efficiency": round(tokens / seconds / forward, 3),
            "phases": {p: {k: runtime[p][k] for k in ("engine", "prompt_tokens", "seconds") if k in runtime[p]}
                       for p in ("loglikelihood", "generation") if p in runtime}}


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
