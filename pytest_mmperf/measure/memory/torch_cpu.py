"""Allocator-level accounting of one untimed CPU call: torch's profiler records every tensor
allocation and free (``profile_memory=True``); the running sum of their sizes, from the call's
start, peaks at the call's own peak of live tensor bytes.

Counted: what torch's CPU allocator hands out during the call (activations, KV caches grown in
the call, outputs, workspaces). Not counted: what lived before the call (weights, a static cache
allocated at build), Python objects, allocator caching and fragmentation, the RSS of libraries.
Freed memory that is reused does not hide a peak (the RSS high-water mark above the round's start
would: glibc keeps freed pages resident and reuses them, so a warm round faults in nothing new).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pytest_mmperf.measure.memory import PEAK


def peak_of(deltas: Iterable[tuple[int, int]]) -> int:
    """The largest running sum of signed allocation sizes ``(time_ns, bytes)``, in time order,
    starting from 0 (frees of memory allocated before the call may take the sum below 0)."""
    live = peak = 0
    for _, nbytes in sorted(deltas, key=lambda d: d[0]):
        live += nbytes
        peak = max(peak, live)
    return peak


class TorchCpuAccountant:
    def account(self, call: Callable[[], Any]) -> dict[str, float]:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            call()
        # ``kineto_results`` holds the raw events, allocations inside operators included (the
        # summarized ``prof.events()`` folds those into each operator's total).
        events = prof.profiler.kineto_results.events() if prof.profiler is not None else []
        deltas = [
            (int(e.start_ns()), int(e.nbytes()))
            for e in events
            if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")
        ]
        return {PEAK: float(peak_of(deltas))}
