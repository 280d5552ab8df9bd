"""Memory probes behind one Protocol; each resets its peak before a round and reads it after.

* host: the process's resident-set high-water mark (Linux ``VmHWM``, reset through
  ``/proc/self/clear_refs``; elsewhere the lifetime peak from ``getrusage``);
* cuda: ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved``, reset per round;
* nvml: device memory in use, SM clock, temperature and throttling from pynvml, when NVML is
  present (the device ``CUDA_VISIBLE_DEVICES`` names, by index or UUID).
"""

from __future__ import annotations

from typing import Protocol


class MemoryProbe(Protocol):
    name: str

    def reset(self) -> None: ...

    def read(self) -> dict[str, float]:
        """Metric name (ending in its unit) -> value, for the round since ``reset``."""
        ...


def make_probes(device: str) -> list[MemoryProbe]:
    """The one factory: host RSS always; CUDA allocator peaks and NVML on a GPU."""
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
