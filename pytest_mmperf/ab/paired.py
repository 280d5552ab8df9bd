"""Head vs base from R process pairs: one rule for every gated metric, three honest answers.

The model
---------
``mmperf ab`` runs R *process pairs*: in pair r a base worker and a head worker are alive at once
and take turns round by round (ABBA), so that whatever the machine does during the pair (other
load, frequency, thermal state) falls on both sides alike. Round k of base and round k of head run
next to each other in time. For one benchmark and one metric, let ``b_rk`` and ``h_rk`` be base's
and head's values in round k of pair r (several samples in one round, such as decode steps, are
first summarized per round: the round is the unit inside a process). On the log scale, pair r's
estimate is the median over its rounds of the adjacent rounds' ratios::

    d_r = median_k log(h_rk / b_rk) = delta + e_r,      e_r ~ Normal(0, tau_b^2), independent over pairs

Taking the ratio round by round, not of the two sides' medians, cancels what changes from one
second to the next on a shared host (measured on the project's VM, llm eager: the pair-to-pair
standard deviation of ``tpot_ms`` fell from 3.6-10.3% to 1.7-6.4%); when the two sides' rounds do
not line up (a different count), ``d_r`` is the log ratio of their medians. ``delta`` is head's true
relative change, and ``e_r`` is what differs from one process to the next and does not cancel by
alternating (memory layout, allocator and thread placement, a process that runs slow from start
to end). Rounds inside one process share that process's ``e_r``, so they are not the replication
unit; pairs are.

**Variance: per benchmark, moderated.** Each benchmark b has its own process noise ``tau_b`` (a
decode step on a loaded machine moves more than a 2 ms recommender call): its sample variance
``s_b^2`` (``d_b = R_b - 1`` degrees of freedom) is the estimate. With 5 pairs that is 4 degrees of
freedom, too few to test at a corrected level; so, as limma does for genes (Smyth 2004, empirical
Bayes), the variances of every benchmark of the run for one metric name give a prior
(``s_0^2`` with ``d_0`` degrees of freedom, fitted by the method of moments on the log variances,
:func:`fit_prior`) and each benchmark's variance is moderated towards it::

    s~_b^2 = (d_0 s_0^2 + d_b s_b^2) / (d_0 + d_b),        t = mean(d) / (s~_b / sqrt(R_b)),   df = d_0 + d_b

When the benchmarks' variances agree, ``d_0`` is large (capped at the run's total degrees of
freedom) and this is the pooled variance; when one benchmark is far noisier, ``d_0`` is small and its
own variance dominates, so its test is not anti-conservative (a pooled variance would call a
noisy benchmark's chance +15% significant). Fewer than three benchmarks with a variance: no prior,
each benchmark alone.

Decision (the same for timings, phases, the in-run speedup and memory)
--------------------------------------------------------------------
``alpha = (1 - confidence) / looks``: the sequential design (``mmperf ab`` adds pairs while a gated
metric is undecided, :mod:`pytest_mmperf.ab.run`) pays for every look it may take, Bonferroni over
the looks; Holm over the run's varying tests at that ``alpha``. The bound is log-symmetric:
``log(1 + threshold)`` (:meth:`Policy.threshold_for`) either way, so +5% and -4.8% mirror.

* *regressed*: Holm-adjusted p below ``alpha`` in the worse direction AND the change beyond the bound;
  *improved* symmetrically. The interval beside it is the one at the level Holm tested it at: the
  ``k``-th smallest of ``m`` p-values is tested at ``alpha / (m - k + 1)``, so its two-sided
  ``1 - 2 alpha / (m - k + 1)`` interval ("Holm step 3/48: 99.9979% CI") excludes no change exactly
  where the decision did; a simultaneous interval (the most conservative step) could reach past 0
  beside a regression Holm's later steps found;
* *unchanged*: the interval at the decision's level (two-sided ``1 - 2 alpha / m``, simultaneous
  over the ``m`` tests: Bonferroni) lies inside the band ``-bound..+bound``: shown, not assumed;
* *inconclusive* otherwise, with the reason, the pairs' spread and about how many pairs would decide.

A deterministic metric (the same value in every round and process of each side: weight bytes,
resident memory, counts) has no process noise: the threshold alone decides (the usual rule for bytes
and counts), outside Holm's family.

Gated here: what the judge gates (:func:`pytest_mmperf.judge.compare.gates`: not the eager arm's
``eager_*``, not ``tokens_per_s``, not the ``*_host_ms``/``*_device_ms`` duplicates of a CUDA
timing, not one-off costs), plus the per-round speedup; the rest stays in the documents for reading.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from scipy import optimize
from scipy import special as spf
from scipy import stats as sps

from pytest_mmperf.judge.compare import Category, Policy, finite_or_none, gates, per_round_speedups, percent
from pytest_mmperf.results.metrics import SPEEDUP, Direction
from pytest_mmperf.results.records import BenchmarkRecord, RunDocument

MIN_PRIOR_BENCHMARKS = 3  # benchmarks with a variance needed to fit a prior (else each alone)


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
    category: Category
    base: float  # median over pairs of base's per-process medians
    head: float
    change: float  # exp(mean log ratio) - 1: head vs base, signed
    ci_low: float | None  # the interval at the decision's level (``interval`` says which)
    ci_high: float | None
    p_value: float | None  # one-sided in the worse direction, Holm-adjusted over the run
    pairs: int
    df: float  # degrees of freedom of the (moderated) process-pair variance
    threshold: float
    reason: str = ""
    spread: float | None = None  # the pairs' own spread: exp(SD of the pair log ratios) - 1
    interval: str = ""  # "99.95% simultaneous CI"
    more_pairs_help: bool = False  # inconclusive, and more process pairs could decide it

    @property
    def worse_by(self) -> float:
        return self.change if self.direction == Direction.LOWER.value else -self.change

    def describe(self) -> str:
        ci = ""
        if self.ci_low is not None and self.ci_high is not None:
            # with one or two degrees of freedom a bound can be astronomically wide: say "beyond"
            high = percent(self.ci_high) if self.ci_high < 10 else "+1000% and beyond"
            ci = f" ({self.interval or 'CI'} {percent(self.ci_low)}..{high})"
        p = f", p = {self.p_value:.2g}" if self.p_value is not None else ""
        spread = f", pairs' spread {percent(self.spread).lstrip('+')}" if self.spread is not None else ""
        text = f"{self.metric} {percent(self.change)}{ci}{p}, {self.pairs} pair(s){spread}"
        if self.category is Category.REGRESSED:
            return f"{text}: regressed beyond the {self.threshold:.0%} threshold"
        if self.category is Category.INCONCLUSIVE:
            return f"{text}: inconclusive ({self.reason})"
        return f"{text}: {self.category.value}"

    def to_json(self) -> dict[str, object]:
        return {
            "metric": self.metric, "direction": self.direction, "category": self.category.value,
            "base": self.base, "head": self.head, "change": finite_or_none(self.change),
            "ci_low": finite_or_none(self.ci_low), "ci_high": finite_or_none(self.ci_high),
            "interval": self.interval, "p_value": self.p_value, "pairs": self.pairs, "df": self.df,
            "threshold": self.threshold, "reason": self.reason, "spread": finite_or_none(self.spread),
            "more_pairs_help": self.more_pairs_help,
        }


# -- per process ---------------------------------------------------------------------------------
def primary_metrics(record: BenchmarkRecord) -> dict[str, tuple[Direction, tuple[float, ...]]]:
    """The gated metrics of one benchmark (the judge's :func:`gates`): name -> (direction, one
    value per round), and the per-round speedup."""
    out: dict[str, tuple[Direction, tuple[float, ...]]] = {}
    for name, metric in record.metrics.items():
        if gates(name, metric):
            out[name] = (metric.direction, metric.per_round())
    speedups = per_round_speedups(record)
    if speedups:
        out[SPEEDUP] = (Direction.HIGHER, tuple(speedups))
    return out


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


# -- the variance ------------------------------------------------------------------------------------
def _relative(log_ratio: float) -> float:
    """exp(log_ratio) - 1, +inf where that overflows a float."""
    return math.expm1(log_ratio) if log_ratio < 700 else math.inf


def _log_ratios(pairs: Sequence[PairValues]) -> list[float] | None:
    if any(not (p.base > 0 and p.head > 0) for p in pairs):
        return None
    return [p.log_ratio if p.log_ratio is not None else math.log(p.head / p.base) for p in pairs]


def _trigamma_inverse(y: float) -> float:
    """x with trigamma(x) = y (trigamma falls from +inf to 0 over x > 0)."""
    lo, hi = 1e-8, 1e8
    if y >= float(spf.polygamma(1, lo)):
        return lo
    if y <= float(spf.polygamma(1, hi)):
        return hi
    return float(optimize.brentq(lambda x: float(spf.polygamma(1, x)) - y, lo, hi))


def fit_prior(variances: Sequence[tuple[float, int]]) -> tuple[float, float]:
    """``(s_0^2, d_0)`` from per-benchmark ``(s_b^2, d_b)``: limma's method of moments on
    ``log s_b^2`` (its mean and its variance beyond what chi-square sampling explains). ``d_0`` is
    capped at the total degrees of freedom (the prior cannot know more than the data behind it);
    ``(0, 0)`` with fewer than :data:`MIN_PRIOR_BENCHMARKS` positive variances."""
    usable = [(s2, d) for s2, d in variances if s2 > 0 and d > 0]
    if len(usable) < MIN_PRIOR_BENCHMARKS:
        return 0.0, 0.0
    e = [math.log(s2) - float(spf.digamma(d / 2)) + math.log(d / 2) for s2, d in usable]
    mean = sum(e) / len(e)
    excess = sum((x - mean) ** 2 for x in e) / (len(e) - 1) - sum(
        float(spf.polygamma(1, d / 2)) for _, d in usable) / len(usable)
    total = float(sum(d for _, d in usable))
    d0 = total if excess <= 0 else min(2 * _trigamma_inverse(excess), total)
    s0 = math.exp(mean + float(spf.digamma(d0 / 2)) - math.log(d0 / 2))
    return s0, d0


def moderated_variances(
    values: Mapping[tuple[str, str], Sequence[PairValues]],
) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(benchmark, metric) -> (moderated variance, its degrees of freedom, the benchmark's own
    variance) for every key with a variance to offer (two pairs, or one pair and a prior)."""
    own: dict[tuple[str, str], tuple[float, int]] = {}
    for key, pairs in values.items():
        ratios = _log_ratios(pairs)
        if ratios is None:
            continue
        if len(ratios) >= 2:
            mean = sum(ratios) / len(ratios)
            own[key] = (sum((x - mean) ** 2 for x in ratios) / (len(ratios) - 1), len(ratios) - 1)
        else:
            own[key] = (math.nan, 0)
    priors: dict[str, tuple[float, float]] = {}
    for metric in {m for _, m in own}:
        priors[metric] = fit_prior([v for (_, m), v in own.items() if m == metric and v[1] > 0])
    out: dict[tuple[str, str], tuple[float, float, float]] = {}
    for key, (s2, d) in own.items():
        s0, d0 = priors[key[1]]
        if d + d0 <= 0:
            continue
        pooled = ((d0 * s0 if d0 else 0.0) + (d * s2 if d else 0.0)) / (d0 + d)
        out[key] = (pooled, d0 + d, s2)
    return out


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error over every test of the run)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


