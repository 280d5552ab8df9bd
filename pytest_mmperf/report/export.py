"""Results in other tools' formats.

``github-action-benchmark`` (benchmark-action/github-action-benchmark): its ``customSmallerIsBetter``
and ``customBiggerIsBetter`` tools read a JSON list of ``{"name", "unit", "value", "range",
"extra"}``; one file holds one direction, so :func:`github_action_benchmark` takes the direction
to export (``lower`` -> customSmallerIsBetter, ``higher`` -> customBiggerIsBetter).
"""

from __future__ import annotations

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
