"""Synthetic results documents for the history, report and export tests (no torch, no models)."""

from __future__ import annotations

import numpy as np

from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord, RunDocument, Speedup

ENVIRONMENT = {"fingerprint": "cpu-test-0123abcd", "device": "cpu", "python": "3.11", "torch": "2.13.0",
               "cpu_model": "Test CPU @ 3.0GHz"}

# (id, workload, task, levers, eager latency ms, speedup, phases)
BENCHMARKS = (
    ("suites/test_llm.py::test_llm[eager]", "llm", "t2t", (), 120.0, None, ("ttft_ms", "tpot_ms")),
    ("suites/test_llm.py::test_llm[sdpa]", "llm", "t2t", ("sdpa",), 110.0, 1.09, ("ttft_ms", "tpot_ms")),
    ("suites/test_llm.py::test_llm[sdpa-compile]", "llm", "t2t", ("sdpa", "compile"), 60.0, 2.0,
     ("ttft_ms", "tpot_ms")),
    ("suites/test_speech.py::test_s2st[eager]", "speech", "s2st", (), 300.0, None, ("encoder_ms", "vocoder_ms")),
    ("suites/test_speech.py::test_s2st[sdpa]", "speech", "s2st", ("sdpa",), 280.0, 1.07,
     ("encoder_ms", "vocoder_ms")),
    ("suites/test_recommender.py::test_hstu[sdpa]", "recommender", "ranking", ("sdpa",), 40.0, 2.2, ()),
)


def make_doc(
    commit: str,
    *,
    seed: int = 0,
    factor: float = 1.0,
    created: str = "2024-06-01T00:00:00+00:00",
    branch: str | None = "main",
    benchmarks: tuple[tuple[object, ...], ...] = BENCHMARKS,
    rename: dict[str, str] | None = None,
) -> RunDocument:
    """One run: every benchmark's latency scaled by ``factor`` (1.15 = a 15% regression)."""
    rng = np.random.default_rng(seed)
    records = []
    for bid, workload, task, levers, lat, speedup, phases in benchmarks:
        assert isinstance(lat, float)
        base = lat * factor * (1 + 0.01 * rng.standard_normal())

        def samples(level: float) -> list[float]:
            return [float(level * (1 + 0.02 * rng.standard_normal())) for _ in range(7)]

        metrics = {
            "latency_ms": MetricRecord.from_samples("latency_ms", samples(base)),
            "tokens_per_s": MetricRecord.from_samples("tokens_per_s", samples(32_000.0 / base)),
            "peak_memory_bytes": MetricRecord.from_samples("peak_memory_bytes", [2.0e8] * 7),
        }
        for i, phase in enumerate(phases):  # type: ignore[attr-defined]
            metrics[phase] = MetricRecord.from_samples(phase, samples(base * (0.3 if i == 0 else 0.02)))
        sp = None
        if speedup is not None:
            assert isinstance(speedup, float)
            sp = Speedup(median=speedup, ci_low=speedup * 0.95, ci_high=speedup * 1.05)
        profile = {"op_share": {"linear": 0.8, "attention": 0.12, "elementwise": 0.05, "other": 0.03}} \
            if workload == "llm" else None
        name = str(bid)
        records.append(BenchmarkRecord(
            id=(rename or {}).get(name, name), workload=str(workload), task=str(task),
            optimizations=tuple(levers), scale="tiny", device="cpu", batch_size=1,  # type: ignore[arg-type]
            metrics=metrics, speedup_vs_eager=sp, profile=profile,
        ))
    return RunDocument(
        environment=dict(ENVIRONMENT), benchmarks=tuple(records), commit=commit, branch=branch,
        created=created, tool_version="0.1.0", settings={"scale": "tiny"},
    )


def history_docs(n: int = 6, step_at: int | None = None, factor: float = 1.15) -> list[RunDocument]:
    """``n`` runs, a day apart; from run ``step_at`` on, every latency is ``factor`` times higher."""
    return [
        make_doc(
            f"{i:02d}" + "c0ffee" * 6 + "ab",
            seed=i,
            factor=factor if step_at is not None and i >= step_at else 1.0,
            created=f"2024-06-{i + 1:02d}T12:00:00+00:00",
        )
        for i in range(n)
    ]
