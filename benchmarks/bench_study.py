"""Benchmark a whole study: wall time per step and per ordering, where the time goes, steps executed, peak memory.

    python benchmarks/bench_study.py params/demo.yaml [--no-rerun] [--busy]

Runs the study (only what is not up to date, like `make study`), then, unless --no-rerun, runs it
again with nothing changed, and prints the figures. Peak memory is the largest resident set of
the notebook kernels (the processes that hold the models) and of this process.

"Where the time goes" splits the run: the pre-evaluation phase (vLLM studies: engine starts,
weight swaps, each state's evaluation by part: equivalent copy, model load, engine ready, the
lm-eval calls per request type) and each notebook (what is left in it: papermill, kernel start,
imports, states and results read and written).

--busy (``make bench`` passes it) times one short generation on the base model alone and with
one busy process per core beside it, with idle OpenMP threads sleeping at once, spinning briefly
(the study's setting, ``threads.quiet_threads``) and spinning until there is work: a busy machine
should slow the study in proportion (about 2x with as many busy processes as cores), not several
times more, and an idle one should not pay for it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from orderstudy.execution.threads import SHORT_SPIN, THREAD_VARIABLES, quiet_threads

quiet_threads()   # as `make study` does, before torch (imported by orderstudy.study.study) loads OpenMP

from orderstudy.core import atomic  # noqa: E402
from orderstudy.execution.runner import run_study  # noqa: E402
from orderstudy.study.study import Study  # noqa: E402


def _peak_rss_mib() -> tuple[float, float]:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return kids, me


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("params")
    parser.add_argument("--no-rerun", action="store_true", help="skip the second, nothing-changed run")
    parser.add_argument("--busy", action="store_true", help="also time a generation alone and beside busy processes")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    first = run_study(args.params, log_output=False)
    first_s = time.perf_counter() - t0
    study = Study(args.params)

    print("\n== per step (states built in this run) ==")
    print(f"{'state':10s} {'operation':10s} {'build_s':>9s} {'size_MiB':>9s}")
    shown = set()
    for seeded in study.variants():
        for name in seeded.plan.states:
            state, label = seeded.store.state(name), seeded.store.label(name)
            if label in first["steps_built"] and label not in shown and state.record_path.exists():
                shown.add(label)
                rec = state.record()
                print(f"{label:10s} {rec['operation'] or 'base':10s} {rec['seconds']:9.1f} {rec['size_bytes'] / 2**20:9.1f}")

    print("\n== per ordering ==")
    print(f"{'ordering':10s} {'status':8s} {'ran':>4s} {'wall_s':>8s} {'eval_s':>8s}")
    for ordering, r in first["orderings"].items():  # one entry per run: F>P>Q, or F>P>Q.seed1 with several seeds
        run = study.for_family(r["family"]) if r.get("family") else study
        result = run.for_seed(r.get("seed", study.seed)).load_result(r.get("ordering", ordering)) or {}
        eval_s = (result.get("evaluation") or {}).get("seconds")
        print(f"{ordering:10s} {r['status']:8s} {'yes' if r['ran'] else 'no':>4s} {r['seconds']:8.1f} "
              f"{eval_s if eval_s is not None else float('nan'):8.1f}")

    print_time_split(study, first)
    floor = floors(study, first)

    kids, me = _peak_rss_mib()
    print("\n== study ==")
    print(f"wall time, first run:          {first_s:8.1f} s")
    print(f"operation steps executed:      {len(first['steps_built']):8d} (planned {first['steps_planned']}, "
          f"{first['steps_naive']} without sharing)")
    print(f"peak memory (largest kernel):  {kids:8.1f} MiB; this process {me:.1f} MiB")
    figures = {"first_run_s": round(first_s, 2), "steps_executed": len(first["steps_built"]),
               "peak_kernel_rss_mib": round(kids, 1), "floors": floor}
    if not args.no_rerun:
        t1 = time.perf_counter()
        second = run_study(args.params, log_output=False, summary=False)
        rerun_s = time.perf_counter() - t1
        ran = sum(r["ran"] for r in second["orderings"].values())
        print(f"wall time, rerun (no change):  {rerun_s:8.1f} s; notebooks run {ran}, "
              f"steps executed {len(second['steps_built'])}")
        figures.update(rerun_s=round(rerun_s, 2), rerun_notebooks=ran, rerun_steps=len(second["steps_built"]))
    if args.busy:
        figures["busy_machine"] = busy_machine(args.params)
    atomic.write_json(study.paths.dir / "bench.json", figures)
    print(json.dumps(figures))
    return 0


def plain_rates(study, batch: int = 8, seq_len: int = 256, repeats: int = 3) -> dict:
    """Return the base model's plain rates on this machine, measured now: a batched forward (tokens/s) and a
    training step's forward and backward (seconds for ``finetune.batch_size`` x ``finetune.max_seq_len``)."""
    import torch

    from orderstudy.checkpoints import storage
    from orderstudy.core.plan import BASE
    from orderstudy.evaluation.throughput import measure_train_step

    model = storage.load(study.store.state(BASE).model_dir, study.dtype, study.device)
    vocab = model.config.get_text_config().vocab_size
    ids = torch.randint(0, vocab, (batch, seq_len), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(input_ids=ids)   # warm-up
        started = time.perf_counter()
        for _ in range(repeats):
            model(input_ids=ids)
        forward_s = (time.perf_counter() - started) / repeats
    ft = study.params.finetune
    measure_train_step(model, ft.batch_size, ft.max_seq_len, study.device)   # warm-up
    step_s = min(measure_train_step(model, ft.batch_size, ft.max_seq_len, study.device) for _ in range(2))
    del model
    return {"forward_tokens_per_s": batch * seq_len / forward_s,
            "train_tokens_per_s": ft.batch_size * ft.max_seq_len / step_s}


def training_tokens_per_example(study) -> float:
    """Return the mean tokens of a fine-tuning pair as training encodes it (prompt, answer, EOS; cut to max_seq_len)."""
    from orderstudy.operations.finetune.training import encode_example

    tokenizer, _ = study.base_tokenizer
    ft = study.params.finetune
    lengths = [len(e["input_ids"]) for x in study.training_examples
               if (e := encode_example(tokenizer, x["prompt"], x["answer"], ft.max_seq_len, study.params.chat_template))]
    return sum(lengths) / len(lengths) if lengths else 0.0


def _run_of(task: dict, study):
    """Return the study a task ran as: its label names its seed (``build F.seed1``) and family (``build Q.gptq``)."""
    label = task["id"].split(" ", 1)[1]
    seed = int(label.rsplit(".seed", 1)[1]) if ".seed" in label else study.seed
    family = label.split(".seed", 1)[0].partition(".")[2]
    return (study.for_family(family) if family else study).for_seed(seed)


def floors(study, run: dict) -> dict:
    """Print each phase's time beside its floor: the tokens it processed at the plain rates measured now.

    Evaluation: every prompt token, generated token and KL text token of the states evaluated in this
    run, at the rate of a plain batched forward (generation is slower than that by nature: one
    token a step); fine-tuning: the tokens of its steps (batch size x the mean encoded training pair)
    at the rate of a plain forward and backward of full batches (of every weight: LoRA computes fewer
    gradients, so a ratio a little below 1 is possible). The ratio says how far a phase is from its
    floor; 1 would be the plain model's own speed.
    """
    pre = run.get("pre_evaluation") or {}
    evaluated = [t for t in pre.get("tasks", []) if t["kind"] == "evaluate" and t["status"] == "ok" and not t.get("reused")]
    built = [t for t in pre.get("tasks", []) if t["kind"] == "build" and t["status"] == "ok" and not t.get("reused")]
    if not evaluated and not built:
        print("\n== floors: nothing was evaluated or built in this run ==")
        return {}
    rates = plain_rates(study)
    eval_s, tokens = 0.0, 0
    for t in evaluated:
        seeded = _run_of(t, study)
        stored = seeded.stored_evaluation(seeded.store.state(t["name"])) or {}
        runtime = stored.get("runtime") or {}
        ll, gen = runtime.get("loglikelihood", {}), runtime.get("generation", {})
        kl = sum(task.get("tokens", 0) for task in (stored.get("benchmarks", {}).get("kl", {}).get("tasks") or {}).values())
        tokens += ll.get("prompt_tokens", 0) + gen.get("prompt_tokens", 0) + gen.get("new_tokens", 0) + kl
        eval_s += t["seconds"]
    train_s, steps = 0.0, 0
    per_example = training_tokens_per_example(study) if study.trains else 0.0
    for t in built:
        seeded = _run_of(t, study)
        record = seeded.store.state(t["name"]).record()
        if record.get("operation") and "train_seconds" in (record.get("info") or {}):
            train_s += record["info"]["train_seconds"]
            steps += record["info"].get("steps") or 0
    out = {"rates": {k: round(v, 3) for k, v in rates.items()}}
    print(f"\n== floors (plain rates measured now: forward {rates['forward_tokens_per_s']:.0f} tokens/s, "
          f"forward and backward {rates['train_tokens_per_s']:.0f} tokens/s) ==")
    print(f"{'phase':14s} {'seconds':>9s} {'tokens':>10s} {'floor_s':>9s} {'ratio':>7s}")
    if evaluated:
        floor_s = tokens / rates["forward_tokens_per_s"]
        out["evaluation"] = {"seconds": round(eval_s, 3), "tokens": tokens, "floor_s": round(floor_s, 3),
                             "ratio": round(eval_s / floor_s, 2) if floor_s else None}
        print(f"{'evaluation':14s} {eval_s:9.1f} {tokens:10d} {floor_s:9.1f} {eval_s / floor_s if floor_s else 0:7.2f}")
    if steps:
        trained = round(steps * study.params.finetune.batch_size * per_example)
        floor_s = trained / rates["train_tokens_per_s"]
        out["fine_tuning"] = {"seconds": round(train_s, 3), "steps": steps, "tokens": trained, "floor_s": round(floor_s, 3),
                              "ratio": round(train_s / floor_s, 2) if floor_s else None}
        print(f"{'fine-tuning':14s} {train_s:9.1f} {trained:10d} {floor_s:9.1f} {train_s / floor_s if floor_s else 0:7.2f}")
    print("(evaluation: prompt, generated and KL text tokens at the plain forward rate; fine-tuning: its steps' "
          "tokens, batch x the mean encoded pair, at the plain forward and backward rate of full batches)")
    return out


def print_time_split(study, run: dict) -> None:
    """Print where the run's time went: the pre-evaluation phase by state and part, and the notebooks."""
    pre = run.get("pre_evaluation")
    if pre and pre.get("tasks"):
        e = pre["engines"]
        print(f"\n== pre-evaluation phase ({run['engine']['name']}): {pre['seconds']:.1f} s ==")
        print(f"engine starts {e['engine_starts']} ({e['engine_start_s']:.1f} s), weight swaps {e['weight_swaps']} "
              f"({e['weight_swap_s']:.1f} s)")
        print(f"{'task':14s} {'seconds':>8s} {'copy_s':>7s} {'load_s':>7s} {'ready_s':>8s} {'loglik_s':>9s} {'gen_s':>7s} "
              f"{'new_tok':>8s} {'tok/s':>7s}")
        for t in pre["tasks"]:
            line = f"{t['id']:14s} {t['seconds']:8.1f}"
            if t["kind"] == "evaluate" and t["status"] == "ok":
                runtime = (study.stored_evaluation(study.store.state(t["name"])) or {}).get("runtime") or {}
                timings, ll, gen = runtime.get("timings", {}), runtime.get("loglikelihood", {}), runtime.get("generation", {})
                ready = ll.get("engine_ready_s", 0) + gen.get("engine_ready_s", 0)
                tokens = ll.get("prompt_tokens", 0) + gen.get("prompt_tokens", 0) + gen.get("new_tokens", 0)
                busy_s = ll.get("seconds", 0) + gen.get("seconds", 0)
                line += (f" {timings.get('equivalent_copy_s', 0):7.1f} {timings.get('model_load_s', 0):7.1f} {ready:8.1f} "
                         f"{ll.get('seconds', 0):9.1f} {gen.get('seconds', 0):7.1f} {gen.get('new_tokens', 0):8d} "
                         f"{tokens / busy_s if busy_s else 0:7.0f}")
            print(line)
        print("(loglik_s and gen_s are lm-eval's calls: tasks built, requests run, answers scored)")
    ran = {o: r for o, r in run["orderings"].items() if r.get("ran")}
    if ran:
        print("\n== notebooks (papermill, kernel start, imports, then the steps and evaluation below) ==")
        print(f"{'ordering':10s} {'wall_s':>8s} {'steps_s':>8s} {'eval_s':>8s} {'rest_s':>8s}")
        for ordering, r in ran.items():
            result = study.load_result(ordering) or {}
            steps_s = sum(s.get("seconds") or 0 for s in result.get("steps", []))
            ev = result.get("evaluation") or {}
            eval_s = 0.0 if ev.get("reused") else (ev.get("seconds") or 0.0)
            print(f"{ordering:10s} {r['seconds']:8.1f} {steps_s:8.1f} {eval_s:8.1f} {r['seconds'] - steps_s - eval_s:8.1f}")


BUSY_PROBE = """
import json, sys, time
from orderstudy.evaluation import backends, throughput
from orderstudy.checkpoints import models
from orderstudy.study.study import Study
study = Study(sys.argv[1])
generation, _ = throughput.workload(study.suite)
model_dir = throughput.base_model_dir(study)
tokenizer = models.load_tokenizer(model_dir)
model = models.load_model(model_dir, study.dtype, study.device)
lm = backends.make_hf_lm(model=model, tokenizer=tokenizer, device=study.device, batch_size=4, params=study.suite.params)
prompts = throughput.sample(generation, 4, 0)
throughput.measure_generation(lm, tokenizer, prompts[:1], 2, study.suite.chat_template)   # warm-up
print(json.dumps(throughput.measure_generation(lm, tokenizer, prompts, 16, study.suite.chat_template)["seconds"]))
"""


# The OpenMP settings compared on a busy machine: idle threads sleeping at once, spinning briefly
# (the study's setting, ``threads.quiet_threads``), spinning until there is work.
THREAD_SETTINGS = {
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "short_spin": SHORT_SPIN,
    "active": {"OMP_WAIT_POLICY": "ACTIVE"},
}


def busy_machine(params_file: str) -> dict:
    """Return the seconds of one short generation alone and beside a busy process per core, per OpenMP setting."""
    cores = len(os.sched_getaffinity(0))
    out: dict = {"cores": cores}
    print(f"\n== a busy machine: a short generation alone and beside {cores} busy processes ==")
    for name, setting in THREAD_SETTINGS.items():
        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES} | setting
        times = {}
        for load in (0, cores):
            spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
            try:
                proc = subprocess.run([sys.executable, "-c", BUSY_PROBE, params_file], env=env, capture_output=True,
                                      text=True, timeout=1800)
            finally:
                for p in spinners:
                    p.kill()
                    p.wait()
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-2000:])
            times["alone_s" if load == 0 else "busy_s"] = float(proc.stdout.strip().splitlines()[-1])
        times["slowdown"] = round(times["busy_s"] / times["alone_s"], 2)
        out[name] = times
        label = " ".join(f"{k}={v}" for k, v in setting.items())
        print(f"{label:40s} alone {times['alone_s']:6.1f} s, busy {times['busy_s']:6.1f} s: "
              f"{times['slowdown']:.1f}x slower" + ("  (the study's setting)" if name == "short_spin" else ""))
    return out


if __name__ == "__main__":
    sys.exit(main())
