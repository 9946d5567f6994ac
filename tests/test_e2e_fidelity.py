"""End-to-end: a study with the fidelity benchmarks (kl, flip) beside accuracy, through the real runner and report.

Five orderings on the tiny Llama (base, P, Q, P>Q, Q>P: each compression alone and both orders)
through ``python -m orderstudy run``. Every table figure is recomputed here from the result and
item files with plain arithmetic: the base's fidelity is 0, every compressed state drifts, the
order effect and the claims read a lower divergence as better, and nothing gives a fidelity
score a change rate against the base.
"""

import csv
import json
import os
import subprocess
import sys

import pytest

from orderstudy.core import paths

pytestmark = pytest.mark.e2e
ORDERINGS = ("base", "P", "Q", "P>Q", "Q>P")
PARAMS = """\
study: fidelity
seeds: [0]
model:
  source: cache/models/tiny-llama
orderings: [base, P, Q, P>Q, Q>P]
prune:
  sparsity: 0.3
quantize:
  method: nf4
evaluation:
  benchmarks: [stem, kl, flip]
  lawbench_tasks: ['1-2', '2-3', '2-4']
  lawbench_items_per_task: 2
  mmlu_items_per_subject: 2
  kl_texts: 12
  kl_tokens: 48
"""


def _rows(path):
    return list(csv.DictReader(open(path, encoding="utf-8")))


