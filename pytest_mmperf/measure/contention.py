"""Contention seen per round: was the measuring thread on a CPU for the whole round?

Per measured round the sampler records

* ``cpu_wall_ratio``: CPU time of the measuring thread (``time.thread_time_ns``) over the round's
  wall time. On a CPU run the thread computes the whole round (with 1 intra-op thread all the
  work; with more it also takes part in every parallel region), so time the scheduler gave to
  another process shows up as wall time without CPU time;
* ``involuntary_switches_count``: involuntary context switches of the thread during the round
  (``getrusage(RUSAGE_THREAD)``, Linux; the process's elsewhere): the kernel took the CPU away.

**The rule**: a round is *contended* when ``cpu_wall_ratio < CONTENDED_BELOW`` (0.9) on a CPU
device. Contended rounds are flagged, not dropped: their samples stay, the benchmark's record
carries ``contended_rounds_count``, and the terminal summary shows it next to the rounds measured.
Dropping them would hide a machine that is busy all the time and bias what remains toward the
fast rounds; a reader (or the gate's policy) decides what a busy run is worth. On a GPU the host
thread waits in ``synchronize`` (spinning or sleeping, depending on the driver's setting), so the
ratio says nothing about the device and no round is flagged by it there; both figures are still
recorded. The clock readings happen outside the timed region.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

CONTENDED_BELOW = 0.9  # cpu/wall below this on a CPU run: the thread waited for a CPU
RATIO = "cpu_wall_ratio"
SWITCHES = "involuntary_switches_count"
CONTENDED = "contended_rounds_count"

_WHO = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)


def _involuntary_switches() -> int:
    return int(resource.getrusage(_WHO).ru_nivcsw)


@dataclass(frozen=True)
class Reading:
    cpu_ns: int
    switches: int


class ContentionMonitor:
    """Reads the thread's CPU time and context switches around a round; injectable for tests."""

    def __init__(
        self,
        device: str = "cpu",
        cpu_ns: Callable[[], int] = time.thread_time_ns,
        switches: Callable[[], int] = _involuntary_switches,
    ) -> None:
        self.device = device
        self._cpu_ns = cpu_ns
        self._switches = switches

    def start(self) -> Reading:
        return Reading(self._cpu_ns(), self._switches())

    def stop(self, start: Reading, wall_ns: int) -> dict[str, float]:
        cpu = self._cpu_ns() - start.cpu_ns
        return {
            RATIO: cpu / wall_ns if wall_ns > 0 else 1.0,
            SWITCHES: float(self._switches() - start.switches),
        }

    def contended(self, reading: dict[str, float]) -> bool:
        return self.device == "cpu" and reading[RATIO] < CONTENDED_BELOW
