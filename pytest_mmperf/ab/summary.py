"""What ``mmperf ab`` prints and writes: terminal lines and a Markdown summary for a pull request.

The last line says one of three things: ``regression``; ``inconclusive`` (a gated metric could not
be decided in the pairs the run could afford: each such metric is listed with the pairs' spread and
about how many pairs would decide it); ``no regression`` only when every gated metric was decided.
"""

from __future__ import annotations

from pytest_mmperf.ab.options import ABOptions
from pytest_mmperf.ab.paired import by_benchmark
from pytest_mmperf.ab.result import DECIDED, ABResult
from pytest_mmperf.judge.compare import Category, percent
from pytest_mmperf.judge.diagnosis import diagnose

MARKER = "<!-- mmperf-ab -->"  # first line of the Markdown: a PR comment bot finds its comment by it
ORDER = (Category.REGRESSED, Category.IMPROVED, Category.INCONCLUSIVE, Category.UNCHANGED)


def _counts(result: ABResult) -> str:
    cats = [c.category for c in result.comparisons]
    parts = [f"{cats.count(k)} {k.value}" for k in ORDER if cats.count(k)]
    return ", ".join(parts) or "nothing compared"


def _design(result: ABResult) -> str:
    stop = "" if result.stopped == DECIDED else f"; stopped: {result.stopped}"
    looks = f", {result.looks} look(s) paid for (alpha / {result.looks})" if result.looks > 1 else ""
    return f"{result.pairs} process pair(s){looks}{stop}"


def verdict_line(result: ABResult) -> str:
    shas = f"head {result.head_sha[:12]} vs base {result.base_sha[:12]}"
    if result.verdict == "inconclusive":
        n = len(result.undecided)
        what = (f"{n} gated metric(s) undecided after {result.pairs} pair(s) ({result.stopped})"
                if result.comparisons else "nothing was compared")
        fails = "; fails (--inconclusive=fail)" if result.failed else ""
        return f"mmperf ab: inconclusive: {what}{fails} ({shas})"
    return f"mmperf ab: {result.verdict} ({shas})"


def terminal_lines(result: ABResult) -> list[str]:
    benches = by_benchmark(result.comparisons)
    lines = [f"mmperf ab: head vs base: {len(benches)} benchmark(s), {len(result.comparisons)} gated metric(s) "
             f"over {_design(result)}: {_counts(result)}"]
    for c in result.comparisons:
        if c.category is Category.REGRESSED:
            lines.append(f"REGRESSED {c.benchmark} {c.describe()}")
    for c in result.comparisons:
        if c.category in (Category.IMPROVED, Category.INCONCLUSIVE):
            lines.append(f"{c.category.value} {c.benchmark} {c.describe()}")
    for bench, changes in result.drifts.items():
        lines.append(f"DRIFT {bench}: {'; '.join(changes)}")
    for bench, changes in result.health.items():
        lines.append(f"LEVER HEALTH {bench}: {'; '.join(changes)}")
    for failure in result.head_failures:
        lines.append(f"FAILED {failure}")
    lines += diagnosis_lines(result)
    lines += [f"note: {n}" for n in result.notes]
    lines.append(verdict_line(result))
    return lines


def _pct(x: float | None) -> str:
    return "" if x is None else percent(x)


def markdown(result: ABResult, options: ABOptions) -> str:
    from pytest_mmperf.report.markdown import escape

    mark = {"regression": "❌ regression", "inconclusive": "⚠️ inconclusive", "no regression": "✅ no regression"}
    lines = [
        MARKER,
        f"## pytest-mmperf A/B: {mark[result.verdict]}",
        "",
        f"head `{result.head_sha[:12]}` ({escape(options.head)}) vs base `{result.base_sha[:12]}` "
        f"({escape(options.base)}), measured on one machine in {escape(_design(result))}: in each "
        f"pair a base and a head process take turns round by round (ABBA, {options.rounds} rounds each). "
        f"A change fails when it is beyond the {options.threshold:.0%} threshold and significant at "
        f"{options.confidence:.0%} (t test on the per-pair log ratios with per-benchmark moderated "
        f"variance, Holm over the varying metrics, Bonferroni over the looks); a metric is unchanged "
        "when its simultaneous interval lies within the threshold both ways; the interval beside a "
        "regression or an improvement is at the level of its Holm step.",
        "",
        f"**{_counts(result)}**",
        "",
    ]
    for failure in result.head_failures:
        lines.append(f"> ❌ {escape(failure)}")
    for bench, changes in result.drifts.items():
        lines.append(f"> ❌ output drift in `{escape(bench)}`: {escape('; '.join(changes))}")
    for bench, changes in result.health.items():
        lines.append(f"> ❌ lever health in `{escape(bench)}`: {escape('; '.join(changes))}")
    for note in result.notes:
        lines.append(f"> {escape(note)}")
    lines += ["", "| benchmark | metric | base | head | change | interval | pairs' spread | p | verdict |",
              "|---|---|---:|---:|---:|---|---:|---:|---|"]
    for c in result.comparisons:
        ci = f"{_pct(c.ci_low)}..{_pct(c.ci_high)}" if c.ci_low is not None else ""
        p = f"{c.p_value:.2g}" if c.p_value is not None else ""
        verdict = {Category.REGRESSED: "❌ regressed", Category.IMPROVED: "✅ improved"}.get(c.category,
                                                                                          c.category.value)
        why = f" ({escape(c.reason)})" if c.reason else ""
        spread = _pct(c.spread).lstrip("+") if c.spread is not None else ""
        lines.append(f"| `{escape(c.benchmark)}` | {c.metric} | {c.base:.4g} | {c.head:.4g} | "
                     f"{_pct(c.change)} | {ci} | {spread} | {p} | {verdict}{why} |")
    lines += ["", escape(verdict_line(result))]
    return "\n".join(lines) + "\n"


def diagnosis_lines(result: ABResult) -> list[str]:
    """Why each regressed or drifted benchmark changed (pytest_mmperf.judge.diagnosis): lever
    health and phases from the pooled pairs; operators from the profiled run of the failed
    benchmarks on both sides (:func:`pytest_mmperf.ab.run.profile_failed`), or from the pairs
    themselves under ``--pytest-args "... --mmperf-profile"``."""
    regressed: dict[str, list[str]] = {}
    for c in result.comparisons:
        if c.category is Category.REGRESSED:
            regressed.setdefault(c.benchmark, []).append(c.metric)
    for bench in [*result.drifts, *result.health]:
        regressed.setdefault(bench, [])
    base, head = result.base.by_id(), result.head.by_id()
    lines: list[str] = []
    for bench, metrics in regressed.items():
        if bench in base and bench in head:
            b_prof, h_prof = result.profiles.get(bench, (None, None))
            found = diagnose(base[bench], head[bench], regressed=metrics, base_profile=b_prof, head_profile=h_prof)
            if found.causes or found.phases:
                lines += [f"{bench} {found.lines()[0]}", *found.lines()[1:]]
    return lines
