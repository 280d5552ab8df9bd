"""Bounds a user asserts on a metric, as values: a check returns a Failure or None.

``Mmperf.check`` is the one place that turns a Failure into an AssertionError.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_mmperf.results.records import MetricRecord

STATS = ("median", "min", "max", "q1", "q3", "ci_low", "ci_high")


@dataclass(frozen=True)
class Failure:
    message: str


def _fmt(value: float, unit: str) -> str:
    if unit == "bytes":
        for scale, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.2f} {name}"
        return f"{value:.0f} B"
    if unit == "ms":
        return f"{value:.3g} ms" if abs(value) < 100 else f"{value:.1f} ms"
    if unit == "instructions" and abs(value) >= 1e6:
        return f"{value / 1e6:.6g}M instructions"  # 875.74M: the 0.5% gate threshold stays readable
    return f"{value:.4g} {unit}"


def check_bound(
    metric: MetricRecord,
    *,
    below: float | None = None,
    above: float | None = None,
    stat: str = "median",
    benchmark: str = "",
) -> Failure | None:
    """Is ``stat`` of the metric strictly below ``below`` / strictly above ``above``?"""
    if below is None and above is None:
        raise ValueError("give a bound: below= or above=")
    if stat not in STATS:
        raise ValueError(f"stat must be one of {', '.join(STATS)}, not {stat!r}")
    value = float(getattr(metric, stat))
    ci = (
        f" (median {_fmt(metric.median, metric.unit)}, {metric.confidence:.0%} CI "
        f"{_fmt(metric.ci_low, metric.unit)}..{_fmt(metric.ci_high, metric.unit)}, n={metric.n})"
    )
    who = f"{benchmark}: " if benchmark else ""
    if below is not None and not value < below:
        return Failure(
            f"{who}{metric.name} {stat} {_fmt(value, metric.unit)}{ci} is not below the bound "
            f"{_fmt(below, metric.unit)}"
        )
    if above is not None and not value > above:
        return Failure(
            f"{who}{metric.name} {stat} {_fmt(value, metric.unit)}{ci} is not above the bound "
            f"{_fmt(above, metric.unit)}"
        )
    return None


def format_value(value: float, unit: str) -> str:
    return _fmt(value, unit)