@pytest.fixture(scope="module")
def study(tmp_path_factory, default_model_dir, lawbench_dir, mmlu_dir):
    out = tmp_path_factory.mktemp("fidelity") / "outputs"
    params = out.parent / "fidelity.yaml"
    params.write_text(PARAMS, encoding="utf-8")
    env = {**os.environ, "ORDERSTUDY_OUTPUTS": str(out)}
    proc = subprocess.run([sys.executable, "-m", "orderstudy", "run", str(params), "--quiet"], cwd=paths.ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    d = out / "fidelity"
    results = {o: json.loads((d / "results" / f"{paths.ordering_filename(o)}.json").read_text()) for o in ORDERINGS}
    items = {o: json.loads((d / r["items_file"]).read_text()) for o, r in results.items()}
    return d, results, items


def test_the_base_is_zero_and_every_compressed_state_drifts(study):
    d, results, items = study
    for o, r in results.items():
        assert r["status"] == "ok"
        kl = r["benchmarks"]["kl"]
        assert kl["tasks"]["lawbench"]["n"] == kl["tasks"]["mmlu"]["n"] == 6
        values = [v for task in items[o]["kl"].values() for v in task.values()]
        assert kl["score"] == pytest.approx(sum(values) / len(values), abs=1e-6)   # nats per token (6 decimals)
        flips = [v for task in items[o]["flip"].values() for v in task.values()]
        assert set(flips) <= {0.0, 1.0} and len(flips) == 2 * len(items[o]["stem"])
        if o == "base":
            assert values == [0.0] * 12 and flips == [0.0] * len(flips)
        else:
            assert min(values) > 0
    # The base's distributions are kept once, for every state of the suite.
    assert len(list((d / "data").glob("eval-*/kl/reference-*.npz"))) == 1


def test_the_tables_show_fidelity_with_intervals_and_no_change_rate_against_the_base(study):
    d, results, items = study
    main = {r["ordering"]: r for r in _rows(d / "tables" / "main.csv")}
    for o in ORDERINGS:
        for b in ("kl", "flip"):
            row = main[o]
            assert float(row[f"{b}_ci_low"]) <= float(row[b]) <= float(row[f"{b}_ci_high"])
            assert float(row[b]) == pytest.approx(results[o]["benchmarks"][b]["score"], abs=1e-4)
            assert row[f"{b}_change_pct"] in ("", "nan") or o == "base"
            assert "change rate undefined" not in row["note"] or "kl:" not in row["note"]
    md = (d / "tables" / "main.md").read_text(encoding="utf-8")
    assert "KL to base change %" not in md and "stem change %" in md
    # The power table gives KL's SE and minimum detectable change in nats per token, not in points.
    power = {r["benchmark"]: r for r in _rows(d / "tables" / "power.csv")}
    kl_row = next(line for line in (d / "tables" / "power.md").read_text(encoding="utf-8").splitlines()
                  if line.startswith("| KL to base"))
    assert f"{float(power['kl']['se_points']):.3f} nats/token" in kl_row and "N/A" in kl_row

    effects = {(r["a"], r["b"]): r for r in _rows(d / "tables" / "order_effects.csv")}
    row = effects[("P>Q", "Q>P")]
    for b in ("kl", "flip"):
        diff = results["Q>P"]["benchmarks"][b]["score"] - results["P>Q"]["benchmarks"][b]["score"]
        assert float(row[f"{b}_diff"]) == pytest.approx(diff, abs=1e-4)
        low, high = float(row[f"{b}_diff_ci_low"]), float(row[f"{b}_diff_ci_high"])
        assert low <= float(row[f"{b}_diff"]) <= high
        assert row[f"{b}_diff_significant"] == str(low > 0 or high < 0)


def test_the_claims_read_a_lower_divergence_as_better(study):
    d, results, _ = study
    claims = {c["id"]: c for c in _rows(d / "tables" / "claims.csv")}
    row = claims["prune_before_quantize"]   # P>Q expected better than Q>P: here the only pair of it that ran
    for b in ("kl", "flip"):
        diff = results["P>Q"]["benchmarks"][b]["score"] - results["Q>P"]["benchmarks"][b]["score"]
        assert float(row[f"{b}_diff"]) == pytest.approx(diff, abs=1e-4)
        low, high = float(row[f"{b}_diff_ci_low"]), float(row[f"{b}_diff_ci_high"])
        expected = "supported" if high < 0 else "contradicted" if low > 0 else "not resolved"
        assert row[f"{b}_verdict"] == expected
    # Weaker first: the weaker of P and Q alone is the one that raises the divergence less.
    row = claims["progressive_intensity"]
    kl = {o: results[o]["benchmarks"]["kl"]["score"] for o in ("P", "Q")}
    weaker = min(kl, key=kl.get)
    assert f"weaker: {weaker}" in row["kl_note"] and "raise the score (lower is better)" in row["kl_note"]
    better = "P>Q" if weaker == "P" else "Q>P"
    worse = "Q>P" if better == "P>Q" else "P>Q"
    diff = results[better]["benchmarks"]["kl"]["score"] - results[worse]["benchmarks"]["kl"]["score"]
    assert float(row["kl_diff"]) == pytest.approx(diff, abs=1e-4)


def test_make_bench_sets_each_phase_beside_its_floor(study, monkeypatch):
    """``make bench``'s floors on this study's own run: the tokens it processed at plain rates measured now."""
    d, results, _ = study
    monkeypatch.setenv("ORDERSTUDY_OUTPUTS", str(d.parent))
    monkeypatch.setattr(paths, "OUTPUTS_DIR", d.parent)
    monkeypatch.syspath_prepend(str(paths.ROOT / "benchmarks"))
    import bench_study
    from orderstudy.study.study import Study

    run = json.loads((d / "last_run.json").read_text())
    s = Study(d.parent.parent / "fidelity.yaml")
    floor = bench_study.floors(s, run)
    # Every evaluation of the run: prompt and generated tokens as its runtime records them, and KL's text tokens.
    tokens = 0
    for o in ORDERINGS:
        runtime = results[o]["evaluation"]["runtime"]
        kl = sum(t["tokens"] for t in results[o]["benchmarks"]["kl"]["tasks"].values())
        tokens += runtime["loglikelihood"]["prompt_tokens"] + kl
    assert floor["evaluation"]["tokens"] == tokens
    rate = floor["rates"]["forward_tokens_per_s"]
    assert rate > 0 and floor["evaluation"]["floor_s"] == pytest.approx(tokens / rate, rel=1e-2)
    # The ratio is printed to 2 decimals, from the unrounded times (kept to the millisecond in the figures).
    assert floor["evaluation"]["ratio"] == pytest.approx(floor["evaluation"]["seconds"] / floor["evaluation"]["floor_s"], abs=0.006)
    assert "fine_tuning" not in floor   # no F in this study
