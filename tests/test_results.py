"""The result schema (core/results.py): the study writes through it, the report reads through it."""

import copy
import json
from pathlib import Path

import pytest

from orderstudy.core import paths, results
from orderstudy.core.results import SCHEMA_VERSION, ResultFileError
from orderstudy.report.load import load_result

# A finished smoke study's results (``make smoke``; $ORDERSTUDY_OUTPUTS moves them), when present.
BASELINE = paths.OUTPUTS_DIR / "smoke" / "results"

# A finished result shaped as OrderingRun.finish writes it (every top-level key, abridged blocks).
OK = {
    "schema": SCHEMA_VERSION, "study": "smoke", "ordering": "F>P", "seed": 1, "status": "ok", "error": None,
    "size_bytes": 16267543, "n_params": 3342912,
    "benchmarks": {
        "lawbench": {
            "score": 12.5, "scoring": "LawBench zero_shot, generative, LawBench's rules", "n_items": 2,
            "tasks": {"1-1": {"score": 25.0, "n": 1, "abstention_rate": 0.0, "excluded_items": 0, "max_new_tokens": 8,
                              "capped": True, "ceiling_pct": 6.060606, "truncated_prompts": 0, "weight": 0.5},
                      "3-8": {"score": 0.0, "n": 1, "abstention_rate": 1.0, "weight": 0.5, "not_in_schema": [1, 2]}},
            "generation": {"max_new_tokens_cap": 8, "context_tokens": 4096, "stop": ["<|im_end|>"], "tasks": {}},
            "capped_tasks": ["1-1"], "cherrant": None,
            "aggregation": "unweighted mean of the tasks, as LawBench's leaderboard",
        },
        "stem": {"score": 50, "scoring": "MMLU loglikelihood", "n_items": 2,
                 "tasks": {"astronomy": {"score": 50, "n": 2, "population": 152, "weight": 1.0}},
                 "aggregation": "weighted by subject size"},
    },
    "steps": [{"state": "F", "label": "F.seed1", "seed": 1, "operation": "F", "key": "k1", "reused": False,
               "seconds": 1.5, "build_seconds": 1.2, "size_bytes": 100, "n_params": 10, "quantized": False,
               "train_losses": [2.5, 2.25]},
              {"state": "F>P", "label": "F>P.seed1", "seed": 1, "operation": "P", "key": "k2", "reused": True,
               "seconds": 0.1, "build_seconds": None, "size_bytes": 90, "n_params": 9, "quantized": False}],
    "state_key": "k2", "result_key": "r", "params_file": "/x/params/smoke.yaml", "params_hash": "h",
    "sample_ids": {"lawbench": {"1-1": ["1-1/3"], "3-8": ["3-8/7"]}, "stem": {"astronomy": ["astronomy/0", "astronomy/1"]}},
    "lawbench_sources": {"1-1": {"source": "s", "items": 500, "lawbench": True, "exact": ["query"]}},
    "versions": {"python": "3.11.9", "torch": "2.13.0", "peft": None},
    "device": "cpu", "dtype": "bfloat16", "provenance": {"format": "safetensors"},
    "engine": {"name": "hf", "version": None, "reason": "default"}, "finished_at": "2026-12-03T12:00:00+0000",
    "weights_bytes": 16000000, "base_bf16_weights_bytes": 17000000, "quantized": False, "items_file": "items/F-P.seed1.json",
    "evaluation": {"reused": False, "seconds": 3.25, "suite": "suite-key", "runtime": {"backend": "hf"}},
    "training_data": {"finetune": {"source": "lawbench", "pairs": 40}, "calibration": None},
}

FAILED = {
    "schema": SCHEMA_VERSION, "study": "smoke", "ordering": "Q>P>F", "seed": 0, "status": "failed",
    "error": {"type": "OutOfMemoryError", "message": "CUDA out of memory", "traceback": "Traceback ...", "step": "Q>P"},
    "size_bytes": None, "n_params": None, "benchmarks": {}, "steps": [], "versions": {"python": "3.11.9"},
}


