"""Benchmark a whole study: wall time per step and per ordering, steps executed, peak memory.

    python benchmarks/bench_study.py params/demo.yaml [--rerun]

Runs the study (only what is not up to date, like `make study`), then, with --rerun (default
on), runs it again with nothing changed, and prints the figures. Peak memory is the largest
resident set of the notebook kernels (the processes that hold the models) and of this process.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from orderstudy import atomic
from orderstudy.runner import run_study
from orderstudy.study import Study


def _peak_rss_mib() -> tuple[float, float]:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return kids, me


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("params")
    parser.add_argument("--no-rerun", action="store_true", help="skip the second, nothing-changed run")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    first = run_study(args.params, log_output=False)
    first_s = time.perf_counter() - t0
    study = Study(args.params)

    print("\n== per step (states built in this run) ==")
    print(f"{'state':10s} {'operation':10s} {'build_s':>9s} {'size_MiB':>9s}")
    shown = set()
    for seeded in (study.for_seed(seed) for seed in study.params.seeds):
        for name in seeded.plan.states:
            state, label = seeded.store.state(name), seeded.store.label(name)
            if label in first["steps_built"] and label not in shown and state.record_path.exists():
                shown.add(label)
                rec = state.record()
                print(f"{label:10s} {rec['operation'] or 'base':10s} {rec['seconds']:9.1f} {rec['size_bytes'] / 2**20:9.1f}")

    print("\n== per ordering ==")
    print(f"{'ordering':10s} {'status':8s} {'ran':>4s} {'wall_s':>8s} {'eval_s':>8s}")
    for ordering, r in first["orderings"].items():  # one entry per run: F>P>Q, or F>P>Q.seed1 with several seeds
        result = study.for_seed(r.get("seed", study.seed)).load_result(r.get("ordering", ordering)) or {}
        eval_s = (result.get("evaluation") or {}).get("seconds")
        print(f"{ordering:10s} {r['status']:8s} {'yes' if r['ran'] else 'no':>4s} {r['seconds']:8.1f} "
              f"{eval_s if eval_s is not None else float('nan'):8.1f}")

    kids, me = _peak_rss_mib()
    print("\n== study ==")
    print(f"wall time, first run:          {first_s:8.1f} s")
    print(f"operation steps executed:      {len(first['steps_built']):8d} (planned {first['steps_planned']}, "
          f"{first['steps_naive']} without sharing)")
    print(f"peak memory (largest kernel):  {kids:8.1f} MiB; this process {me:.1f} MiB")
    figures = {"first_run_s": round(first_s, 2), "steps_executed": len(first["steps_built"]),
               "peak_kernel_rss_mib": round(kids, 1)}
    if not args.no_rerun:
        t1 = time.perf_counter()
        second = run_study(args.params, log_output=False, summary=False)
        rerun_s = time.perf_counter() - t1
        ran = sum(r["ran"] for r in second["orderings"].values())
        print(f"wall time, rerun (no change):  {rerun_s:8.1f} s; notebooks run {ran}, "
              f"steps executed {len(second['steps_built'])}")
        figures.update(rerun_s=round(rerun_s, 2), rerun_notebooks=ran, rerun_steps=len(second["steps_built"]))
    atomic.write_json(study.paths.dir / "bench.json", figures)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
