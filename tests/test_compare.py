"""The comparison engine: pure functions, no pytest plugin, no torch."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_mmperf.judge import compare
from pytest_mmperf.judge.compare import Category, Policy
from pytest_mmperf.results.metrics import SPEEDUP
from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord, Speedup

# a host whose drift its owner configured (--mmperf-drift-allowance=50%): timings are judged across sessions
CONFIGURED = Policy(drift_allowance=0.5)
SAMPLES = st.lists(st.floats(min_value=0.5, max_value=100.0, allow_nan=False), min_size=5, max_size=30)


def noisy(median, n, cv=0.03, seed=0):
    rng = np.random.default_rng(seed)
    return list(median * (1 + cv * rng.standard_normal(n)))


def record(bid="b", **metrics):
    recs = {}
    for name, samples in metrics.items():
        if name == "speedup":
            continue
        recs[name] = MetricRecord.from_samples(name, samples)
    return BenchmarkRecord(id=bid, workload="llm", task="t2t", optimizations=(), scale="tiny",
                           device="cpu", batch_size=1, metrics=recs)


@given(SAMPLES)
@settings(max_examples=60, deadline=None)
def test_identical_samples_never_regress(samples):
    for kind in (compare.TIMING, compare.IN_RUN):
        for direction in ("lower", "higher"):
            m = compare.compare_samples("b", "latency_ms", samples, list(samples), direction, CONFIGURED, kind=kind)
            assert m.category is not Category.REGRESSED
            assert m.category is not Category.IMPROVED


@given(st.integers(min_value=0, max_value=10_000))
@settings(max_examples=30, deadline=None)
def test_a_30_percent_slowdown_with_10_samples_is_caught(seed):
    # both sides measured in one job (no cross-session drift allowance), as mmperf ab does
    same_job = Policy(cross_session=False)
    base = noisy(10.0, 10, seed=seed)
    cur = noisy(13.0, 10, seed=seed + 1)
    m = compare.compare_samples("b", "latency_ms", base, cur, "lower", same_job)
    assert m.category is Category.REGRESSED
    assert 0.2 < m.change < 0.4
    assert m.ci_low is not None and m.ci_low <= m.change <= m.ci_high
    assert m.p_value is not None and m.p_value < same_job.alpha


SAME_JOB = Policy(cross_session=False)


def test_higher_is_better_direction():
    base = noisy(100.0, 10)
    drop = noisy(70.0, 10, seed=3)
    rise = noisy(130.0, 10, seed=4)
    assert compare.compare_samples("b", "tokens_per_s", base, drop, "higher", SAME_JOB).category is Category.REGRESSED
    assert compare.compare_samples("b", "tokens_per_s", base, rise, "higher", SAME_JOB).category is Category.IMPROVED
    # the same numbers as latencies read the other way round
    assert compare.compare_samples("b", "latency_ms", base, drop, "lower", SAME_JOB).category is Category.IMPROVED


def test_two_samples_are_inconclusive_never_a_pass():
    m = compare.compare_samples("b", "latency_ms", [1.0, 1.1], [5.0, 5.2], "lower", CONFIGURED)
    assert m.category is Category.INCONCLUSIVE
    assert "too few rounds" in m.reason and m.more_rounds_help


def test_samples_that_cannot_reach_the_corrected_alpha_are_inconclusive():
    # 5 vs 5 samples: the smallest one-sided p is 1/252, above 0.01 / 60
    m = compare.compare_samples("b", "latency_ms", noisy(10, 5), noisy(10, 5, seed=2), "lower",
                                Policy(family_size=60, drift_allowance=0.5))
    assert m.category is Category.INCONCLUSIVE
    assert "cannot reach" in m.reason


def test_too_noisy_is_inconclusive_not_unchanged():
    rng = np.random.default_rng(1)
    base = list(rng.lognormal(0, 1.0, 12))
    cur = list(rng.lognormal(0, 1.0, 12))
    m = compare.compare_samples("b", "latency_ms", base, cur, "lower", CONFIGURED)
    assert m.category is Category.INCONCLUSIVE
    assert "not shown unchanged" in m.reason and "more rounds or a quieter machine" in m.reason


def test_across_sessions_timings_and_in_run_ratios_get_their_drift_allowances():
    base, cur = noisy(10.0, 20, cv=0.01), noisy(11.0, 20, cv=0.01, seed=5)  # +10%, clearly significant
    timing = compare.compare_samples("b", "latency_ms", base, cur, "lower", CONFIGURED, kind=compare.TIMING)
    # the threshold composed with the drift allowance: (1 + 5%) * (1 + 50%) - 1, and the interval
    # lies within the band -36.5%..+57.5%: unchanged, shown
    assert timing.category is Category.UNCHANGED
    assert math.isclose(timing.threshold, 1.05 * 1.5 - 1)
    assert "within the band -36.5%..+57.5%" in timing.describe() and timing.allowance == "configured allowance 50%"
    # an in-run ratio drifts less (measured -18..+43% between two quiet sessions): its allowance is
    # capped at 20%, a drop beyond 1 - 1 / (1.05 * 1.2) = 20.6%
    ratio = compare.compare_samples("b", "speedup_vs_eager", cur, base, "higher", CONFIGURED, kind=compare.IN_RUN)
    assert ratio.category is Category.UNCHANGED
    assert math.isclose(ratio.threshold, 1 - 1 / (1.05 * (1 + compare.RATIO_DRIFT_ALLOWANCE)))
    # within one job (mmperf ab), or with no drift allowed (a dedicated runner): the plain threshold,
    # mirrored on the log scale for a drop: 1 - 1 / 1.05
    for policy in (Policy(cross_session=False), Policy(drift_allowance=0.0)):
        one_job = compare.compare_samples("b", "speedup_vs_eager", cur, base, "higher", policy, kind=compare.IN_RUN)
        assert one_job.category is Category.REGRESSED and math.isclose(one_job.threshold, 1 - 1 / 1.05)
    no_drift = compare.compare_samples("b", "latency_ms", base, cur, "lower", Policy(drift_allowance=0.0))
    assert no_drift.category is Category.REGRESSED


def test_per_metric_thresholds():
    base = record(peak_rss_bytes=[100.0], kv_cache_bytes=[100.0])
    cur = record(peak_rss_bytes=[108.0], kv_cache_bytes=[108.0])
    comp = compare.compare_benchmarks(base, cur, Policy(thresholds={"peak_rss_bytes": 0.10}))
    by = {m.metric: m for m in comp.metrics}
    assert by["peak_rss_bytes"].category is Category.UNCHANGED
    assert by["kv_cache_bytes"].category is Category.REGRESSED
    assert by["kv_cache_bytes"].kind == compare.EXACT and by["kv_cache_bytes"].p_value is None
    assert comp.category is Category.REGRESSED


def test_speedup_drop_from_per_round_ratios():
    eager = noisy(20.0, 12, cv=0.02)
    fast = noisy(10.0, 12, cv=0.02, seed=1)
    slower = noisy(12.0, 12, cv=0.02, seed=2)  # speedup 2.0 -> 1.67
    base = BenchmarkRecord("b", "llm", "t2t", ("compile",), "tiny", "cpu", 1,
                           {"latency_ms": MetricRecord.from_samples("latency_ms", fast),
                            "eager_latency_ms": MetricRecord.from_samples("eager_latency_ms", eager)},
                           speedup_vs_eager=Speedup(2.0, 1.9, 2.1))
    cur = BenchmarkRecord("b", "llm", "t2t", ("compile",), "tiny", "cpu", 1,
                          {"latency_ms": MetricRecord.from_samples("latency_ms", slower),
                           "eager_latency_ms": MetricRecord.from_samples("eager_latency_ms", eager)},
                          speedup_vs_eager=Speedup(1.67, 1.6, 1.75))
    # -16.5%: within the cross-session bound (20.8%), a regression within one job
    across = next(m for m in compare.compare_benchmarks(base, cur, CONFIGURED).metrics if m.metric == SPEEDUP)
    assert across.category is not Category.REGRESSED
    comp = compare.compare_benchmarks(base, cur, Policy(cross_session=False))
    sp = next(m for m in comp.metrics if m.metric == SPEEDUP)
    assert sp.kind == compare.IN_RUN and sp.category is Category.REGRESSED
    assert "speedup_vs_eager median speedup -1" in sp.describe()
    same = compare.compare_benchmarks(base, base, CONFIGURED)
    assert same.category is Category.UNCHANGED


def test_speedup_without_rounds_uses_stored_intervals():
    b = BenchmarkRecord("b", None, None, (), "tiny", "cpu", 1, {}, speedup_vs_eager=Speedup(2.0, 1.9, 2.1))
    c = BenchmarkRecord("b", None, None, (), "tiny", "cpu", 1, {}, speedup_vs_eager=Speedup(1.5, 1.45, 1.55))
    sp = compare.compare_benchmarks(b, c, CONFIGURED).metrics[0]
    assert sp.category is Category.REGRESSED and "do not overlap" in sp.reason


def test_ungated_metrics_never_decide():
    base = record(latency_ms=noisy(10, 10))
    base = BenchmarkRecord(**{**base.__dict__, "metrics": {
        "first_call_ms": MetricRecord.from_samples("first_call_ms", [1.0], gated=False),
        **base.metrics}})
    cur = BenchmarkRecord(**{**base.__dict__, "metrics": {
        "first_call_ms": MetricRecord.from_samples("first_call_ms", [100.0], gated=False),
        "latency_ms": base.metrics["latency_ms"]}})
    comp = compare.compare_benchmarks(base, cur, CONFIGURED)
    assert comp.category is Category.UNCHANGED


def test_family_size_and_q_values():
    from pytest_mmperf.results.records import RunDocument

    doc = RunDocument({"fingerprint": "x"}, (record("a", latency_ms=[1.0] * 5, peak_rss_bytes=[1.0]),
                                              record("b", latency_ms=[1.0] * 5, tpot_ms=[1.0] * 5,
                                                     tokens_per_s=[1.0] * 5, eager_latency_ms=[1.0] * 5)))
    # primary timings only: tokens_per_s (derived) and the eager arm do not count
    assert compare.family_size(doc) == 3
    assert compare.family_size(doc, {"a"}) == 1
    assert Policy(family_size=10).alpha == (1 - 0.99) / 10
    q = compare.q_values([0.01, 0.02, 0.5])
    assert all(qi >= pi for qi, pi in zip(q, [0.01, 0.02, 0.5])) and math.isclose(q[2], 0.5)


def test_absolute_timings_can_be_informational_only():
    base = record(latency_ms=noisy(10, 12), kv_cache_bytes=[100.0])
    cur = record(latency_ms=noisy(20, 12, seed=1), kv_cache_bytes=[100.0])  # +100%: beyond the drift
    assert compare.compare_benchmarks(base, cur, CONFIGURED).category is Category.REGRESSED
    comp = compare.compare_benchmarks(base, cur, Policy(drift_allowance=0.5, gate_absolute=False))
    assert comp.category is Category.UNCHANGED
    (lat,) = [m for m in comp.metrics if m.metric == "latency_ms"]
    assert lat.category is Category.REGRESSED and not lat.gated  # still reported
