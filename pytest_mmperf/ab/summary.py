"""What ``mmperf ab`` prints and writes: terminal lines and a Markdown summary for a pull request."""

from __future__ import annotations

from pytest_mmperf.ab import paired
from pytest_mmperf.ab.options import ABOptions
from pytest_mmperf.ab.run import ABResult

MARKER = "<!-- mmperf-ab -->"  # first line of the Markdown: a PR comment bot finds its comment by it


def _counts(result: ABResult) -> str:
    cats = [c.category for c in result.comparisons]
    parts = [f"{cats.count(k)} {k}" for k in (paired.REGRESSED, paired.IMPROVED, paired.INCONCLUSIVE,
                                              paired.UNCHANGED) if cats.count(k)]
    return ", ".join(parts) or "nothing compared"


def terminal_lines(result: ABResult) -> list[str]:
    benches = paired.by_benchmark(result.comparisons)
    pairs = max((c.pairs for c in result.comparisons), default=0)
    lines = [f"mmperf ab: head vs base: {len(benches)} benchmark(s), {len(result.comparisons)} metric(s) "
             f"over {pairs} process pair(s): {_counts(result)}"]
    for c in result.comparisons:
        if c.category == paired.REGRESSED:
            lines.append(f"REGRESSED {c.benchmark} {c.describe()}")
    for c in result.comparisons:
        if c.category in (paired.IMPROVED, paired.INCONCLUSIVE):
            lines.append(f"{c.category} {c.benchmark} {c.describe()}")
    for bench, changes in result.drifts.items():
        lines.append(f"DRIFT {bench}: {'; '.join(changes)}")
    for failure in result.head_failures:
        lines.append(f"FAILED {failure}")
    lines += diagnosis_lines(result)
    lines += [f"note: {n}" for n in result.notes]
    lines.append(f"mmperf ab: {'regression' if result.failed else 'no regression'} "
                 f"(head {result.head_sha[:12]} vs base {result.base_sha[:12]})")
    return lines


def _pct(x: float | None) -> str:
    return "" if x is None else paired.percent(x)


def markdown(result: ABResult, options: ABOptions) -> str:
    from pytest_mmperf.report.markdown import escape

    verdict = "❌ regression" if result.failed else "✅ no regression"
    lines = [
        MARKER,
        f"## pytest-mmperf A/B: {verdict}",
        "",
        f"head `{result.head_sha[:12]}` ({escape(options.head)}) vs base `{result.base_sha[:12]}` "
        f"({escape(options.base)}), measured on one machine in {options.repeats} process pair(s): in each "
        f"pair a base and a head process take turns round by round (ABBA, {options.rounds} rounds each). "
        f"A change fails when it is beyond the {options.threshold:.0%} threshold and significant at "
        f"{options.confidence:.0%} (t test on the per-pair log ratios, Holm over {len(result.comparisons)} "
        "metrics).",
        "",
        f"**{_counts(result)}**",
        "",
    ]
    for failure in result.head_failures:
        lines.append(f"> ❌ {escape(failure)}")
    for bench, changes in result.drifts.items():
        lines.append(f"> ❌ output drift in `{escape(bench)}`: {escape('; '.join(changes))}")
    for note in result.notes:
        lines.append(f"> {escape(note)}")
    lines += ["", "| benchmark | metric | base | head | change | CI | p | verdict |",
              "|---|---|---:|---:|---:|---|---:|---|"]
    for c in result.comparisons:
        ci = f"{_pct(c.ci_low)}..{_pct(c.ci_high)}" if c.ci_low is not None else ""
        p = f"{c.p_value:.2g}" if c.p_value is not None else ""
        mark = {"regressed": "❌ regressed", "improved": "✅ improved"}.get(c.category, c.category)
        why = f" ({escape(c.reason)})" if c.reason else ""
        lines.append(f"| `{escape(c.benchmark)}` | {c.metric} | {c.base:.4g} | {c.head:.4g} | "
                     f"{_pct(c.change)} | {ci} | {p} | {mark}{why} |")
    return "\n".join(lines) + "\n"


def diagnosis_lines(result: ABResult) -> list[str]:
    """Why each regressed or drifted benchmark changed (pytest_mmperf.judge.diagnosis): lever
    health and phases from the pooled pairs; operators when the workers profiled
    (``--pytest-args "... --mmperf-profile"``: both sides live in the same job)."""
    from pytest_mmperf.judge.diagnosis import diagnose

    regressed: dict[str, list[str]] = {}
    for c in result.comparisons:
        if c.category == paired.REGRESSED:
            regressed.setdefault(c.benchmark, []).append(c.metric)
    for bench in result.drifts:
        regressed.setdefault(bench, [])
    base, head = result.base.by_id(), result.head.by_id()
    lines: list[str] = []
    for bench, metrics in regressed.items():
        if bench in base and bench in head:
            found = diagnose(base[bench], head[bench], regressed=metrics)
            if found.causes or found.phases:
                lines += [f"{bench} {found.lines()[0]}", *found.lines()[1:]]
    return lines
