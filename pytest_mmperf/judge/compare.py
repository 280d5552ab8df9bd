"""The comparison engine: one benchmark measured now versus its baseline, as values.

Pure functions on :mod:`pytest_mmperf.results.records`; no pytest, no torch. The gate of
``--mmperf-compare`` (:mod:`pytest_mmperf.judge.gate`), ``mmperf compare`` and ``mmperf ab`` all
call :func:`compare_benchmarks` with a :class:`Policy` built by one function,
:func:`pytest_mmperf.judge.policy.policy_from_settings`.

The statistical model
---------------------
**Unit of replication: the measured round.** A round is one call of the benchmark (both arms,
back to back, when a lever is measured against eager). Samples inside one round (a decode
step's ``tpot_ms``, a phase entered several times) share the caches, the allocator and the
machine's state of that moment; they are not independent. Every test therefore runs on one value
per round, :meth:`MetricRecord.per_round` (the median of the round's samples); every sample stays
stored and shown. A stored metric with more samples than its benchmark has rounds and no
``rounds`` grouping (baselines saved before grouping existed) is not tested at all: it is
*inconclusive* with the reason "no round grouping ...; re-save the baseline". Pretending its
steps were rounds would make p-values far too small.

**The family: primary metrics only** (:func:`is_primary`). Per benchmark: ``latency_ms``; phase
timings (``ttft_ms``, ``tpot_ms``, ``encoder_ms``, ``vocoder_ms``, ...); ``speedup_vs_eager``; the
benchmark's own memory (``peak_memory_bytes``) and deterministic byte counts (``weight_bytes``,
``kv_cache_bytes``, any other ``*_bytes`` of the benchmark). Everything else is compared and shown
but never fails: the eager arm of a lever benchmark (``eager_*``, which the eager benchmark gates
itself), derived figures (``tokens_per_s`` is latency inverted), host/device duplicates of a timing
(``*_host_ms``, ``*_device_ms``), one-off costs (``first_call_ms``, ``compile_ms``,
``lever_setup_ms``), process- or device-wide figures (``peak_rss_bytes``, NVML readings), counts
and rates (output drift catches a changed behaviour). A smaller family is what lets the
correction below keep power.

**Tests.** Timings (``*_ms``, ``*_s``) and per-round speedups: one-sided Mann-Whitney U on the
per-round values in the "worse" direction (scipy: exact for small samples without ties, normal
approximation with tie correction otherwise), and the CI of the ratio of medians
(:func:`pytest_mmperf.results.stats.ratio_of_medians`, percentile bootstrap) for the size.
Bytes are near-deterministic, often a single value: the threshold on the medians decides alone.
Instruction counts (``--mmperf-clock=instructions``) are deterministic: a noise check, then the
threshold (:func:`compare_counts`, :mod:`pytest_mmperf.judge.deterministic`); they are primary
where the timing they replace is, and take no place in the Bonferroni family.
Paired rounds (base and head measured back to back, ``mmperf ab`` in lockstep) are judged by
:mod:`pytest_mmperf.ab.paired`, with process pairs as the unit of replication.

**Decision** (a regression needs a significant difference AND a practical one):

* *regressed*: ``p < alpha`` and the median change is beyond the bound (log-symmetric for timings
  and ratios: a timing regresses beyond ``+X`` and improves beyond ``1/(1+X) - 1``); *improved*
  symmetrically;
* *unchanged*, shown and not assumed: the interval at the decision's level (the one-sided tests
  at ``alpha`` inverted, :mod:`pytest_mmperf.judge.intervals`: two-sided ``1 - 2 alpha``,
  "simultaneous" under the correction) lies within the equivalence band ``[1/(1+X), 1+X]``;
* *inconclusive* otherwise, with the reason and what would decide it; the gate then measures more
  rounds (:attr:`MetricComparison.more_rounds_help`): fewer than ``min_samples`` rounds a side; so
  few rounds that even a perfect separation could not reach ``alpha`` (smallest one-sided p
  ``1 / C(n1 + n2, n1)``, computed in log space so that 10^5 samples do not overflow); a change
  beyond the bound that is not significant; an interval reaching beyond the band. It is also the
  answer when nothing can be tested (no round grouping, a value that is zero or negative): a
  reason, never a traceback, never a pass and never a failure.

Across sessions a timing or a speedup is judged only where the host's drift is known
(:meth:`Policy.allowance_for`, :mod:`pytest_mmperf.judge.allowance`): a baseline from another host
(the environment's ``host_id``) or a host without a drift estimate leaves it *reported, not gated*
(``gated=False``, ``untrusted=True``, the reason and the way out), outside the family.

**Multiplicity.** Decisions are made per test while the suite runs, so the correction must be
valid online, in any order: Bonferroni over the family known at collection (the gated primary
timing comparisons and speedups of the collected benchmarks' baseline entries,
:func:`family_size`), and over the ``looks`` the gate may take at one benchmark (the first
measurement and each adaptive extra measurement, pooled): ``alpha = (1 - confidence) /
(family_size * looks)``. With the default 99% the chance that an unchanged suite shows any
regression is at most 1%. Benjamini-Hochberg q-values (:func:`q_values`) are shown in the
summary for reading; they decide nothing. Bytes decide by threshold and do not count.

**Contention.** Each record carries the machine's load per CPU when it was measured
(``params["load_per_cpu"]``, 1-minute load average over usable CPUs). When either side of a
cross-session comparison was measured on an oversubscribed machine (more than one runnable
thread per CPU), its timings and its speedup are *inconclusive* with the reason: the process got
an unknown share of the CPUs, which no allowance bounds, and the arms of a speedup got different
shares. Bytes and output drift still gate; ``mmperf ab`` (one job) is not concerned.

**Thresholds.** The practical threshold (default 5%, per metric with ``metric_thresholds``) holds
for bytes and counts, and for timings and ratios within one job (``mmperf ab``,
``cross_session=False``). Across sessions it is composed with the drift allowance on the log
scale, ``log(1 + threshold) + log(1 + allowance)``: learned from this host's history, or
configured (``drift_allowance``; a speedup's capped at :data:`RATIO_DRIFT_ALLOWANCE`, measured:
the in-run speedups of an unchanged quiet rerun moved -18..+43% across sessions).
"""

