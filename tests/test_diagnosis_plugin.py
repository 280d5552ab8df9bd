"""The diagnosis through pytest: a baseline saved with compact operator profiles, a changed
benchmark whose failure message names its cause, the Markdown summary's collapsed table, and no
extra profiled call for a passing benchmark."""

import json

# pytester's in-process runs restore sys.modules after each run, and numpy/scipy extension
# modules cannot load twice in one process: load what the gate imports before any run.
import pytest_mmperf.judge.gate
import pytest_mmperf.report.markdown  # noqa: F401
from pytest_mmperf.measure.profiling import TORCH_TRACE_LOGGER, quiet_torch_trace

pytest_plugins = ["pytester"]

BENCH = '''
import os

import pytest
import torch

from pytest_mmperf.judge.drift import output_fingerprint

A = torch.randn(32, 32, generator=torch.Generator().manual_seed(0))
W = torch.randn(32, 32, generator=torch.Generator().manual_seed(1)) / 8
PLANTED = bool(os.environ.get("MMPERF_TEST_PLANT"))


def work(steps=50):
    x = A
    for _ in range(steps):
        x = torch.tanh(x @ W)
        if PLANTED:  # the plant: one more elementwise op a step, and so a different output
            x = x * 1.5
    return x


@pytest.mark.mmperf(workload="llm", task="t2t")
def test_changed(mmperf):
    out = mmperf(work)
    mmperf.quality = {"output": output_fingerprint(tokens=[[int(out.sum().item() * 1000) % 997]])}


@pytest.mark.mmperf(workload="llm", task="t2t", optimizations=["sdpa"])
def test_same(mmperf):
    mmperf(lambda: torch.relu(A @ W))
    mmperf.quality = {"output": output_fingerprint(tokens=[[1, 2, 3]])}
'''

FAST = ["--mmperf", "--mmperf-history=off", "--mmperf-rounds=5", "--mmperf-max-time=0.2",
        "--mmperf-absolute=report", "-p", "no:randomly"]


def test_a_changed_benchmark_names_its_new_operator_and_passing_ones_cost_nothing(pytester, monkeypatch):
    monkeypatch.delenv("MMPERF_TEST_PLANT", raising=False)
    pytester.makepyfile(test_bench=BENCH)
    pytester.runpytest(*FAST, "--mmperf-save-baseline").assert_outcomes(passed=2)
    (path,) = (pytester.path / "baselines").glob("*.json")
    saved = json.loads(path.read_text())
    ops = {b["id"].split("::")[-1]: b["profile"]["operators"]["ops"] for b in saved["benchmarks"]}
    assert ops["test_changed"]["aten::mm"]["calls"] == 50 and "aten::mul" not in ops["test_changed"]

    monkeypatch.setenv("MMPERF_TEST_PLANT", "1")
    result = pytester.runpytest(*FAST, "--mmperf-compare", "--mmperf-markdown=summary.md",
                                "--mmperf-json=run.json")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    lines = result.outlines
    at = next(i for i, line in enumerate(lines) if "test_changed output drift" in line)
    assert lines[at + 1].strip() == "diagnosis (biggest cause first):"
    # the plant's operators, ahead of any time-only change; which of them costs most is a
    # profiler's self-time split (x * 1.5 shows as mul alone on one machine, with _to_copy,
    # empty_strided and copy_ on another), so only the set is asserted, not its order
    shown = [line.strip() for line in lines[at + 2:at + 6] if line.strip()[:2] in {"1.", "2.", "3.", "4."}]
    assert shown and all(": calls per call 0 -> 50" in line and ". new operator aten::" in line for line in shown)
    assert "Traceback" not in out
    md = (pytester.path / "summary.md").read_text()
    assert "<summary>Why test\\_bench.py::test\\_changed regressed (biggest cause first)</summary>" in md
    assert "| operator | new operator aten::mul: calls per call 0 -\\> 50" in md
    run = {b["id"].split("::")[-1]: b for b in json.loads((pytester.path / "run.json").read_text())["benchmarks"]}
    # one extra profiled call for the failed benchmark (its profile is in the results), none for the other
    assert run["test_changed"]["profile"]["operators"]["ops"]["aten::mul"]["calls"] == 50
    assert run["test_same"]["profile"] is None
    causes = run["test_changed"]["verdict"]["diagnosis"]["causes"]
    subjects = [c["subject"] for c in causes]
    assert "aten::mul" in subjects
    assert all(c["subject"] not in ops["test_changed"] for c in causes[:subjects.index("aten::mul") + 1])


def test_quiet_torch_trace_keeps_its_records_from_every_handler(monkeypatch):
    import logging

    monkeypatch.delenv("TORCH_TRACE", raising=False)
    log = logging.getLogger(TORCH_TRACE_LOGGER)
    state = (log.propagate, log.level)
    try:
        assert quiet_torch_trace()
        assert log.propagate and not log.isEnabledFor(logging.CRITICAL)
    finally:
        log.propagate, log.level = state


def test_a_user_asked_trace_is_left_alone(monkeypatch):
    monkeypatch.setenv("TORCH_TRACE", "/tmp/trace")
    assert not quiet_torch_trace()
