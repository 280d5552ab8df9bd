"""What changed, one row per benchmark, for the reports that lead with it (HTML, PR Markdown).

A row's verdict comes from the first source that has one:

1. the results document: the ``verdict`` the gate wrote when the run was compared
   (``--mmperf-compare``);
2. a baseline document given to the report: the judge's comparison of the two (the gate's
   rules: significant AND beyond the threshold);
3. the history: a change point at the newest run of one of the benchmark's series.

A benchmark with none of these has no row. Output drift (the gate's ``drift`` entries) is its own
category: it is what a lever breaks silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pytest_mmperf.judge import compare
from pytest_mmperf.judge.gate import host_trust, not_gated_text
from pytest_mmperf.judge.verdict import Verdict
from pytest_mmperf.report.comparison import detail_text
from pytest_mmperf.report.model import Trend
from pytest_mmperf.results.records import BenchmarkRecord, RunDocument

REGRESSED, DRIFT, IMPROVED, INCONCLUSIVE, UNCHANGED = "regressed", "drift", "improved", "inconclusive", "unchanged"
ORDER = (REGRESSED, DRIFT, IMPROVED, INCONCLUSIVE, UNCHANGED)
TITLES = {REGRESSED: "Regressions", DRIFT: "Output drift", IMPROVED: "Improvements",
          INCONCLUSIVE: "Inconclusive", UNCHANGED: "Unchanged"}


@dataclass(frozen=True)
class VerdictRow:
    benchmark: str
    workload: str
    lever: str  # "+".join(optimizations) or "eager"
    metrics: tuple[str, ...]  # the metrics that decided (for the metric filter)
    category: str  # one of ORDER
    detail: str
    source: str  # "gate", "baseline" or "history"


def lever(b: BenchmarkRecord) -> str:
    return "+".join(b.optimizations) or "eager"


def workload(b: BenchmarkRecord) -> str:
    """The workload, or a pytest-benchmark test's group."""
    return b.workload or str(b.params.get("group") or "-")


def _deciding(metrics: Iterable[Mapping[str, Any]], category: str) -> tuple[str, ...]:
    wanted = category if category in (REGRESSED, IMPROVED) else None
    names = [str(m.get("metric")) for m in metrics
             if m.get("gated", True) and (wanted is None or m.get("category") == wanted)]
    return tuple(names)


def _from_gate(b: BenchmarkRecord, v: Mapping[str, Any]) -> VerdictRow:
    details = {k: val for k, val in v.items() if k not in ("failed", "message")}
    verdict = Verdict(b.id, bool(v.get("failed")), str(v.get("message", "")), details)
    category = str(v.get("category", INCONCLUSIVE))
    if v.get("drift"):
        category = DRIFT
    metrics = _deciding(v.get("metrics") or [], category)
    if category == DRIFT:
        metrics = ("output",)
    return VerdictRow(b.id, workload(b), lever(b), metrics, category, detail_text(verdict), "gate")


def _from_baseline(b: BenchmarkRecord, base: BenchmarkRecord, policy: compare.Policy) -> VerdictRow:
    comp = compare.compare_benchmarks(base, b, policy)
    category = comp.category.value
    decided = [m for m in comp.gated if m.category is comp.category] or list(comp.gated)
    detail = "; ".join(m.describe() for m in decided[:3])
    untimed = not_gated_text(comp)
    if untimed:
        detail = "; ".join(p for p in (detail, f"not gated: {untimed}") if p)
    return VerdictRow(b.id, workload(b), lever(b), tuple(m.metric for m in decided), category, detail,
                      "baseline")


def _from_history(b: BenchmarkRecord, trends: Sequence[Trend]) -> VerdictRow | None:
    newest = [(t, cp) for t in trends for cp in t.change_points if cp.index == len(t.series.points) - 1]
    if not newest:
        return None
    worse = [(t, cp) for t, cp in newest if cp.is_regression]
    chosen = worse or newest
    category = REGRESSED if worse else IMPROVED
    detail = "; ".join(
        f"{t.series.metric} {cp.before_median:.4g} -> {cp.after_median:.4g} {t.series.unit} "
        f"({cp.change_fraction * 100:+.1f}%, change point p={cp.p_value:.2g})"
        for t, cp in chosen
    )
    return VerdictRow(b.id, workload(b), lever(b), tuple(t.series.metric for t, _ in chosen), category, detail,
                      "history")


def verdict_rows(
    latest: RunDocument,
    baseline: RunDocument | None = None,
    trends: Sequence[Trend] = (),
    policy: compare.Policy | None = None,
) -> list[VerdictRow]:
    """One row per benchmark of ``latest`` that something judged, most important first."""
    base = baseline.by_id() if baseline is not None else {}
    if policy is None and baseline is not None:
        # the gate's rule: timings across the two documents only where both name this host and
        # its drift is known (a report has no history: not across documents without a configured one)
        ids = [b.id for b in latest.benchmarks]
        trust = compare.Policy(host_reason=host_trust(baseline, latest.environment, "the baseline document"))
        family = compare.family_size(baseline, ids, judged=lambda _b, m: trust.allowance_for(m).known)
        policy = replace(trust, family_size=family)
    by_bench: dict[str, list[Trend]] = {}
    for t in trends:
        by_bench.setdefault(t.series.benchmark, []).append(t)
    rows: list[VerdictRow] = []
    for b in latest.benchmarks:
        row: VerdictRow | None
        if b.verdict:
            row = _from_gate(b, b.verdict)
        elif b.id in base and policy is not None:
            row = _from_baseline(b, base[b.id], policy)
        else:
            row = _from_history(b, by_bench.get(b.id, ()))
        if row is not None:
            rows.append(row)
    return sorted(rows, key=lambda r: (ORDER.index(r.category) if r.category in ORDER else 9, r.benchmark))


def counts(rows: Sequence[VerdictRow]) -> dict[str, int]:
    out = {c: 0 for c in ORDER}
    for r in rows:
        out[r.category] = out.get(r.category, 0) + 1
    return out
