"""Records for the gate's tests: one environment, a latency-only record with an output fingerprint."""

import numpy as np

from pytest_mmperf.judge.drift import output_fingerprint
from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord

# one host (measure/host.py): timings are judged across sessions only against a baseline of this host
ENV = {"fingerprint": "cpu-2c-1t-abc", "device": "cpu", "cpu_count": 2, "torch_threads": 1, "host_id": "host-a"}


def rec(bid, ms, seed=0, tokens=(1, 2, 3)):
    """12 latency rounds around ``ms`` (2% noise), and the fingerprint of ``tokens``."""
    samples = list(ms * (1 + 0.02 * np.random.default_rng(seed).standard_normal(12)))
    return BenchmarkRecord(bid, "llm", "t2t", (), "tiny", "cpu", 1,
                           {"latency_ms": MetricRecord.from_samples("latency_ms", samples)},
                           quality={"output": output_fingerprint(tokens=list(tokens))})