from __future__ import annotations

import enum
import math
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import stats as sps

from pytest_mmperf.judge import deterministic
from pytest_mmperf.judge.allowance import Allowance, no_estimate, unknown
from pytest_mmperf.judge.intervals import level_text, shift_interval
from pytest_mmperf.measure.contention import CONTENDED_BELOW, RATIO
from pytest_mmperf.results.metrics import (
    EAGER_LATENCY,
    EAGER_PREFIX,
    SPEEDUP,
    Direction,
    MetricNameError,
    unit_of,
)
from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord, RunDocument, Speedup
from pytest_mmperf.settings import BY_DEST

# The defaults live in the option table (pytest_mmperf.settings.OPTIONS); named here for readers.
DEFAULT_THRESHOLD: float = BY_DEST["threshold"].default
DEFAULT_CONFIDENCE: float = BY_DEST["compare_confidence"].default
DRIFT_ALLOWANCE: float = BY_DEST["drift_allowance"].default
# An in-run ratio (speedup_vs_eager) drifts across sessions too, less than a timing: the first quiet
# whole-suite rerun of an unchanged tree against a baseline saved hours earlier read its 68 speedups
# at -18.4..+43% (median |change| 1.7%, 90th percentile 11%), five of them beyond -5%. The bound
# on that drift, capped by --mmperf-drift-allowance (0 on a dedicated runner: the plain threshold).
RATIO_DRIFT_ALLOWANCE: float = 0.20
MIN_SAMPLES = 5  # rounds a side below which nothing is tested
# More runnable threads than CPUs (1-minute load average per CPU, stamped on each record when it
# was measured): the process got an unknown share of the machine, so its absolute timings say
# nothing about another session's (measured here at 7.8: +86..+142% on an unchanged rerun).
CONTENDED_LOAD_PER_CPU = 1.0
LOAD_KEY = "load_per_cpu"  # where a record carries it (BenchmarkRecord.params)
MAX_CI_WIDTH = 0.50  # relative change; a wider CI says nothing either way


class Category(str, enum.Enum):
    IMPROVED = "improved"
    UNCHANGED = "unchanged"
    REGRESSED = "regressed"
    INCONCLUSIVE = "inconclusive"


# How a metric is compared; also what the summary shows.
TIMING = "timing"  # absolute timing: vs another session, threshold composed with the drift allowance
IN_RUN = "in-run ratio"  # a ratio measured inside one run (speedup): drift cancels
EXACT = "threshold"  # bytes, counts: the threshold on medians alone
COUNT = "deterministic"  # instruction counts: a noise check, then the threshold


# -- the family ------------------------------------------------------------------------------------
ONE_OFF_TIMINGS = frozenset({"first_call_ms", "compile_ms", "lever_setup_ms"})
PROCESS_BYTES = frozenset({"peak_rss_bytes", "device_memory_used_bytes", "peak_reserved_bytes"})
DETERMINISTIC_BYTES = frozenset({"weight_bytes", "kv_cache_bytes"})


def is_primary(name: str) -> bool:
    """Does the gate decide on this metric? (the rationale is in the module docstring)

    Primary: ``speedup_vs_eager``; ``latency_ms`` and every phase timing (``*_ms`` / ``*_s``) that
    is not the eager arm's, not a host/device duplicate and not a one-off cost; every ``*_bytes``
    that is not the eager arm's and not a process- or device-wide figure. Not primary: the rest.
    """
    if name == SPEEDUP:
        return True
    if name.startswith(EAGER_PREFIX):
        return False  # the eager arm: the eager benchmark gates the same code itself
    try:
        unit = unit_of(name)
    except MetricNameError:
        return False
    if unit.suffix in ("_ms", "_s"):
        return not (name in ONE_OFF_TIMINGS or name.endswith(("_host_ms", "_device_ms")))
    if unit.suffix == "_instructions":  # the instruction clock's counterpart of a timing
        stem = name.removesuffix("_instructions")
        return f"{stem}_ms" not in ONE_OFF_TIMINGS and not stem.endswith(("_host", "_device"))
    if unit.suffix == "_bytes":
        return name not in PROCESS_BYTES and not name.startswith(("gpu_", "device_", "nvml_"))
    return False  # *_per_s (derived), counts, rates, ratios, fractions, percentages


