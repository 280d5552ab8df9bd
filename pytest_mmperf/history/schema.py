"""The history's tables and their ordered migrations (SQLAlchemy Core; SQLite and PostgreSQL).

The version lives in ``mmperf_schema_version`` (one row per applied step). Opening a database
applies the missing steps in order, each in the caller's transaction (both backends have
transactional DDL, so a failed step leaves the previous version intact). A database whose version
is newer than :data:`SCHEMA_VERSION` was written by a newer pytest-mmperf and is refused.

Small own steps instead of Alembic: four tables, additive changes, no autogeneration needed, and
one dependency less for every user of a pytest plugin. Table names carry an ``mmperf_`` prefix so
the history can live in a shared PostgreSQL database.

Versions:

1. runs, benchmarks (one row per benchmark per run), metrics (one row per metric per benchmark).
2. the benchmark's ``params``/``profile``/``roofline`` and the metric's ``confidence``/``gated``
   (what a report needs to rebuild the results document), and indexes for the series queries.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

SCHEMA_VERSION = 2

metadata = sa.MetaData()

schema_version = sa.Table(
    "mmperf_schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied", sa.String(40), nullable=False),
)

runs = sa.Table(
    "mmperf_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("commit", sa.String(64)),
    sa.Column("branch", sa.String(255)),
    sa.Column("created", sa.String(40), nullable=False),  # ISO 8601 UTC: sorts as text
    sa.Column("fingerprint", sa.String(128), nullable=False),
    sa.Column("environment", sa.JSON, nullable=False),
    sa.Column("tool_version", sa.String(40), nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("document_schema", sa.Integer, nullable=False),
    sa.Index("ix_mmperf_runs_created", "created"),
)

benchmarks = sa.Table(
    "mmperf_benchmarks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("mmperf_runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("benchmark", sa.Text, nullable=False),  # pytest node id
    sa.Column("workload", sa.String(64)),
    sa.Column("task", sa.String(64)),
    sa.Column("optimizations", sa.Text, nullable=False),  # "sdpa,compile"; "" = eager
    sa.Column("scale", sa.String(32), nullable=False),
    sa.Column("device", sa.String(32), nullable=False),
    sa.Column("batch_size", sa.Integer, nullable=False),
    sa.Column("quality", sa.JSON),
    sa.Column("speedup_median", sa.Float),
    sa.Column("speedup_ci_low", sa.Float),
    sa.Column("speedup_ci_high", sa.Float),
    # version 2
    sa.Column("params", sa.JSON),
    sa.Column("profile", sa.JSON),
    sa.Column("roofline", sa.JSON),
    sa.UniqueConstraint("run_id", "benchmark", name="uq_mmperf_benchmarks_run_benchmark"),
    sa.Index("ix_mmperf_benchmarks_benchmark", "benchmark"),
)

metrics = sa.Table(
    "mmperf_metrics",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "benchmark_id", sa.Integer, sa.ForeignKey("mmperf_benchmarks.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("metric", sa.String(128), nullable=False),
    sa.Column("unit", sa.String(32), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("median", sa.Float, nullable=False),
    sa.Column("ci_low", sa.Float),
    sa.Column("ci_high", sa.Float),
    sa.Column("n", sa.Integer),
    sa.Column("samples", sa.JSON, nullable=False),
    # version 2
    sa.Column("confidence", sa.Float),
    sa.Column("gated", sa.Boolean),
    sa.UniqueConstraint("benchmark_id", "metric", name="uq_mmperf_metrics_benchmark_metric"),
    sa.Index("ix_mmperf_metrics_metric", "metric"),
)

# Columns and indexes that version 2 added; version 1 is the tables above without them.
_V2_COLUMNS = {
    "mmperf_benchmarks": ("params", "profile", "roofline"),
    "mmperf_metrics": ("confidence", "gated"),
}
_V2_INDEXES = ("ix_mmperf_benchmarks_benchmark", "ix_mmperf_metrics_metric")


def _v1_metadata() -> sa.MetaData:
    """The version-1 layout: today's tables less what later versions added."""
    md = sa.MetaData()
    for table in (schema_version, runs, benchmarks, metrics):
        later = _V2_COLUMNS.get(table.name, ())
        cols = [c._copy() for c in table.columns if c.name not in later]
        constraints = [
            sa.UniqueConstraint(*[c.name for c in u.columns], name=u.name)
            for u in table.constraints
            if isinstance(u, sa.UniqueConstraint)
        ]
        indexes = [
            sa.Index(i.name, *[c.name for c in i.columns]) for i in table.indexes if i.name not in _V2_INDEXES
        ]
        sa.Table(table.name, md, *cols, *constraints, *indexes)
    return md


def _step_1(conn: Connection) -> None:
    _v1_metadata().create_all(conn)


def _step_2(conn: Connection) -> None:
    quote = conn.dialect.identifier_preparer.quote
    for table_name, names in _V2_COLUMNS.items():
        table = metadata.tables[table_name]
        for name in names:
            col_type = table.c[name].type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {quote(table_name)} ADD COLUMN {quote(name)} {col_type}")
    for table in (benchmarks, metrics):
        for index in table.indexes:
            if index.name in _V2_INDEXES:
                index.create(conn)


# Step N takes a database at version N-1 (0 = empty) to version N.
MIGRATIONS: tuple[Callable[[Connection], None], ...] = (_step_1, _step_2)
assert len(MIGRATIONS) == SCHEMA_VERSION


def current_version(conn: Connection) -> int | None:
    """The database's schema version; 0 for a database without our tables; None when our data
    tables exist without a version table (not something this tool wrote)."""
    names = set(sa.inspect(conn).get_table_names())
    if schema_version.name not in names:
        return None if runs.name in names else 0
    value = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
    return int(value or 0)


def migrate(conn: Connection, start: int, target: int = SCHEMA_VERSION) -> None:
    """Apply steps ``start+1 .. target`` in the connection's transaction, recording each."""
    for version in range(start + 1, target + 1):
        MIGRATIONS[version - 1](conn)
        conn.execute(
            sa.insert(schema_version).values(
                version=version, applied=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            )
        )
