"""The history store on SQLAlchemy Core: SQLite and PostgreSQL through the same code.

Consistency and concurrency:

* one run is written in one transaction (run row, its benchmarks, their metrics): an interrupted
  or failed run leaves nothing behind, and a reader never sees half a run;
* SQLite: write-ahead log (readers do not block the writer), a 30 s busy timeout, and write
  transactions that start with ``BEGIN IMMEDIATE`` (the write lock is taken up front, so two
  writers queue on the busy timeout instead of one failing on a read-to-write upgrade); a
  transaction that still finds the database locked is retried with back-off;
* PostgreSQL: ordinary transactions (ids come from sequences, so concurrent runs never
  conflict); migrations hold a transaction-level advisory lock, so two jobs opening a fresh
  database at once create the schema once; serialization failures and deadlocks are retried;
* a file that is not a SQLite database is refused before SQLite opens it (nothing is written to
  it, nothing is deleted); every database error becomes a one-line :class:`HistoryError`.
"""

from __future__ import annotations

import datetime as _dt
import random
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from pytest_mmperf.history import SPEEDUP_METRIC, HistoryError, RunInfo, Series, SeriesPoint
from pytest_mmperf.history.schema import (
    SCHEMA_VERSION,
    benchmarks,
    current_version,
    metrics,
    migrate,
    runs,
)
from pytest_mmperf.results.records import BenchmarkRecord, DocumentError, MetricRecord, RunDocument, Speedup

T = TypeVar("T")

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 30_000
RETRIES = 8
PG_CONNECT_TIMEOUT_S = 10
_ADVISORY_LOCK_KEY = 0x6D6D70657266  # "mmperf"
_RETRYABLE_PG = ("40001", "40P01")  # serialization failure, deadlock


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip() or type(orig).__name__
    return re.sub(r"\s+", " ", text.splitlines()[0]).strip()