# -- the test --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Raw:
    key: tuple[str, str]
    direction: str
    pairs: list[PairValues]
    mean: float  # mean log ratio (nan: undefined)
    se: float | None  # standard error of the mean log ratio; None: no variance; 0: deterministic
    df: float
    own_sd: float | None  # the pairs' own SD of the log ratios
    p_worse: float | None = None
    p_better: float | None = None
    reason: str = ""

    @property
    def exact(self) -> bool:
        return self.se == 0.0


def _raw_test(key: tuple[str, str], direction: str, pairs: list[PairValues],
              variances: Mapping[tuple[str, str], tuple[float, float, float]]) -> _Raw:
    if all(p.constant and p.base == p.head for p in pairs):
        return _Raw(key, direction, pairs, 0.0, 0.0, 0, 0.0)  # the same value on both sides (0 B and 0 B)
    if all(p.constant and p.base == 0 < p.head for p in pairs):
        return _Raw(key, direction, pairs, math.inf, 0.0, 0, 0.0)  # from nothing to something
    d = _log_ratios(pairs)
    if d is None:
        return _Raw(key, direction, pairs, math.nan, None, 0, None,
                    reason="a value is zero or negative; a relative change is undefined")
    mean = sum(d) / len(d)
    sign = 1.0 if direction == Direction.LOWER.value else -1.0  # worse = positive
    if all(p.constant for p in pairs) and len(set(d)) == 1:
        return _Raw(key, direction, pairs, mean, 0.0, 0, 0.0)  # deterministic: no process noise
    if key not in variances:
        return _Raw(key, direction, pairs, mean, None, 0, None,
                    reason="one process pair cannot tell a change from process-to-process noise; "
                           "run 2 or more (--repeats, --max-repeats)")
    variance, df, own = variances[key]
    own_sd = math.sqrt(own) if math.isfinite(own) else None
    se = math.sqrt(variance / len(d))
    if se == 0:
        return _Raw(key, direction, pairs, mean, 0.0, df, own_sd)
    t = sign * mean / se
    return _Raw(key, direction, pairs, mean, se, df, own_sd, float(sps.t.sf(t, df)), float(sps.t.cdf(t, df)))


