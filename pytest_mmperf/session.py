"""State of one pytest-mmperf run, and what happens at its end; no pytest imports.

The plugin creates one :class:`RunSession` per pytest process, feeds it the benchmark records
that reports carry (so results survive pytest-xdist), and calls :meth:`finish` once on the
controller. Everything that can fail on bad stored data raises :class:`OutputError` with one line.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_mmperf import __version__
from pytest_mmperf.judge.verdict import Verdict
from pytest_mmperf.results import atomic
from pytest_mmperf.results.records import BenchmarkRecord, DocumentError, RunDocument
from pytest_mmperf.settings import Settings, UsageError

if TYPE_CHECKING:
    from pytest_mmperf.judge.gate import Gate


class OutputError(RuntimeError):
    """Writing results, a baseline or history failed; the message is one line."""


# marker keywords that describe a benchmark (fields of its record), not settings
DESCRIBING = ("workload", "task", "optimizations", "batch_size", "scale")


@dataclass(frozen=True)
class BenchmarkPlan:
    """What one benchmark test runs with, resolved once at collection from its marker."""

    settings: Settings
    describe: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None  # a bad marker keyword: that test fails with this line


def resolve_device(requested: str, cuda_available: Callable[[], bool]) -> str:
    if requested == "cpu":
        return "cpu"
    available = cuda_available()
    if requested == "cuda" and not available:
        raise UsageError(
            "--mmperf-device=cuda: no CUDA device is visible to torch "
            "(use --mmperf-device=cpu or auto)"
        )
    return "cuda" if available else "cpu"


class RunSession:
    def __init__(self, settings: Settings, rootdir: Path) -> None:
        self.settings = settings
        self.rootdir = rootdir
        self.device = "cpu"
        self.environment: dict[str, Any] = {}
        self.records: list[BenchmarkRecord] = []
        self.verdicts: list[Verdict] = []
        self.started = _dt.datetime.now(_dt.timezone.utc)
        self.commit: str | None = None
        self.branch: str | None = None
        self.expected_ids: list[str] = []
        self.gate: Gate | None = None  # when --mmperf-compare
        self.messages: list[str] = []  # one-line notes for the terminal summary
        self._bandwidth_gbps: float | None = settings.bandwidth_gbps
        self._peak_tflops: float | None = None

    def bandwidth_gbps(self) -> float:
        """Memory bandwidth for the roofline: configured, or measured once per session."""
        if self._bandwidth_gbps is None:
            from pytest_mmperf.measure.roofline import measure_bandwidth_gbps

            self._bandwidth_gbps = measure_bandwidth_gbps(self.device)
            self.environment["measured_bandwidth_gbps"] = round(self._bandwidth_gbps, 2)
        return self._bandwidth_gbps

    def peak_tflops(self) -> float:
        """Peak matmul FLOP/s for the roofline's memory/compute verdict, measured once per session."""
        if self._peak_tflops is None:
            from pytest_mmperf.measure.roofline import measure_peak_tflops

            self._peak_tflops = measure_peak_tflops(self.device)
            self.environment["measured_peak_tflops"] = round(self._peak_tflops, 4)
        return self._peak_tflops

    # -- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Resolve the device, pin threads and collect the environment (imports torch)."""
        import os

        # A persistent inductor cache: a warm torch.compile took 3.8 s instead of 21 s here.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(self.rootdir / ".mmperf" / "inductor-cache"))
        import torch

        from pytest_mmperf.measure import environment, host

        if self.settings.clock == "instructions" and self.settings.device == "cuda":
            raise UsageError("--mmperf-clock=instructions counts CPU instructions: use --mmperf-device=cpu or auto")
        requested = "cpu" if self.settings.clock == "instructions" else self.settings.device
        from pytest_mmperf.measure.profiling import quiet_torch_trace

        quiet_torch_trace()  # hundreds of captured torch.__trace lines buried a failure's message
        self.device = resolve_device(requested, torch.cuda.is_available)
        if self.device == "cpu" and self.settings.threads > 0:
            torch.set_num_threads(self.settings.threads)
        self.environment = environment.collect(self.device, clock=self.settings.clock)
        # beside the fingerprint, never in it: judge/allowance.py trusts cross-session timings per host
        self.environment[host.KEY] = host.host_id()
        self.commit, self.branch = environment.git_commit(self.rootdir)

    def open_gate(self) -> None:
        """Load the baseline for --mmperf-compare; bad stored data raises UsageError (one line).

        Every process opens it, the pytest-xdist controller too: workers judge, the controller
        shows the verdicts that ride on the reports, with the same baseline and decision rule.
        """
        if not self.settings.compare:
            return
        from pytest_mmperf.judge.gate import Gate, GateError

        try:
            self.gate = Gate.open(self.settings, self.rootdir, self.environment, self.expected_ids)
        except (GateError, DocumentError) as exc:
            raise UsageError(f"--mmperf-compare: {exc}") from None
        if self.gate.learns:
            self.gate.sessions = self._host_sessions()

    def _host_sessions(self) -> dict[str, dict[str, list[float]]]:
        """The history's earlier sessions on this fingerprint and host, for the learned drift
        allowance (empty without a history; a history that cannot be read is said, not fatal)."""
        from pytest_mmperf.history import HistoryError, open_store
        from pytest_mmperf.history.sql import SqlStore, session_medians
        from pytest_mmperf.measure.host import KEY

        host = self.environment.get(KEY)
        if not self.settings.history or host is None:
            return {}
        try:
            with open_store(self.settings.history, self.rootdir, create=False) as store:
                if not isinstance(store, SqlStore):
                    return {}
                return session_medians(store, fingerprint=str(self.environment.get("fingerprint", "")),
                                       host=str(host), scale=self.settings.scale)
        except HistoryError as exc:
            if not str(exc).startswith("no history database"):
                self.messages.append(f"drift allowance: the history cannot be read ({exc}); none learned")
            return {}

    def expect(self, benchmark_ids: Iterable[str]) -> None:
        """The benchmarks this run will judge (the Bonferroni family; the baseline entries not
        compared); called after collection, on the controller once per worker's collection."""
        self.expected_ids = sorted(set(self.expected_ids) | set(benchmark_ids))
        if self.gate is not None:
            self.gate.expect(self.expected_ids)

    def plan(self, marker_kwargs: Mapping[str, Any]) -> BenchmarkPlan:
        """One benchmark's settings (its marker keywords override the session's) and description."""
        describe = {k: marker_kwargs[k] for k in DESCRIBING if k in marker_kwargs}
        try:
            return BenchmarkPlan(self.settings.for_benchmark(marker_kwargs), describe)
        except UsageError as exc:
            return BenchmarkPlan(self.settings, describe, error=str(exc))

    # -- per benchmark ---------------------------------------------------------------------------
    def compare(
        self,
        record: BenchmarkRecord,
        rerun: Callable[[], BenchmarkRecord] | None = None,
        settings: Settings | None = None,
        profile: Callable[[], Mapping[str, Any] | None] | None = None,
    ) -> tuple[Verdict, BenchmarkRecord] | None:
        """Judge one record against the baseline; ``settings``: the benchmark's own (marker);
        ``rerun`` measures the benchmark again (adaptive rounds, confirmations); ``profile``
        profiles one more call, for the diagnosis of a failed verdict. Returns the verdict and the
        record it was reached on (with any adaptive rounds pooled in)."""
        if self.gate is None:
            return None
        verdict, judged = self.gate.judge(record, rerun=rerun, settings=settings)
        if verdict.failed and (settings or self.settings).diagnose == "auto":  # why, biggest cause first
            from pytest_mmperf.judge.diagnosis import explain

            base = self.gate.baseline.by_id().get(record.id) if self.gate.baseline else None
            return explain(verdict, base, judged, profile)
        return verdict, judged

    def observe(self, record: BenchmarkRecord) -> BenchmarkRecord:
        """The record with the machine's load per CPU at the end of its measurement (the judge
        does not compare absolute timings across sessions measured on an oversubscribed machine)."""
        import os
        from dataclasses import replace

        from pytest_mmperf.judge.compare import LOAD_KEY

        try:
            load = os.getloadavg()[0]
        except (OSError, AttributeError):  # not on this platform
            return record
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return replace(record, params={**record.params, LOAD_KEY: round(load / max(1, cpus), 2)})

    def add(self, record: BenchmarkRecord) -> None:
        self.records.append(record)

    # -- end -----------------------------------------------------------------------------------
    def document(self) -> RunDocument:
        # each record carries its verdict (the last one: a confirmation rerun's), so the report
        # and the PR summary can lead with what changed
        verdicts = {v.benchmark: v.to_json() for v in self.verdicts}
        records = [replace(r, verdict=verdicts[r.id]) if r.id in verdicts else r for r in self.records]
        return RunDocument(
            environment=self.environment,
            benchmarks=tuple(sorted(records, key=lambda r: r.id)),
            commit=self.commit,
            branch=self.branch,
            created=self.started.isoformat(timespec="seconds"),
            tool_version=__version__,
            settings={k: v for k, v in self.settings.public().items() if k not in ("enabled",)},
        )

    def _path(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else self.rootdir / path

    def finish(self) -> list[str]:
        """Write every requested output; returns one-line notes, raises OutputError."""
        try:
            return self._finish()
        except (OSError, ValueError, TypeError) as exc:
            # a bug or a full disk must not end the run in a traceback; files are written
            # atomically, so what was there before is intact
            raise OutputError(f"writing results failed: {type(exc).__name__}: {exc}") from None

    def _finish(self) -> list[str]:
        notes: list[str] = []
        doc = self.document()
        s = self.settings
        if s.json_path:
            atomic.write_text(self._path(s.json_path), doc.dumps())
            notes.append(f"results document: {s.json_path}")
        if s.benchmark_json_path:
            import json

            from pytest_mmperf.report.benchmark_json import to_pytest_benchmark

            atomic.write_text(
                self._path(s.benchmark_json_path), json.dumps(to_pytest_benchmark(doc), indent=1)
            )
            notes.append(f"pytest-benchmark JSON: {s.benchmark_json_path}")
        if s.markdown_path:
            from pytest_mmperf.report.markdown import render

            atomic.write_text(self._path(s.markdown_path), render(doc, self.verdicts, self.gate))
            notes.append(f"Markdown summary: {s.markdown_path}")
        if not doc.benchmarks:
            return notes
        if s.save_baseline:
            from pytest_mmperf.results import baselines

            try:
                path = baselines.save(doc, self._path(s.baseline_dir))
            except (OSError, DocumentError) as exc:
                raise OutputError(f"--mmperf-save-baseline: {exc}") from None
            notes.append(f"baseline saved: {path}")
        if s.history:
            from pytest_mmperf.history import HistoryError, open_store

            try:
                with open_store(s.history, self.rootdir) as store:
                    run_id = store.record_run(doc)
            except HistoryError as exc:
                raise OutputError(f"--mmperf-history: {exc}") from None
            notes.append(f"history: run {run_id} recorded in {s.history}")
        return notes
