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
from pytest_mmperf.judge.diagnosis import diagnose
from pytest_mmperf.report import diagnosis, figures, verdicts
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
.regression, .regressed { color: #c0392b; font-weight: 600; }
.improvement, .improved { color: #1e8449; font-weight: 600; }
.drift { color: #b9770e; font-weight: 600; } .inconclusive { color: #7d6608; }
.counts span { margin-right: 1rem; } nav#toc ul { columns: 3; padding-left: 1.2rem; margin: 0.3rem 0; }
#filters { position: sticky; top: 0; background: #fff; padding: 0.4rem 0; border-bottom: 1px solid #eee; z-index: 10; }
#filters label { margin-right: 1rem; } details > summary { cursor: pointer; margin: 0.5rem 0; }
.figure { margin: 1rem 0; min-height: 300px; }
code { font-size: 0.85rem; word-break: break-all; }
"""

_INIT = """
(function () {
  var pick = function (id) { return document.getElementById(id).value; };
  var apply = function () {
    var w = pick("filter-workload"), l = pick("filter-lever"), m = pick("filter-metric");
    document.querySelectorAll("[data-workload]").forEach(function (el) {
      var ok = (!w || el.dataset.workload === w) && (!l || el.dataset.lever === l) &&
               (!m || (" " + el.dataset.metrics + " ").indexOf(" " + m + " ") >= 0);
      el.style.display = ok ? "" : "none";
    });
  };
  ["filter-workload", "filter-lever", "filter-metric"].forEach(function (id) {
    document.getElementById(id).addEventListener("change", apply);
  });
})();
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


def _table(header: Sequence[str], rows: Iterable[Sequence[tuple[str, str]]],
           row_attrs: Sequence[str] | None = None, table_id: str | None = None) -> str:
    """Cells are (already escaped html, css class); ``row_attrs``: each row's attributes (filters)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        f"<tr{row_attrs[i] if row_attrs else ''}>"
        + "".join(f'<td class="{cls}">{cell}</td>' if cls else f"<td>{cell}</td>" for cell, cls in row) + "</tr>"
        for i, row in enumerate(rows)
    )
    tid = f' id="{escape(table_id)}"' if table_id else ""
    return f"<table{tid}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _filter_attrs(workload: str, lever: str, metrics: Iterable[str]) -> str:
    """What the filter bar matches on (escaped attribute values)."""
    return (f' data-workload="{escape(workload)}" data-lever="{escape(lever)}"'
            f' data-metrics="{escape(" ".join(sorted(set(metrics))))}"')


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
            (escape(verdicts.workload(b)), ""),
            (escape(b.task or "-"), ""),
            (escape(verdicts.lever(b)), ""),
            (escape(str(b.batch_size)), "num"),
            (escape(f"{_fmt(lat.median)} [{_fmt(lat.ci_low)}, {_fmt(lat.ci_high)}]") if lat else "-", "num"),
            (escape(f"{sp.median:.2f}x [{sp.ci_low:.2f}, {sp.ci_high:.2f}]") if sp else "-", "num"),
        ])
    return rows


SECTIONS = (
    ("what-changed", "What changed"),
    ("speedup", "Speedup per lever per workload"),
    ("vs-baseline", "Latest run vs baseline"),
    ("change-points", "Change points"),
    ("history", "History per benchmark"),
    ("phases", "Per-phase breakdown"),
    ("operators", "Operator classes"),
    ("latest", "Latest run"),
    ("environment", "Environment"),
    ("runs", "Runs"),
)


def _h2(section: str) -> str:
    return f'<h2 id="{section}">{escape(dict(SECTIONS)[section])}</h2>'


def _verdict_table(rows: Sequence[verdicts.VerdictRow], table_id: str) -> str:
    cells = [
        [
            (escape(r.category), r.category),
            (f"<code>{escape(short_id(r.benchmark))}</code>", ""),
            (escape(r.workload), ""),
            (escape(r.lever), ""),
            (escape(r.detail or "-"), ""),
            (escape(r.source), ""),
        ]
        for r in rows
    ]
    attrs = [_filter_attrs(r.workload, r.lever, r.metrics) + f' class="verdict-{escape(r.category)}"' for r in rows]
    return _table(["verdict", "benchmark", "workload", "levers", "what decided", "from"], cells, attrs, table_id)


def _what_changed(rows: Sequence[verdicts.VerdictRow]) -> str:
    """Regressions, drift, improvements and inconclusive first; unchanged rows collapsed."""
    parts = [_h2("what-changed")]
    if not rows:
        parts.append('<p class="note">Nothing was judged: the newest run was not compared with a baseline '
                     "(pytest --mmperf-compare, or mmperf report --baseline FILE) and no series has a change "
                     "point at the newest run.</p>")
        return "\n".join(parts)
    n = verdicts.counts(rows)
    parts.append('<p class="counts" id="verdict-counts">' + "".join(
        f'<span class="{c}">{n[c]} {escape(c)}</span>' for c in verdicts.ORDER) + "</p>")
    changed = [r for r in rows if r.category != verdicts.UNCHANGED]
    same = [r for r in rows if r.category == verdicts.UNCHANGED]
    if changed:
        parts.append(_verdict_table(changed, "verdict-table"))
    else:
        parts.append('<p class="note">No benchmark changed.</p>')
    if same:
        parts.append(f'<details id="unchanged"><summary>{len(same)} unchanged benchmark(s)</summary>'
                     + _verdict_table(same, "unchanged-table") + "</details>")
    return "\n".join(parts)


def _diagnosed(latest: RunDocument, baseline: RunDocument | None) -> list[tuple[str, Mapping[str, Any]]]:
    """The diagnosis the gate stored with each failed verdict; with a baseline document given
    and no stored verdict, the judge's diagnosis of each regressed benchmark against it."""
    out: list[tuple[str, Mapping[str, Any]]] = []
    base = baseline.by_id() if baseline is not None else {}
    for r in verdicts.verdict_rows(latest, baseline, ()):
        rec = latest.by_id().get(r.benchmark)
        if rec is None or r.category not in (verdicts.REGRESSED, verdicts.DRIFT):
            continue
        stored = diagnosis.of(rec.verdict)
        if stored is not None:
            out.append((short_id(r.benchmark), stored))
        elif r.benchmark in base:
            found = diagnose(base[r.benchmark], rec, regressed=list(r.metrics)).to_json()
            if diagnosis.of({"diagnosis": found}) is not None:
                out.append((short_id(r.benchmark), found))
    return out


def _filters(latest: RunDocument) -> str:
    def select(name: str, label: str, values: Iterable[str]) -> str:
        options = '<option value="">all</option>' + "".join(
            f'<option value="{escape(v)}">{escape(v)}</option>' for v in sorted(set(values)))
        return f'<label>{escape(label)} <select id="filter-{name}">{options}</select></label>'

    benches = latest.benchmarks
    metrics = {name for b in benches for name in b.metrics} | {"output"}
    return ('<div id="filters">'
            + select("workload", "workload", (verdicts.workload(b) for b in benches))
            + select("lever", "levers", (verdicts.lever(b) for b in benches))
            + select("metric", "metric", metrics)
            + "</div>")


def _toc() -> str:
    items = "".join(f'<li><a href="#{sid}">{escape(title)}</a></li>' for sid, title in SECTIONS)
    return f'<nav id="toc"><strong>Contents</strong><ul>{items}</ul></nav>'


def render(view: HistoryView, baseline: RunDocument | None = None, *, title: str = "pytest-mmperf report") -> str:
    """The whole report page for a history view (and optionally a baseline document): what
    changed first, then the figures and tables behind it."""
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
    rows = verdicts.verdict_rows(latest, baseline, view.trends)
    page.add(_filters(latest))
    page.add(_what_changed(rows))
    diagnosed = _diagnosed(latest, baseline)
    if diagnosed:
        page.add('<h2 id="diagnosis">Why it regressed (biggest cause first)</h2>')
        page.add(diagnosis.html(diagnosed))
    page.add(_toc())

    page.add(_h2("speedup"))
    fig = figures.speedup_per_lever(latest)
    if fig is not None:
        page.figure(fig)
    else:
        page.add('<p class="note">No benchmark in the latest run has a speedup over eager.</p>')

    page.add(_h2("vs-baseline"))
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

    page.add(_h2("change-points"))
    cps = [(t, cp) for t in view.trends for cp in t.change_points]
    if cps:
        cells = [
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
        cp_attrs = [_filter_attrs(t.series.workload or "-", "+".join(t.series.optimizations) or "eager",
                                  [t.series.metric]) for t, _ in cps]
        page.add(_table(["benchmark", "metric", "first run after", "median", "change", "kind", "p"], cells,
                        cp_attrs))
    else:
        page.add('<p class="note">No change point in any series.</p>')

    page.add(_h2("history"))
    # the benchmarks with a verdict other than unchanged first, in the verdicts' order
    rank = {r.benchmark: i for i, r in enumerate(rows) if r.category != verdicts.UNCHANGED}
    by_bench = view.by_benchmark()
    records = latest.by_id()
    for bench in sorted(by_bench, key=lambda b: (rank.get(b, len(rank)), b)):
        trends = by_bench[bench]
        rec = records.get(bench)
        s0 = trends[0].series
        block = _filter_attrs(verdicts.workload(rec) if rec else (s0.workload or "-"),
                              "+".join(s0.optimizations) or "eager", [t.series.metric for t in trends])
        page.add(f'<div class="bench"{block}>')
        page.figure(figures.history(bench, trends))
        page.add("</div>")

    fig = figures.phases(latest)
    if fig is not None:
        page.add(_h2("phases"))
        page.figure(fig)
    fig = figures.operator_classes(latest)
    if fig is not None:
        page.add(_h2("operators"))
        page.figure(fig)

    page.add(_h2("latest"))
    page.add(_table(
        ["benchmark", "workload", "task", "levers", "batch", "latency_ms [CI]", "speedup [CI]"],
        _benchmark_rows(latest.benchmarks),
        [_filter_attrs(verdicts.workload(b), verdicts.lever(b), b.metrics) for b in latest.benchmarks],
    ))
    page.add(_h2("environment"))
    page.add(_value_table(latest.environment))
    page.add(_h2("runs"))
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
