from pytest_mmperf.cli import main
from pytest_mmperf.report.paper_tables import phase_shares, phase_table, speedup_table
from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord, RunDocument, Speedup


def bench(bid, opts, speedup=None, **metrics):
    return BenchmarkRecord(
        id=bid, workload="llm", task="t2t", optimizations=tuple(opts), scale="tiny", device="cpu", batch_size=1,
        metrics={k: MetricRecord.from_samples(k, v) for k, v in metrics.items()},
        speedup_vs_eager=Speedup(*speedup) if speedup else None,
    )


DOC = RunDocument(
    environment={"fingerprint": "cpu-x"},
    benchmarks=(
        bench("s.py::test_llm[t2t-eager]", [], latency_ms=[100.0, 100.0], ttft_ms=[20.0, 20.0],
              tpot_ms=[10.0] * 8),
        bench("s.py::test_llm[t2t-sdpa]", ["sdpa"], (1.1, 1.0, 1.2), latency_ms=[90.0]),
        bench("s.py::test_llm[t2t-stack]", ["sdpa", "static_cache", "compile"], (1.5, 1.4, 1.6), latency_ms=[60.0]),
    ),
)


def test_phase_shares_sum_per_step_phases_per_call():
    shares = phase_shares(DOC.benchmarks[0])
    assert shares == {"ttft": 0.2, "tpot": 0.4}  # 4 decode steps of 10 ms per 100 ms call


def test_speedup_table_has_one_column_per_lever_set():
    table = speedup_table(DOC)
    assert "| workload/task | sdpa | stack |" in table
    assert "| llm/t2t | 1.10x [1.00, 1.20] | 1.50x [1.40, 1.60] |" in table


def test_phase_table_and_cli(tmp_path, capsys):
    assert "ttft 20%" in phase_table(DOC)
    path = tmp_path / "r.json"
    path.write_text(DOC.dumps())
    assert main(["speedups", str(path)]) == 0
    assert "llm/t2t" in capsys.readouterr().out
    assert main(["phases", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
