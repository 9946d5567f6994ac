"""A study run in-process on a tiny model: real operations, real lm-eval, real result files."""

import json

import pytest

from orderstudy.evaluation import engine as evaluation
from orderstudy.checkpoints import models
from orderstudy.core.params import EvaluationParams
from orderstudy.study.study import Study




@pytest.fixture
def tiny_study(tmp_path, tiny_model_dir, outputs_dir, lawbench_dir, mmlu_dir):
    train = tmp_path / "train.jsonl"
    rows = [{"instruction": "请根据法律回答。", "question": f"第{i}题：盗窃罪侵犯的客体是什么？", "answer": "公私财物的所有权。"}
            for i in range(16)]
    train.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    params = tmp_path / "tiny.yaml"
    params.write_text(f"""
study: tiny
seed: 0
dtype: float32
model: {{source: {tiny_model_dir}}}
orderings: [base, F, P, Q, Q>F, P>Q]
finetune: {{data: {train}, max_steps: 8, batch_size: 4, max_seq_len: 96, learning_rate: 0.01, validation_fraction: 0.25}}
prune: {{sparsity: 0.5}}
evaluation:
  benchmarks: [lawbench, mmlu_law]
  lawbench_tasks: ['2-4', '3-4']
  lawbench_items_per_task: 2
  max_new_tokens: 4
  mmlu_items_per_subject: 2
""", encoding="utf-8")
    return Study(params)


def test_orderings_make_honest_states_and_results(tiny_study):
    results = {o: tiny_study.run_ordering(o, show=lambda *a: None) for o in tiny_study.plan.orderings}
    assert all(r["status"] == "ok" for r in results.values())
    base, p, q, f = results["base"], results["P"], results["Q"], results["F"]
    # Pruning removes parameters and bytes; quantizing keeps the parameters and removes bytes.
    assert p["n_params"] < base["n_params"] and p["size_bytes"] < base["size_bytes"]
    assert q["n_params"] == base["n_params"] and q["size_bytes"] < base["size_bytes"] and q["quantized"]
    assert results["P>Q"]["size_bytes"] < q["size_bytes"]
    # Fine-tuning a quantized model merges into dequantized weights: full precision again.
    assert not results["Q>F"]["quantized"] and results["Q>F"]["steps"][-1]["merge"] == "dequantize"
    # Sizes are the real checkpoint directories.
    for r in results.values():
        state = tiny_study.store.state(r["ordering"])
        assert r["size_bytes"] == models.dir_size_bytes(state.model_dir)
    # Fine-tuning lowers the loss on held-out pairs.
    for r in (f, results["Q>F"]):
        step = r["steps"][-1]
        assert step["validation_loss_after"] < step["validation_loss_before"]
    # Scores are percentages of the sampled items, recorded with their ids.
    for r in results.values():
        for bench, b in r["benchmarks"].items():
            assert 0.0 <= b["score"] <= 100.0
            # LawBench: the unweighted mean of its tasks; mmlu_law: weighted by subject size, as lm-eval's MMLU groups.
            assert b["score"] == pytest.approx(sum(t["weight"] * t["score"] for t in b["tasks"].values()))
        assert r["benchmarks"]["mmlu_law"]["tasks"]["professional_law"]["weight"] == pytest.approx(1534 / 1763)
        assert r["weights_bytes"] < r["size_bytes"] and r["seed"] == 0
        items = json.loads((tiny_study.paths.dir / r["items_file"]).read_text())
        for task, t in r["benchmarks"]["mmlu_law"]["tasks"].items():
            assert t["score"] == pytest.approx(100 * sum(items["mmlu_law"][task].values()) / t["n"])
        assert r["sample_ids"]["lawbench"]["2-4"] == list(items["lawbench"]["2-4"])
    # A 4-bit state is scored as its evaluation-equivalent dense model, with the distance recorded
    # (float32 here: the same logits as bitsandbytes' reference kernel, on either kind of CPU).
    for o in ("Q", "P>Q"):
        numerics = results[o]["evaluation"]["runtime"]["numerics"]
        assert numerics["quantized"] and numerics["evaluated_as"].startswith("evaluation-equivalent")
        assert "reference kernel" in numerics["bitsandbytes_kernel"]
        assert numerics["vs_bitsandbytes"]["max_abs_logit_diff"] == 0.0
        assert numerics["vs_dequantized_float32"]["greedy_token_agreement"] == 1.0
    assert base["evaluation"]["runtime"]["numerics"] == {"quantized": False, "evaluated_as": "the checkpoint itself"}
    # States are shared: Q>F reused Q built by Q's ordering, and base was built once.
    assert [s["reused"] for s in results["Q>F"]["steps"]] == [True, True, False]


def test_a_rerun_does_no_model_work(tiny_study):
    for o in ("base", "P"):
        tiny_study.run_ordering(o, show=lambda *a: None)
    again = Study(tiny_study.params_file)
    assert again.is_up_to_date("P") and not again.is_up_to_date("Q")
    result = again.run_ordering("P", show=lambda *a: None)
    assert all(s["reused"] for s in result["steps"]) and result["evaluation"]["reused"]


