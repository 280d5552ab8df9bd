"""The CUDA caching allocator's peak per round, above what was allocated when the round began."""

from __future__ import annotations

from typing import Any

from pytest_mmperf.measure.memory import PEAK


class CudaAllocatorProbe:
    name = "cuda"

    def __init__(self, cuda: Any) -> None:
        self._cuda = cuda  # torch.cuda, or a fake in tests
        self._start = 0

    @classmethod
    def for_current_device(cls) -> CudaAllocatorProbe:
        import torch

        return cls(torch.cuda)

    def reset(self) -> None:
        self._cuda.synchronize()
        self._cuda.reset_peak_memory_stats()
        # Weights of both arms, caches kept across calls, the other arm's output: all allocated
        # before the round, none of it this round's own use.
        self._start = int(self._cuda.memory_allocated())

    def read(self) -> dict[str, float]:
        self._cuda.synchronize()
        return {
            PEAK: float(max(int(self._cuda.max_memory_allocated()) - self._start, 0)),
            # the allocator's reservation for the whole process: informational
            "process_cuda_reserved_bytes": float(self._cuda.max_memory_reserved()),
        }