def _level_text(level: float) -> str:
    return f"{level * 100:.4f}".rstrip("0").rstrip(".")


def interval_label(level: float) -> str:
    return f"{_level_text(level)}% simultaneous CI"


def judge_pairs(
    values: Mapping[tuple[str, str], list[PairValues]],
    directions: Mapping[tuple[str, str], str],
    policy: Policy,
    *,
    looks: int = 1,
) -> list[PairedComparison]:
    """Every (benchmark, metric) with at least one pair, judged by the rule of the module
    docstring; ``looks``: how many times the run may judge (the sequential design's looks)."""
    variances = moderated_variances(values)
    raws = [_raw_test(key, directions[key], pairs, variances) for key, pairs in sorted(values.items())]
    tested = [r for r in raws if r.p_worse is not None and r.p_better is not None]
    alpha = (1 - policy.confidence) / max(1, looks)
    worse_adj = holm([r.p_worse for r in tested])  # type: ignore[misc]
    better_adj = holm([r.p_better for r in tested])  # type: ignore[misc]
    adj = {id(r): (worse_adj[i], better_adj[i]) for i, r in enumerate(tested)}
    steps = {id(r): (worse, better) for r, worse, better in zip(
        tested, holm_steps([r.p_worse for r in tested]), holm_steps([r.p_better for r in tested]))}  # type: ignore[misc]
    m = max(1, len(tested))
    level = 1 - 2 * alpha / m  # two-sided, Bonferroni-simultaneous over the tests
    label = interval_label(level)
    return [_decide(r, policy, adj.get(id(r)), alpha, m, level, label, steps.get(id(r), (1, 1))) for r in raws]