@pytest.mark.skipif(not BASELINE.is_dir(), reason="no finished smoke study in outputs/ (make smoke)")
def test_the_smoke_studys_real_results_parse_and_keep_every_value():
    files = sorted(BASELINE.glob("*.json"))
    assert files
    for path in files:
        data = json.loads(path.read_text())
        parsed = results.read_result(path)
        assert parsed.document() == data, path
        assert parsed.status == data["status"] and parsed.size_bytes == data["size_bytes"]
        for name, entry in (data["benchmarks"] or {}).items():
            assert load_result(path).score(name) == entry["score"]
            assert {t: s.n for t, s in parsed.benchmarks[name].tasks.items()} == {t: s["n"] for t, s in entry["tasks"].items()}


@pytest.mark.parametrize("document", [OK, FAILED], ids=["ok", "failed"])
def test_a_round_trip_keeps_every_value(tmp_path, document):
    path = tmp_path / "results" / "F-P.seed1.json"
    results.write_result(path, document)
    assert json.loads(path.read_text()) == document
    parsed = results.read_result(path)
    assert parsed.document() == document  # nothing added, nothing lost, extra keys in open blocks kept
    report = load_result(path)
    assert report.raw == document and report.seed == document["seed"] and report.status == document["status"]
    if document is OK:
        task = report.benchmarks["lawbench"].tasks["1-1"]
        assert (task.score, task.n, task.capped, task.max_new_tokens, task.ceiling_pct) == (25.0, 1, True, 8, 6.060606)
        assert report.benchmarks["lawbench"].tasks["3-8"].model_extra == {"not_in_schema": [1, 2]}
        assert report.benchmarks["stem"].weights() == {"astronomy": 1.0}
        assert (report.size_bytes, report.weights_bytes, report.base_bf16_weights_bytes) == (16267543, 16000000, 17000000)
        assert report.seeded is True and report.items_file == "items/F-P.seed1.json"
    else:
        assert report.error_text() == "OutOfMemoryError at Q>P: CUDA out of memory"


def _broken(change) -> dict:
    document = copy.deepcopy(OK)
    change(document)
    return document


