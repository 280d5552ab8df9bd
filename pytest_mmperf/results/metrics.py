"""Metric names, units and directions.

Every metric name ends in its unit (``latency_ms``, ``tokens_per_s``, ``peak_memory_bytes``); the
unit and whether lower or higher is better follow from that suffix, so no metric exists without
both. Names that end in no known unit are refused.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

SPEEDUP = "speedup_vs_eager"  # the pseudo-metric name of a benchmark's in-run speedup
EAGER_PREFIX = "eager_"  # the eager arm's metrics of a lever benchmark
EAGER_LATENCY = EAGER_PREFIX + "latency_ms"


class Direction(str, enum.Enum):
    LOWER = "lower"  # lower is better: latencies, memory
    HIGHER = "higher"  # higher is better: throughput, speedup, acceptance rate


@dataclass(frozen=True)
class Unit:
    suffix: str
    unit: str
    direction: Direction
    timing: bool  # timings are noisy and compared with statistics; counts and bytes by threshold


# Longest suffix first, so "_per_s" wins over "_s".
_UNITS: tuple[Unit, ...] = (
    Unit("_per_s", "1/s", Direction.HIGHER, True),
    Unit("_rate", "ratio", Direction.HIGHER, False),
    Unit("_ratio", "ratio", Direction.HIGHER, False),
    Unit("_fraction", "fraction", Direction.LOWER, False),
    Unit("_bytes", "bytes", Direction.LOWER, False),
    Unit("_count", "count", Direction.LOWER, False),
    Unit("_flops", "FLOP", Direction.LOWER, False),
    Unit("_pct", "%", Direction.LOWER, False),
    Unit("_mhz", "MHz", Direction.HIGHER, False),  # clocks (recorded ungated: device state)
    Unit("_celsius", "degC", Direction.LOWER, False),
    # counted by the instruction clock: deterministic, compared by threshold (judge.deterministic)
    Unit("_instructions", "instructions", Direction.LOWER, False),
    Unit("_ms", "ms", Direction.LOWER, True),
    Unit("_s", "s", Direction.LOWER, True),
)


class MetricNameError(ValueError):
    pass


def unit_of(name: str) -> Unit:
    """The unit a metric name declares through its suffix."""
    for unit in _UNITS:
        if name.endswith(unit.suffix) and len(name) > len(unit.suffix):
            return unit
    known = ", ".join(u.suffix for u in _UNITS)
    raise MetricNameError(f"metric name {name!r} must end in a unit suffix ({known})")


def phase_metric(phase: str) -> str:
    """The metric a named phase records into: ``ttft`` -> ``ttft_ms``."""
    return phase if phase.endswith("_ms") else f"{phase}_ms"
