"""The history store against a real PostgreSQL server (``MMPERF_TEST_POSTGRES_URL``; the project's
test command starts one with scripts/start_postgres.sh). Each test works in its own schema."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from history_data import history_docs, make_doc

from pytest_mmperf.history import HistoryError, open_store, sql

URL = os.environ.get("MMPERF_TEST_POSTGRES_URL", "")
pytestmark = pytest.mark.skipif(
    not URL, reason="MMPERF_TEST_POSTGRES_URL is not set (scripts/start_postgres.sh prints one)"
)


def test_round_trip(pg_url: str, tmp_path: Path) -> None:
    docs = history_docs(4, step_at=2)
    with open_store(pg_url, tmp_path) as store:
        ids = [store.record_run(d) for d in docs]
        loaded = store.load_run(ids[0])
        series = store.series(workload="llm", lever="compile", metric="latency_ms", branch="main")
    expected = docs[0].with_benchmarks(sorted(docs[0].benchmarks, key=lambda b: b.id))
    assert loaded.to_json() == expected.to_json()
    assert len(series) == 1 and [p.commit for p in series[0].points] == [d.commit for d in docs]


def test_newer_schema_is_refused(pg_url: str, tmp_path: Path) -> None:
    with open_store(pg_url, tmp_path) as store:
        assert isinstance(store, sql.SqlStore)
        with store.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO mmperf_schema_version VALUES (99, 'later')")
    with pytest.raises(HistoryError, match="newer than this pytest-mmperf"):
        open_store(pg_url, tmp_path)


def test_interrupted_write_leaves_nothing(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(bench_id: int, b: object) -> object:
        raise RuntimeError("killed mid-run")

    with open_store(pg_url, tmp_path) as store:
        store.record_run(make_doc("kept"))
        monkeypatch.setattr(sql, "_metric_rows", broken)
        with pytest.raises(RuntimeError):
            store.record_run(make_doc("lost"))
        monkeypatch.undo()
        assert [r.commit for r in store.runs()] == ["kept"]
        assert isinstance(store, sql.SqlStore)
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM mmperf_benchmarks").scalar() == len(
                make_doc("kept").benchmarks
            )


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(HistoryError) as info:
        open_store("postgresql://mmperf:secret@127.0.0.1:9/nothing", tmp_path)
    text = str(info.value)
    assert "\n" not in text and "secret" not in text and "***" in text


_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[3])
    from history_data import make_doc
    from pytest_mmperf.history import open_store
    worker = int(sys.argv[2])
    for i in range(5):
        with open_store(sys.argv[1], ".") as store:
            store.record_run(make_doc(f"w{worker}-r{i}", seed=worker * 10 + i))
""")


def test_concurrent_writers_on_a_fresh_database(pg_url: str, tmp_path: Path) -> None:
    """Four jobs start at once on an empty schema: it is created once, and no run is lost."""
    tests_dir = str(Path(__file__).parent)
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, pg_url, str(w), tests_dir], stderr=subprocess.PIPE)
        for w in range(4)
    ]
    errors = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    with open_store(pg_url, tmp_path) as store:
        runs = store.runs()
    assert sorted(r.commit or "" for r in runs) == sorted(f"w{w}-r{i}" for w in range(4) for i in range(5))