@pytest.mark.parametrize(
    "change, message",
    [
        # wrong types
        (lambda d: d.update(size_bytes="5.8G"), "key 'size_bytes': expected bytes on disk (a positive integer) or null, got '5.8G'"),
        (lambda d: d.update(size_bytes=16.5), "key 'size_bytes': expected bytes on disk"),
        (lambda d: d.update(seed=True), "key 'seed': expected the run's seed (an integer), got True"),
        (lambda d: d["benchmarks"]["stem"].update(score="high"), "key 'benchmarks.stem.score': expected a score in percent (at most 100), got 'high'"),
        (lambda d: d["benchmarks"]["stem"].update(score=float("nan")), "key 'benchmarks.stem.score': expected a score in percent"),
        (lambda d: d["benchmarks"]["lawbench"]["tasks"]["1-1"].update(n=1.0), "key 'benchmarks.lawbench.tasks.1-1.n': expected the number of items, got 1.0"),
        (lambda d: d["benchmarks"]["lawbench"]["tasks"]["1-1"].update(capped="yes"), "key 'benchmarks.lawbench.tasks.1-1.capped': expected true or false"),
        (lambda d: d["steps"][1].update(reused="no"), "key 'steps.1.reused': expected true or false, got 'no'"),
        (lambda d: d["versions"].update(torch=2), "key 'versions.torch': expected package -> version"),
        (lambda d: d["evaluation"].update(seconds="3 s"), "key 'evaluation.seconds': expected seconds, got '3 s'"),
        # values out of range
        (lambda d: d["benchmarks"]["stem"].update(score=250.0), "key 'benchmarks.stem.score': expected a score in percent (at most 100), got 250.0"),
        (lambda d: d["benchmarks"]["stem"]["tasks"]["astronomy"].update(score=100.5), "key 'benchmarks.stem.tasks.astronomy.score': expected a score in percent (at most 100), got 100.5"),
        (lambda d: d.update(size_bytes=0), "key 'size_bytes': expected bytes on disk (a positive integer) or null (Input should be greater than 0), got 0"),
        (lambda d: d.update(status="done"), "key 'status': expected 'ok' or 'failed', got 'done'"),
        (lambda d: d.update(ordering="F>F"), "key 'ordering': expected an ordering such as 'F>P>Q' or 'base'"),
        # missing required keys
        (lambda d: d.pop("status"), "key 'status' is missing; expected 'ok' or 'failed'"),
        (lambda d: d.pop("study"), "key 'study' is missing; expected the study name"),
        (lambda d: d["benchmarks"]["lawbench"]["tasks"]["1-1"].pop("n"), "key 'benchmarks.lawbench.tasks.1-1.n' is missing; expected the number of items"),
        (lambda d: d["steps"][0].pop("state"), "key 'steps.0.state' is missing"),
        (lambda d: d.pop("size_bytes"), "key 'size_bytes' is missing or null; a finished run needs bytes on disk"),
        (lambda d: d.update(benchmarks=None), "key 'benchmarks' is missing or null; a finished run needs"),
        (lambda d: d.update(status="failed"), "key 'error': a failed ordering needs an object with 'type' and 'message'"),
        (lambda d: d.update(status="failed", error={"type": "E"}), "key 'error.message' is missing; expected the exception's message"),
        # the version, and the closed top level
        (lambda d: d.update(schema=2), "key 'schema': expected 1 (this version reads schema 1 only), got 2"),
        (lambda d: d.pop("schema"), "key 'schema' is missing; expected the schema number 1"),
        (lambda d: d.update(sizebytes=5), "key 'sizebytes': not a key of a result file (schema 1)"),
    ],
)
def test_a_result_that_breaks_the_schema_names_the_file_and_the_key(tmp_path, change, message):
    path = tmp_path / "F-P.json"
    path.write_text(json.dumps(_broken(change)))
    with pytest.raises(ResultFileError) as info:
        results.read_result(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    # The study refuses to write it, with the same message, and writes nothing.
    out = tmp_path / "written" / "F-P.json"
    with pytest.raises(ResultFileError, match="not written") as info:
        results.write_result(out, _broken(change))
    assert message in str(info.value) and not out.exists()


def test_a_lawbench_prison_term_score_below_zero_is_a_real_score(tmp_path):
    # LawBench's 3-4 score is unclipped: predictions over 216 times off give a task score below 0.
    document = _broken(lambda d: d["benchmarks"]["lawbench"]["tasks"]["1-1"].update(score=-12.5))
    results.write_result(tmp_path / "F-P.json", document)
    assert results.read_result(tmp_path / "F-P.json").benchmarks["lawbench"].tasks["1-1"].score == -12.5


def test_a_file_that_is_not_an_object():
    with pytest.raises(ResultFileError, match=r"x\.json: key '\(top level\)': expected a JSON object, got 'list'"):
        results.parse([], Path("x.json"))


def test_the_schema_version_is_defined_once():
    from orderstudy.report import load
    from orderstudy.study import study

    # The study and the report take it from core/results.py; neither keeps a number of its own.
    assert not hasattr(study, "RESULT_SCHEMA") and not hasattr(load, "SCHEMA")
    assert study.results is results and load.schema is results


def test_a_divergence_is_not_a_percentage_and_may_pass_100(tmp_path):
    # kl is counted in 10⁻² nats per token: a pruned model far from the base scores above 100.
    data = _broken(lambda d: d["benchmarks"].update(kl={
        "score": 240.5, "scoring": "KL", "n_items": 2, "aggregation": "mean",
        "tasks": {"lawbench": {"score": 240.5, "n": 2, "weight": 1.0}}}))
    path = tmp_path / "F-P.json"
    path.write_text(json.dumps(data))
    assert results.read_result(path).benchmarks["kl"].score == 240.5
