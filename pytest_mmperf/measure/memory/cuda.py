"""The CUDA caching allocator: the peak per round above what was allocated when the round began,
and what a benchmark holds between calls above what was allocated before it built anything."""

from __future__ import annotations

from typing import Any

from pytest_mmperf.measure.memory import PEAK, RESIDENT, collect_garbage


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


class CudaResidentGauge:
    """``resident_memory_bytes`` from the allocator's counter: ``memory_allocated()`` after the
    warm-up calls minus before the build, each read after ``gc.collect()`` (garbage in reference
    cycles is neither counted nor freed in between) and a synchronize. The process's first
    cuBLAS call allocates its workspace through the same allocator; :meth:`start` makes one
    before the first reading, so the first benchmark of a process does not own it."""

    def __init__(self, cuda: Any, prime: Any = None) -> None:
        self._cuda = cuda  # torch.cuda, or a fake in tests
        self._prime = prime  # a callable making the process's first cuBLAS call, or None
        self._start: int | None = None

    @classmethod
    def for_current_device(cls) -> CudaResidentGauge:
        import torch

        def prime() -> None:
            a = torch.ones(8, 8, device="cuda")
            (a @ a).sum().item()

        return cls(torch.cuda, prime)

    def start(self) -> None:
        if self._prime is not None:
            self._prime()
        collect_garbage()
        self._cuda.synchronize()
        self._start = int(self._cuda.memory_allocated())

    def read(self) -> dict[str, float]:
        if self._start is None:
            return {}
        collect_garbage()
        self._cuda.synchronize()
        return {RESIDENT: float(max(int(self._cuda.memory_allocated()) - self._start, 0))}
