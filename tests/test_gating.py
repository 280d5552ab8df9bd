"""The gate and the Markdown summary as plain objects (no pytest run, no torch)."""

import pytest
from gate_data import ENV, rec

from pytest_mmperf.judge.gate import Gate, GateError
from pytest_mmperf.report.comparison import comparison_lines
from pytest_mmperf.report.markdown import escape, render
from pytest_mmperf.results import baselines
from pytest_mmperf.results.records import DocumentError, RunDocument
from pytest_mmperf.settings import Settings

KNOWN = Settings(compare=True, drift_allowance=0.5)


@pytest.fixture
def gate(tmp_path):
    base = RunDocument(ENV, (rec("t.py::a", 10), rec("t.py::b", 10), rec("t.py::gone", 10)),
                       commit="abcdef1234567")
    baselines.save(base, tmp_path / "baselines")
    # a host whose drift is configured (no history here): timings are judged across sessions
    return Gate.open(KNOWN, tmp_path, ENV, ["t.py::a", "t.py::b", "t.py::new"])


def test_verdicts_and_message(gate):
    ok = gate.check(rec("t.py::a", 10, seed=1))
    assert not ok.failed and ok.details["category"] == "unchanged"
    bad = gate.check(rec("t.py::b", 17, seed=2))
    assert bad.failed
    assert bad.message.startswith("t.py::b latency_ms median +")
    # the interval at the test's level: alpha = 1% / 2 comparisons, two-sided 1 - 2 alpha
    assert "(99% simultaneous CI +" in bad.message and "> 57.5% threshold (configured allowance 50%)" in bad.message
    assert bad.message.endswith("vs baseline baselines/cpu-2c-1t-abc.json @ abcdef1")
    new = gate.check(rec("t.py::new", 10))
    assert not new.failed and new.details["category"] == "inconclusive"
    drifted = gate.check(rec("t.py::a", 10, seed=3, tokens=(1, 5, 3)))
    assert drifted.failed and "output drift: output tokens changed: item 0, first at position 1" in drifted.message
    lines = "\n".join(comparison_lines(gate, [ok, bad, new]))
    assert "1 unchanged, 1 regressed, 1 inconclusive" in lines.replace("0 improved, ", "")
    assert "1 baseline entry not compared in this run" in lines and "gone" in lines


def test_marker_threshold_applies_to_every_metric(gate):
    from dataclasses import replace

    loose = replace(gate.settings, threshold=0.8)
    assert not gate.check(rec("t.py::b", 17, seed=2), settings=loose).failed


def test_confirmation_rerun(gate):
    calls = []

    def rerun_fast():
        calls.append(1)
        return rec("t.py::b", 10, seed=5)

    v = gate.check(rec("t.py::b", 17, seed=2), rerun=rerun_fast,
                   settings=Settings(compare=True, drift_allowance=0.5, confirm_reruns=2, adaptive_reruns=0))
    assert not v.failed and v.details["category"] == "inconclusive" and len(calls) == 1
    assert "not confirmed" in v.message
    v = gate.check(rec("t.py::b", 17, seed=2), rerun=lambda: rec("t.py::b", 17, seed=6),
                   settings=Settings(compare=True, drift_allowance=0.5, confirm_reruns=2, adaptive_reruns=0))
    assert v.failed and "(confirmed by 2 rerun(s))" in v.message


def test_no_baseline_and_foreign_files(tmp_path):
    g = Gate.open(Settings(compare=True), tmp_path, ENV, ["x"])
    assert "no baseline for cpu-2c-1t-abc" in g.notes[0]
    assert not g.check(rec("x", 1)).failed
    other = {**ENV, "torch_threads": 2, "fingerprint": "cpu-2c-2t-zzz"}
    baselines.save(RunDocument(other, (rec("x", 1),)), tmp_path / "baselines")
    explicit = Settings(compare=True, baseline_dir="baselines/cpu-2c-2t-zzz.json")
    with pytest.raises(GateError, match=r"torch_threads 2 \(baseline\) vs 1 \(now\)"):
        Gate.open(explicit, tmp_path, ENV, ["x"])
    forced = Gate.open(Settings(compare=True, compare_force=True), tmp_path, ENV, ["x"])
    assert forced.baseline is not None and "WARNING" in forced.notes[0]
    (tmp_path / "baselines" / "cpu-2c-1t-abc.json").write_text("[]")
    with pytest.raises(DocumentError, match="not a pytest-mmperf results document"):
        Gate.open(Settings(compare=True), tmp_path, ENV, ["x"])


def test_no_baseline_names_the_nearest_one_and_what_differs(tmp_path):
    # a new package release changes the fingerprint: the note says so instead of a bare
    # "nothing to compare", and names the file --mmperf-compare-force would use
    now = {**ENV, "transformers_version": "5.24.0"}
    released = {**now, "transformers_version": "9.9.9", "fingerprint": "cpu-2c-1t-new"}
    far = {**released, "torch_threads": 2, "fingerprint": "cpu-2c-2t-far"}
    for env in (released, far):
        baselines.save(RunDocument(env, (rec("x", 1),)), tmp_path / "baselines")
    note = Gate.open(Settings(compare=True), tmp_path, now, ["x"]).notes[0]
    assert "no baseline for cpu-2c-1t-abc" in note
    assert "the nearest, cpu-2c-1t-new, differs in transformers_version (9.9.9 there, 5.24.0 here)" in note
    assert "--mmperf-compare-force --mmperf-baseline-dir=baselines/cpu-2c-1t-new.json" in note
    # a baseline of the other clock is never "near": counts and times do not compare
    instr = tmp_path / "instr"
    baselines.save(RunDocument({**released, "clock": "instructions", "fingerprint": "cpu-1t-instr-x"},
                               (rec("x", 1),)), instr / "baselines")
    alone = Gate.open(Settings(compare=True), instr, now, ["x"]).notes[0]
    assert "nearest" not in alone and "cpu-1t-instr-x" in alone


def test_markdown_escapes_ids_and_works_without_a_gate(gate):
    assert escape("test_x[a|b*]") == "test\\_x\\[a\\|b\\*\\]"
    doc = RunDocument(ENV, (rec("t.py::a[x|<b>]", 10),))
    md = render(doc, [], None)
    assert "t.py::a\\[x\\|\\<b\\>\\]" in md and "Comparison" not in md
    v = gate.check(rec("t.py::b", 17, seed=2))
    md = render(doc, [v], gate)
    assert "🔴 1 regressed" in md and "t.py::b latency\\_ms median" in md
