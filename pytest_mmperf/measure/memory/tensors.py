"""What the benchmark's models and state hold between calls, on the CPU: a census of live tensors.

torch's CPU allocator keeps no running total (``torch.cuda.memory_allocated`` has no CPU
counterpart), so the gauge counts the storages of every live CPU tensor the garbage collector
knows (every ``torch.Tensor`` is a collected object): once before the benchmark builds anything
(:meth:`start`, when its fixture is set up) and once after the warm-up calls (:meth:`read`, the
last call's result released). ``resident_memory_bytes`` is the storage bytes alive at the second
census that were not alive at the first: weights, buffers, a static KV cache, whatever a first
call creates and keeps (a cache never freed, a second copy of the weights).

Each census runs ``gc.collect()`` first, so garbage waiting in reference cycles (a previous
benchmark's model, a build's temporaries) is neither counted nor freed in between; the first one in
a process also freezes what lives then (:func:`pytest_mmperf.measure.memory.collect_garbage`), so
the walks see only objects made since: the heap of torch and transformers is walked once. Views share
their base's storage and count once; storages without data (meta and fake tensors of a compile,
a tensor subclass's wrapper, whose inner tensors are counted) count nothing. Deterministic: the
same code gives the same bytes in every process, whatever ran before (measured: docs/measuring.md).

Not counted: tensors only C++ holds (an autograd graph's saved tensors, a library's packed
weights), memory outside tensors (Python objects, the allocator's own caching). On a GPU the
CUDA allocator's own counter is the gauge (:class:`pytest_mmperf.measure.memory.cuda.CudaResidentGauge`).
"""

from __future__ import annotations

import gc
from typing import Any

from pytest_mmperf.measure.memory import RESIDENT, collect_garbage


def live_storages(torch: Any) -> dict[int, int]:
    """data pointer -> bytes of every live CPU tensor storage that holds data."""
    tensor_type = torch.Tensor
    # a compile's fake tensors hold no data, and asking one for its data pointer warns (and is to
    # become an error): they are skipped before the question
    fake_type = getattr(getattr(torch, "_subclasses", None), "FakeTensor", None)
    out: dict[int, int] = {}
    for obj in gc.get_objects():
        # type(), not isinstance(): a lazy module proxy answers isinstance through __class__
        # (torch.distributed.reduce_op warns when asked)
        kind = type(obj)
        if not issubclass(kind, tensor_type) or (fake_type is not None and issubclass(kind, fake_type)):
            continue
        try:
            if obj.device.type != "cpu":
                continue
            storage = obj.untyped_storage()
            ptr, nbytes = int(storage.data_ptr()), int(storage.nbytes())
        except (RuntimeError, NotImplementedError, TypeError, AttributeError):
            continue  # sparse, nested or wrapper tensors without one storage: their parts count
        if ptr and nbytes:
            out[ptr] = max(out.get(ptr, 0), nbytes)
    return out


class LiveTensorCensus:
    def __init__(self, torch: Any = None) -> None:
        if torch is None:
            import torch
        self._torch = torch
        self._before: dict[int, int] | None = None

    def start(self) -> None:
        collect_garbage()
        self._before = live_storages(self._torch)

    def read(self) -> dict[str, float]:
        if self._before is None:
            return {}
        collect_garbage()
        now = live_storages(self._torch)
        before = self._before
        return {RESIDENT: float(sum(n for ptr, n in now.items() if before.get(ptr) != n))}
