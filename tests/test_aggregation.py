"""Benchmark scores aggregated as the field reports them: MMLU groups by subject size, LawBench unweighted."""

import pytest

from orderstudy.benchmarks.data import LAW_SUBJECTS, STEM_SUBJECTS
from orderstudy.benchmarks.mmlu.benchmark import subject_sizes as mmlu_subject_sizes
from orderstudy.core.benchmark import get_benchmark
from orderstudy.core.params import EvaluationParams
from orderstudy.evaluation.scores import aggregate, is_aggregated_as


def task_weights(benchmark, tasks, params):
    return get_benchmark(benchmark).weights(tasks, params)


def test_mmlu_subjects_weigh_their_full_size(mmlu_dir):
    sizes = mmlu_subject_sizes(mmlu_dir, LAW_SUBJECTS)
    assert sizes == {"professional_law": 1534, "international_law": 121, "jurisprudence": 108}  # lm-eval's MMLU
    assert sum(mmlu_subject_sizes(mmlu_dir, STEM_SUBJECTS).values()) == 3153  # lm-eval's mmlu_stem (test split)
    params = EvaluationParams(mmlu_data=str(mmlu_dir))
    weights = task_weights("mmlu_law", LAW_SUBJECTS, params)
    assert weights["professional_law"] == pytest.approx(1534 / 1763)
    assert task_weights("mmlu_law", LAW_SUBJECTS, params.model_copy(update={"mmlu_weight_by_size": False})) == \
        dict.fromkeys(LAW_SUBJECTS, pytest.approx(1 / 3))
    assert task_weights("lawbench", ["1-1", "2-1"], params) == {"1-1": 0.5, "2-1": 0.5}


def test_aggregate_rewrites_the_score_and_says_how(mmlu_dir):
    params = EvaluationParams(mmlu_data=str(mmlu_dir))
    scores = {
        "mmlu_law": {"score": 50.0, "tasks": {"professional_law": {"score": 20.0, "n": 5},
                                              "international_law": {"score": 80.0, "n": 5},
                                              "jurisprudence": {"score": 50.0, "n": 5}}},
        "lawbench": {"score": 30.0, "tasks": {"1-1": {"score": 20.0, "n": 2}, "3-8": {"score": 40.0, "n": 2}}},
    }
    out = aggregate(scores, params)
    assert out["mmlu_law"]["score"] == pytest.approx((1534 * 20 + 121 * 80 + 108 * 50) / 1763, abs=1e-6)
    assert "weighted by subject size" in out["mmlu_law"]["aggregation"]
    assert out["mmlu_law"]["tasks"]["professional_law"]["population"] == 1534
    assert out["lawbench"]["score"] == 30.0 and "unweighted" in out["lawbench"]["aggregation"]
    assert scores["mmlu_law"]["score"] == 50.0  # the evaluation's own record is left as it was
    equal = aggregate(scores, params.model_copy(update={"mmlu_weight_by_size": False}))
    assert equal["mmlu_law"]["score"] == pytest.approx(50.0) and "unweighted mean of the subjects" in equal["mmlu_law"]["aggregation"]


def test_an_evaluation_knows_whether_it_was_aggregated_as_the_params_say(mmlu_dir):
    params = EvaluationParams(mmlu_data=str(mmlu_dir))
    scores = {"mmlu_law": {"score": None, "tasks": {"professional_law": {"score": 20.0, "n": 5},
                                                    "international_law": {"score": 80.0, "n": 5}}}}
    weighted = aggregate(scores, params)
    unweighted = params.model_copy(update={"mmlu_weight_by_size": False})
    assert is_aggregated_as(weighted, params) and not is_aggregated_as(weighted, unweighted)
    assert not is_aggregated_as(scores, params)  # never aggregated
    again = aggregate(weighted, unweighted)
    assert again["mmlu_law"]["score"] == pytest.approx(50.0) and is_aggregated_as(again, unweighted)
