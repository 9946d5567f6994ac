"""End-to-end tier: the smoke study on a local Ray cluster (CPU), killed once, then resumed.

It must end exactly where the in-process run (``smoke`` in conftest.py) ends: the same states,
byte for byte, the same scores item by item, the same main-table rows, for each of its two seeds.
It runs six of the sixteen orderings (``--orderings``), chosen so that every operation, a state
both seeds share and one each seed has, and branches that can run at once are among them; the
in-process run covers all sixteen.
"""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orderstudy.core import paths
from orderstudy.core.plan import prefixes
from orderstudy.execution.runner import run_study
from orderstudy.study.study import Study

pytestmark = pytest.mark.e2e

# One CPU a task: on two cores, two branches at a time.
ON_RAY = "\nexecutor: ray\nray: {cpus_per_task: 1}\n"
ORDERINGS = ("base", "F", "P", "F>P", "Q>P", "P>Q>F")


def _stored_state_dirs(study_dir: Path) -> set[str]:
    """Return the names of the state directories in place (a build renames its directory in last)."""
    states = study_dir / "states"
    return {d.name for d in states.iterdir() if d.is_dir() and not d.name.startswith(".")} if states.is_dir() else set()


def _processes() -> dict[int, dict]:
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out[int(stat.parent.name)] = {"state": fields[0], "ppid": int(fields[1]), "pgid": int(fields[2]),
                                      "start": fields[19], "cmd": cmdline}
    return out


def _family(leader: int) -> dict[int, dict]:
    """Return the processes of ``leader``'s process group and every process descended from them."""
    procs = _processes()
    family = {p for p, info in procs.items() if info["pgid"] == leader}
    while True:  # Ray's workers run in process groups of their own, as children of the raylet
        more = {p for p, info in procs.items() if info["ppid"] in family} - family
        if not more:
            return {p: procs[p] for p in family}
        family |= more


def _still_running(family: dict[int, dict]) -> list[str]:
    now = _processes()
    return [f"{p} {info['cmd'][:120]}" for p, info in family.items()
            if p in now and now[p]["start"] == info["start"] and now[p]["state"] != "Z"]


