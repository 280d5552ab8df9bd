"""The plugin as users meet it, through pytester (in-process pytest runs)."""

import json
import subprocess
import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]

BENCH = textwrap.dedent(
    """
    import pytest

    def work(n):
        return sum(i * i for i in range(n))

    @pytest.mark.mmperf(workload="llm", task="t2t", batch_size=2)
    def test_x(mmperf):
        assert mmperf(work, 3000) > 0

    def test_phases(mmperf):
        def generate():
            with mmperf.phase("ttft"):
                work(500)
            for _ in range(3):
                with mmperf.phase("tpot"):
                    work(100)
        mmperf(generate)

    def test_plain():
        assert True
    """
)
FAST = ["--mmperf-rounds=5", "--mmperf-max-time=0.1", "--mmperf-history=off"]


def test_benchmarks_skip_without_the_flag(pytester):
    pytester.makepyfile(BENCH)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*run with --mmperf*"])


def test_results_document(pytester):
    pytester.makepyfile(BENCH)
    result = pytester.runpytest("--mmperf", "--mmperf-json=r.json", *FAST)
    result.assert_outcomes(passed=3)
    doc = json.loads((pytester.path / "r.json").read_text())
    assert doc["schema_version"] == 1
    assert doc["environment"]["device"] == "cpu"
    assert doc["environment"]["fingerprint"]
    benches = {b["id"].split("::")[-1]: b for b in doc["benchmarks"]}
    assert set(benches) == {"test_x", "test_phases"}
    x = benches["test_x"]
    assert (x["workload"], x["task"], x["batch_size"], x["optimizations"]) == ("llm", "t2t", 2, [])
    lat = x["metrics"]["latency_ms"]
    assert lat["unit"] == "ms" and lat["direction"] == "lower"
    assert len(lat["samples"]) >= 5 and lat["ci_low"] <= lat["median"] <= lat["ci_high"]
    process = x["metrics"]["process_peak_rss_bytes"]
    assert process["median"] > 0 and not process["gated"]  # the process's figure: reported only
    assert x["metrics"]["peak_memory_bytes"]["median"] == 0  # pure Python: no tensor allocated
    assert "first_call_ms" in x["metrics"]
    ratio = x["metrics"]["cpu_wall_ratio"]
    assert len(ratio["samples"]) == len(lat["samples"]) and not ratio["gated"]
    contended = x["metrics"]["contended_rounds_count"]
    assert 0 <= contended["median"] <= len(lat["samples"]) and not contended["gated"]
    phases = benches["test_phases"]["metrics"]
    calls = benches["test_phases"]["params"]["iterations_per_round"]  # a short call: calibrated
    rounds = len(phases["latency_ms"]["samples"])
    assert len(phases["ttft_ms"]["samples"]) == calls * rounds
    assert phases["tpot_ms"]["rounds"] == [r for r in range(rounds) for _ in range(3 * calls)]
    assert "rounds" not in phases["latency_ms"]  # one per round: sample i is round i
    result.stdout.fnmatch_lines(["*pytest-mmperf: 2 benchmark(s) on cpu-*", "*test_x*"])


def test_memory_is_the_benchmarks_own(pytester):
    """A tensor allocated and freed inside the call is the call's peak; memory held before the
    call (a 'model') is not, and the same call gives the same figure in another benchmark."""
    pytester.makepyfile(
        """
        import torch

        held = torch.ones(4 * 2**20 // 4)  # 4 MiB alive before and after: not the call's own

        def call():
            x = torch.ones(2**20 // 4)  # 1 MiB, freed when the call returns
            return float(x.sum())

        def test_a(mmperf):
            mmperf(call)

        def test_b(mmperf):
            big = torch.ones(8 * 2**20 // 4)  # more held memory before the call
            mmperf(call)
            del big
        """
    )
    result = pytester.runpytest("--mmperf", "--mmperf-json=r.json", *FAST)
    result.assert_outcomes(passed=2)
    doc = json.loads((pytester.path / "r.json").read_text())
    peaks = [b["metrics"]["peak_memory_bytes"] for b in doc["benchmarks"]]
    assert peaks[0]["samples"] == peaks[1]["samples"]  # the same call, the same figure
    assert 2**20 <= peaks[0]["median"] < 2**20 + 64  # 1 MiB and the 4-byte sum
    assert all(p["gated"] for p in peaks)


