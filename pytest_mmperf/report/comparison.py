"""How the gate's verdicts are shown: the comparison part of the terminal summary, one cell per verdict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_mmperf.judge import compare
from pytest_mmperf.judge.gate import Gate
from pytest_mmperf.judge.verdict import Verdict
from pytest_mmperf.report.summary import short_id
from pytest_mmperf.results.metrics import SPEEDUP


def comparison_lines(gate: Gate, verdicts: Sequence[Verdict]) -> list[str]:
    """The gate's part of the terminal summary: counts, the decision rule, one row per verdict."""
    lines = [f"pytest-mmperf comparison: {len(verdicts)} benchmark(s)"]
    lines += [f"  {n}" for n in gate.notes]
    if gate.baseline is not None:
        lines += [f"  {n}" for n in gate.power_notes()]  # after collection: the run's own family
        policy = gate.policy()
        tested = gate.statistical_comparisons()
        collected = len(gate.expected_ids) or "baseline"
        head = f"  baseline {gate.path} @ {gate.commit}; "
        if tested == 0:  # another host, or no drift estimate: no test, so no alpha to state
            lines.append(head + f"no Mann-Whitney test in this run (no timing or speedup of the {collected} "
                         f"collected benchmark(s) is gated); regression = bytes, output drift or a count "
                         f"beyond the threshold ({gate.settings.threshold:.0%})")
        else:
            lines.append(head + f"regression = Mann-Whitney p < {policy.alpha:.2g} (Bonferroni: "
                         f"{gate.settings.compare_confidence:.0%} over {tested} comparisons of the {collected} "
                         f"collected benchmark(s) x {policy.looks} looks) AND beyond the threshold "
                         f"({gate.settings.threshold:.0%}); unchanged = the {policy.interval_label} within the band")
        lines.append("  " + _time_rule(gate))
    counts = {c.value: 0 for c in compare.Category}
    for v in verdicts:
        cat = str(v.details.get("category", "inconclusive"))
        counts[cat] = counts.get(cat, 0) + 1
    mode = gate.settings.inconclusive
    lines.append("  " + ", ".join(f"{counts[c.value]} {c.value}" for c in compare.Category)
                 + f" (inconclusive {'fails' if mode == 'fail' else 'passes'}: --mmperf-inconclusive={mode})")
    not_gated: dict[str, int] = {}
    for v in verdicts:
        for reason in v.details.get("not_gated_reasons") or []:
            not_gated[str(reason)] = not_gated.get(str(reason), 0) + 1
    for reason, n in not_gated.items():
        lines.append(f"  not gated in {n} benchmark(s): timings across sessions: inconclusive: {reason}")
    q_by_verdict = _q_values(verdicts)
    rows = [["benchmark", "verdict", "detail", "BH q"]]
    for v in sorted(verdicts, key=lambda v: v.benchmark):
        q = q_by_verdict.get(v.benchmark)
        rows.append([short_id(v.benchmark), str(v.details.get("category", "?")),
                     detail_text(v), f"{q:.2g}" if q is not None else "-"])
    if len(rows) > 1:
        widths = [max(len(r[j]) for r in rows) for j in range(4)]
        for r in rows:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if gate.baseline is not None:
        seen = {v.benchmark for v in verdicts}
        missing = sorted(b.id for b in gate.baseline.benchmarks if b.id not in seen)
        if missing:
            lines.append(f"  {len(missing)} baseline entr{'y' if len(missing) == 1 else 'ies'} not "
                         "compared in this run (removed, deselected or in another shard):")
            lines += [f"    {short_id(m)}" for m in missing]
    return lines


def _time_rule(gate: Gate) -> str:
    """How absolute timings and speedups across sessions were judged in this run, and why."""
    if gate.host_reason:
        return (f"timings and speedups across sessions not gated: {gate.host_reason}; "
                "bytes, output drift and counts gate")
    learned = [(bid, a) for bid in gate.expected_ids for a in gate.allowances(bid).values() if a.sessions]
    if learned:
        values = sorted(a.value for _, a in learned if a.value is not None)
        wide = sum(1 for _, a in learned if a.too_wide)
        span = f"{values[0]:.0%}..{values[-1]:.0%}" if values else "none usable"
        return (f"drift allowances learned from this host's history: {span} over {len(learned) - wide} metric(s)"
                + (f"; {wide} too wide to judge (inconclusive)" if wide else ""))
    a = gate.policy().allowance_for("latency_ms")
    if a.known:
        bound = gate.policy().timing_threshold("latency_ms")
        return f"absolute timings across sessions regress beyond {bound:.1%} ({a.source})"
    return f"timings and speedups across sessions not gated: {a.source}"


def detail_text(v: Verdict) -> str:
    """One cell: what decided a verdict (drift, the regressed metrics, the reason, the key change)."""
    metrics = v.details.get("metrics") or []
    cat = v.details.get("category")
    if v.details.get("drift"):
        return "; ".join(str(d.get("message")) for d in v.details["drift"])
    if cat == "regressed":
        bad = [m for m in metrics if m.get("category") == "regressed" and m.get("gated")]
        return "; ".join(_metric_text(m) for m in bad)
    if cat == "inconclusive":
        return str(v.details.get("reason", ""))
    if cat == "improved":
        good = [m for m in metrics if m.get("category") == "improved" and m.get("gated")]
        return "; ".join(_metric_text(m) for m in good)
    pick = next((m for m in metrics if m.get("metric") in (SPEEDUP, "latency_ms") and m.get("gated")), None)
    shown = _metric_text(pick) if pick else ""
    if v.details.get("not_gated"):
        shown = "; ".join(p for p in (shown, "timings not gated (see above)") if p)
    return shown


def _metric_text(m: Mapping[str, Any]) -> str:
    def pct(x: Any) -> str:
        return "?" if x is None else f"{float(x) * 100:+.1f}%"

    label = f"{m.get('interval')} " if m.get("interval") else ""
    ci = f" [{label}{pct(m.get('ci_low'))}..{pct(m.get('ci_high'))}]" if m.get("ci_low") is not None else ""
    return f"{m.get('metric')} {pct(m.get('change'))}{ci}"


def _q_values(verdicts: Sequence[Verdict]) -> dict[str, float]:
    """Smallest BH q-value per benchmark over its gated metrics' p-values."""
    pairs: list[tuple[str, float]] = []
    for v in verdicts:
        for m in v.details.get("metrics") or []:
            if m.get("gated") and m.get("p_value") is not None:
                pairs.append((v.benchmark, float(m["p_value"])))
    if not pairs:
        return {}
    qs = compare.q_values([p for _, p in pairs])
    out: dict[str, float] = {}
    for (bid, _), q in zip(pairs, qs):
        out[bid] = min(q, out.get(bid, 1.0))
    return out