def test_smoke_study_on_ray_killed_then_resumed_ends_as_the_in_process_run(smoke, tmp_path, outputs_dir):
    params_file = tmp_path / "smoke-ray.yaml"
    params_file.write_text((paths.PARAMS_DIR / "smoke.yaml").read_text(encoding="utf-8") + ON_RAY, encoding="utf-8")
    env = {**os.environ, "ORDERSTUDY_OUTPUTS": str(outputs_dir)}
    study_dir = outputs_dir / "smoke"
    command = [sys.executable, "-m", "orderstudy", "run", str(params_file), "--quiet", "--orderings",
               *(o.replace(">", "-") for o in ORDERINGS)]

    # 1. Kill the whole run (driver and the Ray cluster it started) once some states are stored.
    started = time.perf_counter()
    log = tmp_path / "killed-run.log"
    with open(log, "w") as out:
        first = subprocess.Popen(command, cwd=paths.ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        deadline = time.time() + 1800
        while len(_stored_state_dirs(study_dir)) < 2 and first.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, log.read_text()[-3000:]
        family = _family(first.pid)
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    killed_after_s = time.perf_counter() - started
    assert any("raylet" in info["cmd"] for info in family.values()), "the Ray cluster was not running"
    deadline = time.time() + 60
    while _still_running(family) and time.time() < deadline:
        time.sleep(0.5)
    assert not _still_running(family), _still_running(family)  # no Ray process outlives its driver

    # 2. What the killed run left: finished states, each matching its manifest, and nothing else.
    study = Study(params_file)
    studies = [study.for_seed(seed) for seed in study.params.seeds]
    needed = {s for o in ORDERINGS for s in prefixes(o)}
    every = {seeded.store.label(s): seeded.store.state(s) for seeded in studies for s in seeded.plan.states if s in needed}
    assert len(every) == 11  # 8 states of the first seed (base F P Q F>P Q>P P>Q P>Q>F), 3 more of the second
    kept = {label for label, state in every.items() if study.store.is_complete(state)}
    assert 2 <= len(kept) < len(every), kept
    assert _stored_state_dirs(study_dir) == {every[label].key for label in kept}
    assert not re.search(r"running (notebook|\d+ notebooks)", log.read_text())  # it was killed in the Ray phase
    records = {label: every[label].record() for label in kept}

    # 3. The rerun builds only what is missing, on Ray, then runs the notebooks and the summary.
    resumed_at = time.perf_counter()
    second = subprocess.run(command, cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=3600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    resumed_s = time.perf_counter() - resumed_at
    run = json.loads((study_dir / "last_run.json").read_text())
    assert run["executor"] == "ray"
    assert {(r["ordering"], r["seed"]): r["status"] for r in run["orderings"].values()} == \
        {(o, s): "ok" for o in ORDERINGS for s in study.params.seeds}
    ray = run["ray"]
    assert ray["failed"] == [] and {t["status"] for t in ray["tasks"]} == {"ok"}
    assert sorted(ray["built"]) == sorted(set(every) - kept)  # a state both seeds share was built once
    assert sorted(run["steps_built"]) == sorted(ray["built"])  # the notebooks built nothing more
    assert all(every[label].record() == records[label] for label in kept)  # kept, not rebuilt
    spans = sorted((t["start_s"], t["start_s"] + t["seconds"]) for t in ray["tasks"])
    latest_end, overlapped = spans[0][1], False
    for start, end in spans[1:]:
        overlapped |= start < latest_end
        latest_end = max(latest_end, end)
    assert overlapped, spans  # independent branches ran at the same time

    # 4. The same study as the in-process run, to the byte.
    ref = smoke["dir"]
    for seed in study.params.seeds:
        for ordering in ORDERINGS:
            stem = paths.run_filename(ordering, seed)
            mine = json.loads((study_dir / "results" / f"{stem}.json").read_text())
            theirs = json.loads((ref / "results" / f"{stem}.json").read_text())
            for key in ("status", "seed", "state_key", "result_key", "params_hash", "benchmarks", "sample_ids",
                        "size_bytes", "weights_bytes", "n_params", "quantized", "device", "dtype"):
                assert mine[key] == theirs[key], (stem, key)
            for items in (f"{stem}.json", f"{stem}.lawbench_predictions.json"):
                assert (study_dir / "items" / items).read_text() == (ref / "items" / items).read_text(), items
            assert (study_dir / "notebooks" / f"{stem}.ipynb").is_file()
    for label, state in every.items():
        mine = json.loads((study_dir / "states" / state.key / "record.json").read_text())
        theirs = json.loads((ref / "states" / state.key / "record.json").read_text())
        assert mine["manifest"] == theirs["manifest"], label  # every checkpoint file's sha256
    def main_rows(directory):
        with open(directory / "tables" / "main.csv", encoding="utf-8") as f:
            return {row["ordering"]: row for row in csv.DictReader(f) if row["ordering"] in ORDERINGS}

    assert main_rows(study_dir) == main_rows(ref) and len(main_rows(ref)) == len(ORDERINGS)
    print(f"\nray smoke: killed after {killed_after_s:.0f} s with {len(kept)} states stored; "
          f"resumed run {resumed_s:.0f} s (Ray phase {ray['seconds']:.0f} s, cluster start {ray['init_seconds']:.0f} s)")


def test_a_step_that_fails_on_ray_is_recorded_by_its_notebook(tmp_path, tiny_model_dir, outputs_dir, mmlu_dir):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"instruction": "回答：", "question": f"问题{i}", "answer": "答案。"},
                                        ensure_ascii=False) + "\n" for i in range(8)), encoding="utf-8")
    params_file = tmp_path / "fails.yaml"
    # No training pair fits in 16 tokens: fine-tuning fails, the base does not.
    params_file.write_text(f"study: fails\ndtype: float32\nmodel: {{source: {tiny_model_dir}}}\norderings: [base, F, F>P]\n"
                           f"finetune: {{data: {train}, max_steps: 1, batch_size: 2, max_seq_len: 16}}\n"
                           "evaluation: {benchmarks: [mmlu_law], mmlu_items_per_subject: 1}\n" + ON_RAY, encoding="utf-8")
    report = run_study(params_file, log_output=False, summary=False)
    tasks = {t["id"]: t for t in report["ray"]["tasks"]}
    assert tasks["build F"]["status"] == "failed" and "max_seq_len" in tasks["build F"]["error"]
    assert {tasks[t]["status"] for t in ("build F>P", "evaluate F", "evaluate F>P")} == {"not run"}
    assert tasks["build base"]["status"] == tasks["evaluate base"]["status"] == "ok"
    assert {o: r["status"] for o, r in report["orderings"].items()} == {"base": "ok", "F": "failed", "F>P": "failed"}
    for ordering in ("F", "F>P"):
        result = json.loads((outputs_dir / "fails" / "results" / f"{paths.ordering_filename(ordering)}.json").read_text())
        assert result["error"]["step"] == "F" and "max_seq_len" in result["error"]["message"]
        notebook = (outputs_dir / "fails" / "notebooks" / f"{paths.ordering_filename(ordering)}.ipynb").read_text()
        assert "max_seq_len" in notebook
