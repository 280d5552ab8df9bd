"""One self-contained HTML file: plotly.js inlined, figures as JSON, tables; works offline.

Nothing is loaded from the network: the plotly.js bundle that ships with the ``plotly`` package
is written into the page, fonts are the system's, and a Content-Security-Policy forbids any
other load (so a stray URL fails loudly in the browser instead of leaking a request).

Escaping: every text from the data goes through :func:`html.escape`; the figures travel as JSON
inside ``<script type="application/json">`` with ``<``, ``>`` and ``&`` written as ``\\u003c``
etc., so no value can close the script element.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

import plotly.graph_objects as go

from pytest_mmperf import __version__
from pytest_mmperf.report import figures
from pytest_mmperf.report.model import HistoryView
from pytest_mmperf.report.summary import short_id
from pytest_mmperf.results.records import BenchmarkRecord, RunDocument

CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:"
)

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1200px; padding: 0 1.5rem 3rem; color: #222; }
h1 { margin: 1.5rem 0 0.25rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ddd; }
.meta { color: #555; } .note { color: #666; font-style: italic; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f4f6f8; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.regression { color: #c0392b; font-weight: 600; } .improvement { color: #1e8449; font-weight: 600; }
.figure { margin: 1rem 0; min-height: 300px; }
code { font-size: 0.85rem; word-break: break-all; }
"""

_INIT = """
(function () {
  var figs = JSON.parse(document.getElementById("mmperf-figures").textContent);
  var config = {displaylogo: false, responsive: true, showLink: false, showSendToCloud: false,
                showEditInChartStudio: false, modeBarButtonsToRemove: ["sendDataToCloud"]};
  figs.forEach(function (f) {
    Plotly.newPlot(document.getElementById(f.id), f.figure.data, f.figure.layout, config);
  });
})();
"""


def script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element."""
    text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    # The bundle has no "</script" today; keep it that way whatever the version.
    return re.sub(r"</(script)", r"<\\/\1", get_plotlyjs(), flags=re.IGNORECASE)


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.{digits}g}"


def _table(header: Sequence[str], rows: Iterable[Sequence[tuple[str, str]]]) -> str:
    """Cells are (already escaped html, css class)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="{cls}">{cell}</td>' if cls else f"<td>{cell}</td>" for cell, cls in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _value_table(items: Mapping[str, Any]) -> str:
    rows = []
    for key, value in sorted(items.items()):
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        rows.append([(f"<code>{escape(str(key))}</code>", ""), (escape(text), "")])
    return _table(["key", "value"], rows)


class _Page:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.figures: list[dict[str, Any]] = []

    def add(self, html_text: str) -> None:
        self.parts.append(html_text)

    def figure(self, fig: go.Figure) -> None:
        fid = f"fig-{len(self.figures)}"
        self.figures.append({"id": fid, "figure": json.loads(fig.to_json())})
        self.add(f'<div class="figure" id="{fid}"></div>')


def _benchmark_rows(records: Sequence[BenchmarkRecord]) -> list[list[tuple[str, str]]]:
    rows = []
    for b in records:
        lat = b.metrics.get("latency_ms")
        sp = b.speedup_vs_eager
        rows.append([
            (f"<code>{escape(b.id)}</code>", ""),
            (escape(b.workload or "-"), ""),
            (escape(b.task or "-"), ""),
            (escape("+".join(b.optimizations) or "eager"), ""),
            (escape(str(b.batch_size)), "num"),
            (escape(f"{_fmt(lat.median)} [{_fmt(lat.ci_low)}, {_fmt(lat.ci_high)}]") if lat else "-", "num"),
            (escape(f"{sp.median:.2f}x [{sp.ci_low:.2f}, {sp.ci_high:.2f}]") if sp else "-", "num"),
        ])
    return rows


