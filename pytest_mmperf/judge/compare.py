"""The comparison engine: one benchmark measured now versus its baseline, as values.

Pure functions on :mod:`pytest_mmperf.results.records`; no pytest, no torch. The gate
(:mod:`pytest_mmperf.judge.gate`) and ``mmperf compare`` both call :func:`compare_benchmarks`.

How a metric is judged (significant AND beyond a practical threshold; docs/gate.md):

* **timing metrics** (``*_ms``, ``*_s``, ``*_per_s``): one-sided Mann-Whitney U test in the "worse"
  direction, plus the percentile-bootstrap CI of the ratio of medians (reported). *Regressed* when
  ``p < alpha`` (after the family-wise correction below) AND the median change is beyond the
  effective threshold; *improved* symmetrically; *inconclusive* when either side has fewer than
  ``min_samples`` samples, when even a perfect separation of the samples could not reach ``alpha``,
  or when the CI of the change is wider than ``max_ci_width``; otherwise *unchanged*.
* **absolute timings drift between sessions** (medians moved up to 16% on an idle
  2-core VM 30 minutes apart). A baseline is always from another session, so for absolute timing
  metrics the effective threshold is ``max(threshold, drift_allowance)`` (default 20%). Metrics
  that are ratios measured inside one run (``speedup_vs_eager``, eager and optimized rounds
  interleaved ABBA) cancel that drift and are gated at the plain threshold (default 5%).
  ``scripts/detection_power.py`` measures what each path can detect on this machine. On a shared
  machine under CPU contention absolute timings move far more than 20% (measured: +184% median
  on unchanged reruns at load average 4 on 2 cores); there ``gate_absolute=False`` reports them
  without failing, and only in-run ratios, bytes, counts and output drift gate.
* **byte and count metrics** (``*_bytes``, ``*_count``, ratios, ...): near-deterministic and
  often a single sample, so the threshold on the medians decides alone.
* **speedup_vs_eager**: per-round speedups ``eager_latency_ms[i] / latency_ms[i]`` (the two arms
  of round i ran back to back) are compared like a timing metric whose higher is better. Without
  per-round samples the stored medians and CIs are used, conservatively.

False discoveries across a suite: decisions are made per test while the suite runs, so the gate
uses Bonferroni (valid online, in any order) over the family of every statistical comparison the
run can make (``family_size``: the gated timing metrics and speedups of the baseline entries of
the collected benchmarks): ``alpha = (1 - confidence) / family_size``. Benjamini-Hochberg q-values
(:func:`q_values`) are reported in the session summary for reading, not for deciding.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from pytest_mmperf.judge import deterministic
from pytest_mmperf.results import stats
from pytest_mmperf.results.metrics import EAGER_LATENCY, SPEEDUP, Direction, MetricNameError, unit_of
from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord, RunDocument, Speedup

DEFAULT_THRESHOLD = 0.05
DEFAULT_CONFIDENCE = 0.99
DRIFT_ALLOWANCE = 0.20  # absolute timings vs another session; medians drifted up to 16% here
MIN_SAMPLES = 5
MAX_CI_WIDTH = 0.50  # relative change; a wider CI says nothing either way


class Category(str, enum.Enum):
    IMPROVED = "improved"
    UNCHANGED = "unchanged"
    REGRESSED = "regressed"
    INCONCLUSIVE = "inconclusive"


# How a metric is compared; also what the summary shows.
TIMING = "timing"  # absolute timing, vs another session: threshold widened by the drift allowance
IN_RUN = "in-run ratio"  # a ratio measured inside one run (speedup): drift cancels
EXACT = "threshold"  # bytes, counts: the threshold on medians alone
COUNT = "deterministic"  # instruction counts: a noise check, then the threshold


@dataclass(frozen=True)
class Policy:
    """Everything that decides a comparison; built from Settings by the gate or the CLI."""

    threshold: float = DEFAULT_THRESHOLD
    thresholds: Mapping[str, float] = field(default_factory=dict)  # per metric name
    confidence: float = DEFAULT_CONFIDENCE
    family_size: int = 1  # number of statistical comparisons in the run (Bonferroni)
    min_samples: int = MIN_SAMPLES
    max_ci_width: float = MAX_CI_WIDTH
    drift_allowance: float = DRIFT_ALLOWANCE
    gate_absolute: bool = True  # False: absolute timings are reported, never fail (shared runners)

    def threshold_for(self, metric: str) -> float:
        return float(self.thresholds.get(metric, self.threshold))

    @property
    def alpha(self) -> float:
        """Per-comparison significance level after the Bonferroni correction."""
        return (1.0 - self.confidence) / max(1, self.family_size)


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
    ci_low: float | None  # CI of ``change`` at ``confidence``
    ci_high: float | None
    confidence: float
    p_value: float | None  # one-sided, in the "worse" direction; None for EXACT
    threshold: float  # the effective threshold used
    reason: str = ""  # why inconclusive, or a note
    gated: bool = True  # False: reported only, never fails

    @property
    def worse_by(self) -> float:
        """The change in the bad direction: positive = worse."""
        return self.change if self.direction == Direction.LOWER.value else -self.change

    def change_text(self) -> str:
        ci = ""
        if self.ci_low is not None and self.ci_high is not None:
            ci = f" ({self.confidence:.0%} CI {_pct(self.ci_low)}..{_pct(self.ci_high)})"
        what = "median" if self.metric != SPEEDUP else "median speedup"
        return f"{self.metric} {what} {_pct(self.change)}{ci}"

    def threshold_text(self) -> str:
        whole = self.threshold * 100 == round(self.threshold * 100)
        limit = f"{self.threshold:.0%}" if whole else f"{self.threshold:.1%}"
        label = "threshold" if self.kind != TIMING else "threshold (incl. cross-session drift allowance)"
        return f"{limit} {label}"

    def describe(self) -> str:
        text = self.change_text()
        if self.category is Category.REGRESSED:
            bound = ">" if self.direction == Direction.LOWER.value else "drop >"
            return f"{text} {bound} {self.threshold_text()}"
        if self.category is Category.INCONCLUSIVE:
            return f"{text}: inconclusive ({self.reason})"
        return f"{text}: {self.category.value}"

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "kind": self.kind,
            "category": self.category.value,
            "direction": self.direction,
            "unit": self.unit,
            "baseline": self.baseline,
            "current": self.current,
            "change": _finite(self.change),
            "ci_low": _finite(self.ci_low),
            "ci_high": _finite(self.ci_high),
            "confidence": self.confidence,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "reason": self.reason,
            "gated": self.gated,
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
    if not math.isfinite(x):
        return "+inf%" if x > 0 else "-inf%"
    return f"{x * 100:+.1f}%"


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


def _smallest_p(n1: int, n2: int) -> float:
    """The smallest one-sided Mann-Whitney p-value n1 and n2 samples can give (perfect separation)."""
    return 1.0 / math.comb(n1 + n2, n1)


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
    """Judge a timing-like metric (or per-round speedups) from its samples."""
    direction = Direction(direction)
    threshold = policy.threshold_for(metric)
    if kind == TIMING:
        threshold = max(threshold, policy.drift_allowance)
    b = np.asarray(baseline, dtype=float)
    c = np.asarray(current, dtype=float)
    b_med = float(np.median(b)) if b.size else math.nan
    c_med = float(np.median(c)) if c.size else math.nan

    def result(category: Category, change: float, lo: float | None, hi: float | None,
               p: float | None, reason: str = "") -> MetricComparison:
        return MetricComparison(benchmark, metric, kind, category, direction.value, unit, b_med,
                                c_med, change, lo, hi, policy.confidence, p, threshold, reason, gated)

    if b.size < policy.min_samples or c.size < policy.min_samples:
        change = c_med / b_med - 1 if b.size and c.size and b_med else math.nan
        return result(Category.INCONCLUSIVE, change, None, None, None,
                      f"too few samples: {b.size} in the baseline, {c.size} now; "
                      f"need {policy.min_samples} on each side")
    if not b_med > 0 or not c_med > 0:
        return result(Category.INCONCLUSIVE, math.nan, None, None, None,
                      "a median is zero or negative; a relative change is undefined")
    est = stats.ratio_of_medians(c.tolist(), b.tolist(), policy.confidence)
    change, lo, hi = est.ratio - 1, est.ci_low - 1, est.ci_high - 1
    worse_alt, better_alt = ("greater", "less") if direction is Direction.LOWER else ("less", "greater")
    p_worse = float(sps.mannwhitneyu(c, b, alternative=worse_alt).pvalue)
    p_better = float(sps.mannwhitneyu(c, b, alternative=better_alt).pvalue)
    worse = change if direction is Direction.LOWER else -change
    if p_worse < policy.alpha and worse > threshold:
        return result(Category.REGRESSED, change, lo, hi, p_worse)
    if p_better < policy.alpha and -worse > threshold:
        return result(Category.IMPROVED, change, lo, hi, p_worse)
    floor = _smallest_p(b.size, c.size)
    if floor >= policy.alpha:
        return result(Category.INCONCLUSIVE, change, lo, hi, p_worse,
                      f"{b.size} vs {c.size} samples cannot reach p < {policy.alpha:.2g} "
                      f"(smallest possible p {floor:.2g}); measure more rounds")
    if hi - lo > policy.max_ci_width:
        return result(Category.INCONCLUSIVE, change, lo, hi, p_worse,
                      f"too noisy: the CI of the change is {(hi - lo) * 100:.0f} points wide "
                      f"(limit {policy.max_ci_width * 100:.0f})")
    return result(Category.UNCHANGED, change, lo, hi, p_worse)


def compare_exact(
    benchmark: str, metric: str, baseline: MetricRecord, current: MetricRecord, policy: Policy
) -> MetricComparison:
    """Bytes and counts: the threshold on the medians decides alone."""
    threshold = policy.threshold_for(metric)
    b, c = baseline.median, current.median
    change = c / b - 1 if b != 0 else (0.0 if c == 0 else math.copysign(math.inf, c))
    worse = change if current.direction is Direction.LOWER else -change
    if worse > threshold:
        category = Category.REGRESSED
    elif -worse > threshold:
        category = Category.IMPROVED
    else:
        category = Category.UNCHANGED
    return MetricComparison(benchmark, metric, EXACT, category, current.direction.value,
                            current.unit, b, c, change, None, None, policy.confidence, None,
                            threshold, "", current.gated and baseline.gated)


def _per_round_speedups(rec: BenchmarkRecord) -> list[float] | None:
    eager, opt = rec.metrics.get(EAGER_LATENCY), rec.metrics.get("latency_ms")
    if eager is None or opt is None or len(eager.samples) != len(opt.samples):
        return None
    if any(v <= 0 for v in opt.samples):
        return None
    return [e / o for e, o in zip(eager.samples, opt.samples)]


def compare_speedup(
    benchmark: str, base: BenchmarkRecord, cur: BenchmarkRecord, policy: Policy
) -> MetricComparison | None:
    bs, cs = base.speedup_vs_eager, cur.speedup_vs_eager
    if bs is None or cs is None:
        return None
    b_rounds, c_rounds = _per_round_speedups(base), _per_round_speedups(cur)
    if b_rounds is not None and c_rounds is not None:
        return compare_samples(benchmark, SPEEDUP, b_rounds, c_rounds, Direction.HIGHER, policy,
                               kind=IN_RUN, unit="x")
    return _compare_speedup_summaries(benchmark, bs, cs, policy)


def _compare_speedup_summaries(
    benchmark: str, bs: Speedup, cs: Speedup, policy: Policy
) -> MetricComparison:
    """No per-round samples: a drop counts only when the intervals do not overlap."""
    threshold = policy.threshold_for(SPEEDUP)
    change = cs.median / bs.median - 1 if bs.median > 0 else math.nan
    lo = cs.ci_low / bs.ci_high - 1 if bs.ci_high > 0 else math.nan
    hi = cs.ci_high / bs.ci_low - 1 if bs.ci_low > 0 else math.nan
    if not all(math.isfinite(v) for v in (change, lo, hi)):
        category, reason = Category.INCONCLUSIVE, "speedup medians or intervals are not positive"
    elif hi < 0 and -change > threshold:
        category, reason = Category.REGRESSED, "stored intervals do not overlap"
    elif lo > 0 and change > threshold:
        category, reason = Category.IMPROVED, "stored intervals do not overlap"
    elif hi - lo > policy.max_ci_width:
        category, reason = Category.INCONCLUSIVE, "no per-round samples and wide intervals"
    else:
        category, reason = Category.UNCHANGED, ""
    return MetricComparison(benchmark, SPEEDUP, IN_RUN, category, Direction.HIGHER.value, "x",
                            bs.median, cs.median, change, lo, hi, min(bs.confidence, cs.confidence),
                            None, threshold, reason)


def compare_counts(
    benchmark: str, metric: str, baseline: MetricRecord, current: MetricRecord, policy: Policy
) -> MetricComparison:
    """Instruction counts: deterministic, so a threshold decides after a noise check
    (:mod:`pytest_mmperf.judge.deterministic`)."""
    threshold = float(policy.thresholds.get(metric, deterministic.DEFAULT_THRESHOLD))
    v = deterministic.judge_counts(baseline.per_round(), current.per_round(),
                                   lower_is_better=current.direction is Direction.LOWER, threshold=threshold)
    return MetricComparison(benchmark, metric, COUNT, Category(v.category), current.direction.value,
                            current.unit, v.baseline, v.current, v.change, v.low, v.high, policy.confidence,
                            None, threshold, v.reason, baseline.gated and current.gated)


def _is_timing(name: str) -> bool:
    try:
        return unit_of(name).timing
    except MetricNameError:
        return False


def compare_benchmarks(
    base: BenchmarkRecord, cur: BenchmarkRecord, policy: Policy
) -> BenchmarkComparison:
    """Every metric both records have, and the speedup; ungated metrics are reported only."""
    out: list[MetricComparison] = []
    notes: list[str] = []
    for name in sorted(set(base.metrics) | set(cur.metrics)):
        b, c = base.metrics.get(name), cur.metrics.get(name)
        if b is None or c is None:
            side = "baseline" if c is None else "current run"
            if (c or b) is not None and (c or b).gated:  # type: ignore[union-attr]
                notes.append(f"{name} only in the {side}")
            continue
        gated = b.gated and c.gated
        if deterministic.is_count(name):
            out.append(compare_counts(cur.id, name, b, c, policy))
        elif _is_timing(name):
            gated = gated and policy.gate_absolute
            out.append(compare_samples(cur.id, name, b.samples, c.samples, c.direction, policy,
                                       kind=TIMING, unit=c.unit, gated=gated))
        else:
            out.append(compare_exact(cur.id, name, b, c, policy))
    sp = compare_speedup(cur.id, base, cur, policy)
    if sp is not None:
        out.append(sp)
    elif (base.speedup_vs_eager is None) != (cur.speedup_vs_eager is None):
        notes.append(f"{SPEEDUP} only in the {'baseline' if cur.speedup_vs_eager is None else 'current run'}")
    return BenchmarkComparison(cur.id, tuple(out), tuple(notes))


# -- a whole run -----------------------------------------------------------------------------------
def family_size(
    baseline: RunDocument, ids: Collection[str] | None = None, *, gate_absolute: bool = True
) -> int:
    """How many gated statistical comparisons a run of ``ids`` against ``baseline`` can make."""
    n = 0
    for rec in baseline.benchmarks:
        if ids is not None and rec.id not in ids:
            continue
        if gate_absolute:
            n += sum(1 for name, m in rec.metrics.items() if m.gated and _is_timing(name))
        n += 1 if rec.speedup_vs_eager is not None else 0
    return max(1, n)


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
