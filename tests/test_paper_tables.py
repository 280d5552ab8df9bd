import math

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_mmperf.cli import main
from pytest_mmperf.report.paper_tables import (
    PAPER_FIGURES,
    batch_table,
    geometric_mean,
    phase_shares,
    phase_table,
    progression_table,
    speedup_table,
)
from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord, RunDocument, Speedup


def bench(bid, opts, speedup=None, workload="llm", task="t2t", batch=1, params=None, profile=None,
          rounds=None, **metrics):
    return BenchmarkRecord(
        id=bid, workload=workload, task=task, optimizations=tuple(opts), scale="tiny", device="cpu",
        batch_size=batch,
        metrics={k: MetricRecord.from_samples(k, v, rounds=(rounds or {}).get(k)) for k, v in metrics.items()},
        speedup_vs_eager=Speedup(*speedup) if speedup else None,
        params=params or {}, profile=profile,
    )


DOC = RunDocument(
    environment={"fingerprint": "cpu-x"},
    benchmarks=(
        bench("s.py::test_llm[t2t-eager]", [], latency_ms=[100.0, 100.0], ttft_ms=[20.0, 20.0],
              tpot_ms=[10.0] * 8, params={"progression_step": "eager", "lever_set": "eager"}),
        bench("s.py::test_llm[t2t-sdpa]", ["sdpa"], (1.1, 1.0, 1.2), latency_ms=[90.0],
              params={"progression_step": "attention", "lever_set": "sdpa"}),
        bench("s.py::test_llm[t2t-compiled]", ["sdpa", "static_cache", "compile"], (1.5, 1.4, 1.6),
              latency_ms=[60.0], params={"progression_step": "compiled", "lever_set": "compiled"}),
        bench("s.py::test_llm[t2t-stack]", ["sdpa", "static_cache", "compile", "int8_weight_only"],
              (2.0, 1.8, 2.2), latency_ms=[50.0], params={"progression_step": "stack", "lever_set": "stack"}),
        bench("s.py::test_recommender[ranking-stack]", ["hstu_fused_attention", "compile", "int8_weight_only"],
              (8.0, 7.0, 9.0), workload="recommender", task="ranking", latency_ms=[5.0],
              params={"progression_step": "stack", "lever_set": "stack"}),
    ),
)


def test_phase_shares_sum_per_step_phases_per_round():
    shares = phase_shares(DOC.benchmarks[0])
    assert shares == {"ttft": 0.2, "tpot": 0.4}  # 4 decode steps of 10 ms per 100 ms call


def test_phase_shares_use_round_indices_and_never_exceed_one():
    # round 0: 90 ms of steps in a 100 ms call; round 1: 30 ms in 40 ms. Median x count over the
    # median latency would say (30 x 2) / 70 = 86%; per-round sums say 90% and 75%.
    b = bench("x", [], latency_ms=[100.0, 40.0], tpot_ms=[45.0, 45.0, 15.0, 15.0],
              rounds={"tpot_ms": [0, 0, 1, 1]})
    assert phase_shares(b)["tpot"] == (0.9 + 0.75) / 2


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.floats(0.01, 50.0), min_size=1, max_size=6), min_size=1, max_size=6),
       st.floats(0.0, 5.0))
def test_no_phase_share_above_one(rounds, slack):
    steps = [v for r in rounds for v in r]
    index = [i for i, r in enumerate(rounds) for _ in r]
    latency = [sum(r) + slack for r in rounds]  # phases sit inside the measured call
    b = bench("x", [], latency_ms=latency, tpot_ms=steps, rounds={"tpot_ms": index})
    assert 0.0 <= phase_shares(b)["tpot"] <= 1.0


def test_speedup_table_has_one_column_per_lever_set():
    table = speedup_table(DOC)
    assert "| workload/task | sdpa | compiled | stack |" in table
    assert "| llm/t2t | 1.10x [1.00, 1.20] | 1.50x [1.40, 1.60] | 2.00x [1.80, 2.20] |" in table


def test_progression_shows_measured_beside_the_paper_and_the_cross_workload_mean():
    table = progression_table(DOC)
    assert "1.10x [1.00, 1.20] (paper 0.93-1.13x)" in table
    assert "(paper 5.29x" in table  # Code Llama 7B, compile + quantization
    # geometric mean across the two workloads' stacks: sqrt(2 x 8) = 4, beside the paper's 3.88x
    row = next(line for line in table.splitlines() if line.startswith("| + int8 = stack |"))
    assert "4.00x" in row and "3.88x" in row and "| 2 |" in row


def test_geometric_mean_weights_each_workload_once():
    records = [
        bench("a", ["x"], (2.0, 1.9, 2.1), task="a"),
        bench("b", ["x"], (8.0, 7.9, 8.1), task="b"),  # llm: sqrt(16) = 4
        bench("c", ["x"], (1.0, 0.9, 1.1), workload="speech"),
    ]
    g = geometric_mean(records)
    assert g is not None and g.count == 2
    assert math.isclose(g.value, 2.0)
    assert g.ci_low < g.value < g.ci_high


def test_every_paper_figure_is_a_speedup():
    for (workload, step, batch), figure in PAPER_FIGURES.items():
        assert figure.low > 0 and (figure.high is None or figure.high > figure.low), (workload, step)
        assert batch >= 1


def test_batch_table_lists_shares_kv_bytes_and_the_attention_speedup_per_batch():
    doc = RunDocument(environment={"fingerprint": "cpu-x"}, benchmarks=(
        bench("e1", [], batch=1, latency_ms=[10.0], kv_cache_bytes=[2.0**20],
              profile={"op_share": {"attention": 0.1, "kv_cache": 0.02, "linear": 0.8}}),
        bench("e8", [], batch=8, latency_ms=[30.0], kv_cache_bytes=[8 * 2.0**20],
              profile={"op_share": {"attention": 0.3, "kv_cache": 0.05, "linear": 0.6}}),
        bench("f8", ["hstu_fused_attention"], (3.0, 2.5, 3.5), batch=8, latency_ms=[10.0],
              params={"progression_step": "attention"}),
    ))
    table = batch_table(doc)
    assert "| llm/t2t | 1 | 10% | 2% | 1.00 MiB | - |" in table
    assert "| llm/t2t | 8 | 30% | 5% | 8.00 MiB | 3.00x [2.50, 3.50] (hstu_fused_attention) |" in table


def test_phase_table_and_cli(tmp_path, capsys):
    assert "ttft 20%" in phase_table(DOC)
    path = tmp_path / "r.json"
    path.write_text(DOC.dumps())
    assert main(["speedups", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Progression at batch 1" in out and "llm/t2t" in out
    assert main(["phases", str(path)]) == 0
    assert "Batch findings" in capsys.readouterr().out
    assert main(["phases", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
