"""Memory of the benchmark, not of the process: two small Protocols.

* :class:`MemoryProbe`: reset before a measured round, read after it (outside the timed region):
  - cuda: the caching allocator's peak *above the round's start* (``max_memory_allocated`` after
    ``reset_peak_memory_stats`` minus ``memory_allocated`` at the start) -> ``peak_memory_bytes``;
    whatever was allocated before the round (both arms' weights, the other arm's last output) is
    not counted, so each arm's figure is its own;
  - host: the process's resident-set high-water mark during the round (Linux ``VmHWM``, reset
    through ``/proc/self/clear_refs``) -> ``process_peak_rss_bytes``, informational only: it
    includes everything the process holds (other benchmarks' models, the interpreter) and so
    depends on what ran before;
  - nvml: device memory in use, SM clock, temperature and throttling from pynvml, when NVML is
    present (the device ``CUDA_VISIBLE_DEVICES`` names, by index or UUID), informational.
* :class:`MemoryAccountant`: one extra, untimed call per arm with allocator-level accounting
  (CPU: every torch allocation and free of the call, from torch's profiler) -> the call's own peak
  of live tensor bytes above its start, ``peak_memory_bytes``. Counting allocations slows the call,
  which is why it is a call of its own and never a measured round; the count is deterministic, so
  a ``-k`` subset, a shard or a full suite give the same figure.
* :class:`ResidentGauge`: what the benchmark's models and state hold *between* calls, which a
  per-call peak cannot see (a model that keeps 16 MiB more from its first call on peaks no higher
  above each call's start): started when the benchmark's fixture is set up, before it builds
  anything, read once after the warm-up calls -> ``resident_memory_bytes`` (gated):
  - CPU: the storage bytes of live tensors that were not alive at the start
    (:mod:`.tensors`, a census through the garbage collector);
  - cuda: ``torch.cuda.memory_allocated()`` after the warm-up minus at the start (:mod:`.cuda`).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import Any, Protocol

PEAK = "peak_memory_bytes"  # the benchmark's own peak above the start of its call (gated)
RESIDENT = "resident_memory_bytes"  # what the benchmark holds between calls, above its start (gated)


class MemoryProbe(Protocol):
    name: str

    def reset(self) -> None: ...

    def read(self) -> dict[str, float]:
        """Metric name (ending in its unit) -> value, for the round since ``reset``."""
        ...


class MemoryAccountant(Protocol):
    def account(self, call: Callable[[], Any]) -> dict[str, float]:
        """Run ``call`` once, untimed; metric name -> value for that call."""
        ...


def collect_garbage() -> None:
    """``gc.collect()`` before a resident-memory reading; the first time in a process also
    ``gc.freeze()``: what lives then (the ~400,000 objects of torch, transformers and pytest)
    moves to the permanent generation, so later collections and heap walks see only what was
    made since (measured here under load: 0.75 s a reading before, under 1 ms after). Objects
    alive at that moment that later become cyclic garbage are not collected: they were the
    process's libraries and the session, alive to its end anyway."""
    gc.collect()
    if gc.get_freeze_count() == 0:
        gc.freeze()


class ResidentGauge(Protocol):
    def start(self) -> None:
        """Before the benchmark builds anything: what is held already."""
        ...

    def read(self) -> dict[str, float]:
        """After its warm-up calls: metric name -> bytes held above :meth:`start`."""
        ...


def make_probes(device: str) -> list[MemoryProbe]:
    """The one factory for per-round probes: host RSS always; CUDA allocator and NVML on a GPU."""
    from pytest_mmperf.measure.memory.host import HostRssProbe

    probes: list[MemoryProbe] = [HostRssProbe()]
    if device == "cuda":
        from pytest_mmperf.measure.memory.cuda import CudaAllocatorProbe
        from pytest_mmperf.measure.memory.nvml import NvmlLookupError, NvmlProbe

        probes.append(CudaAllocatorProbe.for_current_device())
        try:
            nvml = NvmlProbe.open()
        except NvmlLookupError:
            nvml = None  # the environment's "nvml" entry says which entry NVML could not match
        if nvml is not None:
            probes.append(nvml)
    return probes


def make_accountant(device: str) -> MemoryAccountant | None:
    """The one factory for the untimed accounting call: CPU only (on a GPU the allocator's own
    statistics give the peak per round at no cost, see ``CudaAllocatorProbe``). Code that never
    imported torch allocated no tensor, so nothing is accounted and torch stays unimported."""
    if device == "cuda" or "torch" not in sys.modules:
        return None
    from pytest_mmperf.measure.memory.torch_cpu import TorchCpuAccountant

    return TorchCpuAccountant()


def make_resident(device: str) -> ResidentGauge | None:
    """The one factory for the resident-memory gauge: the CUDA allocator on a GPU, a census of
    live tensors on the CPU; None when torch was never imported (nothing can hold a tensor)."""
    if "torch" not in sys.modules:
        return None
    if device == "cuda":
        from pytest_mmperf.measure.memory.cuda import CudaResidentGauge

        return CudaResidentGauge.for_current_device()
    from pytest_mmperf.measure.memory.tensors import LiveTensorCensus

    return LiveTensorCensus()
