"""Baseline storage: atomic, merging, refusing bad files in one line, never losing data."""

import json
import os
from pathlib import Path

import pytest

from pytest_mmperf.results import atomic, baselines
from pytest_mmperf.results.records import BenchmarkRecord, DocumentError, MetricRecord, RunDocument

ENV = {"fingerprint": "cpu-2c-1t-abc", "device": "cpu", "cpu_count": 2, "torch_threads": 1,
       "torch_version": "2.13.0"}


def bench(bid, ms=10.0):
    return BenchmarkRecord(bid, "llm", "t2t", (), "tiny", "cpu", 1,
                           {"latency_ms": MetricRecord.from_samples("latency_ms", [ms] * 5)})


def doc(*ids, commit="c1", env=ENV, ms=10.0):
    return RunDocument(dict(env), tuple(bench(i, ms) for i in ids), commit=commit, created="2024-01-01")


def test_save_and_load_for(tmp_path):
    path = baselines.save(doc("t::a", "t::b"), tmp_path)
    assert path == tmp_path / "cpu-2c-1t-abc.json"
    text = path.read_text()
    assert text == baselines.dumps(RunDocument.loads(text))  # stable: sorted keys, indented
    assert '\n  "benchmarks"' in text
    loaded = baselines.load_for(ENV, tmp_path)
    assert loaded is not None and [b.id for b in loaded.benchmarks] == ["t::a", "t::b"]
    assert baselines.load_for({**ENV, "fingerprint": "other"}, tmp_path) is None


def test_partial_run_merges_and_keeps_each_entrys_commit(tmp_path):
    baselines.save(doc("t::a", "t::b", commit="old"), tmp_path)
    baselines.save(doc("t::b", commit="new", ms=20.0), tmp_path)  # one shard / -k
    merged = baselines.load_for(ENV, tmp_path)
    assert [b.id for b in merged.benchmarks] == ["t::a", "t::b"]
    assert merged.by_id()["t::b"].metrics["latency_ms"].median == 20.0
    assert baselines.entry_commit(merged, "t::a") == "old"
    assert baselines.entry_commit(merged, "t::b") == "new"
    baselines.save(doc("t::c", commit="x"), tmp_path, replace_existing=True)
    assert [b.id for b in baselines.load_for(ENV, tmp_path).benchmarks] == ["t::c"]


def test_interrupted_save_leaves_the_old_file(tmp_path, monkeypatch):
    path = baselines.save(doc("t::a"), tmp_path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        baselines.save(doc("t::b"), tmp_path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"schema_version": 1, "environment": {"fingerp', "corrupt or truncated"),
        ("", "corrupt or truncated"),
        (json.dumps({"schema_version": 99, "environment": ENV, "benchmarks": []}), "newer"),
        (json.dumps({"hello": "world"}), "not a pytest-mmperf results document"),
        (json.dumps({"schema_version": 1, "environment": {**ENV, "torch_version": "9"},
                     "benchmarks": []}), "different environment (torch_version"),
    ],
)
def test_bad_files_one_line_and_untouched(tmp_path, content, says):
    path = tmp_path / "cpu-2c-1t-abc.json"
    atomic.write_text(path, content)
    with pytest.raises(DocumentError) as exc:
        baselines.load_for(ENV, tmp_path)
    assert says in str(exc.value) and "\n" not in str(exc.value) and str(path) in str(exc.value)
    with pytest.raises(DocumentError) as exc:
        baselines.save(doc("t::a"), tmp_path)  # a merge never overwrites what it cannot read
    assert "not overwritten" in str(exc.value) or "different environment" in str(exc.value)
    assert path.read_text() == content


def test_list_show_promote_prune(tmp_path):
    results = tmp_path / "r.json"
    atomic.write_text(results, doc("t::a", "t::b").dumps())
    store = tmp_path / "baselines"
    assert baselines.promote(results, store) == store / "cpu-2c-1t-abc.json"
    atomic.write_text(store / "broken.json", "{")
    listed = {b.fingerprint: b for b in baselines.list_baselines(store)}
    assert listed["cpu-2c-1t-abc"].benchmarks == 2 and listed["cpu-2c-1t-abc"].error is None
    assert listed["broken"].error
    assert baselines.resolve("cpu-2c-1t-abc", store) == store / "cpu-2c-1t-abc.json"
    done = baselines.prune(store, keep_ids_from=doc("t::a"), dry_run=True)
    assert done == [f"removed entry t::b from {store / 'cpu-2c-1t-abc.json'}"]
    assert len(baselines.load_for(ENV, store).benchmarks) == 2
    baselines.prune(store, keep_ids_from=doc("t::a"))
    assert [b.id for b in baselines.load_for(ENV, store).benchmarks] == ["t::a"]
    baselines.prune(store, fingerprints=["broken"])
    assert not (store / "broken.json").exists()


def test_cli_baseline_and_compare(tmp_path, capsys):
    from pytest_mmperf.cli import main

    a, b, bad = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "bad.json"
    atomic.write_text(a, RunDocument(ENV, (BenchmarkRecord("t::x", None, None, (), "tiny", "cpu", 1, {
        "latency_ms": MetricRecord.from_samples("latency_ms", [10 + 0.1 * i for i in range(10)])}),)).dumps())
    atomic.write_text(b, RunDocument(ENV, (BenchmarkRecord("t::x", None, None, (), "tiny", "cpu", 1, {
        # +100%: beyond the threshold composed with the cross-session drift allowance (57.5%)
        "latency_ms": MetricRecord.from_samples("latency_ms", [20 + 0.1 * i for i in range(10)])}),)).dumps())
    atomic.write_text(bad, "{nope")
    assert main(["compare", str(a), str(a)]) == 0
    # these documents record no host: +100% is reported, not judged; bytes and outputs would gate
    assert main(["compare", str(a), str(b)]) == 0
    assert "timings and speedups not gated" in capsys.readouterr().out
    for doc in (a, b):  # the same host, with a drift its owner configured: judged
        data = json.loads(doc.read_text())
        data["environment"]["host_id"] = "host-a"
        atomic.write_text(doc, json.dumps(data))
    assert main(["compare", str(a), str(b), "--drift-allowance", "50%"]) == 1
    assert "latency_ms median +" in capsys.readouterr().out
    assert main(["compare", str(a), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.json" in err
    store = tmp_path / "store"
    assert main(["baseline", "--dir", str(store), "promote", str(a)]) == 0
    assert main(["baseline", "--dir", str(store), "list"]) == 0
    assert "cpu-2c-1t-abc" in capsys.readouterr().out
    assert main(["baseline", "--dir", str(store), "show", "cpu-2c-1t-abc"]) == 0
    assert main(["baseline", "--dir", str(store), "promote", str(bad)]) == 2
    assert Path(store / "cpu-2c-1t-abc.json").exists()