def _retryable(exc: sa_exc.DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if code in _RETRYABLE_PG:
        return True
    text = str(exc.orig).lower()
    return "database is locked" in text or "database is busy" in text or "database table is locked" in text


def _resolve_sqlite(url: URL, rootdir: Path, create: bool) -> tuple[URL, Path | None]:
    """The absolute URL of a SQLite database and its file (None for an in-memory one)."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return url, None
    path = Path(database).expanduser()
    if not path.is_absolute():
        path = rootdir / path
    if path.is_dir():
        raise HistoryError(f"{path} is a folder, not a SQLite history database")
    if path.exists():
        with path.open("rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
        if header and header != SQLITE_HEADER:  # an empty file is a new, empty database
            raise HistoryError(f"{path} is not a SQLite database (corrupt or another kind of file); left untouched")
    elif not create:
        raise HistoryError(f"no history database at {path}")
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(f"cannot create the folder for {path}: {exc.strerror or exc}") from None
    return url.set(database=str(path)), path


def _sqlite_engine(url: URL, path: Path | None) -> Engine:
    if path is None:
        # one shared connection, so every "connection" sees the same in-memory database
        engine = sa.create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver's own implicit BEGINs are off: ours below
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys = ON")
            # Reading the schema first makes a damaged file fail here, before anything is written.
            cur.execute("SELECT count(*) FROM sqlite_master").fetchall()
            if path is not None:
                cur.execute("PRAGMA journal_mode = WAL").fetchall()
        finally:
            cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("mmperf_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _postgres_engine(url: URL) -> Engine:
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")  # SQLAlchemy's default would be psycopg2
    try:
        return sa.create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S}
        )
    except ModuleNotFoundError as exc:
        raise HistoryError(
            f"PostgreSQL history needs the {exc.name} driver: pip install 'pytest-mmperf[postgres]'"
        ) from None


class SqlStore:
    """:class:`~pytest_mmperf.history.HistoryStore` on one SQLAlchemy engine."""

    def __init__(self, engine: Engine, display: str) -> None:
        self.engine = engine
        self.display = display  # the URL with its password hidden, for messages
        self._writer = engine.execution_options(mmperf_write=True)

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, rootdir: Path, *, create: bool = True) -> SqlStore:
        try:
            parsed = make_url(url)
        except (sa_exc.ArgumentError, ValueError) as exc:
            raise HistoryError(f"bad history URL {url!r}: {_one_line(exc)}") from None
        if parsed.get_backend_name() == "sqlite":
            parsed, path = _resolve_sqlite(parsed, rootdir, create)
            engine = _sqlite_engine(parsed, path)
            display = str(path) if path is not None else "in-memory history"
        else:
            engine = _postgres_engine(parsed)
            display = parsed.render_as_string(hide_password=True)
        store = cls(engine, display)
        try:
            store._prepare(create)
        except BaseException:
            engine.dispose()
            raise
        return store

    def _prepare(self, create: bool) -> None:
        """Check the schema version; create or migrate under the write lock."""
        with self._guard("cannot open"), self.engine.connect() as conn:
            version = current_version(conn)
            conn.rollback()
        self._check_version(version)
        if version == SCHEMA_VERSION:
            return
        if version == 0 and not create:
            raise HistoryError(f"{self.display} holds no pytest-mmperf history")

        def step(conn: Connection) -> None:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
            now = current_version(conn)  # again, under the lock: another process may have migrated
            self._check_version(now)
            if now is not None and now < SCHEMA_VERSION:
                migrate(conn, now)

        self._write(step, "cannot migrate")

    def _check_version(self, version: int | None) -> None:
        if version is None:
            raise HistoryError(
                f"{self.display} has pytest-mmperf tables but no schema version; refusing to touch it"
            )
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"{self.display} has history schema version {version}, newer than this pytest-mmperf "
                f"reads ({SCHEMA_VERSION}); upgrade pytest-mmperf"
            )

    # -- transactions and errors -----------------------------------------------------------------
    def _guard(self, what: str) -> _ErrorGuard:
        return _ErrorGuard(f"{self.display}: {what}")

    def _write(self, fn: Callable[[Connection], T], what: str) -> T:
        """Run ``fn`` in one write transaction; retry it whole while the database is busy."""
        delay = 0.05
        for attempt in range(RETRIES + 1):
            try:
                with self._guard(what), self._writer.begin() as conn:
                    return fn(conn)
            except _Busy:
                if attempt == RETRIES:
                    break
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)
        raise HistoryError(f"{self.display}: {what}: the database stayed busy through {RETRIES + 1} attempts")

    def _read(self, fn: Callable[[Connection], T], what: str = "cannot read") -> T:
        with self._guard(what), self.engine.connect() as conn:
            try:
                return fn(conn)
            finally:
                conn.rollback()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------
    def record_run(self, doc: RunDocument) -> int:
        created = doc.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        run_row = {
            "commit": doc.commit,
            "branch": doc.branch,
            "created": _utc(created),
            "fingerprint": doc.fingerprint,
            "environment": dict(doc.environment),
            "tool_version": doc.tool_version,
            "settings": _jsonable(doc.settings),
            "document_schema": doc.schema_version,
        }

        def write(conn: Connection) -> int:
            run_id = _inserted_id(conn.execute(sa.insert(runs).values(**run_row)))
            for b in doc.benchmarks:
                bench_id = _inserted_id(conn.execute(sa.insert(benchmarks).values(**_benchmark_row(run_id, b))))
                rows = list(_metric_rows(bench_id, b))
                if rows:
                    conn.execute(sa.insert(metrics), rows)
            return run_id

        return self._write(write, "cannot record the run")

    # -- reading ---------------------------------------------------------------------------------
    def runs(self, *, branch: str | None = None, limit: int | None = None) -> list[RunInfo]:
        count = (
            sa.select(sa.func.count(benchmarks.c.id))
            .where(benchmarks.c.run_id == runs.c.id)
            .scalar_subquery()
        )
        q = sa.select(runs, count.label("n_benchmarks")).order_by(runs.c.created.desc(), runs.c.id.desc())
        if branch is not None:
            q = q.where(runs.c.branch == branch)
        if limit is not None:
            q = q.limit(limit)

        def read(conn: Connection) -> list[RunInfo]:
            return [
                RunInfo(
                    id=r.id,
                    commit=r.commit,
                    branch=r.branch,
                    created=r.created,
                    fingerprint=r.fingerprint,
                    tool_version=r.tool_version,
                    benchmarks=int(r.n_benchmarks),
                )
                for r in conn.execute(q)
            ][::-1]

        return self._read(read)

    def load_run(self, run_id: int) -> RunDocument:
        def read(conn: Connection) -> RunDocument:
            run = conn.execute(sa.select(runs).where(runs.c.id == run_id)).one_or_none()
            if run is None:
                raise HistoryError(f"{self.display}: no run {run_id}")
            brows = conn.execute(
                sa.select(benchmarks).where(benchmarks.c.run_id == run_id).order_by(benchmarks.c.benchmark)
            ).all()
            mrows = conn.execute(
                sa.select(metrics)
                .join(benchmarks, metrics.c.benchmark_id == benchmarks.c.id)
                .where(benchmarks.c.run_id == run_id)
            ).all()
            by_bench: dict[int, dict[str, MetricRecord]] = {}
            try:
                for m in mrows:
                    by_bench.setdefault(m.benchmark_id, {})[m.metric] = MetricRecord.from_json(
                        m.metric,
                        {
                            "direction": m.direction,
                            "samples": m.samples,
                            "confidence": m.confidence if m.confidence is not None else 0.95,
                            "gated": True if m.gated is None else bool(m.gated),
                        },
                    )
            except DocumentError as exc:
                raise HistoryError(f"{self.display}: run {run_id}: {exc}") from None
            return RunDocument(
                environment=run.environment,
                benchmarks=tuple(_benchmark_record(b, by_bench.get(b.id, {})) for b in brows),
                commit=run.commit,
                branch=run.branch,
                created=run.created,
                tool_version=run.tool_version,
                settings=run.settings or {},
                schema_version=run.document_schema,
            )

        return self._read(read)

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
        filters: list[Any] = []
        if benchmark is not None:
            filters.append(benchmarks.c.benchmark == benchmark)
        if workload is not None:
            filters.append(benchmarks.c.workload == workload)
        if lever is not None:
            if lever == "eager":
                filters.append(benchmarks.c.optimizations == "")
            else:
                wrapped = sa.literal(",", sa.Text) + benchmarks.c.optimizations + sa.literal(",", sa.Text)
                filters.append(wrapped.contains(f",{lever},", autoescape=True))
        if branch is not None:
            filters.append(runs.c.branch == branch)
        if fingerprint is not None:
            filters.append(runs.c.fingerprint == fingerprint)
        order = (runs.c.created, runs.c.id)
        run_cols = (runs.c.id.label("run_id"), runs.c.commit, runs.c.branch, runs.c.created)
        bench_cols = (benchmarks.c.benchmark, benchmarks.c.workload, benchmarks.c.task, benchmarks.c.optimizations)
        metric_q = (
            sa.select(
                *run_cols, *bench_cols,
                metrics.c.metric, metrics.c.unit, metrics.c.direction,
                metrics.c.median, metrics.c.ci_low, metrics.c.ci_high, metrics.c.n,
            )
            .select_from(metrics.join(benchmarks).join(runs))
            .where(*filters)
            .order_by(*order)
        )
        if metric is not None:
            metric_q = metric_q.where(metrics.c.metric == metric)
        speedup_q = (
            sa.select(
                *run_cols, *bench_cols,
                benchmarks.c.speedup_median, benchmarks.c.speedup_ci_low, benchmarks.c.speedup_ci_high,
            )
            .select_from(benchmarks.join(runs))
            .where(benchmarks.c.speedup_median.is_not(None), *filters)
            .order_by(*order)
        )

        def read(conn: Connection) -> list[Series]:
            grouped: dict[tuple[str, str], list[Any]] = {}
            if metric is None or metric != SPEEDUP_METRIC:
                for r in conn.execute(metric_q):
                    point = SeriesPoint(r.run_id, r.commit, r.branch, r.created, r.median, r.ci_low, r.ci_high, r.n)
                    _add(grouped, r.benchmark, r.metric, r, (r.unit, r.direction), point)
            if metric is None or metric == SPEEDUP_METRIC:
                for r in conn.execute(speedup_q):
                    point = SeriesPoint(
                        r.run_id, r.commit, r.branch, r.created,
                        r.speedup_median, r.speedup_ci_low, r.speedup_ci_high, None,
                    )
                    _add(grouped, r.benchmark, SPEEDUP_METRIC, r, ("x", "higher"), point)
            out = []
            for (bench, name), (meta, points) in sorted(grouped.items()):
                row, (unit, direction) = meta
                out.append(
                    Series(
                        benchmark=bench,
                        workload=row.workload,
                        task=row.task,
                        optimizations=_levers(row.optimizations),
                        metric=name,
                        unit=unit,
                        direction=direction,
                        points=tuple(points),
                    )
                )
            return out

        return self._read(read)


def _add(
    grouped: dict[tuple[str, str], list[Any]],
    bench: str,
    name: str,
    row: Any,
    unit_direction: tuple[str, str],
    point: SeriesPoint,
) -> None:
    entry = grouped.setdefault((bench, name), [None, []])
    entry[0] = (row, unit_direction)  # the series is described by its newest row
    entry[1].append(point)


class _Busy(Exception):
    """A transaction found the database locked; the caller may retry it."""


class _ErrorGuard:
    """Turns database errors into one-line HistoryErrors (and busy ones into _Busy)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None or isinstance(exc, HistoryError):
            return
        if isinstance(exc, sa_exc.DBAPIError) and _retryable(exc):
            raise _Busy() from exc
        if isinstance(exc, sa_exc.SQLAlchemyError):
            raise HistoryError(f"{self.prefix}: {_one_line(exc)}") from None
        if isinstance(exc, ModuleNotFoundError):
            raise HistoryError(f"{self.prefix}: missing database driver {exc.name}") from None


def _inserted_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _utc(created: str) -> str:
    """ISO 8601 in UTC with seconds, so that text order is time order."""
    try:
        t = _dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return created
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.astimezone(_dt.timezone.utc).isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _levers(text: str | None) -> tuple[str, ...]:
    return tuple(p for p in (text or "").split(",") if p)


def _benchmark_row(run_id: int, b: BenchmarkRecord) -> dict[str, Any]:
    sp = b.speedup_vs_eager
    return {
        "run_id": run_id,
        "benchmark": b.id,
        "workload": b.workload,
        "task": b.task,
        "optimizations": ",".join(b.optimizations),
        "scale": b.scale,
        "device": b.device,
        "batch_size": b.batch_size,
        "quality": _jsonable(dict(b.quality)) if b.quality is not None else None,
        "speedup_median": sp.median if sp else None,
        "speedup_ci_low": sp.ci_low if sp else None,
        "speedup_ci_high": sp.ci_high if sp else None,
        "params": _jsonable(dict(b.params)),
        "profile": _jsonable(dict(b.profile)) if b.profile is not None else None,
        "roofline": _jsonable(dict(b.roofline)) if b.roofline is not None else None,
    }


def _metric_rows(bench_id: int, b: BenchmarkRecord) -> Iterable[dict[str, Any]]:
    for name, m in sorted(b.metrics.items()):
        yield {
            "benchmark_id": bench_id,
            "metric": name,
            "unit": m.unit,
            "direction": m.direction.value,
            "median": m.median,
            "ci_low": m.ci_low,
            "ci_high": m.ci_high,
            "n": m.n,
            "samples": list(m.samples),
            "confidence": m.confidence,
            "gated": m.gated,
        }


def _benchmark_record(row: Any, metric_records: dict[str, MetricRecord]) -> BenchmarkRecord:
    speedup = None
    if row.speedup_median is not None:
        speedup = Speedup(
            median=row.speedup_median,
            ci_low=row.speedup_ci_low if row.speedup_ci_low is not None else row.speedup_median,
            ci_high=row.speedup_ci_high if row.speedup_ci_high is not None else row.speedup_median,
        )
    return BenchmarkRecord(
        id=row.benchmark,
        workload=row.workload,
        task=row.task,
        optimizations=_levers(row.optimizations),
        scale=row.scale,
        device=row.device,
        batch_size=row.batch_size,
        metrics=metric_records,
        speedup_vs_eager=speedup,
        quality=row.quality,
        params=row.params or {},
        profile=row.profile,
        roofline=row.roofline,
    )


# -- for the gate's learned drift allowance (judge/allowance.py) -----------------------------------
def session_medians(
    store: SqlStore, *, fingerprint: str, host: str, scale: str | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Per benchmark, per metric (``speedup_vs_eager`` included): the median of every recorded
    session on this fingerprint and host (the environment's ``host_id``), oldest first; one
    query, the host matched in Python (it lives in the run's environment JSON)."""
    q = (
        sa.select(runs.c.id, runs.c.environment, benchmarks.c.benchmark, benchmarks.c.scale,
                  benchmarks.c.speedup_median, metrics.c.metric, metrics.c.median)
        .select_from(metrics.join(benchmarks).join(runs))
        .where(runs.c.fingerprint == fingerprint)
        .order_by(runs.c.created, runs.c.id)
    )

    def read(conn: Connection) -> dict[str, dict[str, list[float]]]:
        out: dict[str, dict[str, list[float]]] = {}
        speedups: set[tuple[int, str]] = set()
        for r in conn.execute(q):
            env = r.environment if isinstance(r.environment, dict) else {}
            if env.get("host_id") != host or (scale is not None and r.scale != scale):
                continue
            per = out.setdefault(r.benchmark, {})
            per.setdefault(r.metric, []).append(float(r.median))
            if r.speedup_median is not None and (r.id, r.benchmark) not in speedups:
                speedups.add((r.id, r.benchmark))
                per.setdefault(SPEEDUP_METRIC, []).append(float(r.speedup_median))
        return out

    return store._read(read, "cannot read the sessions of this host")
