"""The GPU clock: CUDA events recorded on the current stream, plus the host time of each mark.

``mark`` records an event and reads ``perf_counter_ns``; it never synchronizes, so marking a
phase inside a decode loop does not serialize host and device. ``interval`` is valid after
``synchronize``: device time from ``Event.elapsed_time``, host time from the counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_mmperf.measure.clocks import Interval


@dataclass(frozen=True)
class CudaMark:
    host_ns: int
    event: Any  # torch.cuda.Event(enable_timing=True), already recorded


class CudaEventClock:
    device = "cuda"

    def __init__(self, cuda: Any, counter_ns: Callable[[], int] = time.perf_counter_ns) -> None:
        # ``cuda`` is the ``torch.cuda`` module, or a fake with Event and synchronize in tests.
        self._cuda = cuda
        self._counter_ns = counter_ns

    @classmethod
    def for_current_device(cls) -> CudaEventClock:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("CUDA timing was requested but torch sees no CUDA device")
        return cls(torch.cuda)

    def mark(self) -> CudaMark:
        event = self._cuda.Event(enable_timing=True)
        event.record()
        return CudaMark(self._counter_ns(), event)

    def synchronize(self) -> None:
        self._cuda.synchronize()

    def now_ns(self) -> int:
        return self._counter_ns()

    def interval(self, start: CudaMark, end: CudaMark) -> Interval:
        return Interval(
            host_ms=(end.host_ns - start.host_ns) / 1e6,
            device_ms=float(start.event.elapsed_time(end.event)),
        )
