"""Results in other tools' formats.

``github-action-benchmark`` (benchmark-action/github-action-benchmark): its ``customSmallerIsBetter``
and ``customBiggerIsBetter`` tools read a JSON list of ``{"name", "unit", "value", "range",
"extra"}``; one file holds one direction, so :func:`github_action_benchmark` takes the direction
to export (``lower`` -> customSmallerIsBetter, ``higher`` -> customBiggerIsBetter).

Bencher (bencher.dev): its Metric Format (BMF) is one JSON object, benchmark name -> measure name
-> ``{"value", "lower_value", "upper_value"}`` (``bencher run --adapter json --file PATH``). The
value is the median, the bounds its confidence interval; measures keep our metric names, so the
unit stays in the name (``latency_ms``), and Bencher creates a measure on first sight.
"""

from __future__ import annotations

import math
from typing import Any

from pytest_mmperf.results.records import RunDocument

TOOL_FOR_DIRECTION = {"lower": "customSmallerIsBetter", "higher": "customBiggerIsBetter"}


def github_action_benchmark(doc: RunDocument, direction: str = "lower") -> list[dict[str, Any]]:
    if direction not in TOOL_FOR_DIRECTION:
        raise ValueError(f"direction must be lower or higher, not {direction!r}")
    out: list[dict[str, Any]] = []
    for b in doc.benchmarks:
        for name, m in sorted(b.metrics.items()):
            if m.direction.value != direction:
                continue
            half = (m.ci_high - m.ci_low) / 2
            out.append({
                "name": f"{b.id} {name}",
                "unit": m.unit,
                "value": m.median,
                "range": f"± {half:.4g}",
                "extra": (
                    f"{m.confidence:.0%} CI [{m.ci_low:.4g}, {m.ci_high:.4g}], n={m.n}; "
                    f"commit {doc.commit or '-'}; environment {doc.fingerprint}"
                ),
            })
        sp = b.speedup_vs_eager
        if sp is not None and direction == "higher":
            out.append({
                "name": f"{b.id} speedup_vs_eager",
                "unit": "x",
                "value": sp.median,
                "range": f"± {(sp.ci_high - sp.ci_low) / 2:.4g}",
                "extra": f"{sp.confidence:.0%} CI [{sp.ci_low:.4g}, {sp.ci_high:.4g}]; levers "
                         f"{'+'.join(b.optimizations) or 'eager'}",
            })
    return out


BMF_BENCHMARK_NAME_MAX = 1024  # Bencher's limits on a benchmark's and a measure's name
BMF_MEASURE_NAME_MAX = 64


def bencher_metric_format(doc: RunDocument) -> dict[str, dict[str, dict[str, float]]]:
    """The run in Bencher Metric Format: every metric's median with its CI, and the speedup."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for b in doc.benchmarks:
        name = b.id[-BMF_BENCHMARK_NAME_MAX:]  # keep the distinguishing end (parameters)
        measures: dict[str, dict[str, float]] = {}
        for metric, m in sorted(b.metrics.items()):
            if len(metric) > BMF_MEASURE_NAME_MAX or not all(map(math.isfinite, (m.median, m.ci_low, m.ci_high))):
                continue
            measures[metric] = {"value": m.median, "lower_value": m.ci_low, "upper_value": m.ci_high}
        sp = b.speedup_vs_eager
        if sp is not None and all(map(math.isfinite, (sp.median, sp.ci_low, sp.ci_high))):
            measures["speedup_vs_eager"] = {"value": sp.median, "lower_value": sp.ci_low, "upper_value": sp.ci_high}
        if measures:
            out[name] = measures
    return out
