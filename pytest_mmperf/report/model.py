"""What a history view shows, read once from a store: runs, series, change points, the latest run.

Shared by ``mmperf history`` (terminal), ``mmperf report`` (HTML) and ``mmperf export``. Runs from
different environments are not mixed in one series (a different machine is not a regression): by
default only the environment of the newest selected run is shown, ``fingerprint="all"`` mixes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_mmperf.history import HistoryError, HistoryStore, RunInfo, Series
from pytest_mmperf.judge import changepoints
from pytest_mmperf.results.records import RunDocument

LATEST = "latest"
ALL = "all"


@dataclass(frozen=True)
class Filters:
    workload: str | None = None
    lever: str | None = None
    metric: str | None = None
    branch: str | None = None
    benchmark: str | None = None
    fingerprint: str = LATEST  # "latest", "all" or a fingerprint


@dataclass(frozen=True)
class Trend:
    series: Series
    change_points: tuple[changepoints.ChangePoint, ...]

    @property
    def latest(self) -> float:
        return self.series.points[-1].median


@dataclass(frozen=True)
class HistoryView:
    runs: tuple[RunInfo, ...]  # the selected runs, oldest first
    latest: RunDocument  # the newest selected run, whole
    latest_run_id: int
    trends: tuple[Trend, ...]
    fingerprint: str | None  # None when environments are mixed
    hidden_environments: int  # other fingerprints left out

    def by_benchmark(self) -> dict[str, list[Trend]]:
        out: dict[str, list[Trend]] = {}
        for t in self.trends:
            out.setdefault(t.series.benchmark, []).append(t)
        return out


def collect(
    store: HistoryStore,
    filters: Filters | None = None,
    *,
    alpha: float = changepoints.DEFAULT_ALPHA,
    min_change: float = changepoints.DEFAULT_MIN_CHANGE,
) -> HistoryView:
    filters = filters or Filters()
    runs = store.runs(branch=filters.branch)
    if not runs:
        where = f" on branch {filters.branch!r}" if filters.branch else ""
        raise HistoryError(f"no runs recorded{where}")
    fingerprint: str | None
    if filters.fingerprint == ALL:
        fingerprint = None
    elif filters.fingerprint == LATEST:
        fingerprint = runs[-1].fingerprint
    else:
        fingerprint = filters.fingerprint
    selected = [r for r in runs if fingerprint is None or r.fingerprint == fingerprint]
    if not selected:
        raise HistoryError(f"no runs recorded for environment {fingerprint!r}")
    others = {r.fingerprint for r in runs} - {fingerprint} if fingerprint is not None else set()
    series = store.series(
        benchmark=filters.benchmark,
        metric=filters.metric,
        workload=filters.workload,
        lever=filters.lever,
        branch=filters.branch,
        fingerprint=fingerprint,
    )
    trends = tuple(
        Trend(
            s,
            tuple(
                changepoints.detect(
                    [(p.commit or p.label, p.median) for p in s.points],
                    direction=s.direction,
                    alpha=alpha,
                    min_change=min_change,
                )
            ),
        )
        for s in series
    )
    return HistoryView(
        runs=tuple(selected),
        latest=store.load_run(selected[-1].id),
        latest_run_id=selected[-1].id,
        trends=trends,
        fingerprint=fingerprint,
        hidden_environments=len(others),
    )
