"""A regression's diagnosis (``verdict.details["diagnosis"]``, made by
:mod:`pytest_mmperf.judge.diagnosis`) shown in the Markdown summary and the HTML report.

Both read the diagnosis as stored data (the JSON on the verdict, which survives xdist, the results
document and the history), so a report made later from a stored run shows the same causes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from html import escape as html_escape
from typing import Any

from pytest_mmperf.judge.verdict import Verdict

KINDS = {"lever": "lever health", "operator": "operator", "phase": "phase"}


def of(verdict: Verdict | Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The diagnosis of a verdict (object or its JSON), when it has one with something in it."""
    if verdict is None:
        return None
    details = verdict.details if isinstance(verdict, Verdict) else verdict
    d = details.get("diagnosis") if isinstance(details, Mapping) else None
    if not isinstance(d, Mapping) or not (d.get("causes") or d.get("phases")):
        return None
    return d


def where_text(d: Mapping[str, Any]) -> str:
    """The phases' shares of the latency's change, one line."""
    phases = [p for p in d.get("phases") or [] if isinstance(p, Mapping)]
    latency = d.get("latency")
    if not phases or not latency:
        return ""
    parts = []
    for p in phases[:3]:
        share = f"{p['share']:.0%} " if isinstance(p.get("share"), (int, float)) else ""
        parts.append(f"{p['phase']} {share}({_num(p.get('base_per_call'))} -> {_num(p.get('head_per_call'))} "
                     f"{p.get('unit', '')} a call)")
    return f"{latency[0]} {_num(latency[1])} -> {_num(latency[2])} a call: " + "; ".join(parts)


def _num(x: Any) -> str:
    if not isinstance(x, (int, float)):
        return "-"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def rows(d: Mapping[str, Any], limit: int = 8) -> list[tuple[str, str, str]]:
    """(rank, kind, cause) per cause, biggest first."""
    causes = [c for c in d.get("causes") or [] if isinstance(c, Mapping)]
    return [(str(i), KINDS.get(str(c.get("kind")), str(c.get("kind"))), str(c.get("text", "")))
            for i, c in enumerate(causes[:limit], 1)]


def markdown(items: Iterable[tuple[str, Mapping[str, Any]]], escape: Callable[[Any], str]) -> list[str]:
    """Collapsed ``<details>`` sections, one per diagnosed benchmark: a table of its causes."""
    out: list[str] = []
    for bench, d in items:
        out += ["<details>", f"<summary>Why {escape(bench)} regressed (biggest cause first)</summary>", "",
                "| # | kind | cause |", "| --- | --- | --- |"]
        out += [f"| {r} | {escape(k)} | {escape(c)} |" for r, k, c in rows(d)]
        where = where_text(d)
        out += ["", f"Where: {escape(where)}" if where else "", ""]
        out += [f"_{escape(n)}_" for n in d.get("notes") or []]
        out += ["</details>", ""]
    return out


def html(items: Iterable[tuple[str, Mapping[str, Any]]]) -> str:
    """One table per diagnosed benchmark (text escaped)."""
    parts: list[str] = []
    for bench, d in items:
        body = "".join(f"<tr><td class=\"num\">{html_escape(r)}</td><td>{html_escape(k)}</td>"
                       f"<td>{html_escape(c)}</td></tr>" for r, k, c in rows(d))
        where = where_text(d)
        notes = "".join(f'<p class="note">{html_escape(str(n))}</p>' for n in d.get("notes") or [])
        parts.append(
            f'<div class="diagnosis"><h3><code>{html_escape(bench)}</code></h3>'
            f"<table><thead><tr><th>#</th><th>kind</th><th>cause</th></tr></thead><tbody>{body}</tbody></table>"
            + (f'<p class="meta">where: {html_escape(where)}</p>' if where else "") + notes + "</div>")
    return "\n".join(parts)
