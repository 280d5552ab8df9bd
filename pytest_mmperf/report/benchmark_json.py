"""Export in pytest-benchmark's JSON format, built with pytest-benchmark's own statistics.

Every number comes from ``pytest_benchmark.stats.Metadata`` / ``Stats`` fed with our samples
(seconds per call, as pytest-benchmark stores them), so outliers, quartiles and ``ops`` are the
values pytest-benchmark itself would compute; ``version`` is the installed pytest-benchmark's.
``pytest-benchmark compare``, ``--benchmark-compare`` and github-action-benchmark's ``pytest``
tool read the result. :func:`save_to_storage` writes it where pytest-benchmark's own storage
(``--benchmark-storage``, default ``.benchmarks/<machine id>/NNNN_NAME.json``) keeps runs.

One timing per benchmark maps onto pytest-benchmark's model, and its fields (``median``, ``mean``,
``min``, ...) mean what pytest-benchmark's mean: for a pytest-benchmark test run under ``--mmperf``
the per-call times in rounds as short as pytest-benchmark's (``short_round_latency_ms``: single
calls for anything of 5 us or more), so ``pytest-benchmark compare`` against old runs compares like
with like; for an ``mmperf`` benchmark (and a ``pedantic`` test, whose rounds the user fixed) the
per-call times of its rounds (``latency_ms``). ``extra_info["mmperf_timing"]`` names which;
``extra_info["latency_ms"]`` is always the fixture's gated median. The other metrics' medians and
the environment fingerprint ride along in ``extra_info``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pytest_mmperf.measure.sampler import SHORT_ROUNDS
from pytest_mmperf.results.records import BenchmarkRecord, RunDocument

TIMED_METRIC = "latency_ms"


def timed_metric(b: BenchmarkRecord) -> str:
    """The metric whose samples fill pytest-benchmark's fields: its own statistic where measured."""
    short = b.metrics.get(SHORT_ROUNDS)
    return SHORT_ROUNDS if short is not None and short.samples else TIMED_METRIC


def machine_info(environment: Mapping[str, Any]) -> dict[str, Any]:
    """pytest-benchmark's machine info: its own generator on the machine that measured; from
    the results document's environment otherwise (an export from history on another machine)."""
    cpu = {"brand_raw": environment.get("cpu_model"), "count": environment.get("cpu_count"),
           "arch": environment.get("machine")}
    return {
        "node": "",
        "processor": environment.get("cpu_model"),
        "machine": environment.get("machine"),
        "python_implementation": "CPython",
        "python_version": environment.get("python"),
        "release": str(environment.get("os", "")).partition(" ")[2],
        "system": str(environment.get("os", "")).partition(" ")[0],
        "cpu": cpu,
    }


def local_machine_info() -> dict[str, Any]:
    """What pytest-benchmark records for this machine (so ``--benchmark-compare`` against a
    pytest-benchmark run here sees the same machine and warns about nothing)."""
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info

    return dict(pytest_benchmark_generate_machine_info())


def _metadata(b: BenchmarkRecord, doc: RunDocument) -> Any:
    from pytest_benchmark.stats import Metadata

    params = dict(b.params)
    extra = dict(params.pop("extra_info", None) or {})
    extra.update({
        "workload": b.workload,
        "task": b.task,
        "optimizations": list(b.optimizations),
        "scale": b.scale,
        "device": b.device,
        "batch_size": b.batch_size,
        "speedup_vs_eager": b.speedup_vs_eager.median if b.speedup_vs_eager else None,
        "mmperf_fingerprint": doc.fingerprint,
    })
    timed = timed_metric(b)
    extra.update({k: m.median for k, m in sorted(b.metrics.items()) if k != timed})
    extra["mmperf_timing"] = timed
    name = b.id.split("::")[-1]
    param = name.partition("[")[2].removesuffix("]") or None
    # Metadata reads these attributes of pytest-benchmark's fixture; this is a record, not a fixture
    holder = SimpleNamespace(
        name=name, fullname=b.id, group=params.pop("group", None) or b.workload, param=param,
        params=params.pop("pytest_params", None), extra_info=extra, cprofile_stats=None, has_error=False,
    )
    s = doc.settings
    options = {
        "disable_gc": True,  # the sampler turns the collector off inside every timed call
        "timer": str(s.get("clock", "time")),
        "min_rounds": s.get("rounds"),
        "max_time": s.get("max_time"),
        "min_time": None,
        "warmup": s.get("warmup"),
    }
    iterations = int(params.get("short_round_iterations" if timed == SHORT_ROUNDS else "iterations", 1) or 1)
    meta = Metadata(holder, iterations=iterations, options=options)
    for value in b.metrics[timed].samples:
        meta.stats.update(value / 1e3)  # already per call; Metadata.update would divide again
    return meta


def to_pytest_benchmark(doc: RunDocument, machine: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run in pytest-benchmark's JSON format; ``machine``: its machine info (default: built
    from the document's environment)."""
    import pytest_benchmark

    benches = [
        _metadata(b, doc).as_dict(include_data=True)
        for b in doc.benchmarks
        if TIMED_METRIC in b.metrics and b.metrics[TIMED_METRIC].samples
    ]
    commit = doc.commit or "unversioned"
    return {
        "machine_info": dict(machine) if machine is not None else machine_info(doc.environment),
        "commit_info": {
            "id": commit.removesuffix("-dirty"),
            "time": doc.created,
            "author_time": doc.created,
            "dirty": commit.endswith("-dirty"),
            "project": "pytest-mmperf",
            "branch": doc.branch or "(unknown)",
        },
        "benchmarks": benches,
        "datetime": doc.created,
        "version": pytest_benchmark.__version__,
    }


def machine_id() -> str:
    """pytest-benchmark's folder name for this machine under its storage (e.g. Linux-CPython-3.11-64bit)."""
    from pytest_benchmark.utils import get_machine_id

    return str(get_machine_id())


def save_to_storage(output: Mapping[str, Any], storage: str, name: str) -> Path:
    """Save ``output`` as the next ``NNNN_name.json`` in pytest-benchmark's file storage, the
    way ``--benchmark-save=name`` does; returns the file written."""
    import logging

    from pytest_benchmark.utils import load_storage

    store = load_storage(storage, logger=logging.getLogger("pytest_mmperf.benchmark_json"),
                         default_machine_id=machine_id(), netrc="")
    if not hasattr(store, "path"):
        raise ValueError(f"{storage}: only file storage is supported for pytest-mmperf runs")
    before = set(Path(store.path).rglob("*.json"))
    store.save(dict(output), name)
    (written,) = set(Path(store.path).rglob("*.json")) - before
    return written