def gates(name: str, *stored: MetricRecord) -> bool:
    """Primary, and not marked informational where it was recorded (``gated=False``). Deterministic
    byte counts gate even when a suite stores them as facts: a lever that stops shrinking the
    weights is a regression."""
    if not is_primary(name):
        return False
    return name in DETERMINISTIC_BYTES or all(m.gated for m in stored)


# -- the rule --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    """Everything that decides a comparison; built by :func:`pytest_mmperf.judge.policy.policy_from_settings`."""

    threshold: float = DEFAULT_THRESHOLD
    thresholds: Mapping[str, float] = field(default_factory=dict)  # per metric name
    confidence: float = DEFAULT_CONFIDENCE
    family_size: int = 1  # statistical comparisons the run can make (Bonferroni)
    looks: int = 1  # measurements the gate may judge per benchmark (adaptive rounds)
    min_samples: int = MIN_SAMPLES
    max_ci_width: float = MAX_CI_WIDTH  # stored speedup intervals only (no per-round values)
    # None ("auto"): only a learned allowance (``allowances``) lets a timing be judged across sessions
    drift_allowance: float | None = DRIFT_ALLOWANCE
    gate_absolute: bool = True  # False: absolute timings are reported, never fail (shared runners)
    cross_session: bool = True  # False: both sides measured in one job (mmperf ab): no drift allowance
    # per metric of the benchmark judged: learned from this host's history, or why not judged
    allowances: Mapping[str, Allowance] = field(default_factory=dict)
    host_reason: str = ""  # not "": the baseline is from another (or an unknown) host: why

    def threshold_for(self, metric: str) -> float:
        """The metric's own threshold, else the run's; an instruction count's default is the
        deterministic gate's (0.5%), as :func:`compare_counts` and ``mmperf ab`` judge it."""
        default = deterministic.DEFAULT_THRESHOLD if deterministic.is_count(metric) else self.threshold
        return float(self.thresholds.get(metric, default))

    def allowance_for(self, metric: str) -> Allowance:
        """The cross-session drift this metric may carry (timings and speedups): none within one
        job; unknown for a baseline from another host; learned from this host's history; the
        configured ``drift_allowance`` (capped at :data:`RATIO_DRIFT_ALLOWANCE` for a speedup);
        unknown when none of these (the default ``auto`` without history)."""
        if not self.cross_session:
            return Allowance(0.0, "")
        if self.host_reason:
            return unknown(self.host_reason)
        if metric in self.allowances:
            return self.allowances[metric]
        if self.drift_allowance is None:
            return unknown(no_estimate())
        a = min(self.drift_allowance, RATIO_DRIFT_ALLOWANCE) if metric == SPEEDUP else self.drift_allowance
        return Allowance(a, f"configured allowance {_share(a)}" if a else "")

    def log_bound(self, metric: str) -> float:
        """The regression bound of a timing or a speedup on the log scale: ``log(1 + threshold)
        + log(1 + allowance)``; the same bound mirrored is the improvement's (a timing regresses
        beyond +X and improves beyond 1/(1+X) - 1: +57.5% <-> -36.5%)."""
        a = self.allowance_for(metric).value or 0.0
        return math.log1p(self.threshold_for(metric)) + math.log1p(a)

    def ratio_threshold(self, metric: str) -> float:
        """The drop beyond which an in-run ratio (a speedup, higher is better) regresses:
        ``1 - 1 / ((1 + threshold) (1 + allowance))`` (20.6% by default with a configured
        allowance; the plain threshold's mirror within one job)."""
        return -math.expm1(-self.log_bound(metric))

    def timing_threshold(self, metric: str) -> float:
        """The rise beyond which an absolute timing regresses: ``(1 + threshold) (1 + allowance) - 1``
        (the allowance composed only when the baseline is from another session)."""
        return math.expm1(self.log_bound(metric))

    @property
    def alpha(self) -> float:
        """Per-comparison significance level: Bonferroni over the family and the looks."""
        return (1.0 - self.confidence) / (max(1, self.family_size) * max(1, self.looks))

    @property
    def interval_label(self) -> str:
        """What the interval beside a decision is: ``99.998% simultaneous CI`` (the inverted
        test at ``alpha``: two-sided ``1 - 2 alpha``, simultaneous when ``alpha`` is corrected)."""
        return level_text(self.alpha, self.family_size * self.looks > 1)


def smallest_p(n1: int, n2: int) -> float:
    """The smallest one-sided Mann-Whitney p-value n1 and n2 samples can give (perfect
    separation): ``1 / C(n1 + n2, n1)``, in log space (no overflow at 10^5 a side; 0.0 when it
    underflows)."""
    if n1 < 1 or n2 < 1:
        return 1.0
    log_p = math.lgamma(n1 + 1) + math.lgamma(n2 + 1) - math.lgamma(n1 + n2 + 1)
    return math.exp(log_p)


def rounds_to_reach(alpha: float, limit: int = 10_000) -> int:
    """The fewest rounds a side (equal sides) with which a perfect separation reaches ``alpha``."""
    n = 1
    while smallest_p(n, n) >= alpha and n < limit:
        n += 1
    return n


