"""pytest-benchmark suites under --mmperf, unchanged; without --mmperf, pytest-benchmark alone."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# loaded before any in-process pytester run: a run restores sys.modules afterwards, and
# SQLAlchemy cannot be imported a second time in one process (conftest.py does the same for torch)
import pytest_mmperf.history.sql  # noqa: F401
from pytest_mmperf.benchmark_compat import marker_keywords
from pytest_mmperf.history import open_store

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _not_an_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    # pytest-benchmark disables itself when PYTEST_XDIST_WORKER is set; the runs these tests
    # start are single-process runs even when this file runs under `pytest -n`
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)

# written the pytest-benchmark way: fixture, pedantic with setup/rounds/warmup, extra_info, group
PB_SUITE = textwrap.dedent(
    """
    import pytest

    def work(n=2000):
        return sum(i * i for i in range(n))

    def test_call(benchmark):
        assert benchmark(work, 1000) == sum(i * i for i in range(1000))

    SETUPS = []

    def test_pedantic(benchmark):
        def setup():
            SETUPS.append(1)
            return (500,), {}
        result = benchmark.pedantic(work, setup=setup, rounds=6, warmup_rounds=2)
        assert result == sum(i * i for i in range(500))
        benchmark.extra_info["items"] = 500
        benchmark.group = "pedantic"
        assert len(SETUPS) == 8  # one per warm-up and measured round
        if benchmark.stats is not None:
            assert benchmark.stats["rounds"] == 6

    @pytest.mark.benchmark(group="small", min_rounds=5)
    def test_marker_group(benchmark):
        benchmark.pedantic(work, args=(100,), iterations=10, rounds=5)

    @pytest.mark.mmperf(workload="llm", task="t2t")
    def test_native(mmperf):
        mmperf(work, 300)

    def test_not_a_benchmark():
        assert True
    """
)
FAST = ["--mmperf-rounds=5", "--mmperf-max-time=0.1", "--mmperf-history=off"]
BIN = Path(sys.executable).parent


def _ids(doc):
    return {b["id"].split("::")[-1]: b for b in doc["benchmarks"]}


def test_pytest_benchmark_suite_lands_in_the_results_document(pytester):
    pytester.makepyfile(test_pb=PB_SUITE)
    result = pytester.runpytest("--mmperf", "--mmperf-json=r.json", *FAST)
    result.assert_outcomes(passed=5)
    doc = json.loads((pytester.path / "r.json").read_text())
    benches = _ids(doc)
    assert set(benches) == {"test_call", "test_pedantic", "test_marker_group", "test_native"}
    assert doc["environment"]["fingerprint"] and doc["environment"]["cpu_model"]
    call = benches["test_call"]
    assert len(call["metrics"]["latency_ms"]["samples"]) >= 5
    assert any(name.endswith("_bytes") for name in call["metrics"])  # memory
    pedantic = benches["test_pedantic"]
    assert len(pedantic["metrics"]["latency_ms"]["samples"]) == 6  # exactly the rounds asked for
    assert pedantic["params"]["extra_info"] == {"items": 500}
    assert pedantic["params"]["group"] == "pedantic"
    grouped = benches["test_marker_group"]
    assert grouped["params"]["group"] == "small" and grouped["params"]["iterations"] == 10
    assert len(grouped["metrics"]["latency_ms"]["samples"]) == 5


def test_a_plain_call_also_keeps_pytest_benchmarks_own_statistic_and_the_export_carries_it(pytester):
    pytester.makepyfile(test_pb=PB_SUITE)
    result = pytester.runpytest("--mmperf", "--mmperf-json=r.json", "--benchmark-json=pb.json", *FAST)
    result.assert_outcomes(passed=5)
    benches = _ids(json.loads((pytester.path / "r.json").read_text()))
    short = benches["test_call"]["metrics"]["short_round_latency_ms"]
    assert short["gated"] is False and len(short["samples"]) >= 5
    assert benches["test_call"]["params"]["short_round_iterations"] >= 1
    # pedantic (the user fixed rounds and iterations: already pytest-benchmark's statistic) and a
    # native mmperf benchmark measure no second series
    assert all("short_round_latency_ms" not in benches[n]["metrics"] for n in ("test_pedantic", "test_native"))
    export = {b["name"]: b for b in json.loads((pytester.path / "pb.json").read_text())["benchmarks"]}
    call = export["test_call"]
    assert call["extra_info"]["mmperf_timing"] == "short_round_latency_ms"
    assert call["stats"]["median"] * 1e3 == pytest.approx(short["median"])
    assert call["extra_info"]["latency_ms"] == pytest.approx(benches["test_call"]["metrics"]["latency_ms"]["median"])
    assert export["test_pedantic"]["extra_info"]["mmperf_timing"] == "latency_ms"


def test_without_mmperf_pytest_benchmark_behaves_as_alone(pytester):
    pytester.makepyfile(test_pb=PB_SUITE)
    with_us = pytester.runpytest("-p", "no:cacheprovider")
    alone = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:mmperf", "-p", "no:pytester")
    # the mmperf benchmark needs our plugin: skipped with us, an error (fixture not found) alone
    with_us.assert_outcomes(passed=4, skipped=1)
    alone.assert_outcomes(passed=4, errors=1)
    for out in (with_us, alone):
        out.stdout.fnmatch_lines(["*benchmark 'small': 1 tests*", "*test_marker_group*"])
        assert "pytest-mmperf" not in out.stdout.str()


def test_benchmark_only_runs_mmperf_benchmarks_too(pytester):
    pytester.makepyfile(test_pb=PB_SUITE)
    result = pytester.runpytest("--mmperf", "--benchmark-only", "-rs", *FAST)
    result.assert_outcomes(passed=4, skipped=1)
    result.stdout.fnmatch_lines(["*Skipping non-benchmark (--benchmark-only active)*"])


def test_benchmark_skip_skips_both_kinds(pytester):
    pytester.makepyfile(test_pb=PB_SUITE)
    result = pytester.runpytest("--mmperf", "--benchmark-skip", "--mmperf-json=r.json", *FAST)
    result.assert_outcomes(passed=1, skipped=4)
    assert json.loads((pytester.path / "r.json").read_text())["benchmarks"] == []


def test_benchmark_disable_runs_each_call_once_unmeasured(pytester):
    pytester.makepyfile(
        test_once="""
        CALLS = []

        def test_once(benchmark):
            assert benchmark(CALLS.append, 1) is None
            assert CALLS == [1]

        def test_native_once(mmperf):
            mmperf(CALLS.append, 2)
            mmperf.check("latency_ms", below=1.0)
            assert CALLS.count(2) == 1
        """
    )
    result = pytester.runpytest("--mmperf", "--benchmark-disable", "--mmperf-json=r.json", *FAST)
    result.assert_outcomes(passed=2)
    assert json.loads((pytester.path / "r.json").read_text())["benchmarks"] == []


def test_bad_marker_keyword_is_a_one_line_failure(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.benchmark(rounds=3)
        def test_bad(benchmark):
            benchmark(len, "x")
        """
    )
    result = pytester.runpytest("--mmperf", *FAST)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*benchmark mark can't have 'rounds' keyword argument*"])
    assert "Traceback" not in result.stdout.str()


