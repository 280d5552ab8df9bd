"""``mmperf history`` as text: per benchmark, each metric's latest value with its CI, the trend
over the last runs (a sparkline and the change across them) and the change points."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pytest_mmperf.history import Series
from pytest_mmperf.report.model import HistoryView, Trend

SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-12 * max(abs(hi), 1.0):
        return SPARKS[3] * len(values)
    return "".join(SPARKS[min(int((v - lo) / (hi - lo) * len(SPARKS)), len(SPARKS) - 1)] for v in values)


def _num(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.4g}"


def _latest(s: Series) -> str:
    p = s.points[-1]
    ci = f" [{_num(p.ci_low)}, {_num(p.ci_high)}]" if p.ci_low is not None and p.ci_high is not None else ""
    return f"{_num(p.median)}{ci} {s.unit}"


def _trend(s: Series, last: int) -> str:
    window = [p.median for p in s.points[-last:]]
    if len(window) < 2 or window[0] == 0:
        return sparkline(window)
    return f"{sparkline(window)} {(window[-1] / window[0] - 1) * 100:+.1f}%"


def _changes(t: Trend) -> str:
    if not t.change_points:
        return "-"
    parts = []
    for cp in t.change_points:
        size = f"{cp.change_fraction * 100:+.1f}%" if math.isfinite(cp.change_fraction) else "new"
        parts.append(f"{t.series.points[cp.index].label} {size} {cp.kind}")
    return "; ".join(parts)


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def render(view: HistoryView, *, last: int = 10) -> str:
    newest = view.runs[-1]
    env = f"environment {view.fingerprint}" if view.fingerprint is not None else "all environments"
    lines = [
        f"{len(view.runs)} run(s) from {view.runs[0].label} to {newest.label} "
        f"(newest on {newest.branch or 'no branch'} at {newest.created}); {env}",
    ]
    if view.hidden_environments:
        lines.append(f"({view.hidden_environments} other environment(s) hidden; --fingerprint all shows them)")
    if not view.trends:
        lines.append("no series match the filters")
    for bench, trends in view.by_benchmark().items():
        first = trends[0].series
        levers = "+".join(first.optimizations) or "eager"
        lines.append("")
        lines.append(f"{bench}  [{first.workload or '-'} {first.task or '-'} {levers}]")
        rows = [["  metric", "latest [CI]", f"trend (last {last})", "runs", "change points"]]
        for t in trends:
            rows.append(
                [f"  {t.series.metric}", _latest(t.series), _trend(t.series, last), str(len(t.series.points)),
                 _changes(t)]
            )
        lines.extend(_columns(rows))
    return "\n".join(lines) + "\n"
