"""Timers behind one Protocol: host ``perf_counter_ns`` on CPU, CUDA events on a GPU.

A clock marks points during a call without waiting for the device; after the round it is
synchronized once, and every interval between two marks is resolved into host time (what the
Python thread spent, i.e. dispatch) and device time (what the GPU spent, CUDA events). Host time
and device time answer different questions: the host interval is how long the Python thread took
to queue the work, the device interval is how long the GPU took from the first mark's position
in the stream to the second's, idle gaps between kernels included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Interval:
    host_ms: float  # host time between the two marks (dispatch time on a GPU)
    device_ms: float | None  # device time between the two marks; None on CPU
    instructions: float | None = None  # instructions executed between the marks (instruction clock)


class Clock(Protocol):
    device: str  # "cpu" | "cuda"

    def mark(self) -> Any:
        """Record a point in time; must not wait for the device nor allocate device objects."""
        ...

    def rewind(self) -> None:
        """Every mark made so far has been resolved: their slots may be reused (event pools)."""
        ...

    def synchronize(self) -> None:
        """Wait until all queued device work is done."""
        ...

    def now_ns(self) -> int:
        """Host time, for wall-clock latency measured after synchronize()."""
        ...

    def interval(self, start: Any, end: Any) -> Interval:
        """Resolve two marks; call only after synchronize() and before rewind()."""
        ...


def make_clock(device: str, kind: str = "time") -> Clock:
    """The one factory: instruction counts (callgrind) for ``kind="instructions"``, else a
    CUDA-event clock for ``cuda`` and the host clock otherwise."""
    if kind == "instructions":
        from pytest_mmperf.measure.clocks.instructions import CallgrindClock

        return CallgrindClock.from_environment()
    if device == "cuda":
        from pytest_mmperf.measure.clocks.cuda import CudaEventClock

        return CudaEventClock.for_current_device()
    from pytest_mmperf.measure.clocks.host import HostClock

    return HostClock()
