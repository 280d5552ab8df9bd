"""The report's interactive plots, as plotly figures (no I/O, no HTML).

* :func:`history` - one benchmark's metrics over the runs (a menu picks the metric), CI error bars,
  change points as dashed lines labelled with commit and size;
* :func:`versus_baseline` - latest run against a baseline document, per (benchmark, metric);
* :func:`speedup_per_lever` - the paper's figure: speedup over eager per lever, one bar group per
  workload, with CI error bars (from ``speedup_vs_eager`` of the latest run);
* :func:`phases` - per-phase times (``ttft_ms``, ``tpot_ms``, ``encoder_ms``, ...) per benchmark;
* :func:`operator_classes` - share of time per operator class where a benchmark has a profile.

Every name from the data (benchmark ids, metrics, levers, commits) is HTML-escaped here, since
plotly renders a subset of HTML in text and labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

import plotly.graph_objects as go

from pytest_mmperf.report.model import Trend
from pytest_mmperf.report.summary import short_id
from pytest_mmperf.results.records import BenchmarkRecord, RunDocument

REGRESSION = "#c0392b"
IMPROVEMENT = "#1e8449"
NEUTRAL = "#7f8c8d"
# Whole-call metrics and bookkeeping that are not phases of the generation.
NOT_PHASES = frozenset({"latency_ms", "first_call_ms", "compile_ms", "warmup_ms"})


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "title": {"text": title},
        "template": "plotly_white",
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"},
        "margin": {"l": 60, "r": 20, "t": 60, "b": 60},
        "height": 380,
    }
    base.update(extra)
    return base


def _tmpl(text: str) -> str:
    """User text inside a plotly hover template: HTML-escaped, and ``%{`` made literal."""
    return escape(text).replace("%{", "%\u200b{")


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%" if math.isfinite(x) else "new"


def history(benchmark: str, trends: Sequence[Trend]) -> go.Figure:
    """One figure per benchmark; a dropdown switches between its metrics."""
    run_ids: dict[int, str] = {}
    for t in trends:
        for p in t.series.points:
            run_ids.setdefault(p.run_id, p.label)
    order = {rid: i for i, rid in enumerate(sorted(run_ids))}  # run ids grow with time
    labels = [run_ids[rid] for rid in sorted(run_ids)]
    fig = go.Figure()
    views: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]], str]] = []
    for t in trends:
        s = t.series
        xs = [order[p.run_id] for p in s.points]
        ys = [p.median for p in s.points]
        hi = [(p.ci_high - p.median) if p.ci_high is not None else 0.0 for p in s.points]
        lo = [(p.median - p.ci_low) if p.ci_low is not None else 0.0 for p in s.points]
        fig.add_trace(
            go.Scatter(
                x=xs, y=ys, mode="lines+markers", name=escape(s.metric),
                error_y={"type": "data", "array": hi, "arrayminus": lo, "visible": True},
                text=[escape(p.label) for p in s.points],
                hovertemplate="%{text}<br>%{y:.4g} " + _tmpl(s.unit) + "<extra>" + _tmpl(s.metric) + "</extra>",
                visible=not views,
            )
        )
        shapes, notes = [], []
        for cp in t.change_points:
            x = xs[cp.index] - 0.5
            color = REGRESSION if cp.is_regression else IMPROVEMENT
            shapes.append({
                "type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x, "y0": 0, "y1": 1,
                "line": {"color": color, "dash": "dash", "width": 2},
            })
            notes.append({
                "x": x, "y": 1, "xref": "x", "yref": "paper", "yanchor": "bottom", "showarrow": False,
                "text": escape(f"{(cp.commit or '')[:8]} {_pct(cp.change_fraction)} {cp.kind}"),
                "font": {"color": color, "size": 11},
            })
        views.append((escape(s.metric), shapes, notes, escape(f"{s.metric} ({s.unit}, {s.direction} is better)")))
    layout = _layout(
        escape(short_id(benchmark)),
        xaxis={
            "tickmode": "array", "tickvals": list(range(len(labels))),
            "ticktext": [escape(label) for label in labels], "title": "run",
        },
        yaxis={"title": {"text": views[0][3] if views else ""}},
        shapes=views[0][1] if views else [],
        annotations=views[0][2] if views else [],
        showlegend=False,
    )
    if len(views) > 1:
        buttons = []
        for i, (name, shapes, notes, ytitle) in enumerate(views):
            visible = [j == i for j in range(len(views))]
            buttons.append({
                "label": name, "method": "update",
                "args": [{"visible": visible}, {"shapes": shapes, "annotations": notes, "yaxis.title.text": ytitle}],
            })
        layout["updatemenus"] = [{"buttons": buttons, "x": 1.0, "xanchor": "right", "y": 1.15, "yanchor": "top"}]
    fig.update_layout(**layout)
    return fig


def versus_baseline(latest: RunDocument, baseline: RunDocument, threshold: float = 0.05) -> go.Figure | None:
    """Relative change of each metric's median against the baseline; the bars' whiskers are the
    conservative interval from the two CIs (current low over baseline high and vice versa)."""
    base = baseline.by_id()
    rows: list[tuple[str, float, float, float, str]] = []
    for b in latest.benchmarks:
        old = base.get(b.id)
        if old is None:
            continue
        for name, m in sorted(b.metrics.items()):
            o = old.metrics.get(name)
            if o is None or o.median <= 0 or o.ci_low <= 0:
                continue
            change = m.median / o.median - 1
            low, high = m.ci_low / o.ci_high - 1, m.ci_high / o.ci_low - 1
            worse = change > 0 if m.direction.value == "lower" else change < 0
            color = NEUTRAL if abs(change) < threshold else (REGRESSION if worse else IMPROVEMENT)
            rows.append((escape(f"{short_id(b.id)} · {name}"), change, change - low, high - change, color))
    if not rows:
        return None
    fig = go.Figure(
        go.Bar(
            y=[r[0] for r in rows], x=[r[1] * 100 for r in rows], orientation="h",
            marker_color=[r[4] for r in rows],
            error_x={"type": "data", "array": [r[3] * 100 for r in rows], "arrayminus": [r[2] * 100 for r in rows]},
            hovertemplate="%{y}<br>%{x:+.1f}%<extra></extra>",
        )
    )
    fig.update_layout(**_layout(
        "Latest run vs baseline (change of the median, %; red = regression, green = improvement)",
        height=max(300, 60 + 24 * len(rows)),
        xaxis={"title": "change vs baseline (%)", "zeroline": True},
        yaxis={"automargin": True, "autorange": "reversed"},
        margin={"l": 20, "r": 20, "t": 60, "b": 60},
    ))
    return fig


def _lever(b: BenchmarkRecord) -> str:
    return "+".join(b.optimizations) or "eager"


def _group_labels(records: Sequence[BenchmarkRecord]) -> dict[str, str]:
    """x-axis group per benchmark: the workload, plus task and batch size where they vary."""
    keys = {b.id: (b.workload or "?", b.task or "", b.batch_size) for b in records}
    out = {}
    for bid, (w, task, bs) in keys.items():
        same = [k for k in keys.values() if k[0] == w]
        label = w
        if len({k[1] for k in same}) > 1:
            label += f" {task}"
        if len({k[2] for k in same}) > 1:
            label += f" bs{bs}"
        out[bid] = label
    return out


def speedup_per_lever(latest: RunDocument) -> go.Figure | None:
    records = [b for b in latest.benchmarks if b.speedup_vs_eager is not None]
    if not records:
        return None
    groups = _group_labels(records)
    order = sorted(set(groups.values()))
    fig = go.Figure()
    for lever in sorted({_lever(b) for b in records}, key=lambda s: (s.count("+"), s)):
        bars = {groups[b.id]: b for b in records if _lever(b) == lever}
        xs = [g for g in order if g in bars]
        sp = [bars[g].speedup_vs_eager for g in xs]
        fig.add_trace(go.Bar(
            name=escape(lever), x=[escape(g) for g in xs], y=[s.median for s in sp if s],
            error_y={"type": "data",
                     "array": [s.ci_high - s.median for s in sp if s],
                     "arrayminus": [s.median - s.ci_low for s in sp if s]},
            text=[escape(short_id(bars[g].id)) for g in xs], textposition="none",
            hovertemplate="%{x} · " + _tmpl(lever) + "<br>%{y:.2f}x<br>%{text}<extra></extra>",
        ))
    fig.add_hline(y=1.0, line={"color": NEUTRAL, "dash": "dot"})
    fig.update_layout(**_layout(
        "Speedup over eager per lever per workload (latest run, 95% CI)",
        barmode="group", yaxis={"title": "speedup (x)"}, xaxis={"title": "workload"},
        xaxis_categoryorder="array", xaxis_categoryarray=[escape(g) for g in order],
    ))
    return fig


def phases(latest: RunDocument) -> go.Figure | None:
    rows = [
        (b, {k: m for k, m in b.metrics.items() if k.endswith("_ms") and k not in NOT_PHASES})
        for b in latest.benchmarks
    ]
    rows = [(b, ms) for b, ms in rows if ms]
    if not rows:
        return None
    names = sorted({k for _, ms in rows for k in ms})
    fig = go.Figure()
    for name in names:
        have = [(b, ms[name]) for b, ms in rows if name in ms]
        fig.add_trace(go.Bar(
            name=escape(name), x=[escape(short_id(b.id)) for b, _ in have], y=[m.median for _, m in have],
            error_y={"type": "data", "array": [m.ci_high - m.median for _, m in have],
                     "arrayminus": [m.median - m.ci_low for _, m in have]},
            hovertemplate="%{x}<br>" + _tmpl(name) + " %{y:.4g} ms<extra></extra>",
        ))
    fig.update_layout(**_layout(
        "Per-phase time (latest run, median with 95% CI)", barmode="group",
        yaxis={"title": "ms", "type": "log"}, xaxis={"automargin": True},
    ))
    return fig


def operator_classes(latest: RunDocument) -> go.Figure | None:
    rows = []
    for b in latest.benchmarks:
        share = (b.profile or {}).get("op_share")
        if isinstance(share, dict) and share:
            rows.append((b, {str(k): float(v) for k, v in share.items() if isinstance(v, (int, float))}))
    if not rows:
        return None
    classes = sorted({k for _, s in rows for k in s}, key=lambda k: -sum(s.get(k, 0.0) for _, s in rows))
    fig = go.Figure()
    for cls in classes:
        fig.add_trace(go.Bar(
            name=escape(cls), orientation="h", y=[escape(short_id(b.id)) for b, _ in rows],
            x=[s.get(cls, 0.0) * 100 for _, s in rows],
            hovertemplate="%{y}<br>" + _tmpl(cls) + " %{x:.1f}%<extra></extra>",
        ))
    fig.update_layout(**_layout(
        "Time share per operator class (profile of the latest run)", barmode="stack",
        height=max(300, 80 + 28 * len(rows)),
        xaxis={"title": "% of profiled time", "range": [0, 100]},
        yaxis={"automargin": True, "autorange": "reversed"},
    ))
    return fig
