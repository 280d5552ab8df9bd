"""History triage: what changed between two commits (or dates), across every benchmark, biggest first.

For each series (benchmark, metric) of a history view (:mod:`pytest_mmperf.report.model`, so the
same for SQLite and PostgreSQL), the run at the *since* end and the run at the *until* end are
found (the last run at that commit, or the last run on or before that date); the series' change
points (:func:`pytest_mmperf.judge.changepoints.detect`: PELT proposals confirmed by a t-test and
a minimum effect) that fall between them are what changed. Each change names its commit range,
from the last run before the change point to the first one after: the range to hand to
``mmperf bisect``. Only the gate's primary metrics (and the speedup) are triaged: derived figures
such as ``tokens_per_s`` repeat the latency.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_mmperf.history import Series
from pytest_mmperf.judge.changepoints import ChangePoint
from pytest_mmperf.judge.compare import is_primary
from pytest_mmperf.report.model import Trend


class TriageError(ValueError):
    """An end that matches no run; one line."""


@dataclass(frozen=True)
class End:
    """One end of the range: a commit (prefix) or an ISO date/time."""

    text: str
    commit: str | None  # resolved full commit, when the text is a revision
    when: _dt.datetime | None  # when the text is a date

    def index_in(self, s: Series) -> int | None:
        """The last point of ``s`` at this end."""
        hit: int | None = None
        for i, p in enumerate(s.points):
            if self.commit is not None:
                if p.commit and (p.commit == self.commit or p.commit.startswith(self.commit)):
                    hit = i
            elif self.when is not None and when(p.created) <= self.when:
                hit = i
        return hit


def when(text: str) -> _dt.datetime:
    """An ISO date/time as an aware datetime (UTC when it names no zone)."""
    t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def parse_end(text: str, resolve: Callable[[str], str | None] = lambda _: None) -> End:
    """A date (``2026-11-30``, ``2026-11-30T12:00``; a bare date means its end of day, UTC) or a
    revision: ``resolve`` (git rev-parse) turns ``HEAD~3`` into a commit, else a commit prefix."""
    try:
        at = when(text)
        if len(text) == 10:  # a bare date: the whole day
            at += _dt.timedelta(days=1) - _dt.timedelta(microseconds=1)
        return End(text, None, at)
    except ValueError:
        pass
    return End(text, resolve(text) or text.lower(), None)


@dataclass(frozen=True)
class Change:
    series: Series
    point: ChangePoint
    before_commit: str | None  # the last run before the change
    after_commit: str | None  # the first run after it
    since_value: float
    until_value: float

    @property
    def size(self) -> float:
        return abs(self.point.change_fraction) if math.isfinite(self.point.change_fraction) else math.inf

    def text(self) -> str:
        s, cp = self.series, self.point
        pct = f"{cp.change_fraction * 100:+.1f}%" if math.isfinite(cp.change_fraction) else "new"
        return (f"{s.benchmark} {s.metric} {pct} {cp.kind} ({_num(cp.before_median)} -> "
                f"{_num(cp.after_median)} {s.unit}); between {_short(self.before_commit)} and "
                f"{_short(self.after_commit)} (p {cp.p_value:.2g})")


def _num(x: float) -> str:
    return f"{x:.4g}"


def _short(commit: str | None) -> str:
    return (commit or "no-commit")[:12]


@dataclass(frozen=True)
class Triage:
    since: End
    until: End
    changes: tuple[Change, ...]  # biggest first
    series_in_range: int
    benchmarks_in_range: int
    moved: tuple[tuple[Series, float], ...]  # beyond min_change without a confirmed change point


def triage(trends: Sequence[Trend], since: End, until: End, *, min_change: float = 0.05) -> Triage:
    changes: list[Change] = []
    moved: list[tuple[Series, float]] = []
    in_range = 0
    benchmarks: set[str] = set()
    for t in trends:
        s = t.series
        if not (is_primary(s.metric) or s.metric == "speedup_vs_eager"):
            continue
        a, b = since.index_in(s), until.index_in(s)
        if a is None or b is None or b <= a:
            continue
        in_range += 1
        benchmarks.add(s.benchmark)
        v_a, v_b = s.points[a].median, s.points[b].median
        found = [cp for cp in t.change_points if a < cp.index <= b]
        for cp in found:
            changes.append(Change(s, cp, s.points[cp.index - 1].commit, s.points[cp.index].commit, v_a, v_b))
        if not found and v_a and abs(v_b / v_a - 1) >= min_change:
            moved.append((s, v_b / v_a - 1))
    changes.sort(key=lambda c: (-c.size, c.series.benchmark, c.series.metric))
    moved.sort(key=lambda m: -abs(m[1]))
    if not in_range:
        raise TriageError(f"no series has runs at both {since.text!r} and {until.text!r} (in that order)")
    return Triage(since, until, tuple(changes), in_range, len(benchmarks), tuple(moved))


def render(result: Triage, *, limit: int = 30) -> str:
    lines = [f"mmperf history: what changed between {result.since.text} and {result.until.text}: "
             f"{len(result.changes)} change point(s) in {result.series_in_range} series of "
             f"{result.benchmarks_in_range} benchmark(s), biggest first"]
    hinted: set[tuple[str, str]] = set()
    for i, c in enumerate(result.changes[:limit], 1):
        lines.append(f"  {i}. {c.text()}")
        span = (c.before_commit or "", c.after_commit or "")
        if c.point.is_regression and all(span) and span not in hinted:  # once per commit range
            hinted.add(span)
            same = sum(1 for o in result.changes if (o.before_commit, o.after_commit) == span)
            lines.append(f"     bisect: mmperf bisect --good {_short(c.before_commit)} --bad {_short(c.after_commit)}"
                         + (f"  ({same} change points in this range)" if same > 1 else ""))
    if len(result.changes) > limit:
        lines.append(f"  ... and {len(result.changes) - limit} more")
    if result.moved:
        shown = ", ".join(f"{s.benchmark} {s.metric} {m * 100:+.1f}%" for s, m in result.moved[:5])
        lines.append(f"  {len(result.moved)} series moved by 5% or more without a confirmed change point "
                     f"(noise or too few runs): {shown}")
    if not result.changes:
        lines.append("  no confirmed change point in this range")
    return "\n".join(lines) + "\n"