@dataclass(frozen=True)
class MetricComparison:
    benchmark: str
    metric: str
    kind: str  # TIMING, IN_RUN or EXACT
    category: Category
    direction: str  # "lower" or "higher" is better
    unit: str
    baseline: float  # median
    current: float  # median
    change: float  # current / baseline - 1 (signed; the direction says whether that is good)
    ci_low: float | None  # the interval of ``change`` (at ``confidence``; a range for counts)
    ci_high: float | None
    confidence: float  # the interval's level: two-sided 1 - 2 alpha for a tested metric
    p_value: float | None  # one-sided, in the "worse" direction; None for EXACT
    threshold: float  # the effective threshold used
    reason: str = ""  # why inconclusive, or a note
    gated: bool = True  # False: reported only, never fails
    more_rounds_help: bool = False  # inconclusive because the rounds cannot decide (yet)
    rounds: tuple[int, int] = (0, 0)  # per-round values tested: (baseline, current)
    interval: str = ""  # what the interval is: "99.998% simultaneous CI", "range", "99% CI" (stored)
    allowance: str = ""  # the drift allowance in the threshold: "allowance 11% from 9 sessions", ...
    untrusted: bool = False  # not judged: the host's drift across sessions is unknown (``reason`` says why)

    @property
    def worse_by(self) -> float:
        """The change in the bad direction: positive = worse."""
        return self.change if self.direction == Direction.LOWER.value else -self.change

    @property
    def band(self) -> tuple[float, float]:
        """The equivalence band of the change: within it the metric is unchanged (log-symmetric
        for timings and ratios: -36.5%..+57.5%; the threshold both ways for bytes and counts)."""
        if self.kind in (TIMING, IN_RUN):
            bound = math.log1p(self.threshold) if self.direction == Direction.LOWER.value \
                else -math.log1p(-self.threshold) if self.threshold < 1 else math.inf
            return math.expm1(-bound), math.expm1(bound)
        return -self.threshold, self.threshold

    def change_text(self) -> str:
        ci = ""
        if self.ci_low is not None and self.ci_high is not None:
            label = self.interval or f"{self.confidence:.0%} CI"
            ci = f" ({label} {_pct(self.ci_low)}..{_pct(self.ci_high)})"
        what = "median" if self.metric != SPEEDUP else "median speedup"
        return f"{self.metric} {what} {_pct(self.change)}{ci}"

    def threshold_text(self) -> str:
        whole = self.threshold * 100 == round(self.threshold * 100)
        limit = f"{self.threshold:.0%}" if whole else f"{self.threshold:.1%}"
        return f"{limit} threshold" + (f" ({self.allowance})" if self.allowance else "")

    def describe(self) -> str:
        text = self.change_text()
        if self.category is Category.REGRESSED:
            bound = ">" if self.direction == Direction.LOWER.value else "drop >"
            p = f", p = {self.p_value:.2g}" if self.p_value is not None else ""
            return f"{text} {bound} {self.threshold_text()}{p}"
        if self.category is Category.INCONCLUSIVE:
            return f"{text}: inconclusive ({self.reason})"
        return f"{text}: {self.category.value}{self.band_text()}"

    def band_text(self) -> str:
        """`` (within the band -36.5%..+57.5%)`` for a timing or a speedup shown unchanged."""
        if self.category is Category.UNCHANGED and self.kind in (TIMING, IN_RUN) and self.ci_low is not None:
            lo, hi = self.band
            return f" (within the band {_pct(lo)}..{_pct(hi)})"
        return ""

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "kind": self.kind,
            "category": self.category.value,
            "direction": self.direction,
            "unit": self.unit,
            "baseline": _finite(self.baseline),
            "current": _finite(self.current),
            "change": _finite(self.change),
            "ci_low": _finite(self.ci_low),
            "ci_high": _finite(self.ci_high),
            "confidence": self.confidence,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "reason": self.reason,
            "gated": self.gated,
            "more_rounds_help": self.more_rounds_help,
            "rounds": list(self.rounds),
            "interval": self.interval,
            "allowance": self.allowance,
            "untrusted": self.untrusted,
        }


@dataclass(frozen=True)
class BenchmarkComparison:
    benchmark: str
    metrics: tuple[MetricComparison, ...]
    notes: tuple[str, ...] = ()  # metrics only on one side, etc.

    @property
    def gated(self) -> tuple[MetricComparison, ...]:
        return tuple(m for m in self.metrics if m.gated)

    @property
    def regressions(self) -> tuple[MetricComparison, ...]:
        return tuple(m for m in self.gated if m.category is Category.REGRESSED)

    @property
    def more_rounds_help(self) -> bool:
        """Would more rounds decide something still open? (the gate's adaptive trigger)"""
        return any(m.category is Category.INCONCLUSIVE and m.more_rounds_help for m in self.gated)

    @property
    def category(self) -> Category:
        """regressed > inconclusive > improved > unchanged, over gated metrics."""
        cats = {m.category for m in self.gated}
        for c in (Category.REGRESSED, Category.INCONCLUSIVE, Category.IMPROVED):
            if c in cats:
                return c
        if not self.gated:
            return Category.INCONCLUSIVE  # nothing comparable is not a pass
        return Category.UNCHANGED


