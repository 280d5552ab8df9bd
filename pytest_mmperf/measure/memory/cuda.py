"""Peak CUDA caching-allocator memory per round."""

from __future__ import annotations

from typing import Any


class CudaAllocatorProbe:
    name = "cuda"

    def __init__(self, cuda: Any) -> None:
        self._cuda = cuda  # torch.cuda, or a fake in tests

    @classmethod
    def for_current_device(cls) -> CudaAllocatorProbe:
        import torch

        return cls(torch.cuda)

    def reset(self) -> None:
        self._cuda.synchronize()
        self._cuda.reset_peak_memory_stats()

    def read(self) -> dict[str, float]:
        self._cuda.synchronize()
        return {
            "peak_memory_bytes": float(self._cuda.max_memory_allocated()),
            "peak_reserved_bytes": float(self._cuda.max_memory_reserved()),
        }
