import json

import pytest

from pytest_mmperf.results.metrics import Direction, MetricNameError, unit_of
from pytest_mmperf.results.records import (
    SCHEMA_VERSION,
    BenchmarkRecord,
    DocumentError,
    MetricRecord,
    RunDocument,
    Speedup,
)


def make_doc() -> RunDocument:
    bench = BenchmarkRecord(
        id="suites/mmperf_suites/test_llm.py::test_llm[eager]",
        workload="llm",
        task="t2t",
        optimizations=("sdpa", "compile"),
        scale="tiny",
        device="cpu",
        batch_size=1,
        metrics={
            "latency_ms": MetricRecord.from_samples("latency_ms", [10.0, 11.0, 12.0]),
            "tokens_per_s": MetricRecord.from_samples("tokens_per_s", [100.0, 90.0]),
        },
        speedup_vs_eager=Speedup(1.3, 1.2, 1.4),
        quality={"verdict": "pass"},
    )
    return RunDocument(environment={"fingerprint": "cpu-2c-1t-x", "device": "cpu"}, benchmarks=(bench,), commit="abc")


def test_units_and_directions():
    assert unit_of("latency_ms").direction is Direction.LOWER
    assert unit_of("tokens_per_s").direction is Direction.HIGHER
    assert unit_of("tokens_per_s").unit == "1/s"
    assert unit_of("peak_memory_bytes").unit == "bytes"
    assert unit_of("latency_ms").timing and not unit_of("kv_cache_bytes").timing
    with pytest.raises(MetricNameError):
        unit_of("latency")


def test_document_matches_interface_and_round_trips():
    doc = make_doc()
    data = json.loads(doc.dumps())
    assert data["schema_version"] == SCHEMA_VERSION
    b = data["benchmarks"][0]
    for key in ("id", "workload", "task", "optimizations", "scale", "device", "batch_size", "metrics",
                "speedup_vs_eager", "quality"):
        assert key in b
    m = b["metrics"]["latency_ms"]
    assert (m["unit"], m["direction"], m["median"], m["samples"]) == ("ms", "lower", 11.0, [10.0, 11.0, 12.0])
    assert b["metrics"]["tokens_per_s"]["direction"] == "higher"
    assert set(b["speedup_vs_eager"]) >= {"median", "ci_low", "ci_high"}
    again = RunDocument.loads(doc.dumps())
    assert again.to_json() == doc.to_json()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"schema_version": 1, "environment": {"fingerprint"', "not valid JSON"),
        ("[]", "not a pytest-mmperf results document"),
        ('{"benchmarks": []}', "no schema_version"),
        ('{"schema_version": 99, "environment": {"fingerprint": "x"}, "benchmarks": []}', "newer"),
        ('{"schema_version": 1, "environment": {}, "benchmarks": []}', "no fingerprint"),
        ('{"schema_version": 1, "environment": {"fingerprint": "x"}, "benchmarks": [{"id": "a"}]}',
         "missing field 'metrics'"),
    ],
)
def test_bad_documents_are_one_line_errors(text, needle):
    with pytest.raises(DocumentError) as exc:
        RunDocument.loads(text, source="f.json")
    assert needle in str(exc.value)
    assert str(exc.value).startswith("f.json")
    assert "\n" not in str(exc.value)


def test_bad_metric_in_document():
    data = make_doc().to_json()
    data["benchmarks"][0]["metrics"]["latency_ms"]["samples"] = []
    with pytest.raises(DocumentError, match="latency_ms"):
        RunDocument.from_json(data)


def test_missing_file(tmp_path):
    with pytest.raises(DocumentError, match="no such file"):
        RunDocument.load(tmp_path / "nope.json")


def test_free_form_fields_are_strict_json():
    doc = make_doc()
    bench = doc.benchmarks[0]
    from dataclasses import replace

    odd = replace(bench, quality={"teacher_forced": {"sqnr_db": float("inf"), "kl": float("nan")}, "x": (1, 2)})
    text = doc.with_benchmarks([odd]).dumps()  # allow_nan=False would raise on inf
    q = json.loads(text)["benchmarks"][0]["quality"]
    assert q == {"teacher_forced": {"sqnr_db": None, "kl": None}, "x": [1, 2]}
