"""The GPU clock: CUDA events from a pre-allocated pool, plus the host time of each mark.

``mark`` records the next event of the pool on the current stream and reads ``perf_counter_ns``;
it never synchronizes (marking a phase inside a decode loop does not serialize host and device)
and creates nothing: a new ``torch.cuda.Event`` per mark would add an object and, on its first
record, a ``cudaEventCreate`` to every decode step, which matters against CUDA-graph steps of
tens of microseconds. The pool is reused across rounds (``rewind`` after the round's intervals
were resolved) and grows only when a round marks more points than any before; the sampler's
warm-up marks phases too, so the pool has its size before the first measured round. ``interval``
is valid after ``synchronize``: device time from ``Event.elapsed_time``, host time from the
counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pytest_mmperf.measure.clocks import Interval

POOL_SIZE = 256  # marks per round before the pool grows: 2 per decode step, 128 steps


class CudaEventClock:
    device = "cuda"

    def __init__(
        self,
        cuda: Any,
        counter_ns: Callable[[], int] = time.perf_counter_ns,
        pool_size: int = POOL_SIZE,
    ) -> None:
        # ``cuda`` is the ``torch.cuda`` module, or a fake with Event and synchronize in tests.
        self._cuda = cuda
        self._counter_ns = counter_ns
        self._events: list[Any] = []
        self._host_ns: list[int] = []
        self._next = 0
        self.growths = 0  # times the pool grew after construction (each outside a warm round, ideally)
        self._grow(pool_size)
        self.growths = 0

    @classmethod
    def for_current_device(cls) -> CudaEventClock:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("CUDA timing was requested but torch sees no CUDA device")
        return cls(torch.cuda)

    @property
    def capacity(self) -> int:
        return len(self._events)

    def _grow(self, extra: int) -> None:
        new = [self._cuda.Event(enable_timing=True) for _ in range(max(extra, 1))]
        # An event's CUDA handle is created on its first record: do it now, not at its first mark
        # (recording needs no synchronize).
        for event in new:
            event.record()
        self._events.extend(new)
        self._host_ns.extend(0 for _ in new)
        self.growths += 1

    def mark(self) -> int:
        i = self._next
        if i == len(self._events):
            self._grow(len(self._events))  # doubling: a new record length, reached once
        self._events[i].record()
        self._host_ns[i] = self._counter_ns()
        self._next = i + 1
        return i

    def rewind(self) -> None:
        self._next = 0

    def synchronize(self) -> None:
        self._cuda.synchronize()

    def now_ns(self) -> int:
        return self._counter_ns()

    def interval(self, start: int, end: int) -> Interval:
        return Interval(
            host_ms=(self._host_ns[end] - self._host_ns[start]) / 1e6,
            device_ms=float(self._events[start].elapsed_time(self._events[end])),
        )
