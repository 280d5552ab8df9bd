"""The SQLite history store: round trip, migrations, refusals, corruption, concurrency, atomicity."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from history_data import history_docs, make_doc

from pytest_mmperf.history import SPEEDUP_METRIC, HistoryError, HistoryStore, open_store, schema, sql


def test_record_and_query_round_trip(tmp_path: Path) -> None:
    docs = history_docs(3)
    with open_store("sqlite:///nested/dir/h.db", tmp_path) as store:
        assert isinstance(store, HistoryStore)
        ids = [store.record_run(d) for d in docs]
        runs = store.runs()
        loaded = store.load_run(ids[1])
        llm = store.series(workload="llm", metric="latency_ms")
        compiled = store.series(lever="compile")
        eager = store.series(lever="eager", metric="latency_ms")
        speedups = store.series(metric=SPEEDUP_METRIC)
        other_branch = store.series(branch="feature")
        newest = store.runs(limit=1)
    assert (tmp_path / "nested/dir/h.db").is_file()
    assert [r.id for r in runs] == ids
    assert [r.commit for r in runs] == [d.commit for d in docs]
    assert runs[0].benchmarks == len(docs[0].benchmarks)
    assert newest[0].id == ids[-1]
    expected = docs[1].with_benchmarks(sorted(docs[1].benchmarks, key=lambda b: b.id))
    assert loaded.to_json() == expected.to_json()
    assert {s.benchmark for s in llm} == {b.id for b in docs[0].benchmarks if b.workload == "llm"}
    for s in llm:
        assert [p.commit for p in s.points] == [d.commit for d in docs]
        assert [p.median for p in s.points] == [d.by_id()[s.benchmark].metrics["latency_ms"].median for d in docs]
        assert s.unit == "ms" and s.direction == "lower"
    assert {s.benchmark for s in compiled} == {"suites/test_llm.py::test_llm[sdpa-compile]"}
    assert all(s.optimizations == () for s in eager) and len(eager) == 2
    assert all(s.direction == "higher" for s in speedups) and len(speedups) == 4
    assert other_branch == []


def test_lever_filter_matches_whole_names_only(tmp_path: Path) -> None:
    with open_store("sqlite:///h.db", tmp_path) as store:
        store.record_run(make_doc("a"))
        assert store.series(lever="comp") == []
        assert store.series(lever="%") == []
        assert store.series(lever="sdpa")


def _v1_database(path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        schema.migrate(conn, 0, target=1)
        run_id = conn.execute(sa.insert(schema.runs).values(
            commit="old1", branch="main", created="2024-01-01T00:00:00+00:00", fingerprint="cpu-test-0123abcd",
            environment={"fingerprint": "cpu-test-0123abcd"}, tool_version="0.0.9", settings={},
            document_schema=1,
        )).inserted_primary_key[0]
        bench_id = conn.execute(sa.insert(schema.benchmarks).values(
            run_id=run_id, benchmark="suites/test_llm.py::test_llm[eager]", workload="llm", task="t2t",
            optimizations="", scale="tiny", device="cpu", batch_size=1,
        )).inserted_primary_key[0]
        conn.execute(sa.text(
            "INSERT INTO mmperf_metrics (benchmark_id, metric, unit, direction, median, ci_low, ci_high, n, samples)"
            " VALUES (:b, 'latency_ms', 'ms', 'lower', 10.0, 9.0, 11.0, 3, '[9.0, 10.0, 11.0]')"
        ), {"b": bench_id})
    engine.dispose()


def test_older_schema_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    _v1_database(db)
    columns = {r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(mmperf_benchmarks)")}
    assert "profile" not in columns
    with open_store(f"sqlite:///{db}", tmp_path) as store:
        old = store.load_run(1)
        new_id = store.record_run(make_doc("new1"))
        runs = store.runs()
        series = store.series(benchmark="suites/test_llm.py::test_llm[eager]", metric="latency_ms")
    assert old.benchmarks[0].metrics["latency_ms"].median == 10.0
    assert old.benchmarks[0].profile is None
    assert [r.commit for r in runs] == ["old1", "new1"] and runs[-1].id == new_id
    assert [p.commit for p in series[0].points] == ["old1", "new1"]
    con = sqlite3.connect(db)
    assert [v for (v,) in con.execute("SELECT version FROM mmperf_schema_version ORDER BY version")] == [1, 2]
    con.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    with open_store("sqlite:///h.db", tmp_path) as store:
        store.record_run(make_doc("a"))
    con = sqlite3.connect(tmp_path / "h.db")
    con.execute("INSERT INTO mmperf_schema_version VALUES (99, '2030-01-01T00:00:00+00:00')")
    con.commit()
    con.close()
    with pytest.raises(HistoryError, match=r"schema version 99, newer than this pytest-mmperf reads \(2\)") as info:
        open_store("sqlite:///h.db", tmp_path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content", [b"this is not a database at all\n" * 100, b"SQLite format 3\x00" + b"\xff" * 5000])
def test_corrupt_file_is_refused_and_left_untouched(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "h.db"
    db.write_bytes(content)
    with pytest.raises(HistoryError) as info, open_store("sqlite:///h.db", tmp_path) as store:
        store.record_run(make_doc("a"))
    assert "\n" not in str(info.value) and str(db) in str(info.value)
    assert db.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.db"]


def test_foreign_tables_without_version_are_refused(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "h.db")
    con.execute("CREATE TABLE mmperf_runs (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(HistoryError, match="no schema version; refusing"):
        open_store("sqlite:///h.db", tmp_path)


def test_missing_database_is_an_error_when_not_creating(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="no history database at"):
        open_store("sqlite:///absent.db", tmp_path, create=False)
    assert not (tmp_path / "absent.db").exists()


def test_bad_urls_are_one_line_errors(tmp_path: Path) -> None:
    for url in ("mysql://x/y", "sqlite:///" + str(tmp_path)):
        with pytest.raises(HistoryError) as info:
            open_store(url, tmp_path)
        assert "\n" not in str(info.value)


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_store("sqlite:///h.db", tmp_path) as store:
        store.record_run(make_doc("kept"))
        calls = 0
        real = sql._metric_rows

        def interrupted(bench_id: int, b: object) -> object:
            nonlocal calls
            calls += 1
            if calls == 3:  # after two benchmarks and their metrics were inserted
                raise KeyboardInterrupt
            return real(bench_id, b)  # type: ignore[arg-type]

        monkeypatch.setattr(sql, "_metric_rows", interrupted)
        with pytest.raises(KeyboardInterrupt):
            store.record_run(make_doc("lost"))
        monkeypatch.setattr(sql, "_metric_rows", real)
        assert [r.commit for r in store.runs()] == ["kept"]
    con = sqlite3.connect(tmp_path / "h.db")
    counts = [con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("mmperf_runs", "mmperf_benchmarks", "mmperf_metrics")]
    con.close()
    doc = make_doc("kept")
    assert counts == [1, len(doc.benchmarks), sum(len(b.metrics) for b in doc.benchmarks)]


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


def test_concurrent_writers_lose_no_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    tests_dir = str(Path(__file__).parent)
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, url, str(w), tests_dir], stderr=subprocess.PIPE)
        for w in range(4)
    ]
    errors = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    with open_store(url, tmp_path) as store:
        runs = store.runs()
        series = store.series(benchmark="suites/test_llm.py::test_llm[eager]", metric="latency_ms")
    assert len(runs) == 20
    assert sorted(r.commit or "" for r in runs) == sorted(f"w{w}-r{i}" for w in range(4) for i in range(5))
    assert len(series[0].points) == 20
