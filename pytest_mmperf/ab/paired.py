"""Head vs base from R process pairs: one rule for every gated metric.

The model
---------
``mmperf ab`` runs R *process pairs*: in pair r a base worker and a head worker are alive at once
and take turns round by round (ABBA), so that whatever the machine does during the pair (other
load, frequency, thermal state) falls on both sides alike. Round k of base and round k of head run
next to each other in time. For one benchmark and one metric, let ``b_rk`` and ``h_rk`` be base's
and head's values in round k of pair r (several samples in one round, such as decode steps, are
first summarized per round: the round is the unit inside a process). On the log scale, pair r's
estimate is the median over its rounds of the adjacent rounds' ratios::

    d_r = median_k log(h_rk / b_rk) = delta + e_r,      e_r ~ Normal(0, tau_m^2), independent over pairs

Taking the ratio round by round, not of the two sides' medians, cancels what changes from one
second to the next on a shared host (measured on the project's VM, llm eager: the pair-to-pair
standard deviation of ``tpot_ms`` fell from 3.6-10.3% to 1.7-6.4%); when the two sides' rounds do
not line up (a different count), ``d_r`` is the log ratio of their medians. ``delta`` is head's true
relative change, and ``e_r`` is what differs from one process to the next and does not cancel by
alternating: memory layout, allocator and thread placement, a process that runs slow from start
to end (measured here: the same benchmark's median moved 53 -> 75 ms across four processes).
Rounds inside one process share that process's ``e_r``, so they are not the replication unit;
pairs are. ``tau_m`` is taken as common to all benchmarks of a run for one metric name (the
relative process noise of ``latency_ms`` is alike across benchmarks of one suite), so it is
estimated from all of them, pooled::

    s_m^2 = sum over benchmarks of sum_r (d_r - mean d)^2  /  sum over benchmarks of (R_b - 1)

and each benchmark's change is tested by a one-sided t test, ``t = mean(d) / (s_m / sqrt(R_b))``
with ``sum (R_b - 1)`` degrees of freedom, in the "worse" direction of the metric. The CI of the
change is ``exp(mean(d) +- t_q * s_m / sqrt(R_b)) - 1``.

Decision (the same for timings, phases, the in-run speedup and memory): *regressed* when the
Holm-adjusted p-value over every varying test of the run is below ``1 - confidence`` AND the change is
beyond the threshold (:meth:`Policy.threshold_for`); *improved* symmetrically; *inconclusive* when
the change is beyond the threshold but not significant, or when nothing estimates ``tau_m`` (one
pair per benchmark) and the metric varies; otherwise *unchanged*. A deterministic metric (the same
value in every round and process of each side: weight bytes, counts, a memory figure that does
not move) has ``s_m = 0``: any change is then significant and the threshold alone decides, which
is the usual rule for bytes and counts, reached by the same formula. Such a test cannot be a
false alarm of noise, so it is not counted in Holm's family: the family is the tests with
``s_m > 0``.

Gated here: each benchmark's primary metrics (the gated ones), not the eager arm of a lever
benchmark (``eager_*``, the same eager model measured again in every lever benchmark) nor
``tokens_per_s`` (latency inverted); both stay in the documents for reading.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from scipy import stats as sps

from pytest_mmperf.judge import deterministic
from pytest_mmperf.judge.compare import Policy
from pytest_mmperf.results.metrics import EAGER_LATENCY, EAGER_PREFIX, SPEEDUP, Direction
from pytest_mmperf.results.records import BenchmarkRecord, RunDocument

DERIVED = frozenset({"tokens_per_s"})  # computed from latency_ms: testing both counts one change twice

REGRESSED = "regressed"
IMPROVED = "improved"
UNCHANGED = "unchanged"
INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class PairValues:
    """One metric of one benchmark in one process pair: base's and head's per-process medians."""

    base: float
    head: float
    constant: bool  # every per-round value of both processes was the same (deterministic)
    # median over rounds of log(head round k / base round k), the rounds run next to each other;
    # None when the sides' rounds do not line up (then log(head / base) of the medians)
    log_ratio: float | None = None


@dataclass(frozen=True)
class PairedComparison:
    benchmark: str
    metric: str
    direction: str  # "lower" or "higher" is better
    category: str  # REGRESSED, IMPROVED, UNCHANGED, INCONCLUSIVE
    base: float  # median over pairs of base's per-process medians
    head: float
    change: float  # exp(mean log ratio) - 1: head vs base, signed
    ci_low: float | None
    ci_high: float | None
    p_value: float | None  # one-sided in the worse direction, Holm-adjusted over the run
    pairs: int
    df: int  # degrees of freedom of the pooled process-pair variance
    threshold: float
    reason: str = ""

    @property
    def worse_by(self) -> float:
        return self.change if self.direction == Direction.LOWER.value else -self.change

    def describe(self) -> str:
        ci = ""
        if self.ci_low is not None and self.ci_high is not None:
            ci = f" (CI {percent(self.ci_low)}..{percent(self.ci_high)})"
        p = f", p = {self.p_value:.2g}" if self.p_value is not None else ""
        text = f"{self.metric} {percent(self.change)}{ci}{p}, {self.pairs} pair(s)"
        if self.category == REGRESSED:
            return f"{text}: regressed beyond the {self.threshold:.0%} threshold"
        if self.category == INCONCLUSIVE:
            return f"{text}: inconclusive ({self.reason})"
        return f"{text}: {self.category}"

    def to_json(self) -> dict[str, object]:
        return {
            "metric": self.metric, "direction": self.direction, "category": self.category,
            "base": self.base, "head": self.head, "change": _finite(self.change),
            "ci_low": _finite(self.ci_low), "ci_high": _finite(self.ci_high),
            "p_value": self.p_value, "pairs": self.pairs, "df": self.df,
            "threshold": self.threshold, "reason": self.reason,
        }


def percent(x: float) -> str:
    return f"{x * 100:+.1f}%" if math.isfinite(x) else ("+inf%" if x > 0 else "-inf%")


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


# -- per process ---------------------------------------------------------------------------------
def primary_metrics(record: BenchmarkRecord) -> dict[str, tuple[Direction, tuple[float, ...]]]:
    """The gated primary metrics of one benchmark: name -> (direction, one value per round)."""
    out: dict[str, tuple[Direction, tuple[float, ...]]] = {}
    for name, metric in record.metrics.items():
        if metric.gated and not name.startswith(EAGER_PREFIX) and name not in DERIVED:
            out[name] = (metric.direction, metric.per_round())
    speedups = per_round_speedups(record)
    if speedups:
        out[SPEEDUP] = (Direction.HIGHER, speedups)
    return out


def per_round_speedups(record: BenchmarkRecord) -> tuple[float, ...]:
    """eager / optimized latency of each round (both arms of a round ran back to back)."""
    eager, opt = record.metrics.get(EAGER_LATENCY), record.metrics.get("latency_ms")
    if eager is None or opt is None:
        return ()
    e, o = eager.per_round(), opt.per_round()
    if len(e) != len(o) or any(v <= 0 for v in o):
        return ()
    return tuple(a / b for a, b in zip(e, o))


def pair_values(
    base_runs: Sequence[RunDocument], head_runs: Sequence[RunDocument]
) -> tuple[dict[tuple[str, str], list[PairValues]], dict[tuple[str, str], str]]:
    """((benchmark, metric) -> one PairValues per process pair that has it on both sides,
    (benchmark, metric) -> direction). Pair r is ``base_runs[r]`` with ``head_runs[r]``."""
    values: dict[tuple[str, str], list[PairValues]] = {}
    directions: dict[tuple[str, str], str] = {}
    for base_doc, head_doc in zip(base_runs, head_runs):
        base_by_id = base_doc.by_id()
        for head_rec in head_doc.benchmarks:
            base_rec = base_by_id.get(head_rec.id)
            if base_rec is None:
                continue
            b_metrics, h_metrics = primary_metrics(base_rec), primary_metrics(head_rec)
            for name in sorted(set(b_metrics) & set(h_metrics)):
                (_, b), (direction, h) = b_metrics[name], h_metrics[name]
                if not b or not h:
                    continue
                key = (head_rec.id, name)
                constant = len(set(b)) == 1 and len(set(h)) == 1
                values.setdefault(key, []).append(
                    PairValues(statistics.median(b), statistics.median(h), constant, _round_ratio(b, h)))
                directions[key] = direction.value
    return values, directions


def _round_ratio(base: Sequence[float], head: Sequence[float]) -> float | None:
    """Median of log(head_k / base_k) over rounds that ran next to each other; None when the
    rounds do not line up or a value is not positive."""
    if len(base) != len(head) or not base or any(v <= 0 for v in (*base, *head)):
        return None
    return statistics.median(math.log(h / b) for b, h in zip(base, head))


# -- the test --------------------------------------------------------------------------------------
def _relative(log_ratio: float) -> float:
    """exp(log_ratio) - 1, +inf where that overflows a float."""
    return math.expm1(log_ratio) if log_ratio < 700 else math.inf


def _log_ratios(pairs: Sequence[PairValues]) -> list[float] | None:
    if any(not (p.base > 0 and p.head > 0) for p in pairs):
        return None
    return [p.log_ratio if p.log_ratio is not None else math.log(p.head / p.base) for p in pairs]


def pooled_variance(values: Mapping[tuple[str, str], Sequence[PairValues]]) -> dict[str, tuple[float, int]]:
    """metric name -> (s_m^2, degrees of freedom): the process-pair variance of log(head/base),
    pooled over the benchmarks of the run (each benchmark around its own mean)."""
    sums: dict[str, list[float]] = {}
    for (_, metric), pairs in values.items():
        d = _log_ratios(pairs)
        if d is None or len(d) < 2:
            continue
        mean = sum(d) / len(d)
        acc = sums.setdefault(metric, [0.0, 0.0])
        acc[0] += sum((x - mean) ** 2 for x in d)
        acc[1] += len(d) - 1
    return {m: (ss / df, int(df)) for m, (ss, df) in sums.items() if df > 0}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error over every test of the run)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class _Raw:
    key: tuple[str, str]
    direction: str
    pairs: list[PairValues]
    change: float
    ci: tuple[float, float] | None
    p_worse: float | None
    p_better: float | None
    df: int
    reason: str
    exact: bool = False  # no process noise (s_m = 0): decided by the threshold, outside Holm's family


def _raw_test(key: tuple[str, str], direction: str, pairs: list[PairValues],
              pooled: Mapping[str, tuple[float, int]], confidence: float) -> _Raw:
    d = _log_ratios(pairs)
    if d is None:
        return _Raw(key, direction, pairs, math.nan, None, None, None, 0,
                    "a value is zero or negative; a relative change is undefined")
    mean = sum(d) / len(d)
    change = _relative(mean)
    sign = 1.0 if direction == Direction.LOWER.value else -1.0  # worse = positive
    variance, df = pooled.get(key[1], (math.nan, 0))
    if df == 0 and all(p.constant for p in pairs) and len(set(d)) == 1:
        variance, df = 0.0, 1  # deterministic: no process noise to allow for
    if df == 0:
        return _Raw(key, direction, pairs, change, None, None, None, 0,
                    "one process pair a benchmark cannot tell a change from process-to-process "
                    "noise; use --repeats 2 or more")
    se = math.sqrt(variance / len(d))
    if se == 0:
        worse = sign * mean
        p_worse = 0.0 if worse > 0 else 1.0
        p_better = 0.0 if worse < 0 else 1.0
        return _Raw(key, direction, pairs, change, (change, change), p_worse, p_better, df, "", exact=True)
    t = sign * mean / se
    half = float(sps.t.ppf(0.5 + confidence / 2, df)) * se
    ci = (_relative(mean - half), _relative(mean + half))
    return _Raw(key, direction, pairs, change, ci, float(sps.t.sf(t, df)), float(sps.t.cdf(t, df)), df, "")


def judge_pairs(
    values: Mapping[tuple[str, str], list[PairValues]],
    directions: Mapping[tuple[str, str], str],
    policy: Policy,
) -> list[PairedComparison]:
    """Every (benchmark, metric) with at least one pair, judged by the rule of the module docstring."""
    pooled = pooled_variance(values)
    raws = [_raw_test(key, directions[key], pairs, pooled, policy.confidence)
            for key, pairs in sorted(values.items())]
    tested = [r for r in raws if r.p_worse is not None and r.p_better is not None and not r.exact]
    # Holm over the varying tests of the run, per direction: the gate fails on "worse" only, so
    # its family-wise false-alarm rate is that of the worse-direction family; an exact test (no
    # process noise) keeps its p of 0 or 1
    worse_adj = holm([r.p_worse for r in tested])  # type: ignore[misc]
    better_adj = holm([r.p_better for r in tested])  # type: ignore[misc]
    adj = {id(r): (worse_adj[i], better_adj[i]) for i, r in enumerate(tested)}
    adj.update({id(r): (r.p_worse, r.p_better) for r in raws if r.exact})  # type: ignore[misc]
    alpha = 1 - policy.confidence
    out: list[PairedComparison] = []
    for r in raws:
        bench, metric = r.key
        threshold = threshold_for(policy, metric)
        worse = r.change if r.direction == Direction.LOWER.value else -r.change
        p_worse, p_better = adj.get(id(r), (None, None))
        reason = r.reason
        if p_worse is None or p_better is None:
            category = INCONCLUSIVE
        elif p_worse < alpha and worse > threshold:
            category = REGRESSED
        elif p_better < alpha and -worse > threshold:
            category = IMPROVED
        elif abs(worse) > threshold:
            category = INCONCLUSIVE
            reason = (f"beyond the {threshold:.0%} threshold but not significant at "
                      f"{policy.confidence:.0%} over {len(tested)} tests (Holm)")
        else:
            category = UNCHANGED
        out.append(PairedComparison(
            bench, metric, r.direction, category,
            statistics.median(p.base for p in r.pairs), statistics.median(p.head for p in r.pairs),
            r.change, r.ci[0] if r.ci else None, r.ci[1] if r.ci else None, p_worse,
            len(r.pairs), r.df, threshold, reason,
        ))
    return out


def threshold_for(policy: Policy, metric: str) -> float:
    """The metric's threshold: instruction counts default to the deterministic gate's (0.5%),
    as in ``--mmperf-compare``; a per-metric threshold wins for every metric."""
    if deterministic.is_count(metric):
        return float(policy.thresholds.get(metric, deterministic.DEFAULT_THRESHOLD))
    return policy.threshold_for(metric)


def compare_runs(
    base_runs: Sequence[RunDocument], head_runs: Sequence[RunDocument], policy: Policy
) -> list[PairedComparison]:
    values, directions = pair_values(base_runs, head_runs)
    return judge_pairs(values, directions, policy)


def by_benchmark(comparisons: Iterable[PairedComparison]) -> dict[str, list[PairedComparison]]:
    out: dict[str, list[PairedComparison]] = {}
    for c in comparisons:
        out.setdefault(c.benchmark, []).append(c)
    return out
