"""The CPU clock: ``time.perf_counter_ns``; nothing to synchronize."""

from __future__ import annotations

import time
from collections.abc import Callable

from pytest_mmperf.measure.clocks import Interval


class HostClock:
    device = "cpu"

    def __init__(self, counter_ns: Callable[[], int] = time.perf_counter_ns) -> None:
        self._counter_ns = counter_ns  # injectable for tests with a fake clock

    def mark(self) -> int:
        return self._counter_ns()

    def rewind(self) -> None:
        return None  # a mark is an int: nothing to reuse

    def synchronize(self) -> None:
        return None

    def now_ns(self) -> int:
        return self._counter_ns()

    def interval(self, start: int, end: int) -> Interval:
        return Interval(host_ms=(end - start) / 1e6, device_ms=None)
