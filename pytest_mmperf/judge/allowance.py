"""How far a whole session may drift from another on this host: learned, configured, or unknown.

An absolute timing compared with a baseline from another session carries the host's
session-to-session drift, which no number of rounds inside one session averages away. The gate may
only judge such a timing where that drift is known:

* **learned**: the history holds at least :data:`MIN_SESSIONS` earlier sessions of the benchmark on
  this fingerprint and host. Each session gives one value per metric (its median). On the log
  scale their deviations from their median are ``d_i``; the allowance is
  ``exp(3 * q90(|d_i|)) - 1``. The change between two sessions is ``d_now - d_base``: with normal
  session effects of spread ``s``, ``q90(|d|)`` is ``1.645 s`` and three times it is ``4.93 s``,
  3.5 spreads of ``d_now - d_base`` (whose spread is ``1.41 s``): an unchanged timing exceeds it
  about once in 4,000, so a suite of about 100 gated timings false-alarms in under 3% of its
  unchanged runs before the threshold's own margin, leaving room for the error of a quantile
  estimated from a few sessions. A 90% quantile ignores one odd session in ten (a real
  regression that landed in the history, a session under load). Why 8 sessions: the
  90% quantile of n values lies at position ``0.9 (n - 1)`` of the sorted ones; below 8 it is
  mostly the single largest deviation, so one noisy session would set the bound; from 8 it is
  mostly the second largest (70%), so one odd session in the history moves it little. 8 nightly
  runs are a week and a day of a dedicated runner;
* **configured**: ``--mmperf-drift-allowance=FRACTION`` given explicitly, for a host whose drift
  its owner knows; used when the history cannot teach one;
* **unknown**: neither (the default ``auto`` without enough history), or a baseline from another
  host (a different machine is not drift: 1.03x to 2.24x per benchmark on a second VM of the
  same kind): the metric is reported, not gated.

A learned allowance wider than :data:`MAX_LEARNED` means no useful regression could be seen
across sessions on this host (the smallest one the gate could call would be over 30%); the
metric is then inconclusive with that reason and the ways out, never a coin flip at the edge of
a bound. Pure: no pytest, no torch, no database.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MIN_SESSIONS = 8  # earlier sessions on this fingerprint and host before a spread is learned
MAX_SESSIONS = 30  # the newest ones only: a host's drift changes (a kernel, a neighbour)
QUANTILE = 0.90
SPREADS = 3.0  # the allowance is SPREADS times the 90% quantile of |d_i| (log scale)
MAX_LEARNED = 0.25  # beyond it a cross-session time verdict could only see changes over 31%
WAY_OUT = "use `mmperf ab`, the instruction clock, or record {n} sessions here"


@dataclass(frozen=True)
class Allowance:
    """The drift a cross-session comparison of one metric may carry, or why it is not judged."""

    value: float | None  # a fraction (0.11 = 11%); None: not judged across sessions
    source: str  # "allowance 11% from 9 sessions", "configured allowance 50%", or why not
    sessions: int = 0  # the history sessions it was learned from (0: not learned)
    too_wide: bool = False  # learned, but wider than MAX_LEARNED: inconclusive, not unknown

    @property
    def known(self) -> bool:
        return self.value is not None


def unknown(reason: str) -> Allowance:
    """Not judged across sessions: ``inconclusive: <reason>``."""
    return Allowance(None, reason)


def no_estimate(have: int = 0) -> str:
    """The reason of a host whose drift is unknown, with the way out."""
    more = f" ({have} of {MIN_SESSIONS} sessions recorded)" if have else ""
    return f"no drift estimate for this host{more} ({WAY_OUT.format(n=MIN_SESSIONS)})"


def learn(values: Sequence[float]) -> Allowance | None:
    """The allowance learned from one metric's per-session medians (oldest first), or None when
    there are too few sessions (or values that are not positive and finite)."""
    kept = [float(v) for v in values[-MAX_SESSIONS:] if isinstance(v, (int, float)) and v > 0 and math.isfinite(v)]
    if len(kept) < MIN_SESSIONS:
        return None
    logs = np.log(np.asarray(kept))
    dev = np.abs(logs - np.median(logs))
    allowance = float(np.exp(SPREADS * np.quantile(dev, QUANTILE)) - 1.0)
    text = f"allowance {allowance:.0%} from {len(kept)} sessions"
    if allowance > MAX_LEARNED:
        return Allowance(None, f"sessions on this host spread too wide to judge a timing across sessions "
                               f"({text}, above the {MAX_LEARNED:.0%} cap): use `mmperf ab` or the "
                               "instruction clock", len(kept), too_wide=True)
    return Allowance(allowance, text, len(kept))


def learn_all(history: Mapping[str, Sequence[float]]) -> tuple[dict[str, Allowance], int]:
    """Per metric: the learned allowance where there are enough sessions; and the most sessions
    any metric has (for the reason when none has enough)."""
    out: dict[str, Allowance] = {}
    most = 0
    for metric, values in history.items():
        most = max(most, len(values))
        learned = learn(values)
        if learned is not None:
            out[metric] = learned
    return out, most