def test_a_failure_is_recorded_with_its_step_and_reason(tiny_study, tmp_path):
    tiny_study.run_ordering("base", show=lambda *a: None)
    state = tiny_study.store.state("base")
    # Make fine-tuning impossible: no training pair fits in 8 tokens.
    params = tiny_study.params.model_copy(update={"finetune": tiny_study.params.finetune.model_copy(update={"max_seq_len": 16})})
    study = Study(tiny_study.params_file, params=params)
    with pytest.raises(ValueError, match="training example"):
        study.run_ordering("F", show=lambda *a: None)
    result = study.load_result("F")
    assert result["status"] == "failed" and result["error"]["step"] == "F"
    assert "finetune.max_seq_len" in result["error"]["message"] and "Traceback" in result["error"]["traceback"]
    assert state.record_path.exists()


def test_mmlu_generative_scoring_extracts_the_letter(tiny_model_dir, mmlu_dir, tmp_path):
    params = EvaluationParams(benchmarks=("mmlu_law",), mmlu_items_per_subject=2, mmlu_scoring="generative", max_new_tokens=4)
    suite = evaluation.build_suite(params, 0, tmp_path, *models.tokenizer_and_context(tiny_model_dir))
    out = evaluation.evaluate(suite, model_dir=tiny_model_dir, device="cpu", dtype="float32")
    runtime = out["runtime"]
    # A suite built without an engine is transformers' (a study passes the one it chose).
    assert runtime["backend"] == "hf" and runtime["engine"]["name"] == "hf" and runtime["equivalent_copy"] is None
    gen = runtime["generation"]
    assert gen["engine"] == "hf" and gen["prompt_tokens"] > 0
    assert gen["items"] == 6 and gen["batch_size"] == 8   # batch_size auto: the CPU cap
    assert gen["new_tokens"] > 0 and gen["new_tokens_per_s"] == pytest.approx(gen["new_tokens"] / gen["seconds"], rel=0.01)
    assert out["benchmarks"]["mmlu_law"]["scoring"] == "MMLU generative"
    assert out["benchmarks"]["mmlu_law"]["n_items"] == 6


def test_seeds_share_the_evaluation_sample_and_the_training_data(tiny_study, tmp_path):
    text = tiny_study.params_file.read_text(encoding="utf-8").replace("seed: 0", "seeds: [0, 1]")
    params = tmp_path / "two-seeds.yaml"
    params.write_text(text, encoding="utf-8")
    first, second = Study(params), Study(params, seed=1)
    assert (first.seed, second.seed) == (0, 1) and first.params.sample_seed == second.params.sample_seed == 0
    # Paired seeds: the same items scored, the same pairs trained on (in an order of the seed's own).
    assert first.suite.key == second.suite.key == tiny_study.suite.key
    assert first.training_examples == second.training_examples
    # One run per ordering and seed, each named after its seed.
    assert first.result_path("Q>F").name == "Q-F.seed0.json" and second.result_path("Q>F").name == "Q-F.seed1.json"
    assert second.notebook_path("base").name == "base.seed1.ipynb" and tiny_study.result_path("base").name == "base.json"
    assert first.store.key("P>Q") == second.store.key("P>Q") == tiny_study.store.key("P>Q")
    assert first.store.key("Q>F") != second.store.key("Q>F") and first.store.key("Q>F") == tiny_study.store.key("Q>F")
    assert first.result_key("P>Q") != second.result_key("P>Q")  # a result says which seed it is


VOLATILE_RESULT_KEYS = ("finished_at",)
VOLATILE_STEP_KEYS = ("seconds", "reused")


def comparable(result: dict) -> dict:
    """Return a result without what differs between two runs of the same states: times and reuse flags."""
    out = {k: v for k, v in result.items() if k not in VOLATILE_RESULT_KEYS}
    out["steps"] = [{k: v for k, v in s.items() if k not in VOLATILE_STEP_KEYS} for s in result["steps"]]
    if out.get("evaluation"):
        out["evaluation"] = {k: v for k, v in out["evaluation"].items() if k not in ("reused", "seconds")}
    return out


