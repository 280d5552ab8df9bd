"""Shared set-up of the project's own tests.

pytester's in-process runs restore ``sys.modules`` afterwards, which removes modules first
imported during the run; torch's C extension cannot be imported a second time in one process.
Importing torch, scipy.stats and transformers here, before any pytester run, keeps them loaded once.
"""

import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import scipy.stats  # noqa: F401
import torch

# torch's profiler (the CPU memory accountant of every benchmark) imports inductor's config on
# its first use, and inductor registers a torch library that cannot be defined twice.
import torch._inductor.config  # noqa: F401
import transformers  # noqa: F401

POSTGRES_URL = os.environ.get("MMPERF_TEST_POSTGRES_URL", "")  # scripts/start_postgres.sh prints one


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The test server's URL with a fresh schema first on the search path; the schema is dropped after."""
    if not POSTGRES_URL:
        pytest.skip("MMPERF_TEST_POSTGRES_URL is not set (scripts/start_postgres.sh prints one)")
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    import sqlalchemy as sa

    name = f"mmperf_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options={quote(f'-csearch_path={name}')}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
        admin.dispose()
