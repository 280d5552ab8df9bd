"""A Markdown summary of a run, for a PR comment or ``$GITHUB_STEP_SUMMARY`` (``--mmperf-markdown``).

Without a gate: the results table. With one: the verdict counts, then what changed (regressions,
output drift, improvements, inconclusive) in a table, the unchanged benchmarks and the full
results table in collapsed ``<details>`` sections. Benchmark ids and every other user-provided text are escaped, so an
id such as ``test_x[a|b*]`` cannot break the table or the emphasis.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pytest_mmperf.judge.checks import format_value
from pytest_mmperf.judge.gate import Gate
from pytest_mmperf.judge.verdict import Verdict
from pytest_mmperf.report import diagnosis
from pytest_mmperf.report.comparison import detail_text
from pytest_mmperf.report.summary import KEY_METRICS
from pytest_mmperf.results.records import RunDocument

_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")  # what can start emphasis, code, links, HTML, cells
ICONS = {"regressed": "🔴", "drift": "🟠", "improved": "🟢", "inconclusive": "🟡", "unchanged": "⚪"}


def escape(text: Any) -> str:
    """Escape Markdown (and HTML) specials; newlines become spaces so a table row stays one row."""
    s = str(text).replace("\r", " ").replace("\n", " ")
    s = s.replace("&", "&amp;")
    return _SPECIAL.sub(r"\\\1", s)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _results_table(doc: RunDocument) -> list[str]:
    present = [k for k in KEY_METRICS if any(k in b.metrics for b in doc.benchmarks)]
    lines = [_row(["benchmark", "optimizations", *map(escape, present), "speedup vs eager"]),
             _row(["---"] * (len(present) + 3))]
    for b in doc.benchmarks:
        cells = [escape(b.id), escape(", ".join(b.optimizations) or "eager")]
        for k in present:
            m = b.metrics.get(k)
            cells.append(escape(format_value(m.median, m.unit)) if m else "–")
        sp = b.speedup_vs_eager
        cells.append(f"{sp.median:.2f}× \\[{sp.ci_low:.2f}..{sp.ci_high:.2f}\\]" if sp else "–")
        lines.append(_row(cells))
    return lines


def render(doc: RunDocument, verdicts: Sequence[Verdict], gate: Gate | None) -> str:
    env = doc.environment
    out = ["## pytest-mmperf", ""]
    facts = [f"**{len(doc.benchmarks)}** benchmark(s) on `{escape(doc.fingerprint)}`"]
    if doc.commit:
        facts.append(f"commit `{escape(doc.commit[:12])}`")
    if env.get("torch_version"):
        facts.append(f"torch {escape(env['torch_version'])}")
    out += [", ".join(facts), ""]
    results = [*_results_table(doc), "",
               "_Medians; speedup = eager / optimized latency with its CI, rounds interleaved._", ""]
    if gate is not None:
        # what changed leads; the full results table stays one click away
        out += _comparison(verdicts, gate)
        out += ["<details>", "<summary>All results</summary>", "", *results, "</details>", ""]
    else:
        out += ["### Results", "", *results]
    return "\n".join(out)


def _comparison(verdicts: Sequence[Verdict], gate: Gate) -> list[str]:
    out = ["### Comparison with the baseline", ""]
    for note in gate.notes:
        out.append(f"> {escape(note)}")
        out.append("")
    if gate.baseline is not None:
        out.append(f"Baseline `{escape(gate.path)}` @ `{escape(gate.commit)}`.")
        out.append("")
    counts: dict[str, int] = {k: 0 for k in ICONS}
    for v in verdicts:
        cat = _category(v)
        counts[cat] = counts.get(cat, 0) + 1
    out.append(" · ".join(f"{ICONS.get(k, '')} {n} {k}" for k, n in counts.items()))
    out.append("")
    if not verdicts:
        return out
    ordered = sorted(verdicts, key=lambda v: (ORDER.index(_category(v)) if _category(v) in ORDER else 9, v.benchmark))
    changed = [v for v in ordered if _category(v) != "unchanged"]
    same = [v for v in ordered if _category(v) == "unchanged"]
    if changed:
        out += _verdict_rows(changed)
        diagnosed = [(v.benchmark, d) for v in changed if (d := diagnosis.of(v)) is not None]
        out += diagnosis.markdown(diagnosed, escape)  # why, collapsed: a PR comment stays short
    else:
        out += ["No benchmark changed.", ""]
    if same:
        # GitHub renders Markdown inside <details> when blank lines surround it
        out += ["<details>", f"<summary>{len(same)} unchanged benchmark(s)</summary>", "",
                *_verdict_rows(same), "</details>", ""]
    return out


ORDER = ("regressed", "drift", "improved", "inconclusive", "unchanged")


def _category(v: Verdict) -> str:
    """The gate's category; output drift is shown as its own."""
    if v.details.get("drift"):
        return "drift"
    return str(v.details.get("category", "inconclusive"))


def _verdict_rows(verdicts: Sequence[Verdict]) -> list[str]:
    out = [_row(["benchmark", "verdict", "details"]), _row(["---", "---", "---"])]
    for v in verdicts:
        cat = _category(v)
        # the verdict's first line; the diagnosis lines below it get their own table
        detail = v.message.splitlines()[0] if v.failed else detail_text(v)
        out.append(_row([escape(v.benchmark), f"{ICONS.get(cat, '')} {cat}", escape(detail)]))
    out.append("")
    return out