def test_an_ordering_taken_step_by_step_writes_the_result_run_ordering_writes(tiny_study):
    from orderstudy.study import probes

    quiet = lambda *a: None  # noqa: E731
    run = tiny_study.ordering_run("F>P", show=quiet)
    assert run.step(3) is None  # a notebook's section for a step this ordering does not have
    first = run.step(1)  # the base (step 0) is built as F's parent, not yet listed
    assert not first["reused"] and list(run.steps) == ["F"]
    check_probes(tiny_study, first["probes"])
    # The same cell executed again: the state is found in the store and the answers beside it.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(probes, "generate", lambda *a, **k: pytest.fail("the answers were generated again"))
        patch.setattr(probes, "held_out_pairs", lambda *a, **k: pytest.fail("the training pairs were encoded again"))
        again = run.step(1)
    assert again["reused"] and again["key"] == first["key"] and again["probes"] == first["probes"]
    run.step(2)
    result = run.finish()  # takes the step skipped (the base) and the evaluation
    assert [s["state"] for s in result["steps"]] == ["base", "F", "F>P"] and result["status"] == "ok"
    assert tiny_study.load_result("F>P") == result

    composed = Study(tiny_study.params_file).run_ordering("F>P", show=quiet)
    assert all(s["reused"] for s in composed["steps"]) and composed["evaluation"]["reused"]
    assert comparable(composed) == comparable(result)


def check_probes(study, shown: dict) -> None:
    """Check a fine-tune's probes: its own held-out pairs, answered by the base and by F, stored."""
    from orderstudy.study import probes
    from orderstudy.operations.finetune import training as finetune
    from orderstudy.operations.common import load_tokenizer
    from orderstudy.checkpoints.storage import load

    assert shown["held_out"] and len(shown["items"]) == probes.PROBE_COUNT
    base = study.store.state("base")
    pairs, held_out = probes.held_out_pairs(study, base.model_dir)
    assert held_out and {p["id"] for p in pairs} >= {p["id"] for p in shown["items"]}
    # They are the fine-tune's own held-out pairs: the base model's loss on them is the loss the
    # fine-tune recorded before training.
    params, tokenizer = study.params.finetune, load_tokenizer(base.model_dir)
    encoded = [finetune.encode_example(tokenizer, p["prompt"], p["answer"], params.max_seq_len) for p in pairs]
    loss = finetune.mean_loss(load(base.model_dir, "float32", "cpu"), encoded, tokenizer.pad_token_id, params.batch_size, "cpu")
    record = study.store.state("F").record()["info"]
    assert loss == pytest.approx(record["validation_loss_before"], rel=1e-5)
    assert len(pairs) == record["validation_examples"]
    assert all(p["gold"] and isinstance(p["before"], str) and isinstance(p["after"], str) for p in shown["items"])
    # Each state's answers beside it; the fine-tune's before-and-after beside F.
    f = study.store.state("F")
    assert len(list((base.dir / "probes").glob("*.json"))) == 1
    assert len(list((f.dir / "probes").glob("*.json"))) == 2 and len(list((f.dir / "probes").glob("before-after-*.json"))) == 1


def test_states_made_before_the_notebooks_come_with_their_probes(tiny_study):
    """The in-process phase (a vLLM study's) makes an F state's probes with it: its notebook only reads them."""
    from orderstudy.study import probes
    from orderstudy.execution.in_process import run_in_process

    report = run_in_process([tiny_study], ["F", "Q>F"], show=lambda *a: None)
    assert sorted(report["built"]) == ["F", "Q", "Q>F", "base"] and not report["failed"]
    for name in ("F", "Q>F"):
        assert len(list((tiny_study.store.state(name).dir / "probes").glob("before-after-*.json"))) == 1
    check_probes(tiny_study, tiny_study.finetune_probes("F"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(probes, "generate", lambda *a, **k: pytest.fail("the answers were generated again"))
        patch.setattr(probes, "held_out_pairs", lambda *a, **k: pytest.fail("the training pairs were encoded again"))
        step = tiny_study.ordering_run("Q>F", show=lambda *a: None).step(2)
    assert step["reused"] and len(step["probes"]["items"]) == probes.PROBE_COUNT
    # QLoRA's probes: the 4-bit Q answered before (as the evaluation scores it on a CPU: its dense
    # equivalent, which in float32 answers exactly as bitsandbytes' reference kernel), F after.
    q = tiny_study.store.state("Q")
    prompts = [p["prompt"] for p in step["probes"]["items"]]
    assert [p["before"] for p in step["probes"]["items"]] == probes.generate(
        q.model_dir, prompts, "float32", "cpu", quantized_on_cpu="bitsandbytes")
    assert all(isinstance(p["after"], str) for p in step["probes"]["items"])


def test_a_step_that_fails_in_its_notebook_cell_is_recorded(tiny_study):
    params = tiny_study.params.model_copy(update={"finetune": tiny_study.params.finetune.model_copy(update={"max_seq_len": 16})})
    study = Study(tiny_study.params_file, params=params)
    run = study.ordering_run("P>F", show=lambda *a: None)
    run.step(0)
    run.step(1)
    with pytest.raises(ValueError, match="training example"):
        run.step(2)
    result = study.load_result("P>F")
    assert result["status"] == "failed" and result["error"]["step"] == "P>F"
    assert [s["state"] for s in result["steps"]] == ["base", "P"] and "Traceback" in result["error"]["traceback"]
    with pytest.raises(ValueError, match="training example"):
        run.evaluate()  # evaluating first takes the missing step, which fails again, and says so
    assert study.load_result("P>F")["error"]["step"] == "P>F"
