"""Live progress: one line per finished benchmark while the session runs.

    [3/12] test_llm[stack]  latency 41.2 ms · tokens/s 388 · speedup 1.62× [1.55..1.70] · unchanged
           (on one line) (elapsed 1m04s, ETA 3m12s)

The ETA is the mean time per finished benchmark times the benchmarks left (known when the
session collected them; under pytest-xdist the controller does not collect, so no ETA there).
Plain text through pytest's terminal reporter, so it survives ``-q``, capture and CI logs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_mmperf.judge.checks import format_value
from pytest_mmperf.report.summary import short_id
from pytest_mmperf.results.records import BenchmarkRecord

SHOWN_METRICS = ("latency_ms", "latency_instructions", "ttft_ms", "tpot_ms", "tokens_per_s", "peak_memory_bytes")
MAX_SHOWN = 3


def duration_text(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass
class Progress:
    """Counts finished benchmarks; :meth:`line` formats one and advances the count."""

    started_s: float  # a monotonic clock reading at session start
    total: int | None = None  # benchmarks expected, when known
    done: int = 0
    seen: set[str] = field(default_factory=set)

    def line(self, record: BenchmarkRecord, verdict: Mapping[str, Any] | None, now_s: float) -> str:
        if record.id not in self.seen:  # a --mmperf-confirm rerun reports the same id again
            self.seen.add(record.id)
            self.done += 1
        elapsed = max(0.0, now_s - self.started_s)
        parts: list[str] = []
        for name in SHOWN_METRICS:
            m = record.metrics.get(name)
            if m is not None and len(parts) < MAX_SHOWN:
                parts.append(f"{name.rsplit('_', 1)[0].replace('_per_', '/')} {format_value(m.median, m.unit)}")
        sp = record.speedup_vs_eager
        if sp is not None:
            parts.append(f"speedup {sp.median:.2f}× [{sp.ci_low:.2f}..{sp.ci_high:.2f}]")
        if verdict is not None:
            parts.append(str(verdict.get("category", "?")))
        count = f"[{self.done}/{self.total}]" if self.total else f"[{self.done}]"
        timing = f"elapsed {duration_text(elapsed)}"
        if self.total and self.done < self.total:
            eta = elapsed / self.done * (self.total - self.done)
            timing += f", ETA {duration_text(eta)}"
        return f"{count} {short_id(record.id)}  {' · '.join(parts)}  ({timing})"
