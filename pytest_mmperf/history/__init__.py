"""Performance history: every run recorded per commit, queried as series per (benchmark, metric).

:func:`open_store` is the one factory; it returns a :class:`HistoryStore` (the Protocol every
backend implements) and is a context manager::

    with open_store("sqlite:///.mmperf/history.db", rootdir) as store:
        run_id = store.record_run(doc)
        for s in store.series(metric="latency_ms", branch="main"): ...

The one implementation, :mod:`pytest_mmperf.history.sql`, runs on SQLAlchemy Core and serves
SQLite and PostgreSQL with the same code; :mod:`pytest_mmperf.history.schema` holds the tables
and their ordered migrations. Anything that goes wrong (a corrupt file, an unreachable server, a
database written by a newer pytest-mmperf) raises :class:`HistoryError` with one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable

from pytest_mmperf.results.records import RunDocument

SPEEDUP_METRIC = "speedup_vs_eager"  # the benchmark's speedup, served as one more series


class HistoryError(RuntimeError):
    """The history store cannot be used; the message is one line."""


@dataclass(frozen=True)
class RunInfo:
    id: int
    commit: str | None
    branch: str | None
    created: str  # ISO 8601, UTC
    fingerprint: str
    tool_version: str
    benchmarks: int

    @property
    def label(self) -> str:
        """``abc1234 #12``: short commit and run id, unique per run."""
        return f"{(self.commit or 'no-commit')[:8]} #{self.id}"


@dataclass(frozen=True)
class SeriesPoint:
    run_id: int
    commit: str | None
    branch: str | None
    created: str
    median: float
    ci_low: float | None
    ci_high: float | None
    n: int | None

    @property
    def label(self) -> str:
        return f"{(self.commit or 'no-commit')[:8]} #{self.run_id}"


@dataclass(frozen=True)
class Series:
    """One metric of one benchmark over the recorded runs, oldest first."""

    benchmark: str
    workload: str | None
    task: str | None
    optimizations: tuple[str, ...]
    metric: str
    unit: str
    direction: str  # "lower" or "higher"
    points: tuple[SeriesPoint, ...]


@runtime_checkable
class HistoryStore(Protocol):
    """What every history backend offers."""

    def record_run(self, doc: RunDocument) -> int:
        """Store one run in one transaction (all of it or nothing); returns its run id."""
        ...

    def runs(self, *, branch: str | None = None, limit: int | None = None) -> list[RunInfo]:
        """Recorded runs, oldest first (the newest ``limit`` when given)."""
        ...

    def load_run(self, run_id: int) -> RunDocument:
        """One recorded run as a results document."""
        ...

    def series(
        self,
        *,
        benchmark: str | None = None,
        metric: str | None = None,
        workload: str | None = None,
        lever: str | None = None,
        branch: str | None = None,
        fingerprint: str | None = None,
    ) -> list[Series]:
        """Series per (benchmark, metric), each ordered by time, filtered as asked. ``lever``
        keeps benchmarks whose optimizations include it (``eager`` keeps the eager ones)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> HistoryStore: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def open_store(url: str, rootdir: str | Path, *, create: bool = True) -> HistoryStore:
    """Open (and migrate) the history store at ``url``.

    ``sqlite:///relative/path`` is resolved against ``rootdir`` and its folders are created;
    ``sqlite:////abs/path`` is absolute; ``postgresql://...`` uses psycopg 3. With
    ``create=False`` a missing SQLite file is an error instead of a new, empty history
    (commands that only read use it).
    """
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in ("sqlite", "postgresql", "postgres"):
        raise HistoryError(f"unsupported history URL {url!r}: use sqlite:///PATH or postgresql://...")
    from pytest_mmperf.history.sql import SqlStore

    return SqlStore.open(url, Path(rootdir), create=create)


def open_documents(docs: Sequence[RunDocument]) -> HistoryStore:
    """A throw-away in-memory history holding ``docs`` in the given order (oldest first), so
    commands that read a history also read plain results documents."""
    store = open_store("sqlite://", Path.cwd())
    for doc in docs:
        store.record_run(doc)
    return store


__all__ = [
    "SPEEDUP_METRIC",
    "HistoryError",
    "HistoryStore",
    "RunInfo",
    "Series",
    "SeriesPoint",
    "open_documents",
    "open_store",
]
