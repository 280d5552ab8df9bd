"""Summary statistics and confidence intervals, on numpy and scipy.

* the CI of a median is distribution-free: the order statistics the binomial distribution picks
  (the textbook exact interval), so it needs no assumption about the latency distribution;
* the CI of a ratio of medians (speedup, change vs baseline) is a percentile bootstrap from
  ``scipy.stats.bootstrap`` with a fixed seed, so a result is reproducible from its samples. Above
  ``BOOTSTRAP_MAX_N`` samples a side (a bootstrap would hold resamples x n values in memory) it is
  the conservative, distribution-free bound from the two medians' own order-statistic intervals,
  each at ``1 - (1 - confidence) / 2`` so that both hold together with at least ``confidence``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20241001
BOOTSTRAP_MAX_N = 2000  # above this many samples a side: the order-statistic bound (no resampling)


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    mean: float
    stdev: float
    min: float
    max: float
    q1: float
    q3: float
    ci_low: float
    ci_high: float
    confidence: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def cv(self) -> float:
        """Coefficient of variation (robust: IQR / 1.349 over the median)."""
        if self.median == 0:
            return 0.0
        return (self.iqr / 1.349) / abs(self.median)


def median_ci(samples: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median from order statistics.

    With n samples, the number below the true median is Binomial(n, 1/2); the ranks
    [k, n-1-k] cover the median with probability >= confidence. Too few samples for that
    confidence give the sample range, which is the widest honest answer.
    """
    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    if n == 0:
        raise ValueError("no samples")
    if n == 1:
        return float(x[0]), float(x[0])
    alpha = 1.0 - confidence
    # largest k with P(B <= k-1) <= alpha/2, B ~ Binomial(n, 0.5)
    k = int(sps.binom.ppf(alpha / 2, n, 0.5))
    if sps.binom.cdf(k, n, 0.5) > alpha / 2:
        k -= 1
    k = max(k, 0)
    lo, hi = x[k], x[n - 1 - k]
    return float(lo), float(hi)


def summarize(samples: Sequence[float], confidence: float = 0.95) -> Summary:
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        raise ValueError("no samples")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples must be finite")
    lo, hi = median_ci(x, confidence)
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return Summary(
        n=int(x.size),
        median=float(med),
        mean=float(x.mean()),
        stdev=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        min=float(x.min()),
        max=float(x.max()),
        q1=float(q1),
        q3=float(q3),
        ci_low=lo,
        ci_high=hi,
        confidence=confidence,
    )


@dataclass(frozen=True)
class RatioEstimate:
    """median(numerator) / median(denominator) with a bootstrap CI."""

    ratio: float
    ci_low: float
    ci_high: float
    confidence: float


def _median_ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(a, axis=axis) / np.median(b, axis=axis)  # type: ignore[no-any-return]


def ratio_of_medians(
    numerator: Sequence[float] | np.ndarray, denominator: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> RatioEstimate:
    """Ratio of medians with a percentile-bootstrap CI (independent resampling of each side)."""
    a = np.asarray(numerator, dtype=float)
    b = np.asarray(denominator, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("no samples")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("samples must be finite")
    if np.median(b) == 0:
        raise ValueError("denominator median is zero")
    with np.errstate(over="ignore"):  # 1e300 / 1e-300: inf, which callers check
        point = float(np.median(a) / np.median(b))
    if not math.isfinite(point):
        return RatioEstimate(point, point, point, confidence)
    if a.size < 2 or b.size < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return RatioEstimate(point, point, point, confidence)
    if max(a.size, b.size) > BOOTSTRAP_MAX_N or float(np.median(b)) < 0:
        lo, hi = _order_statistic_bound(a, b, confidence)
    else:
        lo, hi = _bootstrap(a, b, confidence)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = point, point
    # The percentile interval of a median can miss the point estimate for tiny n; widen to it.
    return RatioEstimate(point, min(lo, point), max(hi, point), confidence)


def _bootstrap(a: np.ndarray, b: np.ndarray, confidence: float) -> tuple[float, float]:
    # A resample whose denominator median is 0 gives inf; all-equal resample statistics make
    # scipy warn and return nan: both end in the finite check of the caller, not in a warning.
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.bootstrap(
            (a, b),
            _median_ratio,
            n_resamples=BOOTSTRAP_RESAMPLES,
            confidence_level=confidence,
            method="percentile",
            vectorized=True,
            rng=np.random.default_rng(BOOTSTRAP_SEED),
        )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _order_statistic_bound(a: np.ndarray, b: np.ndarray, confidence: float) -> tuple[float, float]:
    """[lo(a) / hi(b), hi(a) / lo(b)] from each median's own interval at 1 - (1 - confidence) / 2."""
    each = 1.0 - (1.0 - confidence) / 2.0
    a_lo, a_hi = median_ci(a, each)
    b_lo, b_hi = median_ci(b, each)
    if not (b_lo > 0 and b_hi > 0):
        return math.nan, math.nan
    return a_lo / b_hi, a_hi / b_lo
