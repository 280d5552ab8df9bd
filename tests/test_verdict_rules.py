"""The judging semantics, each rule with a test that fails when the rule is wrong (no pytest run, no torch).

Three answers (unchanged shown by an interval within the band); intervals at the decision's
level; log-symmetric bounds; host trust; the drift allowance learned from the history; the family
the run collected; --mmperf-inconclusive.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from gate_data import ENV, rec
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from pytest_mmperf.judge import allowance, compare, intervals
from pytest_mmperf.judge.compare import Category, Policy
from pytest_mmperf.judge.gate import Gate
from pytest_mmperf.measure import host
from pytest_mmperf.report.comparison import comparison_lines
from pytest_mmperf.results import baselines
from pytest_mmperf.results.fingerprint import fingerprint
from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord, RunDocument
from pytest_mmperf.settings import Settings, UsageError, resolve

CONFIGURED = Policy(drift_allowance=0.5)  # --mmperf-drift-allowance=50%: the bound is +57.5%


def lognormal(median: float, n: int, sd: float, seed: int) -> list[float]:
    return list(median * np.exp(sd * np.random.default_rng(seed).standard_normal(n)))


# -- the interval at the decision's level -----------------------------------------------------------
@pytest.mark.parametrize(("n", "m"), [(5, 5), (12, 12), (7, 13), (30, 20)])
def test_the_null_counts_are_the_orderings(n: int, m: int) -> None:
    counts = intervals._u_counts(n, m)
    assert math.isclose(sum(counts), math.comb(n + m, n), rel_tol=1e-12)
    assert counts == counts[::-1]  # U and n*m - U are alike under the null
    assert counts[0] == 1  # one ordering puts every current value below every baseline value


@pytest.mark.parametrize(("n", "m"), [(3, 4), (5, 5), (4, 7)])
def test_the_null_counts_match_every_ordering_enumerated(n: int, m: int) -> None:
    from itertools import combinations

    seen = [0] * (n * m + 1)
    for xs in combinations(range(n + m), n):  # ranks of the x values
        ys = [r for r in range(n + m) if r not in xs]
        seen[sum(1 for x in xs for y in ys if x > y)] += 1
    assert tuple(float(c) for c in seen) == intervals._u_counts(n, m)


@pytest.mark.parametrize("alpha", [0.05, 1e-3, 1.1e-5, 4e-7, 1e-8])
def test_the_critical_count_is_the_tests_own(alpha: float) -> None:
    """P(U < k) <= alpha < P(U < k + 1); k >= 1 exactly when a perfect separation reaches alpha."""
    n = m = 12
    k = intervals.critical_count(n, m, alpha, exact=True)
    cdf = np.cumsum(intervals._u_counts(n, m)) / math.comb(24, 12)
    assert k == 0 or cdf[k - 1] <= alpha
    assert cdf[k] > alpha
    assert (k >= 1) == (compare.smallest_p(n, m) <= alpha)
    # scipy's exact one-sided p of a perfect separation is P(U = 0)
    p0 = sps.mannwhitneyu(np.arange(12.0), np.arange(12.0) + 100, alternative="less", method="exact").pvalue
    assert math.isclose(p0, cdf[0])


def test_interval_is_unbounded_when_the_rounds_cannot_reach_alpha() -> None:
    lo, hi = intervals.shift_interval([10.0] * 3 + [11.0, 12.0], [20, 21, 22, 23, 24], 1e-4)
    assert lo == 0.0 and hi == math.inf
    m = compare.compare_samples("b", "latency_ms", [10, 11, 12, 13, 14], [20, 21, 22, 23, 24], "lower",
                                Policy(family_size=100, drift_allowance=0.5))
    assert m.category is Category.INCONCLUSIVE and "cannot reach" in m.reason


def test_the_interval_beside_a_decision_is_at_its_level_and_labelled_so() -> None:
    suite = Policy(family_size=291, looks=3, drift_allowance=0.5)  # alpha = 1% / 873 = 1.1e-5
    assert suite.interval_label == "99.998% simultaneous CI"
    assert Policy(family_size=1).interval_label == "98% CI"  # one test at alpha 1%: two-sided 98%
    m = compare.compare_samples("b", "latency_ms", lognormal(10, 12, 0.02, 1), lognormal(20, 12, 0.02, 2),
                                "lower", suite)
    assert m.category is Category.REGRESSED
    assert "(99.998% simultaneous CI +" in m.describe() and m.interval == "99.998% simultaneous CI"
    assert math.isclose(m.confidence, 1 - 2 * suite.alpha)
    # the interval is the inverted test: wider than a plain 99% interval of the same rounds
    plain = compare.compare_samples("b", "latency_ms", lognormal(10, 12, 0.02, 1), lognormal(20, 12, 0.02, 2),
                                    "lower", Policy(drift_allowance=0.5, confidence=0.98))
    assert m.ci_low < plain.ci_low and m.ci_high > plain.ci_high


def test_counts_show_a_range_never_a_ci() -> None:
    b = MetricRecord.from_samples("latency_instructions", [1_000_000.0, 1_000_100.0])
    c = MetricRecord.from_samples("latency_instructions", [1_100_000.0, 1_100_200.0])
    m = compare.compare_counts("b", "latency_instructions", b, c, Policy())
    assert m.interval == "range" and "(range +" in m.describe() and "CI" not in m.describe()


# -- log-symmetric bounds ----------------------------------------------------------------------------
def test_bounds_are_symmetric_on_the_log_scale() -> None:
    assert math.isclose(CONFIGURED.timing_threshold("latency_ms"), 0.575)
    base = lognormal(10, 20, 0.01, 1)
    down40 = compare.compare_samples("b", "latency_ms", base, lognormal(6.0, 20, 0.01, 2), "lower", CONFIGURED)
    down30 = compare.compare_samples("b", "latency_ms", base, lognormal(7.0, 20, 0.01, 3), "lower", CONFIGURED)
    assert down40.category is Category.IMPROVED  # beyond 1 / 1.575 - 1 = -36.5%
    assert down30.category is Category.UNCHANGED  # -30% lies within -36.5%..+57.5%
    assert "within the band -36.5%..+57.5%" in down30.describe()
    # a speedup (higher is better) mirrors the same way: a drop beyond 1 - 1 / 1.05 = 4.8% within one job
    one_job = Policy(cross_session=False)
    assert math.isclose(one_job.ratio_threshold(compare.SPEEDUP), 1 - 1 / 1.05)


# -- three honest answers ----------------------------------------------------------------------------
def test_a_significant_30_percent_with_a_57_percent_bound_is_unchanged_only_inside_the_band() -> None:
    base = lognormal(10, 20, 0.01, 1)
    tight = compare.compare_samples("b", "latency_ms", base, lognormal(13, 20, 0.01, 2), "lower", CONFIGURED)
    assert tight.p_value is not None and tight.p_value < CONFIGURED.alpha  # significant +30%
    assert tight.category is Category.UNCHANGED
    assert tight.ci_low >= -0.365 and tight.ci_high <= 0.575
    # the same +30% with rounds so noisy that the interval reaches past +57.5%: not unchanged
    wide = compare.compare_samples("b", "latency_ms", lognormal(10, 12, 0.25, 3), lognormal(13, 12, 0.25, 4),
                                   "lower", CONFIGURED)
    assert wide.ci_high > 0.575
    assert wide.category is Category.INCONCLUSIVE and "not shown unchanged" in wide.reason
    assert wide.more_rounds_help  # more rounds could decide it


@given(st.integers(5, 25), st.integers(5, 25), st.floats(0.5, 2.0), st.floats(0.005, 0.4), st.integers(0, 10_000),
       st.integers(1, 300), st.sampled_from(["lower", "higher"]))
@settings(max_examples=150, deadline=None)
def test_no_metric_is_called_unchanged_without_its_interval_in_the_band(n1, n2, ratio, sd, seed, family, direction):
    policy = Policy(family_size=family, drift_allowance=0.2)
    b = lognormal(10, n1, sd, seed)
    c = lognormal(10 * ratio, n2, sd, seed + 1)
    m = compare.compare_samples("b", "latency_ms", b, c, direction, policy)
    lo, hi = m.band
    if m.category is Category.UNCHANGED:
        assert m.ci_low is not None and m.ci_high is not None
        assert lo <= m.ci_low and m.ci_high <= hi
    # a significant change beyond the bound is always a verdict, never unchanged or inconclusive
    worse = math.log1p(m.change) if direction == "lower" else -math.log1p(m.change)
    bound = math.log1p(policy.timing_threshold("latency_ms"))
    if m.p_value is not None and m.p_value < policy.alpha and worse > bound:
        assert m.category is Category.REGRESSED
    if m.category is Category.INCONCLUSIVE:
        assert m.reason


# -- host trust ---------------------------------------------------------------------------------------
def test_host_id_comes_from_the_machine_id_and_the_cpu(tmp_path: Path) -> None:
    mid = tmp_path / "machine-id"
    cpu = tmp_path / "cpuinfo"
    mid.write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    cpu.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
                   "model name\t: AMD EPYC\nstepping\t: 1\n\nprocessor\t: 1\nstepping\t: 9\n")
    assert host.cpu_identity(cpu) == "vendor_id=AuthenticAMD;cpu family=25;model=1;stepping=1"
    a = host.host_id([tmp_path / "missing", mid], cpu)
    assert a is not None and len(a) == 12 and "3d1219" not in a  # hashed: the raw id is not written
    mid.write_text("another machine\n")
    assert host.host_id([mid], cpu) != a  # an ephemeral VM: a new machine id, a new host
    assert host.host_id([tmp_path / "missing"], cpu) is None  # no machine id: an unknown host


def test_the_host_is_not_part_of_the_fingerprint() -> None:
    assert fingerprint(ENV) == fingerprint({**ENV, "host_id": "another"})
    committed = baselines.load(Path(__file__).resolve().parent.parent / "baselines" / "cpu-2c-1t-22affa9653.json")
    assert fingerprint(committed.environment) == committed.fingerprint == "cpu-2c-1t-22affa9653"


def _gate(tmp_path: Path, base_env: dict, settings: Settings | None = None, ids=("t.py::a",)) -> Gate:
    doc = RunDocument(base_env, tuple(replace(rec(i, 10), params={}) for i in ids), commit="abcdef1")
    baselines.save(doc, tmp_path / "baselines")
    return Gate.open(settings or Settings(compare=True), tmp_path, ENV, list(ids))


@pytest.mark.parametrize(("base_host", "why"), [
    (None, "records no host"),
    ("host-b", "is from host host-b, this is host host-a"),
])
def test_timings_against_another_hosts_baseline_are_reported_not_gated(tmp_path, base_host, why) -> None:
    env = {k: v for k, v in ENV.items() if k != "host_id"} | ({"host_id": base_host} if base_host else {})
    # even a configured allowance does not make another machine's speed comparable
    gate = _gate(tmp_path, env, Settings(compare=True, drift_allowance=0.5))
    slow = gate.check(rec("t.py::a", 30, seed=2))  # 3x slower: not judged
    assert not slow.failed and why in slow.details["not_gated"]
    assert "no drift estimate for this host (use `mmperf ab`, the instruction clock, or record 8 sessions here)" \
        in slow.message
    assert gate.family_size() == 1  # nothing statistical left in the family (at least 1)
    drifted = gate.check(rec("t.py::a", 10, seed=3, tokens=(1, 9, 3)))  # output drift still fails
    assert drifted.failed and "output drift" in drifted.message
    text = "\n".join(comparison_lines(gate, [slow]))
    assert "timings and speedups across sessions not gated" in text and why in text
    assert "not gated in 1 benchmark(s)" in text
    # no test ran, so the rule states none (not "p < 0.01 ... over 0 comparisons")
    assert "no Mann-Whitney test in this run (no timing or speedup of the 1 collected benchmark(s) is gated)" \
        in text and "Mann-Whitney p <" not in text and "over 0 comparisons" not in text


def test_bytes_still_gate_on_another_host(tmp_path) -> None:
    env = {k: v for k, v in ENV.items() if k != "host_id"}
    base = replace(rec("t.py::a", 10), metrics={**rec("t.py::a", 10).metrics,
                                                "weight_bytes": MetricRecord.from_samples("weight_bytes", [100.0])})
    baselines.save(RunDocument(env, (base,), commit="abc"), tmp_path / "baselines")
    gate = Gate.open(Settings(compare=True), tmp_path, ENV, [base.id])
    grown = replace(base, metrics={**base.metrics, "weight_bytes": MetricRecord.from_samples("weight_bytes", [150.0])})
    v = gate.check(grown)
    assert v.failed and "weight_bytes" in v.message


def test_this_host_without_history_under_auto_is_not_gated(tmp_path) -> None:
    gate = _gate(tmp_path, ENV)  # same host, default auto, no history
    v = gate.check(rec("t.py::a", 30, seed=2))
    assert not v.failed and "no drift estimate for this host" in v.details["not_gated"]
    assert "no Mann-Whitney test in this run" in "\n".join(comparison_lines(gate, [v]))
    judged = _gate(tmp_path / "judged", ENV, Settings(compare=True, drift_allowance=0.5))  # a test is run
    assert "regression = Mann-Whitney p < 0.0033 (Bonferroni: 99% over 1 comparisons" \
        in "\n".join(comparison_lines(judged, [judged.check(rec("t.py::a", 10))]))


# -- the learned allowance ---------------------------------------------------------------------------
def test_an_allowance_is_learned_from_enough_sessions_only() -> None:
    rng = np.random.default_rng(0)
    quiet = list(10 * np.exp(0.02 * rng.standard_normal(9)))
    assert allowance.learn(quiet[: allowance.MIN_SESSIONS - 1]) is None
    learned = allowance.learn(quiet)
    assert learned is not None and learned.known and learned.sessions == 9
    logs = np.log(quiet)
    expected = math.expm1(3 * np.quantile(np.abs(logs - np.median(logs)), 0.9))
    assert math.isclose(learned.value, expected)
    assert learned.source == f"allowance {expected:.0%} from 9 sessions"
    noisy = list(10 * np.exp(0.3 * rng.standard_normal(10)))  # a shared VM's spread
    wide = allowance.learn(noisy)
    assert wide is not None and not wide.known and wide.too_wide
    assert "spread too wide" in wide.source and "`mmperf ab`" in wide.source


def _history(n: int, spread: float, seed: int = 0) -> list[float]:
    return list(10 * np.exp(spread * np.random.default_rng(seed).standard_normal(n)))


def test_the_gate_uses_the_learned_allowance_and_says_so(tmp_path) -> None:
    gate = _gate(tmp_path, ENV)
    gate.sessions = {"t.py::a": {"latency_ms": _history(9, 0.01)}}
    learned = gate.allowances("t.py::a")["latency_ms"]
    assert learned.known and learned.value < 0.1
    bad = gate.check(rec("t.py::a", 13, seed=2))  # +30%: beyond 5% composed with a few percent
    assert bad.failed and f"({learned.source})" in bad.message and "from 9 sessions" in bad.message
    ok = gate.check(rec("t.py::a", 10, seed=4))
    assert not ok.failed and ok.details["category"] == "unchanged"


def test_allowances_are_learned_for_timings_and_the_speedup_only(tmp_path) -> None:
    gate = _gate(tmp_path, ENV)
    steady = [100.0] * 9
    gate.sessions = {"t.py::a": {"latency_ms": _history(9, 0.01), "peak_memory_bytes": steady,
                                 "cpu_wall_ratio": steady, compare.SPEEDUP: _history(9, 0.01, seed=1)}}
    assert sorted(gate.allowances("t.py::a")) == ["latency_ms", compare.SPEEDUP]


def test_a_spread_too_wide_is_inconclusive_with_the_way_out(tmp_path) -> None:
    gate = _gate(tmp_path, ENV)
    gate.sessions = {"t.py::a": {"latency_ms": _history(10, 0.3)}}
    v = gate.check(rec("t.py::a", 16, seed=2))  # +60%: a coin flip at the edge of a constant before
    assert not v.failed and "spread too wide" in v.details["not_gated"] and "instruction clock" in v.message


def test_too_few_sessions_say_how_many_there_are(tmp_path) -> None:
    gate = _gate(tmp_path, ENV)
    gate.sessions = {"t.py::a": {"latency_ms": _history(3, 0.01)}}
    v = gate.check(rec("t.py::a", 13, seed=2))
    assert not v.failed and "(3 of 8 sessions recorded)" in v.details["not_gated"]


def test_the_history_read_keeps_this_fingerprint_and_host(tmp_path) -> None:
    from pytest_mmperf.history import open_store
    from pytest_mmperf.history.sql import session_medians

    with open_store("sqlite:///h.db", tmp_path) as store:
        for i, (fp, hid) in enumerate([("fp", "h1"), ("fp", "h1"), ("fp", "h2"), ("other", "h1")]):
            env = {**ENV, "fingerprint": fp, "host_id": hid}
            store.record_run(RunDocument(env, (rec("t.py::a", 10 + i),), commit=f"c{i}",
                                         created=f"2026-01-0{i + 1}T00:00:00+00:00"))
        got = session_medians(store, fingerprint="fp", host="h1", scale="tiny")
    assert list(got) == ["t.py::a"] and len(got["t.py::a"]["latency_ms"]) == 2
    assert got["t.py::a"]["latency_ms"][1] > got["t.py::a"]["latency_ms"][0]  # oldest first


# -- the family the run collected ------------------------------------------------------------------
def test_the_family_is_the_collected_runs_not_the_baselines(tmp_path) -> None:
    ids = tuple(f"t.py::b{i}" for i in range(6))
    gate = _gate(tmp_path, ENV, Settings(compare=True, drift_allowance=0.5), ids=ids)
    gate.expect([])  # at session start nothing is collected yet: the whole baseline
    assert gate.family_size() == 6
    gate.expect(["t.py::b0", "t.py::b1"])  # after -k: the selection's family, recomputed
    assert gate.family_size() == 2
    assert math.isclose(gate.policy().alpha, 0.01 / (2 * 3))


def test_the_xdist_controller_takes_every_workers_collection(tmp_path) -> None:
    from pytest_mmperf import plugin
    from pytest_mmperf.session import RunSession

    ids = tuple(f"t.py::b{i}" for i in range(6))
    run = RunSession(Settings(compare=True, drift_allowance=0.5), tmp_path)
    run.environment = dict(ENV)
    baselines.save(RunDocument(ENV, tuple(rec(i, 10) for i in ids), commit="abc"), tmp_path / "baselines")
    run.open_gate()
    assert run.gate is not None and run.gate.family_size() == 6

    class Node:  # what the hook reads of a WorkerController
        def __init__(self) -> None:
            import pytest

            self.config = type("C", (), {"stash": pytest.Stash()})()
            self.config.stash[plugin.SESSION_KEY] = run

    node = Node()
    plugin.pytest_xdist_node_collection_finished(node, ["t.py::b0", "t.py::b3"])
    assert run.gate.family_size() == 2
    plugin.pytest_xdist_node_collection_finished(node, ["t.py::b0", "t.py::b3", "t.py::b4"])
    assert run.gate.family_size() == 3


# -- --mmperf-inconclusive ---------------------------------------------------------------------------
def test_inconclusive_fails_only_when_asked(tmp_path) -> None:
    noisy = [10.0 * f for f in (1, 3, 0.4, 2, 1.5, 0.7, 5, 1, 0.9, 2.5, 1.2, 0.5)]
    gate = _gate(tmp_path, ENV, Settings(compare=True, drift_allowance=0.5))
    undecided = BenchmarkRecord("t.py::a", "llm", "t2t", (), "tiny", "cpu", 1,
                                {"latency_ms": MetricRecord.from_samples("latency_ms", noisy)},
                                quality=rec("t.py::a", 10).quality)
    v = gate.check(undecided)
    assert v.details["category"] == "inconclusive" and not v.failed
    strict = Gate.open(Settings(compare=True, drift_allowance=0.5, inconclusive="fail"), tmp_path, ENV, ["t.py::a"])
    v = strict.check(undecided)
    assert v.failed and "(--mmperf-inconclusive=fail)" in v.message
    assert "inconclusive fails" in "\n".join(comparison_lines(strict, [v]))
    # not gated (another host's baseline) is not "inconclusive" for this option: nothing was tried
    assert resolve({"inconclusive": "fail"}, {}, env={}).inconclusive == "fail"
    assert resolve({}, {"mmperf_inconclusive": "fail"}, env={}).inconclusive == "fail"
    assert resolve({}, {}, env={"MMPERF_INCONCLUSIVE": "fail"}).inconclusive == "fail"
    with pytest.raises(UsageError, match="--mmperf-inconclusive: 'maybe' is not allowed"):
        resolve({"inconclusive": "maybe"}, {}, env={})


def test_drift_allowance_reads_auto_or_a_fraction() -> None:
    assert resolve({}, {}, env={}).drift_allowance is None
    assert resolve({"drift_allowance": "auto"}, {}, env={}).drift_allowance is None
    assert resolve({"drift_allowance": "12%"}, {}, env={}).drift_allowance == 0.12
    with pytest.raises(UsageError, match="--mmperf-drift-allowance: 'lots' is not allowed"):
        resolve({"drift_allowance": "lots"}, {}, env={})


def test_the_session_reads_this_hosts_sessions_from_the_history(tmp_path) -> None:
    """RunSession.open_gate -> the history's earlier sessions on this fingerprint and host -> a
    learned allowance; sessions of another host are not counted."""
    from pytest_mmperf.history import open_store
    from pytest_mmperf.session import RunSession

    baselines.save(RunDocument(ENV, (rec("t.py::a", 10),), commit="abc"), tmp_path / "baselines")
    with open_store("sqlite:///h.db", tmp_path) as store:
        for i, ms in enumerate(_history(10, 0.01)):
            hid = ENV["host_id"] if i < 9 else "host-b"
            store.record_run(RunDocument({**ENV, "host_id": hid}, (rec("t.py::a", ms, seed=i),), commit=f"c{i}",
                                         created=f"2026-01-{i + 1:02d}T00:00:00+00:00"))
    run = RunSession(Settings(compare=True, history=f"sqlite:///{tmp_path / 'h.db'}"), tmp_path)
    run.environment = dict(ENV)
    run.open_gate()
    assert run.gate is not None and len(run.gate.sessions["t.py::a"]["latency_ms"]) == 9
    assert run.gate.allowances("t.py::a")["latency_ms"].source.endswith("from 9 sessions")
    missing = RunSession(Settings(compare=True, history=f"sqlite:///{tmp_path / 'none.db'}"), tmp_path)
    missing.environment = dict(ENV)
    missing.open_gate()  # no history yet: nothing learned, nothing said, the file is not created
    assert missing.gate is not None and missing.gate.sessions == {} and not (tmp_path / "none.db").exists()
    assert missing.messages == []


def test_mmperf_compare_can_fail_on_inconclusive(tmp_path, capsys) -> None:
    from pytest_mmperf.cli import main

    noisy = [10.0 * f for f in (1, 3, 0.4, 2, 1.5, 0.7, 5, 1, 0.9, 2.5, 1.2, 0.5)]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(RunDocument(ENV, (rec("t.py::a", 10),)).dumps())
    b.write_text(RunDocument(ENV, (BenchmarkRecord("t.py::a", "llm", "t2t", (), "tiny", "cpu", 1, {
        "latency_ms": MetricRecord.from_samples("latency_ms", noisy)}, quality=rec("t.py::a", 10).quality),)).dumps())
    assert main(["compare", str(a), str(b), "--drift-allowance", "50%"]) == 0
    assert "inconclusive" in capsys.readouterr().out
    assert main(["compare", str(a), str(b), "--drift-allowance", "50%", "--inconclusive", "fail"]) == 1
    assert "inconclusive fails (--inconclusive fail)" in capsys.readouterr().out
