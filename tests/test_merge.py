"""Merging shard results (``mmperf merge``), pooling repeats, and pytest-xdist's one document.

Sharded runs merged must equal an unsharded run in content: the same benchmark ids with the same
fields; only measured values differ.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import pytest_mmperf.results.merge  # noqa: F401  (loaded before pytester runs; see tests/conftest.py)
from pytest_mmperf.cli import main
from pytest_mmperf.results.merge import MergeError, merge_shards, pool, pool_records
from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord, RunDocument

pytest_plugins = ["pytester"]

BENCH = textwrap.dedent(
    """
    import pytest

    def work(n):
        return sum(i * i for i in range(n))

    @pytest.mark.mmperf(workload="llm", task="t2t")
    @pytest.mark.parametrize("n", [1000, 2000, 3000])
    def test_x(mmperf, n):
        mmperf(work, n)

    @pytest.mark.mmperf(workload="speech", task="s2st", optimizations=["sdpa"])
    def test_levered(mmperf):
        mmperf.interleaved(lambda: work(2000), lambda: work(1000))

    def test_plain():
        assert True
    """
)
FAST = ["--mmperf", "--mmperf-rounds=3", "--mmperf-max-time=0.1", "--mmperf-history=off", "-p", "no:randomly"]
MEASURED = {"median", "ci_low", "ci_high", "q1", "q3", "iqr", "min", "max", "samples", "n"}


def content(doc: dict[str, Any]) -> dict[str, Any]:
    """A results document less what a measurement changes (values, timestamps, shard)."""
    def bench(b: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in b.items() if k not in ("metrics", "speedup_vs_eager", "params")}
        out["metrics"] = {name: {k: v for k, v in m.items() if k not in MEASURED}
                          for name, m in b["metrics"].items()}
        out["speedup_vs_eager"] = sorted(b["speedup_vs_eager"]) if b["speedup_vs_eager"] else None
        out["params"] = sorted(b.get("params") or {})
        return out

    settings = {k: v for k, v in doc["settings"].items() if k not in ("shard", "json_path")}
    return {
        "schema_version": doc["schema_version"],
        "fingerprint": doc["environment"]["fingerprint"],
        "commit": doc["commit"],
        "settings": settings,
        "benchmarks": [bench(b) for b in doc["benchmarks"]],
    }


def test_sharded_runs_merge_to_the_unsharded_run(pytester):
    pytester.makepyfile(test_bench=BENCH)
    pytester.runpytest(*FAST, "--mmperf-json=all.json").assert_outcomes(passed=5)
    one = pytester.runpytest(*FAST, "--mmperf-shard=1/2", "--mmperf-json=s1.json")
    two = pytester.runpytest(*FAST, "--mmperf-shard=2/2", "--mmperf-json=s2.json")
    one.assert_outcomes(passed=3, deselected=2)  # the plain test is never deselected
    two.assert_outcomes(passed=3, deselected=2)
    assert main(["merge", str(pytester.path / "merged.json"),
                 str(pytester.path / "s1.json"), str(pytester.path / "s2.json")]) == 0
    whole = json.loads((pytester.path / "all.json").read_text())
    merged = json.loads((pytester.path / "merged.json").read_text())
    assert [b["id"] for b in merged["benchmarks"]] == [b["id"] for b in whole["benchmarks"]]
    assert content(merged) == content(whole)
    RunDocument.load(pytester.path / "merged.json")  # valid


def test_xdist_run_writes_one_document_on_the_controller(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_bench=BENCH)
    pytester.runpytest(*FAST, "--mmperf-json=serial.json").assert_outcomes(passed=5)
    result = pytester.runpytest_subprocess(*FAST, "-n", "2", "--mmperf-json=parallel.json")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*pytest-mmperf: 4 benchmark(s)*"])
    serial = json.loads((pytester.path / "serial.json").read_text())
    parallel = json.loads((pytester.path / "parallel.json").read_text())
    assert content(parallel) == content(serial)


# -- plain functions --------------------------------------------------------------------------
def record(bid: str, samples: list[float], eager: list[float] | None = None) -> BenchmarkRecord:
    metrics = {"latency_ms": MetricRecord.from_samples("latency_ms", samples)}
    if eager is not None:
        metrics["eager_latency_ms"] = MetricRecord.from_samples("eager_latency_ms", eager)
    return BenchmarkRecord(bid, "llm", "t2t", (), "tiny", "cpu", 1, metrics)


def doc(*records: BenchmarkRecord, fingerprint: str = "cpu-abc", commit: str = "c1") -> RunDocument:
    return RunDocument({"fingerprint": fingerprint, "device": "cpu"}, tuple(records), commit=commit,
                       settings={"shard": [1, 2], "rounds": 3})


def test_duplicate_ids_are_an_error_naming_them():
    with pytest.raises(MergeError, match=r"1 benchmark id\(s\) in more than one input: t::a \(in a.json, b.json\)"):
        merge_shards([doc(record("t::a", [1, 2, 3])), doc(record("t::a", [1, 2]), record("t::b", [3]))],
                     ["a.json", "b.json"])


def test_different_environments_refused_unless_forced():
    a, b = doc(record("t::a", [1.0])), doc(record("t::b", [2.0]), fingerprint="cuda-h200")
    with pytest.raises(MergeError, match=r"different environments.*--force"):
        merge_shards([a, b], ["a.json", "b.json"])
    merged, notes = merge_shards([a, b], ["a.json", "b.json"], force=True)
    assert [r.id for r in merged.benchmarks] == ["t::a", "t::b"] and "WARNING" in notes[0]


def test_different_commits_refused_unless_forced():
    with pytest.raises(MergeError, match="different commits"):
        merge_shards([doc(record("t::a", [1.0])), doc(record("t::b", [1.0]), commit="c2")])


def test_merged_settings_drop_the_shard():
    merged, _ = merge_shards([doc(record("t::b", [1.0])), doc(record("t::a", [1.0]))])
    assert "shard" not in merged.settings and [r.id for r in merged.benchmarks] == ["t::a", "t::b"]


def test_pool_concatenates_samples_and_recomputes_summaries():
    first = record("t::a", [1.0, 2.0, 3.0], eager=[2.0, 4.0, 6.0])
    second = record("t::a", [4.0, 5.0], eager=[8.0, 10.0])
    first = replace(first, speedup_vs_eager=None)
    pooled = pool_records([first, second])
    lat = pooled.metrics["latency_ms"]
    assert lat.samples == (1.0, 2.0, 3.0, 4.0, 5.0) and lat.n == 5 and lat.median == 3.0
    assert pooled.metrics["eager_latency_ms"].median == 6.0
    assert pooled.speedup_vs_eager is None  # neither repeat had one
    merged = pool([doc(first), doc(second)])
    assert merged.benchmarks[0].metrics["latency_ms"].n == 5


def test_cli_merge_errors_exit_2(tmp_path: Path, capsys):
    a = tmp_path / "a.json"
    a.write_text(doc(record("t::a", [1.0])).dumps())
    assert main(["merge", str(tmp_path / "out.json"), str(a), str(a)]) == 2
    assert "in more than one input" in capsys.readouterr().err
    assert main(["merge", "--pool", str(tmp_path / "out.json"), str(a), str(a)]) == 0
    assert RunDocument.load(tmp_path / "out.json").benchmarks[0].metrics["latency_ms"].n == 2
    assert main(["merge", str(tmp_path / "o.json"), str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_merge_records_the_merged_run_in_history(tmp_path: Path):
    from pytest_mmperf.history import open_store

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(doc(record("t::a", [1.0, 2.0])).dumps())
    b.write_text(doc(record("t::b", [3.0])).dumps())
    url = f"sqlite:///{tmp_path / 'h.db'}"
    assert main(["merge", "--history", url, str(tmp_path / "out.json"), str(a), str(b)]) == 0
    with open_store(url, tmp_path, create=False) as store:
        (run,) = store.runs()
        assert [r.id for r in store.load_run(run.id).benchmarks] == ["t::a", "t::b"]