def render(view: HistoryView, baseline: RunDocument | None = None, *, title: str = "pytest-mmperf report") -> str:
    """The whole report page for a history view (and optionally a baseline document)."""
    latest = view.latest
    page = _Page()
    newest = view.runs[-1]
    env_note = (
        f"environment {view.fingerprint}" if view.fingerprint is not None else "all environments mixed"
    )
    if view.hidden_environments:
        env_note += f" ({view.hidden_environments} other environment(s) not shown)"
    page.add(f"<h1>{escape(title)}</h1>")
    page.add(
        '<p class="meta">'
        + escape(
            f"{len(view.runs)} run(s); newest {newest.label} on {newest.branch or 'no branch'} at {newest.created}; "
            f"{env_note}; generated {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')} "
            f"by pytest-mmperf {__version__}"
        )
        + "</p>"
    )

    page.add("<h2>Speedup per lever per workload</h2>")
    fig = figures.speedup_per_lever(latest)
    if fig is not None:
        page.figure(fig)
    else:
        page.add('<p class="note">No benchmark in the latest run has a speedup over eager.</p>')

    page.add("<h2>Latest run vs baseline</h2>")
    if baseline is None:
        page.add('<p class="note">No baseline given (mmperf report --baseline baselines/FINGERPRINT.json).</p>')
    else:
        page.add(
            '<p class="meta">'
            + escape(f"baseline: commit {baseline.commit or '-'}, environment {baseline.fingerprint}, "
                     f"created {baseline.created or '-'}")
            + "</p>"
        )
        fig = figures.versus_baseline(latest, baseline)
        if fig is not None:
            page.figure(fig)
        else:
            page.add('<p class="note">The baseline shares no benchmark and metric with the latest run.</p>')

    page.add("<h2>Change points</h2>")
    cps = [(t, cp) for t in view.trends for cp in t.change_points]
    if cps:
        rows = [
            [
                (f"<code>{escape(short_id(t.series.benchmark))}</code>", ""),
                (escape(t.series.metric), ""),
                (f"<code>{escape(t.series.points[cp.index].label)}</code>", ""),
                (escape(f"{_fmt(cp.before_median)} -> {_fmt(cp.after_median)} {t.series.unit}"), "num"),
                (escape(f"{cp.change_fraction * 100:+.1f}%" if math.isfinite(cp.change_fraction) else "new"),
                 "num"),
                (escape(cp.kind), cp.kind),
                (escape(f"{cp.p_value:.2g}"), "num"),
            ]
            for t, cp in cps
        ]
        page.add(_table(["benchmark", "metric", "first run after", "median", "change", "kind", "p"], rows))
    else:
        page.add('<p class="note">No change point in any series.</p>')

    page.add("<h2>History per benchmark</h2>")
    for bench, trends in view.by_benchmark().items():
        page.figure(figures.history(bench, trends))

    fig = figures.phases(latest)
    if fig is not None:
        page.add("<h2>Per-phase breakdown</h2>")
        page.figure(fig)
    fig = figures.operator_classes(latest)
    if fig is not None:
        page.add("<h2>Operator classes</h2>")
        page.figure(fig)

    page.add("<h2>Latest run</h2>")
    page.add(_table(
        ["benchmark", "workload", "task", "levers", "batch", "latency_ms [CI]", "speedup [CI]"],
        _benchmark_rows(latest.benchmarks),
    ))
    page.add("<h2>Environment</h2>")
    page.add(_value_table(latest.environment))
    page.add("<h2>Runs</h2>")
    page.add(_table(
        ["run", "commit", "branch", "created", "environment", "benchmarks"],
        (
            [
                (escape(str(r.id)), "num"), (f"<code>{escape(r.commit or '-')}</code>", ""),
                (escape(r.branch or "-"), ""), (escape(r.created), ""),
                (f"<code>{escape(r.fingerprint)}</code>", ""), (escape(str(r.benchmarks)), "num"),
            ]
            for r in reversed(view.runs)
        ),
    ))

    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{escape(CSP)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(page.parts)
        + f"\n<script>{_plotly_js()}</script>\n"
        + f'<script type="application/json" id="mmperf-figures">{script_json(page.figures)}</script>\n'
        + f"<script>{_INIT}</script>\n</body>\n</html>\n"
    )
