"""Export in pytest-benchmark's JSON format, so tools built for it read our results.

pytest-benchmark's ``--benchmark-compare``, ``pytest-benchmark compare`` and
github-action-benchmark's ``pytest`` tool read this file. Only ``latency_ms`` maps onto its
model (one timing per benchmark, in seconds); the other metrics ride along in ``extra_info``.
"""

from __future__ import annotations

import statistics
from typing import Any

from pytest_mmperf.results.records import RunDocument


def to_pytest_benchmark(doc: RunDocument) -> dict[str, Any]:
    env = doc.environment
    benches = []
    for b in doc.benchmarks:
        lat = b.metrics.get("latency_ms")
        if lat is None:
            continue
        data = [v / 1e3 for v in lat.samples]  # seconds, as pytest-benchmark stores them
        q1, q3 = lat.q1 / 1e3, lat.q3 / 1e3
        name = b.id.split("::")[-1]
        benches.append(
            {
                "group": b.workload,
                "name": name,
                "fullname": b.id,
                "params": None,
                "param": None,
                "extra_info": {
                    "task": b.task,
                    "optimizations": list(b.optimizations),
                    "scale": b.scale,
                    "device": b.device,
                    "speedup_vs_eager": b.speedup_vs_eager.median if b.speedup_vs_eager else None,
                    **{k: m.median for k, m in b.metrics.items() if k != "latency_ms"},
                },
                "options": {"disable_gc": True, "timer": "perf_counter", "min_rounds": lat.n,
                            "max_time": None, "min_time": None, "warmup": True},
                "stats": {
                    "min": min(data),
                    "max": max(data),
                    "mean": statistics.fmean(data),
                    "stddev": statistics.stdev(data) if len(data) > 1 else 0.0,
                    "rounds": len(data),
                    "median": statistics.median(data),
                    "iqr": q3 - q1,
                    "q1": q1,
                    "q3": q3,
                    "iqr_outliers": 0,
                    "stddev_outliers": 0,
                    "outliers": "0;0",
                    "ld15iqr": min(data),
                    "hd15iqr": max(data),
                    "ops": 1.0 / statistics.fmean(data) if statistics.fmean(data) > 0 else 0.0,
                    "total": sum(data),
                    "data": data,
                    "iterations": 1,
                },
            }
        )
    return {
        "machine_info": {
            "node": "",
            "processor": env.get("cpu_model"),
            "machine": env.get("machine"),
            "python_implementation": "CPython",
            "python_version": env.get("python"),
            "system": env.get("os"),
            "cpu": {"brand_raw": env.get("cpu_model"), "count": env.get("cpu_count")},
            "mmperf_fingerprint": doc.fingerprint,
        },
        "commit_info": {
            "id": doc.commit,
            "branch": doc.branch,
            "time": doc.created,
            "dirty": bool(doc.commit and doc.commit.endswith("-dirty")),
        },
        "benchmarks": benches,
        "datetime": doc.created,
        "version": "5.1.0",
    }
