"""Reports that lead with what changed, the Bencher and pytest-benchmark exports, live progress."""

import json
import math
from dataclasses import replace

import pytest
from gate_data import ENV, rec
from history_data import make_doc

from pytest_mmperf.judge.compare import Policy
from pytest_mmperf.judge.gate import Gate
from pytest_mmperf.report import benchmark_json, export, markdown, verdicts
from pytest_mmperf.report.progress import Progress, duration_text
from pytest_mmperf.results import baselines
from pytest_mmperf.results.records import RunDocument, Speedup
from pytest_mmperf.session import RunSession
from pytest_mmperf.settings import Settings


@pytest.fixture
def gate(tmp_path):
    base = RunDocument(ENV, (rec("t.py::a", 10), rec("t.py::b", 10), rec("t.py::c", 10)), commit="abcdef1234567")
    baselines.save(base, tmp_path / "baselines")
    # a host whose drift is configured: timings are judged across sessions
    return Gate.open(Settings(compare=True, drift_allowance=0.5), tmp_path, ENV, ["t.py::a", "t.py::b", "t.py::c"])


def test_markdown_leads_with_changes_and_collapses_unchanged(gate):
    current = [rec("t.py::a", 10, seed=1), rec("t.py::b", 20, seed=2), rec("t.py::c", 10, seed=3, tokens=(1, 2, 4))]
    vs = [gate.check(r) for r in current]
    md = markdown.render(RunDocument(ENV, tuple(current)), vs, gate)
    head, _, collapsed = md.partition("<details>")
    assert "t.py::b" in head and "🔴 regressed" in head
    assert "🟠 drift" in head and "t.py::c" in head  # output drift is its own category
    assert "<summary>1 unchanged benchmark(s)</summary>" in md
    assert "t.py::a" not in head and "t.py::a" in collapsed
    assert head.index("🔴 regressed |") < head.index("🟠 drift |")


def test_results_document_carries_each_verdict(gate, tmp_path):
    run = RunSession(Settings(compare=True, drift_allowance=0.5), tmp_path)
    run.environment = dict(ENV)
    run.gate = gate
    for r in (rec("t.py::a", 10, seed=1), rec("t.py::b", 20, seed=2)):
        run.add(r)
        run.verdicts.append(gate.check(r))
    doc = RunDocument.loads(run.document().dumps())
    by_id = doc.by_id()
    assert by_id["t.py::b"].verdict["category"] == "regressed" and by_id["t.py::b"].verdict["failed"] is True
    assert by_id["t.py::a"].verdict["category"] == "unchanged"
    rows = verdicts.verdict_rows(doc)
    assert [(r.benchmark, r.category, r.source) for r in rows] == [
        ("t.py::b", "regressed", "gate"), ("t.py::a", "unchanged", "gate")]
    assert rows[0].metrics == ("latency_ms",)
    # a document without verdicts keeps its old form
    assert "verdict" not in RunDocument(ENV, (rec("t.py::a", 10),)).to_json()["benchmarks"][0]


def test_verdict_rows_from_a_baseline():
    base = make_doc("a" * 40, seed=1)
    slow = make_doc("b" * 40, seed=2, factor=1.6)
    # these documents record no host: +60% latency is reported, not judged across them
    untrusted = verdicts.verdict_rows(slow, base)
    assert untrusted and verdicts.counts(untrusted)["regressed"] == 0
    assert any("no drift estimate for this host" in r.detail for r in untrusted)
    known = Policy(drift_allowance=0.5)  # a host whose drift its owner configured
    rows = verdicts.verdict_rows(slow, base, policy=known)
    assert rows and all(r.category == "regressed" and r.source == "baseline" for r in rows)
    same = verdicts.verdict_rows(make_doc("c" * 40, seed=3), base, policy=known)
    assert verdicts.counts(same)["regressed"] == 0


BMF_MEASURE_KEYS = {"value", "lower_value", "upper_value"}


def _check_bmf(data):
    """Bencher's published BMF schema: object -> object -> {value (required), lower_value,
    upper_value}, all numbers; names at most 1024 (benchmark) and 64 (measure) characters."""
    assert isinstance(data, dict) and data
    for bench, measures in data.items():
        assert isinstance(bench, str) and 0 < len(bench) <= 1024
        assert isinstance(measures, dict) and measures
        for measure, metric in measures.items():
            assert 0 < len(measure) <= 64
            assert "value" in metric and set(metric) <= BMF_MEASURE_KEYS
            assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in metric.values())
            assert metric.get("lower_value", metric["value"]) <= metric["value"] <= metric.get(
                "upper_value", metric["value"])


def test_bencher_metric_format():
    doc = make_doc("d" * 40)
    data = json.loads(json.dumps(export.bencher_metric_format(doc)))
    _check_bmf(data)
    llm = data["suites/test_llm.py::test_llm[sdpa-compile]"]
    lat = doc.by_id()["suites/test_llm.py::test_llm[sdpa-compile]"].metrics["latency_ms"]
    assert llm["latency_ms"] == {"value": lat.median, "lower_value": lat.ci_low, "upper_value": lat.ci_high}
    assert llm["speedup_vs_eager"]["value"] == 2.0


def test_export_command_writes_bencher(tmp_path, capsys):
    from pytest_mmperf.cli import main

    path = tmp_path / "r.json"
    path.write_text(make_doc("e" * 40).dumps())
    out = tmp_path / "bmf.json"
    assert main(["export", "--json", str(path), "--format", "bencher", "-o", str(out)]) == 0
    _check_bmf(json.loads(out.read_text()))
    assert "bencher run --adapter json" in capsys.readouterr().out


def test_pytest_benchmark_json_uses_its_own_statistics():
    import pytest_benchmark
    from pytest_benchmark.stats import Stats

    doc = make_doc("f" * 40)
    data = benchmark_json.to_pytest_benchmark(doc)
    assert data["version"] == pytest_benchmark.__version__
    one = {b["fullname"]: b for b in data["benchmarks"]}["suites/test_llm.py::test_llm[sdpa]"]
    expected = Stats()
    for v in doc.by_id()["suites/test_llm.py::test_llm[sdpa]"].metrics["latency_ms"].samples:
        expected.update(v / 1e3)
    for key, value in expected.as_dict().items():
        assert one["stats"][key] == value, key
    assert one["extra_info"]["mmperf_fingerprint"] == doc.fingerprint and one["param"] == "sdpa"


def test_progress_line_and_eta():
    r = replace(rec("suites/test_llm.py::test_llm[sdpa]", 40.0),
                speedup_vs_eager=Speedup(median=1.62, ci_low=1.55, ci_high=1.70))
    p = Progress(started_s=100.0, total=4)
    line = p.line(r, {"category": "unchanged"}, now_s=130.0)
    assert line.startswith("[1/4] test_llm[sdpa]  latency ")
    assert "speedup 1.62× [1.55..1.70]" in line and "unchanged" in line
    assert line.endswith("(elapsed 30s, ETA 1m30s)")
    assert p.line(r, None, now_s=131.0).startswith("[1/4]")  # a confirmation rerun is not counted twice
    assert duration_text(3725) == "1h02m" and duration_text(float("nan")) == "?"
    assert Progress(started_s=0.0).line(r, None, now_s=5.0).endswith("(elapsed 5s)")