def test_marker_keywords_map_onto_mmperf_settings():
    assert marker_keywords({"min_rounds": 9, "max_time": 2.0, "group": "g", "timer": object}) == {
        "rounds": 9, "max_time": 2.0, "group": "g"}
    assert marker_keywords({"warmup": False}) == {"warmup": 0}
    assert marker_keywords({"warmup": True, "warmup_iterations": 4}) == {"warmup": 4}
    with pytest.raises(ValueError, match="'bogus'"):
        marker_keywords({"bogus": 1})


def _cli() -> str:
    for name in ("pytest-benchmark", "py.test-benchmark"):
        if os.access(BIN / name, os.X_OK):
            return str(BIN / name)
    pytest.skip("pytest-benchmark's console script is not installed")


def test_pytest_benchmark_compare_reads_our_saved_run(pytester):
    pytester.makepyfile(test_pb=PB_SUITE)
    storage = f"file://{pytester.path / 'store'}"
    result = pytester.runpytest("--mmperf", *FAST, "--benchmark-save=mmperf", f"--benchmark-storage={storage}",
                                "--mmperf-benchmark-json=pb.json", "--benchmark-json=own.json")
    result.assert_outcomes(passed=5)
    # pytest-benchmark's own --benchmark-json under --mmperf writes the same export
    assert {b["name"] for b in json.loads((pytester.path / "own.json").read_text())["benchmarks"]} == {
        "test_call", "test_pedantic", "test_marker_group", "test_native"}
    saved = sorted((pytester.path / "store").rglob("0001_mmperf.json"))
    assert len(saved) == 1
    data = json.loads(saved[0].read_text())
    import pytest_benchmark

    assert data["version"] == pytest_benchmark.__version__
    st = {b["name"]: b["stats"] for b in data["benchmarks"]}["test_pedantic"]
    assert st["rounds"] == 6 and st["min"] <= st["q1"] <= st["median"] <= st["q3"] <= st["max"]
    assert st["outliers"].count(";") == 1

    # pytest-benchmark's own command line reads the saved run and the exported file
    for what in ("0001", str(pytester.path / "pb.json")):
        out = subprocess.run([_cli(), "--storage", storage, "compare", "--columns=min,median,rounds", what],
                             capture_output=True, text=True, check=False, cwd=pytester.path, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "test_pedantic" in out.stdout and "test_call" in out.stdout

    # --benchmark-compare in a plain pytest-benchmark run compares with our run
    plain = pytester.runpytest("-p", "no:mmperf", "-p", "no:pytester", "-k", "not native",
                               "--benchmark-compare=0001", f"--benchmark-storage={storage}")
    plain.assert_outcomes(passed=4)
    # pytest-benchmark sorts its table by time, so the rows' order depends on this run's speed
    for line in ("*test_call (NOW)*", "*test_call (0001_mmperf)*", "*test_marker_group (0001_mmperf)*"):
        plain.stdout.fnmatch_lines([line])


def test_progress_line_per_benchmark_under_q(pytester):
    pytester.makepyfile(test_pb=PB_SUITE)
    result = pytester.runpytest("-q", "--mmperf", *FAST)
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines([
        "*[[]?/4] test_call  latency * ms*(elapsed *",
        "*[[]?/4] test_pedantic  latency * ms*",
        "*[[]4/4] test_native  latency * ms*(elapsed *)",
    ])


def test_pytest_benchmark_tests_go_through_baseline_gate_and_history(pytester):
    pytester.makepyfile(test_pb=PB_SUITE)
    # fresh processes (a process's peak RSS grows over in-process runs), absolute timings reported
    # only (this machine is shared): what is gated is the benchmarks' memory
    run = ["--mmperf", "--mmperf-rounds=5", "--mmperf-max-time=0.1", "--mmperf-history=sqlite:///h.db",
           "--mmperf-absolute=report"]
    saved = pytester.runpytest_subprocess(*run, "--mmperf-save-baseline")
    saved.assert_outcomes(passed=5)
    compared = pytester.runpytest_subprocess(*run, "--mmperf-compare", "--mmperf-json=r.json")
    compared.assert_outcomes(passed=5)
    compared.stdout.fnmatch_lines(["*pytest-mmperf comparison: 4 benchmark(s)*"])
    doc = json.loads((pytester.path / "r.json").read_text())
    assert all(b.get("verdict", {}).get("category") for b in doc["benchmarks"])
    with open_store("sqlite:///h.db", pytester.path) as store:
        runs = store.runs()
        assert len(runs) == 2
        ids = {b.id.split("::")[-1] for b in store.load_run(runs[-1].id).benchmarks}
    assert {"test_call", "test_pedantic", "test_marker_group"} <= ids
