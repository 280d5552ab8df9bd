import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_mmperf.results import stats

finite = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(st.lists(finite, min_size=1, max_size=60), st.sampled_from([0.9, 0.95, 0.99]))
def test_summary_orders_its_statistics(xs, confidence):
    s = stats.summarize(xs, confidence)
    assert s.n == len(xs)
    assert s.min <= s.ci_low <= s.median <= s.ci_high <= s.max
    assert s.q1 <= s.median <= s.q3
    assert s.iqr >= 0
    assert math.isclose(s.median, float(np.median(xs)), rel_tol=1e-12, abs_tol=1e-12)


@given(st.lists(finite, min_size=2, max_size=40))
def test_median_ci_uses_observed_values(xs):
    lo, hi = stats.median_ci(xs, 0.95)
    assert lo in xs and hi in xs


def test_median_ci_known_ranks():
    # n = 10 at 95%: the 2nd and 9th order statistics (binomial table)
    assert stats.median_ci(list(range(1, 11)), 0.95) == (2.0, 9.0)
    # n = 5 is too few for 95%: the sample range
    assert stats.median_ci([5, 1, 3, 2, 4], 0.95) == (1.0, 5.0)


def test_median_ci_covers_true_median_at_nominal_rate():
    rng = np.random.default_rng(1)
    hits = 0
    trials = 400
    for _ in range(trials):
        x = rng.lognormal(0.0, 0.3, size=25)  # true median exp(0) = 1
        lo, hi = stats.median_ci(x, 0.95)
        hits += lo <= 1.0 <= hi
    assert hits / trials >= 0.92  # exact interval: coverage >= nominal up to sampling error


@given(st.lists(finite, min_size=2, max_size=30), st.floats(min_value=0.2, max_value=5))
@settings(max_examples=30, deadline=None)
def test_ratio_of_scaled_samples_is_the_scale(xs, k):
    r = stats.ratio_of_medians([x * k for x in xs], xs)
    assert math.isclose(r.ratio, k, rel_tol=1e-9)
    assert r.ci_low <= r.ratio <= r.ci_high


def test_ratio_ci_excludes_one_for_a_clear_difference():
    rng = np.random.default_rng(2)
    a = rng.normal(13.0, 0.3, 15)
    b = rng.normal(10.0, 0.3, 15)
    r = stats.ratio_of_medians(a, b, 0.99)
    assert 1.2 < r.ci_low <= r.ratio <= r.ci_high < 1.4


def test_ratio_is_reproducible():
    a, b = [1.0, 1.2, 1.1, 1.3], [0.9, 1.0, 0.95, 1.05]
    assert stats.ratio_of_medians(a, b) == stats.ratio_of_medians(a, b)


def test_summary_refuses_empty_and_non_finite():
    for bad in ([], [1.0, float("nan")]):
        try:
            stats.summarize(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")
