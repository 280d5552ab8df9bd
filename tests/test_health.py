"""Lever health that fails a comparison (judge.health): a worse exact count of a lever's own
health metrics, in the gate, mmperf compare and mmperf ab, whatever the timings say."""

from __future__ import annotations

from dataclasses import replace

from gate_data import ENV, rec

from pytest_mmperf.ab.run import health_changes
from pytest_mmperf.judge.gate import Gate
from pytest_mmperf.judge.health import GATED_HEALTH, compare_health
from pytest_mmperf.results import baselines
from pytest_mmperf.results.records import MetricRecord, RunDocument
from pytest_mmperf.settings import Settings


def with_counts(record, **counts: float):
    metrics = dict(record.metrics)
    for name, value in counts.items():
        metrics[name] = MetricRecord.from_samples(name, [value])
    return replace(record, metrics=metrics)


def test_worse_counts_in_their_own_direction_only():
    base = with_counts(rec("t.py::a", 10), recompiles_count=0, compiled_steps_count=2, graph_breaks_count=1)
    same = compare_health(base.metrics, base.metrics)
    assert same == []
    head = with_counts(rec("t.py::a", 10), recompiles_count=7, compiled_steps_count=1, graph_breaks_count=0)
    worse = {c.metric: c.message for c in compare_health(base.metrics, head.metrics)}
    assert worse == {"recompiles_count": "recompiles_count 0 -> 7 (worse)",
                     "compiled_steps_count": "compiled_steps_count 2 -> 1 (worse)"}  # fewer breaks is better
    # a count on one side only (a baseline stored before the lever recorded it) compares nothing
    assert compare_health(rec("t.py::a", 10).metrics, head.metrics) == []
    assert set(GATED_HEALTH) >= {"recompiles_count", "graph_breaks_count", "cuda_graph_rerecords_count"}


def test_the_gate_fails_a_recompiling_lever_even_when_its_timings_are_unchanged(tmp_path):
    base = with_counts(rec("t.py::compiled", 10), recompiles_count=0)
    baselines.save(RunDocument(ENV, (base,), commit="abcdef1234567"), tmp_path / "baselines")
    gate = Gate.open(Settings(compare=True), tmp_path, ENV, ["t.py::compiled"])
    ok = gate.check(with_counts(rec("t.py::compiled", 10, seed=1), recompiles_count=0))
    assert not ok.failed
    bad = gate.check(with_counts(rec("t.py::compiled", 10, seed=1), recompiles_count=7))
    assert bad.failed and bad.details["category"] == "regressed"
    assert "lever health: recompiles_count 0 -> 7 (worse)" in bad.message
    assert bad.details["health"] == [{"metric": "recompiles_count", "base": 0.0, "head": 7.0,
                                      "message": "recompiles_count 0 -> 7 (worse)"}]


def test_ab_names_the_benchmarks_whose_health_got_worse():
    base = RunDocument(ENV, (with_counts(rec("t.py::a", 10), recompiles_count=0),
                             with_counts(rec("t.py::b", 10), recompiles_count=0)))
    head = RunDocument(ENV, (with_counts(rec("t.py::a", 10), recompiles_count=0),
                             with_counts(rec("t.py::b", 10), recompiles_count=3)))
    assert health_changes(base, head) == {"t.py::b": ["recompiles_count 0 -> 3 (worse)"]}


def test_mmperf_compare_fails_on_worse_health(tmp_path, capsys):
    from pytest_mmperf import cli

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(RunDocument(ENV, (with_counts(rec("t.py::c", 10), recompiles_count=0),)).dumps())
    b.write_text(RunDocument(ENV, (with_counts(rec("t.py::c", 10, seed=1), recompiles_count=7),)).dumps())
    assert cli.main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "lever health: recompiles_count 0 -> 7 (worse)" in out
    assert out.index("lever health: recompiles_count 0 -> 7 (worse)") < out.rindex("recompiles_count")  # and diagnosed