def holm_steps(p_values: Sequence[float]) -> list[int]:
    """Each p-value's Holm step (1 = the smallest, tested at ``alpha / m``; step ``k`` at
    ``alpha / (m - k + 1)``), ties in their given order as :func:`holm` takes them."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    steps = [0] * len(p_values)
    for rank, i in enumerate(order):
        steps[i] = rank + 1
    return steps


def holm_label(level: float, step: int, m: int) -> str:
    return f"Holm step {step}/{m}: {_level_text(level)}% CI"


def _decide(r: _Raw, policy: Policy, adjusted: tuple[float, float] | None, alpha: float, m: int,
            level: float, label: str, steps: tuple[int, int] = (1, 1)) -> PairedComparison:
    bench, metric = r.key
    threshold = policy.threshold_for(metric)
    bound = math.log1p(threshold)
    sign = 1.0 if r.direction == Direction.LOWER.value else -1.0
    base = statistics.median(p.base for p in r.pairs)
    head = statistics.median(p.head for p in r.pairs)
    spread = _relative(r.own_sd) if r.own_sd is not None else None

    def out(category: Category, ci: tuple[float, float] | None = None, p: float | None = None,
            reason: str = "", more: bool = False, shown: str = label) -> PairedComparison:
        return PairedComparison(bench, metric, r.direction, category, base, head,
                                _relative(r.mean) if not math.isnan(r.mean) else math.nan,
                                ci[0] if ci else None, ci[1] if ci else None, p, len(r.pairs), r.df,
                                threshold, reason, spread, shown if ci and not r.exact else "", more)

    def at_step(step: int) -> tuple[tuple[float, float], str]:
        """The two-sided interval at the level Holm's ``step`` tested at, and its label."""
        tail = alpha / (m - step + 1)
        width = float(sps.t.ppf(1 - tail, r.df)) * r.se  # type: ignore[operator]
        return (_relative(r.mean - width), _relative(r.mean + width)), holm_label(1 - 2 * tail, step, m)

    if math.isnan(r.mean):
        return out(Category.INCONCLUSIVE, reason=r.reason)
    worse = sign * r.mean
    if r.exact:  # no process noise: the threshold decides
        change = (_relative(r.mean), _relative(r.mean))
        if worse > bound:
            return out(Category.REGRESSED, change, 0.0)
        if -worse > bound:
            return out(Category.IMPROVED, change, 1.0)
        return out(Category.UNCHANGED, change, 1.0 if worse <= 0 else 0.0)
    if r.se is None or adjusted is None:
        return out(Category.INCONCLUSIVE, reason=r.reason, more=True)
    p_worse, p_better = adjusted
    half = float(sps.t.ppf(1 - alpha / m, r.df)) * r.se
    lo, hi = r.mean - half, r.mean + half
    ci = (_relative(lo), _relative(hi))
    if p_worse < alpha and worse > bound:
        step_ci, step_label = at_step(steps[0])
        return out(Category.REGRESSED, step_ci, p_worse, shown=step_label)
    if p_better < alpha and -worse > bound:
        step_ci, step_label = at_step(steps[1])
        return out(Category.IMPROVED, step_ci, p_worse, shown=step_label)
    if -bound <= lo and hi <= bound:
        return out(Category.UNCHANGED, ci, p_worse)
    sd = r.se * math.sqrt(len(r.pairs))
    need = _pairs_to_decide(abs(r.mean), sd, bound, alpha / m, len(r.pairs), r.df)
    decide = f"; about {need} pairs would decide it at this spread" if need else ""
    if abs(r.mean) > bound:
        why = (f"beyond the {threshold:.0%} threshold but not significant at {policy.confidence:.0%} "
               f"over {m} tests (Holm) and the looks{decide}")
    else:
        why = (f"not shown unchanged: the {label} reaches beyond the band "
               f"{percent(math.expm1(-bound))}..{percent(threshold)}{decide}")
    return out(Category.INCONCLUSIVE, ci, p_worse, why, more=True)


def _pairs_to_decide(mean: float, sd: float, bound: float, tail: float, pairs: int, df: float) -> int | None:
    """Roughly how many pairs would decide a metric with this mean and spread: the fewest ``n``
    whose interval half-width (t quantile at ``tail`` on the degrees of freedom ``n`` pairs would
    have) is below the distance of the mean from the bound; None beyond 1000 pairs."""
    gap = abs(bound - mean)
    if gap <= 0 or sd <= 0:
        return None
    for n in range(pairs + 1, 1001):
        if float(sps.t.ppf(1 - tail, df + n - pairs)) * sd / math.sqrt(n) < gap:
            return n
    return None


def compare_runs(
    base_runs: Sequence[RunDocument], head_runs: Sequence[RunDocument], policy: Policy, *, looks: int = 1
) -> list[PairedComparison]:
    values, directions = pair_values(base_runs, head_runs)
    return judge_pairs(values, directions, policy, looks=looks)


def by_benchmark(comparisons: Iterable[PairedComparison]) -> dict[str, list[PairedComparison]]:
    out: dict[str, list[PairedComparison]] = {}
    for c in comparisons:
        out.setdefault(c.benchmark, []).append(c)
    return out
