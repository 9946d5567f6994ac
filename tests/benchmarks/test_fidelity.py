"""The fidelity benchmarks (kl, flip) through the study's evaluation, on the tiny model and a perturbed copy of it.

The held-out texts must be real items that are never evaluated; the KL divergence of a state must
equal the one computed directly from the two models; the base compared with itself must be 0 on
both; a flip must be exactly a changed answer; and the report must give a divergence a t interval
(not a proportion's) and no change rate against the base.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from orderstudy.benchmarks.fidelity import kl
from orderstudy.benchmarks.fidelity.benchmark import FLIP, KL
from orderstudy.checkpoints import models, storage
from orderstudy.core.params import EvaluationParams

from orderstudy.evaluation import engine as evaluation
from orderstudy.report import intervals

PARAMS = dict(benchmarks=("stem", "kl", "flip"), lawbench_tasks=("1-2", "2-3"), lawbench_items_per_task=2,
              mmlu_items_per_subject=2, kl_texts=6, kl_tokens=24, kl_top_k=49_152)  # the whole vocabulary: exact


@pytest.fixture(scope="module")
def perturbed(tiny_model_dir, tmp_path_factory):
    """A copy of the tiny model with one MLP projection scaled: a state that has drifted from the base."""
    out = tmp_path_factory.mktemp("perturbed") / "model"
    shutil.copytree(tiny_model_dir, out)
    model = storage.load(out, "float32", "cpu")
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(4.0)
        model.lm_head.weight.mul_(3.0)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def suite(tiny_model_dir, tmp_path_factory):
    tokenizer, context = models.tokenizer_and_context(tiny_model_dir)
    return evaluation.build_suite(EvaluationParams(**PARAMS), 0, tmp_path_factory.mktemp("suite"), tokenizer, context)


def test_held_out_texts_are_real_items_after_the_evaluation_sample(suite):
    params = suite.params
    texts = suite.compared["kl"]
    assert [len(texts["lawbench"]), len(texts["mmlu"])] == [3, 3]
    evaluated = {i for ids in suite.sample_ids["stem"].values() for i in ids}
    assert not evaluated & {row["id"] for row in texts["mmlu"]}
    # An evaluated LawBench item sits among the first lawbench_items_per_task of its seeded order.
    from orderstudy.benchmarks import data
    from orderstudy.core import paths

    for row in texts["lawbench"]:
        task, index = row["id"].rsplit("/", 1)
        items = data.load_lawbench_task(paths.resolve(params.lawbench_data), "zero_shot", task)
        order = data._order(len(items), 0, f"lawbench/{task}")
        assert order.index(int(index)) >= params.lawbench_items_per_task
        assert row["text"].startswith(items[int(index)]["instruction"])
    # They join the evaluated items that no training or calibration pair may share.
    assert {r["id"] for r in KL.evaluated_items(params, suite.sample_ids["kl"])} == {
        row["id"] for rows in texts.values() for row in rows}
    assert "kl" not in suite.benchmarks and "flip" not in suite.benchmarks   # lm-eval does not run them


def test_the_base_against_itself_is_zero_and_a_perturbed_state_is_its_direct_divergence(suite, tiny_model_dir, perturbed):
    tokenizer = models.load_tokenizer(tiny_model_dir)
    itself = evaluation.Base(tiny_model_dir, "base-key", "float32", "cpu", is_self=True)
    base_scores = evaluation.evaluate(suite, model_dir=tiny_model_dir, device="cpu", dtype="float32", base=itself)
    assert base_scores["benchmarks"]["kl"]["score"] == 0.0
    assert base_scores["benchmarks"]["flip"]["score"] == 0.0
    assert list(base_scores["benchmarks"]) == ["stem", "kl", "flip"]   # the params' order

    base = evaluation.Base(tiny_model_dir, "base-key", "float32", "cpu", answers=base_scores["answers"])
    scores = evaluation.evaluate(suite, model_dir=perturbed, device="cpu", dtype="float32", base=base)
    items = scores["items"]["kl"]
    texts = [row for rows in suite.compared["kl"].values() for row in rows]
    sequences = [tokenizer(row["text"])["input_ids"][:suite.params.kl_tokens] for row in texts]
    base_logp = _logprobs(storage.load(tiny_model_dir, "float32", "cpu"), sequences)
    state_logp = _logprobs(storage.load(perturbed, "float32", "cpu"), sequences)
    direct = [float((p.exp() * (p - q)).sum(-1).mean()) for p, q in zip(base_logp, state_logp)]
    got = [items[source][row["id"]] for source, rows in suite.compared["kl"].items() for row in rows]
    assert got == pytest.approx(direct, rel=1e-4) and min(direct) > 1e-3
    entry = scores["benchmarks"]["kl"]
    assert entry["score"] == pytest.approx(np.mean(got), abs=1e-6)   # in nats per token (6 decimals), not percent
    # The reference is kept: computed once per base and suite.
    assert [p.name for p in (suite.tasks_dir / "kl").iterdir()] == ["reference-base-key-top49152.npz"]

    flips = scores["items"]["flip"]
    for subject, chosen in scores["answers"]["stem"].items():
        for item_id, letter in chosen.items():
            assert flips[subject][item_id] == float(letter != base_scores["answers"]["stem"][subject][item_id])
    assert 0 < scores["benchmarks"]["flip"]["score"] <= 100
    assert entry["tasks"]["lawbench"]["tokens"] == sum(len(s) - 1 for s in sequences[:3])


def _logprobs(model, sequences):
    with torch.no_grad():
        return [torch.log_softmax(model(input_ids=torch.tensor([s])).logits[0, :-1].float(), -1) for s in sequences]


def test_chosen_letter_reads_lm_evals_samples_both_ways():
    from orderstudy.benchmarks.mmlu.benchmark import chosen_letter

    assert chosen_letter({"filtered_resps": [(-3.0, False), (-1.0, True), (-1.0, False), (-9.0, False)]}) == "B"
    assert chosen_letter({"filtered_resps": ["The answer is (C)."]}) == "C"
    assert chosen_letter({"filtered_resps": ["no idea"]}) == ""


def test_flip_needs_an_mmlu_group(tmp_path):
    from orderstudy.core.params import ParamsError, load_params

    path = tmp_path / "study.yaml"
    path.write_text("study: t\nmodel: {source: cache/models/x}\nevaluation: {benchmarks: [lawbench, flip]}\n")
    with pytest.raises(ParamsError, match=r"evaluation.benchmarks.*'flip' compares MMLU answers.*add stem or mmlu_law"):
        load_params(path)


def test_a_divergence_gets_a_t_interval_and_its_difference_the_paired_t_interval():
    from scipy import stats

    rng = np.random.default_rng(0)
    a = rng.gamma(2.0, 0.05, size=12)
    b = a + rng.normal(0.03, 0.02, size=12).clip(-a)
    design = intervals.Design(("texts",), np.zeros(12, dtype=int), np.array([1.0]), continuous=True)
    arm_a, arm_b = (intervals.Arm(x[None, :], np.array([x.mean()])) for x in (a, b))
    score = intervals.score_interval(design, arm_b, 0.95)
    # One task of 12 texts: shrinkage toward the pooled variance changes nothing, the t interval of a mean.
    want = stats.t.interval(0.95, 11, loc=b.mean(), scale=b.std(ddof=1) / np.sqrt(12))
    assert (score.low, score.high) == pytest.approx(want, rel=1e-9)   # in nats, not percent
    diff = intervals.difference(design, arm_a, arm_b, 0.95)
    d = b - a
    want = stats.t.interval(0.95, 11, loc=d.mean(), scale=d.std(ddof=1) / np.sqrt(12))
    assert (diff.low, diff.high) == pytest.approx(want, rel=1e-9)
    assert diff.significant == bool(want[0] > 0 or want[1] < 0)


def test_a_study_that_evaluates_every_item_takes_its_held_out_texts_from_subjects_it_never_asks(mmlu_dir, lawbench_dir):
    from orderstudy.benchmarks import data

    params = EvaluationParams(benchmarks=("lawbench", "stem", "mmlu_law", "kl"), lawbench_items_per_task=None,
                              mmlu_items_per_subject=None, kl_texts=10)
    texts = KL.sample(params, 0)
    assert list(texts) == ["mmlu"] and len(texts["mmlu"]) == 10   # no LawBench item is left unevaluated
    subjects = {row["id"].rsplit("/", 1)[0] for row in texts["mmlu"]}
    assert len(subjects) == 10 and not subjects & (set(data.STEM_SUBJECTS) | set(data.LAW_SUBJECTS))
    assert KL.weights(("mmlu",), params) == {"mmlu": 1.0}
    # Half and half when both leave items out.
    half = EvaluationParams(benchmarks=("kl",), lawbench_items_per_task=3, mmlu_items_per_subject=3, kl_texts=10)
    assert {k: len(v) for k, v in KL.sample(half, 0).items()} == {"lawbench": 5, "mmlu": 5}