# -- one metric ------------------------------------------------------------------------------------
def _pct(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    if not math.isfinite(x):
        return "+inf%" if x > 0 else "-inf%"
    return f"{x * 100:+.1f}%"


def _share(x: float) -> str:
    """A fraction as a percentage without a trailing ``.0``: ``50%``, ``20.6%``."""
    return f"{x * 100:.1f}".rstrip("0").rstrip(".") + "%"


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


EXACT_MAX_N = 200  # rounds on both sides together up to which the exact null distribution is used


def _one_sided_p(current: np.ndarray, baseline: np.ndarray, alternative: str) -> float:
    """Mann-Whitney U, one-sided; 1.0 where the test is degenerate (every value equal).

    Exact without ties up to ``EXACT_MAX_N`` values together (scipy's automatic choice switches
    to the normal approximation above 8 a side, whose p for a perfect separation of 12 vs 12 is
    1.6e-5 instead of the exact 3.7e-7: too coarse for a Bonferroni level); the normal
    approximation with tie correction otherwise."""
    both = np.concatenate([current, baseline])
    exact = both.size <= EXACT_MAX_N and np.unique(both).size == both.size
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(sps.mannwhitneyu(current, baseline, alternative=alternative,
                                   method="exact" if exact else "asymptotic").pvalue)
    return p if math.isfinite(p) else 1.0


def compare_samples(
    benchmark: str,
    metric: str,
    baseline: Sequence[float],
    current: Sequence[float],
    direction: Direction | str,
    policy: Policy,
    *,
    kind: str = TIMING,
    unit: str = "",
    gated: bool = True,
) -> MetricComparison:
    """Judge a timing-like metric (or per-round speedups) from one value per round a side.

    Three answers (and improved, the mirror of regressed): *regressed* when the one-sided test
    reaches ``alpha`` AND the median change is beyond the bound; *unchanged* when the interval at
    the decision's level (:func:`pytest_mmperf.judge.intervals.shift_interval`) lies within the
    equivalence band, shown, not assumed; *inconclusive* otherwise, with the reason and what
    would decide it. Across sessions a timing or a speedup is judged only where the host's drift
    is known (:meth:`Policy.allowance_for`); elsewhere it is reported, not gated."""
    direction = Direction(direction)
    cross = kind in (TIMING, IN_RUN) and policy.cross_session
    allowance = policy.allowance_for(metric) if cross else Allowance(0.0, "")
    bound = policy.log_bound(metric) if kind in (TIMING, IN_RUN) else math.log1p(policy.threshold_for(metric))
    threshold = math.expm1(bound) if direction is Direction.LOWER else -math.expm1(-bound)
    b = np.asarray(baseline, dtype=float).ravel()
    c = np.asarray(current, dtype=float).ravel()
    finite = bool(np.all(np.isfinite(b)) and np.all(np.isfinite(c)))
    b_med = float(np.median(b)) if b.size and finite else math.nan
    c_med = float(np.median(c)) if c.size and finite else math.nan
    alpha = policy.alpha
    label = policy.interval_label

    def result(category: Category, change: float, lo: float | None, hi: float | None,
               p: float | None, reason: str = "", more: bool = False, judged: bool = True) -> MetricComparison:
        return MetricComparison(benchmark, metric, kind, category, direction.value, unit, b_med,
                                c_med, change, lo, hi, max(0.0, 1.0 - 2.0 * alpha), p, threshold, reason,
                                gated and judged, more, (int(b.size), int(c.size)),
                                label if lo is not None else "", allowance.source if allowance.value else "",
                                gated and not judged)  # untrusted: it would gate where the drift is known

    if not finite:
        return result(Category.INCONCLUSIVE, math.nan, None, None, None, "a sample is not a finite number")
    if b.size < policy.min_samples or c.size < policy.min_samples:
        change = c_med / b_med - 1 if b.size and c.size and b_med > 0 else math.nan
        return result(Category.INCONCLUSIVE, change, None, None, None,
                      f"too few rounds: {b.size} in the baseline, {c.size} now; "
                      f"need {policy.min_samples} on each side", more=allowance.known, judged=allowance.known)
    if not b_med > 0 or not c_med > 0 or not (np.all(b > 0) and np.all(c > 0)):
        return result(Category.INCONCLUSIVE, math.nan, None, None, None,
                      "a value is zero or negative; a relative change is undefined", judged=allowance.known)
    with np.errstate(over="ignore", divide="ignore"):
        change = c_med / b_med - 1
    r_lo, r_hi = shift_interval(b, c, alpha)
    lo, hi = min(r_lo - 1, change), max(r_hi - 1, change)
    if not math.isfinite(change):
        return result(Category.INCONCLUSIVE, math.nan, None, None, None,
                      "the ratio of the medians is out of floating-point range")
    shown_lo, shown_hi = (lo, hi) if math.isfinite(hi) else (None, None)
    if not allowance.known:  # another host, or this one without a drift estimate: reported only
        return result(Category.INCONCLUSIVE, change, shown_lo, shown_hi, None, allowance.source, judged=False)
    worse_alt, better_alt = ("greater", "less") if direction is Direction.LOWER else ("less", "greater")
    p_worse = _one_sided_p(c, b, worse_alt)
    p_better = _one_sided_p(c, b, better_alt)
    log_change = math.log1p(change)
    worse = log_change if direction is Direction.LOWER else -log_change
    if p_worse < alpha and worse > bound:
        return result(Category.REGRESSED, change, shown_lo, shown_hi, p_worse)
    if p_better < alpha and -worse > bound:
        return result(Category.IMPROVED, change, shown_lo, shown_hi, p_worse)
    floor = smallest_p(int(b.size), int(c.size))
    if floor >= alpha:
        return result(Category.INCONCLUSIVE, change, shown_lo, shown_hi, p_worse,
                      f"{b.size} vs {c.size} rounds cannot reach p < {alpha:.2g} "
                      f"(smallest possible p {floor:.2g}); measure more rounds", more=True)
    band_lo, band_hi = math.expm1(-bound), math.expm1(bound)
    if band_lo <= lo and hi <= band_hi:
        return result(Category.UNCHANGED, change, shown_lo, shown_hi, p_worse)
    if worse > bound:
        return result(Category.INCONCLUSIVE, change, shown_lo, shown_hi, p_worse,
                      f"beyond the {_share(threshold)} bound but not significant "
                      f"(p = {p_worse:.2g}, need < {alpha:.2g}); more rounds or a quieter machine would decide",
                      more=True)
    return result(Category.INCONCLUSIVE, change, shown_lo, shown_hi, p_worse,
                  f"not shown unchanged: the {label} {_pct(lo)}..{_pct(hi)} reaches beyond the band "
                  f"{_pct(band_lo)}..{_pct(band_hi)}; more rounds or a quieter machine would decide",
                  more=True)


def compare_exact(
    benchmark: str, metric: str, baseline: MetricRecord, current: MetricRecord, policy: Policy,
    *, gated: bool | None = None,
) -> MetricComparison:
    """Bytes and counts: the threshold on the medians decides alone."""
    threshold = policy.threshold_for(metric)
    b, c = baseline.median, current.median
    if b > 0:
        change = c / b - 1
    elif b == 0:
        change = 0.0 if c == 0 else math.copysign(math.inf, c)
    else:
        change = math.nan
    worse = change if current.direction is Direction.LOWER else -change
    reason = ""
    if math.isnan(change):
        category, reason = Category.INCONCLUSIVE, "the baseline median is negative; a relative change is undefined"
    elif worse > threshold:
        category = Category.REGRESSED
    elif -worse > threshold:
        category = Category.IMPROVED
    else:
        category = Category.UNCHANGED
    return MetricComparison(benchmark, metric, EXACT, category, current.direction.value,
                            current.unit, b, c, change, None, None, policy.confidence, None,
                            threshold, reason, gates(metric, baseline, current) if gated is None else gated,
                            False, (baseline.n, current.n))


# -- per-round values ------------------------------------------------------------------------------
def _round_count(rec: BenchmarkRecord, name: str) -> int | None:
    """How many rounds the benchmark (or its eager arm) measured: its latency's count."""
    ref = EAGER_LATENCY if name.startswith(EAGER_PREFIX) else "latency_ms"
    m = rec.metrics.get(ref)
    if m is None or name == ref:
        return None
    return len(m.per_round())


def round_values(rec: BenchmarkRecord, name: str) -> tuple[tuple[float, ...] | None, str]:
    """One value per round of metric ``name``, or None and why not (ungrouped within-round samples)."""
    m = rec.metrics[name]
    if m.rounds is not None:
        return m.per_round(), ""
    n_rounds = _round_count(rec, name)
    if n_rounds is not None and m.n > n_rounds:
        return None, f"{m.n} samples over {n_rounds} rounds without round grouping"
    return m.samples, ""


def _per_round_speedups(rec: BenchmarkRecord) -> list[float] | None:
    eager, opt = rec.metrics.get(EAGER_LATENCY), rec.metrics.get("latency_ms")
    if eager is None or opt is None:
        return None
    e, o = eager.per_round(), opt.per_round()
    if len(e) != len(o) or any(not v > 0 for v in o):
        return None
    return [a / b for a, b in zip(e, o)]


def compare_speedup(
    benchmark: str, base: BenchmarkRecord, cur: BenchmarkRecord, policy: Policy
) -> MetricComparison | None:
    bs, cs = base.speedup_vs_eager, cur.speedup_vs_eager
    if bs is None or cs is None:
        return None
    b_rounds, c_rounds = _per_round_speedups(base), _per_round_speedups(cur)
    if b_rounds is not None and c_rounds is not None:
        m = compare_samples(benchmark, SPEEDUP, b_rounds, c_rounds, Direction.HIGHER, policy,
                            kind=IN_RUN, unit="x")
    else:
        m = _compare_speedup_summaries(benchmark, bs, cs, policy)
    # On an oversubscribed machine the arms' shares of the CPUs depend on their length (a short
    # arm fits a scheduler slice more often): measured here, an unchanged benchmark's speedup read
    # 3.03x in one session and 1.89x in the next. Across sessions it is no better than a timing.
    return _unless_contended(m, base, cur, policy)


def _compare_speedup_summaries(
    benchmark: str, bs: Speedup, cs: Speedup, policy: Policy
) -> MetricComparison:
    """No per-round samples: a drop counts only when the intervals do not overlap."""
    threshold = policy.ratio_threshold(SPEEDUP)
    allowance = policy.allowance_for(SPEEDUP)
    with np.errstate(all="ignore"):
        change = cs.median / bs.median - 1 if bs.median > 0 else math.nan
        lo = cs.ci_low / bs.ci_high - 1 if bs.ci_high > 0 else math.nan
        hi = cs.ci_high / bs.ci_low - 1 if bs.ci_low > 0 else math.nan
    gated = True
    if not all(math.isfinite(v) for v in (change, lo, hi)):
        category, reason = Category.INCONCLUSIVE, "speedup medians or intervals are not positive"
    elif not allowance.known:
        category, reason, gated = Category.INCONCLUSIVE, allowance.source, False
    elif hi < 0 and -change > threshold:
        category, reason = Category.REGRESSED, "stored intervals do not overlap"
    elif lo > 0 and change > threshold / (1 - threshold):
        category, reason = Category.IMPROVED, "stored intervals do not overlap"
    elif hi - lo > policy.max_ci_width:
        category, reason = Category.INCONCLUSIVE, "no per-round samples and wide intervals"
    else:
        category, reason = Category.UNCHANGED, ""
    level = min(bs.confidence, cs.confidence)
    return MetricComparison(benchmark, SPEEDUP, IN_RUN, category, Direction.HIGHER.value, "x",
                            bs.median, cs.median, change, lo, hi, level,
                            None, threshold, reason, gated, False, (0, 0),
                            f"stored {level:.0%} CIs combined", allowance.source if allowance.value else "",
                            not allowance.known)


def compare_counts(
    benchmark: str, metric: str, baseline: MetricRecord, current: MetricRecord, policy: Policy
) -> MetricComparison:
    """Instruction counts: deterministic, so a threshold decides after a noise check
    (:mod:`pytest_mmperf.judge.deterministic`)."""
    threshold = float(policy.thresholds.get(metric, deterministic.DEFAULT_THRESHOLD))
    v = deterministic.judge_counts(baseline.per_round(), current.per_round(),
                                   lower_is_better=current.direction is Direction.LOWER, threshold=threshold)
    return MetricComparison(benchmark, metric, COUNT, Category(v.category), current.direction.value,
                            current.unit, v.baseline, v.current, v.change, v.low, v.high, 1.0,
                            None, threshold, v.reason, gates(metric, baseline, current), False,
                            (len(baseline.per_round()), len(current.per_round())), "range")


def is_timing(name: str) -> bool:
    """A duration (``*_ms``, ``*_s``): judged by the test, across sessions with a drift allowance."""
    try:
        return unit_of(name).timing
    except MetricNameError:
        return False


_is_timing = is_timing


def _compare_timing(base: BenchmarkRecord, cur: BenchmarkRecord, name: str, policy: Policy) -> MetricComparison:
    b, c = base.metrics[name], cur.metrics[name]
    gated = gates(name, b, c) and policy.gate_absolute
    bv, b_why = round_values(base, name)
    cv, c_why = round_values(cur, name)
    if bv is None or cv is None:
        if bv is None and cv is None:
            why = f"neither side groups its samples by round ({b_why}); not tested"
        elif bv is None:
            why = f"the baseline has {b_why}; re-save the baseline"
        else:
            why = f"the current run has {c_why}; not tested"
        threshold = policy.timing_threshold(name)
        change = c.median / b.median - 1 if b.median > 0 else math.nan
        return MetricComparison(cur.id, name, TIMING, Category.INCONCLUSIVE, c.direction.value, c.unit,
                                b.median, c.median, change, None, None, policy.confidence, None, threshold,
                                why, gated, False, (b.n, c.n))
    m = compare_samples(cur.id, name, bv, cv, c.direction, policy, kind=TIMING, unit=c.unit, gated=gated)
    return _unless_contended(m, base, cur, policy)


def _unless_contended(
    m: MetricComparison, base: BenchmarkRecord, cur: BenchmarkRecord, policy: Policy
) -> MetricComparison:
    busy = _contention(base, cur) if policy.cross_session else ""
    if not busy or not m.gated:  # not judged across sessions anyway (another host): that reason stays
        return m
    return replace(m, category=Category.INCONCLUSIVE, more_rounds_help=False,
                   reason=f"{busy}: timings across sessions say nothing; bytes and outputs still gate")


def _load(rec: BenchmarkRecord) -> float | None:
    value = rec.params.get(LOAD_KEY) if isinstance(rec.params, Mapping) else None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _cpu_share(rec: BenchmarkRecord) -> float | None:
    """Median over the benchmark's rounds of its thread's CPU time / wall time (CPU runs only)."""
    metric = rec.metrics.get(RATIO)
    if rec.device != "cpu" or metric is None or not metric.samples:
        return None
    value = float(np.median(metric.samples))
    return value if math.isfinite(value) else None


def _contention(base: BenchmarkRecord, cur: BenchmarkRecord) -> str:
    """Why an absolute cross-session comparison cannot be trusted ("" when it can): the load per
    CPU above 1 on either side, or the benchmark's own thread off a CPU in most of its rounds
    (the 1-minute load average lags a job that started seconds ago; the rounds do not)."""
    lb, lc = _load(base), _load(cur)
    parts = [f"load per CPU {what} {v:.1f} > {CONTENDED_LOAD_PER_CPU:g}"
             for what, v in (("now", lc), ("at the baseline", lb))
             if v is not None and v > CONTENDED_LOAD_PER_CPU]
    parts += [f"the thread had a CPU {v:.0%} of the wall time {what} (< {CONTENDED_BELOW:.0%})"
              for what, v in (("now", _cpu_share(cur)), ("at the baseline", _cpu_share(base)))
              if v is not None and v < CONTENDED_BELOW]
    if not parts:
        return ""
    return f"the machine was oversubscribed ({'; '.join(parts)})"


def compare_benchmarks(
    base: BenchmarkRecord, cur: BenchmarkRecord, policy: Policy
) -> BenchmarkComparison:
    """Every metric both records have, and the speedup; only primary metrics are gated."""
    out: list[MetricComparison] = []
    notes: list[str] = []
    for name in sorted(set(base.metrics) | set(cur.metrics)):
        b, c = base.metrics.get(name), cur.metrics.get(name)
        if b is None or c is None:
            side = "baseline" if c is None else "current run"
            if is_primary(name):
                notes.append(f"{name} only in the {side}")
            continue
        if deterministic.is_count(name):
            out.append(compare_counts(cur.id, name, b, c, policy))
        elif _is_timing(name):
            out.append(_compare_timing(base, cur, name, policy))
        else:
            out.append(compare_exact(cur.id, name, b, c, policy))
    sp = compare_speedup(cur.id, base, cur, policy)
    if sp is not None:
        out.append(sp)
    elif (base.speedup_vs_eager is None) != (cur.speedup_vs_eager is None):
        notes.append(f"{SPEEDUP} only in the {'baseline' if cur.speedup_vs_eager is None else 'current run'}")
    return BenchmarkComparison(cur.id, tuple(out), tuple(notes))


# -- a whole run -----------------------------------------------------------------------------------
def statistical_comparisons(
    rec: BenchmarkRecord, *, gate_absolute: bool = True, judged: Callable[[str, str], bool] | None = None,
) -> list[str]:
    """The gated statistical comparisons a baseline entry offers: its testable primary timings
    (when absolute timings gate) and its speedup; ``judged(benchmark, metric)``: False for those
    that will not be tested (no drift estimate for this host), which take no place in the family."""
    names: list[str] = []
    if gate_absolute:
        for name, m in sorted(rec.metrics.items()):
            if _is_timing(name) and gates(name, m) and round_values(rec, name)[0] is not None:
                names.append(name)
    if rec.speedup_vs_eager is not None:
        names.append(SPEEDUP)
    return [n for n in names if judged is None or judged(rec.id, n)]


def family_size(
    baseline: RunDocument, ids: Collection[str] | None = None, *, gate_absolute: bool = True,
    judged: Callable[[str, str], bool] | None = None, at_least_one: bool = True,
) -> int:
    """How many gated statistical comparisons a run of ``ids`` against ``baseline`` can make
    (at least 1 for a Bonferroni divisor; ``at_least_one=False``: the count, for a summary)."""
    n = 0
    for rec in baseline.benchmarks:
        if ids is not None and rec.id not in ids:
            continue
        n += len(statistical_comparisons(rec, gate_absolute=gate_absolute, judged=judged))
    return max(1, n) if at_least_one else n


def compare_documents(
    baseline: RunDocument, current: RunDocument, policy: Policy
) -> tuple[list[BenchmarkComparison], list[str], list[str]]:
    """(comparisons of shared benchmarks, ids only in the baseline, ids only in the current run)."""
    base = baseline.by_id()
    cur = current.by_id()
    shared = [i for i in cur if i in base]
    comps = [compare_benchmarks(base[i], cur[i], policy) for i in sorted(shared)]
    return comps, sorted(set(base) - set(cur)), sorted(set(cur) - set(base))


def q_values(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q-values), for the summary."""
    if not p_values:
        return []
    return [float(q) for q in sps.false_discovery_control(np.asarray(p_values, dtype=float), method="bh")]


def p_values_of(comparisons: Iterable[MetricComparison]) -> list[tuple[MetricComparison, float]]:
    return [(m, m.p_value) for m in comparisons if m.gated and m.p_value is not None]


# -- shared with mmperf ab (pytest_mmperf.ab.paired): one formatter, one definition -----------------
def percent(x: float) -> str:
    """A signed relative change as text: ``+5.0%``, ``n/a`` for NaN, ``+inf%``/``-inf%``."""
    return _pct(x)


def finite_or_none(x: float | None) -> float | None:
    """A float for JSON: None where it is not finite."""
    return _finite(x)


def per_round_speedups(rec: BenchmarkRecord) -> list[float] | None:
    """eager / optimized latency of each round (both arms of a round ran back to back)."""
    return _per_round_speedups(rec)
