"""The interval of a change at the level its test decides at: the Mann-Whitney test inverted.

The gate decides a timing (or a per-round speedup) with a one-sided Mann-Whitney U test at the
Bonferroni level ``alpha``. The interval shown beside that decision must be the one the test
implies, or a user reads "99% CI +6..+12%" beside "not significant". Inverting the test gives it
(Hodges-Lehmann / Moses): on the log scale, the shifts ``d`` for which neither one-sided test of
``log(current) - d`` against ``log(baseline)`` rejects at ``alpha`` are the order statistics
``D_(k) .. D_(mn + 1 - k)`` of the ``m * n`` pairwise differences ``log c_i - log b_j``, where
``k`` is the largest count with ``P(U < k) <= alpha`` under the null. That is a ``1 - 2 alpha``
two-sided interval for the ratio of locations (a ``100 (1 - 2 alpha)%`` simultaneous interval over
the family when ``alpha`` is Bonferroni-corrected), distribution-free, and symmetric on the log
scale by construction. When no ``k >= 1`` exists (too few rounds to ever reach ``alpha``) the
interval is unbounded: nothing can be shown unchanged.

The null distribution of U is exact (counted) when the values have no ties and there are at most
:data:`EXACT_MAX_N` of them, as the test is; otherwise the normal approximation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

EXACT_MAX_N = 200  # values on both sides together up to which U's null distribution is counted
MAX_PAIRS = 4_000_000  # pairwise differences held at once; beyond, each side is thinned evenly


@functools.lru_cache(maxsize=64)
def _u_counts(n: int, m: int) -> tuple[float, ...]:
    """How many of the C(n+m, n) orderings give U = 0, 1, ..., n*m (U counts pairs x > y).

    The largest of the n + m values is an x (it beats all m y's) or a y:
    ``c(n, m; u) = c(n-1, m; u - m) + c(n, m-1; u)``; additions only, so float64 is exact to its
    precision in the tails that matter."""
    # rows[a] = counts for (a, b) for the current b
    prev = [np.ones(1)] + [np.ones(1) for _ in range(n)]  # b = 0: U is 0 whatever a is
    for b in range(1, m + 1):
        cur = [np.ones(1)]  # a = 0: U is 0
        for a in range(1, n + 1):
            size = a * b + 1
            out = np.zeros(size)
            x_top = cur[a - 1]  # (a-1, b), shifted by b
            out[b:b + x_top.size] += x_top
            y_top = prev[a]  # (a, b-1)
            out[:y_top.size] += y_top
            cur.append(out)
        prev = cur
    return tuple(float(v) for v in prev[n])


def critical_count(n: int, m: int, alpha: float, *, exact: bool) -> int:
    """The largest k with P(U < k) <= alpha under the null (0 when even U = 0 is likelier)."""
    if n < 1 or m < 1 or not alpha > 0:
        return 0
    if exact:
        counts = np.asarray(_u_counts(n, m))
        cdf = np.cumsum(counts) / counts.sum()
        return int(np.searchsorted(cdf, alpha, side="right"))  # cdf[k-1] <= alpha
    mean, sd = n * m / 2.0, math.sqrt(n * m * (n + m + 1) / 12.0)
    k = math.floor(mean - float(sps.norm.isf(alpha)) * sd + 0.5)  # continuity-corrected
    return max(0, int(k))


def _thin(x: np.ndarray, keep: int) -> np.ndarray:
    if x.size <= keep:
        return x
    idx = np.linspace(0, x.size - 1, keep).round().astype(int)
    thinned: np.ndarray = np.sort(x)[idx]
    return thinned


def shift_interval(
    baseline: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray, alpha: float
) -> tuple[float, float]:
    """The ``1 - 2 alpha`` interval of current / baseline (ratio of locations), from the inverted
    one-sided Mann-Whitney tests at ``alpha``; ``(0, inf)`` when the rounds cannot reach it.

    Values must be positive (timings, speedups)."""
    b = np.log(np.asarray(baseline, dtype=float).ravel())
    c = np.log(np.asarray(current, dtype=float).ravel())
    if b.size == 0 or c.size == 0 or not (np.all(np.isfinite(b)) and np.all(np.isfinite(c))):
        return 0.0, math.inf
    side = int(math.sqrt(MAX_PAIRS))
    if b.size * c.size > MAX_PAIRS:
        b, c = _thin(b, min(b.size, side)), _thin(c, min(c.size, side))
    both = np.concatenate([b, c])
    exact = both.size <= EXACT_MAX_N and np.unique(both).size == both.size
    n, m = int(c.size), int(b.size)
    k = critical_count(n, m, alpha, exact=exact)
    if k < 1:
        return 0.0, math.inf
    diffs = np.sort((c[:, None] - b[None, :]).ravel())
    lo, hi = float(diffs[k - 1]), float(diffs[diffs.size - k])
    with np.errstate(over="ignore"):
        return float(np.exp(lo)), float(np.exp(hi))


def level_text(alpha: float, simultaneous: bool) -> str:
    """``99.998% simultaneous CI``: the interval's two-sided level ``1 - 2 alpha``, with as many
    digits as it takes not to read 100%."""
    level = max(0.0, 1.0 - 2.0 * alpha)
    digits = 0
    while digits < 8 and round(level * 100, digits) >= 100.0:
        digits += 1
    text = f"{level * 100:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{level * 100:.0f}"
    return f"{text}% {'simultaneous ' if simultaneous else ''}CI"
