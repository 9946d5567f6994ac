"""Bootstrap intervals: they cover a known answer, pairing narrows them, the seed fixes them."""

import numpy as np
import pytest

from orderstudy.report.bootstrap import benchmark_draws, excludes_zero, interval

TRUE_P = {"easy": 0.6, "hard": 0.3}  # the macro average of a model with these is 45%


def _model(rng, n_items=60):
    return {task: {f"{task}/{i}": float(rng.random() < p) for i in range(n_items)} for task, p in TRUE_P.items()}


def test_interval_covers_the_true_score_at_about_the_stated_rate():
    rng = np.random.default_rng(0)
    covered = 0
    trials = 150
    for trial in range(trials):
        draws = benchmark_draws({"m": _model(rng)}, benchmark="stem", resamples=300, seed=trial)
        low, high = interval(draws.of("m"), 0.95)
        covered += low <= 45.0 <= high
    # Binomial(150, 0.95) lies in [134, 149] with probability > 0.99; percentile intervals on
    # 60 binary items per task run a little narrow, hence the lower bound's margin.
    assert 130 <= covered <= 150


def test_resampling_keeps_the_macro_average_as_centre():
    items = {"m": {"a": {str(i): float(i % 2) for i in range(10)}, "b": {str(i): 1.0 for i in range(4)}}}
    draws = benchmark_draws(items, benchmark="x", resamples=2000, seed=0)
    assert draws.estimates[0] == pytest.approx(75.0)  # (50 + 100) / 2: tasks weigh equally
    assert draws.of("m").mean() == pytest.approx(75.0, abs=1.0)


def _correlated_pair(seed=1, n_items=80):
    """Two models that agree on most items (as two versions of one model do)."""
    rng = np.random.default_rng(seed)
    a = {task: {f"{task}/{i}": float(rng.random() < 0.5) for i in range(n_items)} for task in ("t1", "t2")}
    b = {task: {k: (1.0 - v if rng.random() < 0.1 else v) for k, v in scores.items()} for task, scores in a.items()}
    return {"a": a, "b": b}


def test_paired_interval_is_narrower_on_correlated_models():
    items = _correlated_pair()
    widths = {}
    for paired in (True, False):
        draws = benchmark_draws(items, benchmark="stem", resamples=1000, seed=3, paired=paired)
        low, high = interval(draws.of("b") - draws.of("a"), 0.95)
        widths[paired] = high - low
    assert widths[True] < 0.6 * widths[False]


def test_same_seed_same_intervals_other_seed_other_intervals():
    items = _correlated_pair()

    def ci(seed):
        draws = benchmark_draws(items, benchmark="stem", resamples=200, seed=seed)
        return interval(draws.of("a"), 0.95) + interval(draws.of("b") - draws.of("a"), 0.95)

    assert ci(7) == ci(7)
    assert ci(7) != ci(8)


def test_models_share_resampled_items():
    items = _correlated_pair()
    items["c"] = items["a"]  # an identical model: paired differences are exactly zero
    draws = benchmark_draws(items, benchmark="stem", resamples=100, seed=0)
    assert np.array_equal(draws.of("a"), draws.of("c"))


def test_a_task_missing_for_one_model_is_an_error():
    items = _correlated_pair()
    del items["b"]["t2"]
    with pytest.raises(ValueError, match="task 't2' has per-item scores for some models but not for b"):
        benchmark_draws(items, benchmark="stem", resamples=10, seed=0)


def test_different_items_fall_back_to_the_shared_ones():
    items = _correlated_pair()
    items["b"]["t1"] = dict(list(items["b"]["t1"].items())[:50])
    with pytest.warns(UserWarning, match="use the 50 items all of them share"):
        benchmark_draws(items, benchmark="stem", resamples=10, seed=0)


def test_undefined_replicates_give_no_interval():
    assert np.isnan(interval(np.array([1.0, np.nan, 2.0]), 0.95)).all()
    assert excludes_zero(float("nan"), 1.0) is None
    assert excludes_zero(0.5, 2.0) is True and excludes_zero(-1.0, 2.0) is False
