"""The terminal summary: one row per benchmark, key metrics with their CI, speedup, quality."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_mmperf.judge.checks import format_value
from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord

# the instruction clock's counts stand in for the times (a run has one clock; the table drops the
# columns no benchmark has)
KEY_METRICS = ("latency_ms", "ttft_ms", "tpot_ms", "latency_instructions", "ttft_instructions", "tpot_instructions",
               "tokens_per_s", "peak_memory_bytes", "weight_bytes")
CONTENDED = "contended_rounds_count"  # rounds whose thread was off a CPU (measure.contention)


def _contended(r: BenchmarkRecord) -> str:
    """``contended/rounds`` of the benchmark's own arm ("-" where not measured)."""
    count, latency = r.metrics.get(CONTENDED), r.metrics.get("latency_ms")
    if count is None or latency is None:
        return "-"
    return f"{count.median:.0f}/{latency.n}"


def _cell(m: MetricRecord | None) -> str:
    if m is None:
        return "-"
    if m.n == 1 or m.ci_low == m.ci_high:
        return format_value(m.median, m.unit)
    return f"{format_value(m.median, m.unit)} [{_short(m.ci_low, m.unit)}..{_short(m.ci_high, m.unit)}]"


def _short(v: float, unit: str = "") -> str:
    if unit == "instructions" and abs(v) >= 1e6:  # the cell's own millions, without the unit
        return format_value(v, unit).removesuffix(" instructions")
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"


def short_id(node_id: str) -> str:
    return node_id.split("::", 1)[-1] if "::" in node_id else node_id


def table(records: Sequence[BenchmarkRecord], fingerprint: str = "", confidence: float = 0.95) -> list[str]:
    header = ["benchmark", *KEY_METRICS, "speedup", "quality", "contended"]
    rows = [header]
    for r in records:
        sp = r.speedup_vs_eager
        speed = f"{sp.median:.2f}x [{sp.ci_low:.2f}..{sp.ci_high:.2f}]" if sp else "-"
        q = "-" if not r.quality else str(r.quality.get("verdict", "?"))
        rows.append([short_id(r.id), *(_cell(r.metrics.get(k)) for k in KEY_METRICS), speed, q, _contended(r)])
    # drop metric columns no benchmark has
    keep = [i for i in range(len(header)) if i == 0 or any(row[i] != "-" for row in rows[1:])]
    rows = [[row[i] for i in keep] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"pytest-mmperf: {len(records)} benchmark(s)" + (f" on {fingerprint}" if fingerprint else "")]
    for j, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(
        f"medians with the {confidence:.0%} CI of the median in brackets; "
        "speedup = eager / optimized latency, rounds interleaved; "
        "contended = rounds with thread CPU time < 90% of wall time / rounds"
    )
    return lines