def test_user_check_failure_names_metric_value_ci_and_bound(pytester):
    pytester.makepyfile(
        """
        def test_slow(mmperf):
            mmperf(sum, range(1000))
            mmperf.check("latency_ms", below=1e-9)
        """
    )
    result = pytester.runpytest("--mmperf", *FAST)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*latency_ms median * ms (median *, 95% CI *..*, n=*) is not below the bound 1e-09 ms*"]
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--mmperf-device=tpu"], "*--mmperf-device: 'tpu' is not allowed (must be one of auto, cpu, cuda)*"),
        (["--mmperf-scale=huge"], "*--mmperf-scale: 'huge' is not allowed*"),
        (["--mmperf", "--mmperf-device=cuda"], "*--mmperf-device=cuda: no CUDA device is visible*"),
    ],
)
def test_bad_option_is_a_one_line_usage_error(pytester, args, needle):
    pytester.makepyfile(BENCH)
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([needle])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_ini_keys_and_marker_overrides(pytester):
    pytester.makeini("[pytest]\nmmperf_rounds = 6\nmmperf_max_rounds = 6\nmmperf_history = off\n")
    pytester.makepyfile(
        """
        import pytest

        def test_default(mmperf):
            mmperf(sum, range(10))

        @pytest.mark.mmperf(rounds=9, max_rounds=9)
        def test_marked(mmperf):
            mmperf(sum, range(10))
        """
    )
    result = pytester.runpytest("--mmperf", "--mmperf-json=r.json")
    result.assert_outcomes(passed=2)
    doc = json.loads((pytester.path / "r.json").read_text())
    n = {b["id"].split("::")[-1]: b["metrics"]["latency_ms"]["n"] for b in doc["benchmarks"]}
    assert n == {"test_default": 6, "test_marked": 9}


def test_interleaved_speedup(pytester):
    pytester.makepyfile(
        """
        def work(n):
            return sum(i * i for i in range(n))

        def test_lever(mmperf):
            mmperf.describe(workload="llm", task="t2t", optimizations=["sdpa"])
            slow, fast = mmperf.interleaved(lambda: work(40000), lambda: work(10000))
            assert slow > fast
        """
    )
    result = pytester.runpytest("--mmperf", "--mmperf-json=r.json", "--mmperf-rounds=8", "--mmperf-max-time=0.1",
                                "--mmperf-history=off")
    result.assert_outcomes(passed=1)
    (b,) = json.loads((pytester.path / "r.json").read_text())["benchmarks"]
    sp = b["speedup_vs_eager"]
    # 4x the work: the speedup is far above 1 whatever the noise
    assert sp["ci_low"] <= sp["median"] <= sp["ci_high"]
    assert sp["median"] > 2
    assert "eager_latency_ms" in b["metrics"]
    assert b["optimizations"] == ["sdpa"]


def test_measuring_twice_is_an_error(pytester):
    pytester.makepyfile(
        """
        def test_twice(mmperf):
            mmperf(sum, [1])
            mmperf(sum, [1])
        """
    )
    result = pytester.runpytest("--mmperf", *FAST)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*mmperf measures once per test*"])


def test_coexists_with_pytest_benchmark(pytester):
    pytester.makepyfile(
        """
        def test_theirs(benchmark):
            benchmark(sum, range(100))

        def test_ours(mmperf):
            mmperf(sum, range(100))
        """
    )
    result = pytester.runpytest("--mmperf", *FAST, "--benchmark-disable-gc")
    result.assert_outcomes(passed=2)


def test_pytest_benchmark_json_export(pytester):
    pytester.makepyfile(BENCH)
    result = pytester.runpytest("--mmperf", *FAST, "--mmperf-benchmark-json=pb.json")
    result.assert_outcomes(passed=3)
    data = json.loads((pytester.path / "pb.json").read_text())
    names = sorted(b["name"] for b in data["benchmarks"])
    assert names == ["test_phases", "test_x"]
    st = data["benchmarks"][0]["stats"]
    assert st["min"] <= st["median"] <= st["max"] and st["rounds"] == len(st["data"])
    assert "machine_info" in data and "commit_info" in data


def test_help_lists_one_group():
    out = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True, check=True).stdout
    assert "pytest-mmperf" in out
    for flag in ("--mmperf", "--mmperf-device", "--mmperf-scale", "--mmperf-json", "--mmperf-baseline-dir",
                 "--mmperf-save-baseline", "--mmperf-compare", "--mmperf-history"):
        assert flag in out
    assert "mmperf_device" in out  # ini keys


def test_loading_the_plugin_imports_neither_torch_nor_transformers(tmp_path):
    (tmp_path / "test_a.py").write_text("def test_a():\n    pass\n")
    code = (
        "import sys, pytest\n"
        f"ret = pytest.main(['-q', '-p', 'no:cacheprovider', {str(tmp_path)!r}])\n"
        "assert 'pytest_mmperf.plugin' in sys.modules, 'plugin not loaded'\n"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "print('HEAVY', bad)\n"
        "sys.exit(ret)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "HEAVY []" in out.stdout


def test_profile_characterization_in_document_and_summary(pytester):
    pytester.makepyfile(
        """
        import torch

        def test_linear(mmperf):
            lin = torch.nn.Linear(512, 512)
            x = torch.randn(64, 512)

            def step():
                with torch.inference_mode():
                    for _ in range(4):
                        with mmperf.phase("tpot"):
                            lin(x)

            mmperf(step)
        """
    )
    result = pytester.runpytest("--mmperf", "--mmperf-profile", "--mmperf-json=r.json", *FAST)
    result.assert_outcomes(passed=1)
    (b,) = json.loads((pytester.path / "r.json").read_text())["benchmarks"]
    assert b["profile"]["op_share"]["linear"] > 0.3
    assert b["profile"]["ops_per_decode_step"] > 0
    result.stdout.fnmatch_lines(["*characterization*", "*test_linear*linear*"])
