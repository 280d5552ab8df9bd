"""``mmperf history --since A --until B``: what changed between two commits or dates, across every
benchmark, biggest first, each with its change point's commit range; SQLite and PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path

from history_data import history_docs, make_doc

from pytest_mmperf import cli
from pytest_mmperf.history import open_store


def docs_with_two_steps():
    """10 runs a day apart: every latency +15% from run 4 on; the recommender +40% more from run 7."""
    docs = history_docs(10, step_at=4)
    hstu = "suites/test_recommender.py::test_hstu[sdpa]"
    out = []
    for i, doc in enumerate(docs):
        if i >= 7:
            slower = make_doc(doc.commit or "", seed=100 + i, factor=1.15 * 1.4, created=doc.created)
            by = slower.by_id()
            doc = type(doc)(doc.environment, tuple(by[b.id] if b.id == hstu else b for b in doc.benchmarks),
                            doc.commit, doc.branch, doc.created, doc.tool_version, doc.settings)
        out.append(doc)
    return out


def record(url: str, tmp_path: Path) -> None:
    with open_store(url, tmp_path) as store:
        for doc in docs_with_two_steps():
            store.record_run(doc)


def triage_output(url: str, capsys, *args: str) -> str:
    assert cli.main(["history", "--db", url, *args]) == 0
    return capsys.readouterr().out


def check(out: str, docs) -> None:
    lines = out.splitlines()
    assert lines[0].startswith("mmperf history: what changed between")
    ranked = [line for line in lines if line.lstrip()[:2].rstrip(".").isdigit()]
    # the biggest change first: the recommender's +40% step, then the +15% ones
    assert "test_hstu[sdpa] latency_ms +4" in ranked[0] and "regression" in ranked[0]
    assert f"between {docs[6].commit[:12]} and {docs[7].commit[:12]}" in ranked[0]
    assert any("test_llm[eager] latency_ms +1" in line and f"between {docs[3].commit[:12]} and "
               f"{docs[4].commit[:12]}" in line for line in ranked)
    assert f"mmperf bisect --good {docs[3].commit[:12]} --bad {docs[4].commit[:12]}" in out
    assert not any("tokens_per_s" in line for line in ranked)  # derived from the latency: not triaged


def test_between_two_commits_on_sqlite(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    record(url, tmp_path)
    docs = docs_with_two_steps()
    check(triage_output(url, capsys, "--since", docs[1].commit[:10], "--until", docs[9].commit[:10]), docs)


def test_between_two_dates_and_a_range_without_change(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    record(url, tmp_path)
    docs = docs_with_two_steps()
    check(triage_output(url, capsys, "--since", "2024-06-02"), docs)  # until: the newest run
    quiet = triage_output(url, capsys, "--since", docs[4].commit[:10], "--until", docs[6].commit[:10])
    assert "0 change point(s)" in quiet and "no confirmed change point in this range" in quiet


def test_an_end_that_matches_no_run_is_one_line(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    record(url, tmp_path)
    assert cli.main(["history", "--db", url, "--since", "deadbeef"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmperf history: no series has runs at both") and len(err.splitlines()) == 1
    assert cli.main(["history", "--db", url, "--until", "2024-06-03"]) == 2
    assert "--until needs --since" in capsys.readouterr().err


def test_between_two_commits_on_postgresql(pg_url, tmp_path, capsys):
    record(pg_url, tmp_path)
    docs = docs_with_two_steps()
    check(triage_output(pg_url, capsys, "--since", docs[1].commit[:10], "--until", docs[9].commit[:10]), docs)
