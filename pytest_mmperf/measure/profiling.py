"""Characterization (``--mmperf-profile``): where time goes, by operator class.

The paper's core finding is *where* inference time goes: linear layers at small batch,
attention at large batch and long context, beam-search KV-cache reorder in Seamless, and on a
GPU long idle gaps during decode. One extra call of the benchmark runs under ``torch.profiler``;
every aten operator's self time is attributed to a class by name (:func:`classify`, pure and
tested without torch), and on CUDA the device-busy fraction is kernel time over wall time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any

OP_CLASSES = ("linear", "attention", "normalization", "kv_cache", "activation", "embedding", "other")

# Order matters: the first pattern that matches names the class.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("attention", re.compile(r"attention|attn|softmax|flash|efficient_attention|_sdpa|baddbmm|bmm\b|einsum")),
    ("kv_cache", re.compile(
        r"index_select|index_copy|index_put|\bcat\b|copy_|slice_scatter|gather|scatter|select_backward|narrow"
    )),
    ("linear", re.compile(r"linear|addmm|\bmm\b|matmul|gemm|weight_int8|int_mm|_weight_int8pack_mm|conv")),
    ("normalization", re.compile(r"norm|rsqrt|\bvar\b|\bmean\b")),
    ("activation", re.compile(r"silu|gelu|relu|tanh|sigmoid|leaky")),
    ("embedding", re.compile(r"embedding")),
)


def classify(op_name: str) -> str:
    """Operator class of an aten / kernel name, e.g. ``aten::addmm`` -> ``linear``."""
    name = op_name.lower().removeprefix("aten::")
    for cls, pattern in _PATTERNS:
        if pattern.search(name):
            return cls
    return "other"


def shares(op_times: Iterable[tuple[str, float]]) -> dict[str, float]:
    """(op name, self time) pairs -> fraction of the total per class (all classes present)."""
    totals = dict.fromkeys(OP_CLASSES, 0.0)
    for name, t in op_times:
        totals[classify(name)] += max(t, 0.0)
    whole = sum(totals.values())
    if whole <= 0:
        return totals
    return {k: v / whole for k, v in totals.items()}


def profile_call(fn: Callable[[], Any], device: str, steps: int = 0) -> dict[str, Any]:
    """Run ``fn`` once under torch.profiler and characterize it.

    ``steps``: decode steps in one call (from the ``tpot`` phase count), to report operators
    dispatched per step: the CPU-side cost the paper finds dominates decode at batch 1.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(ProfilerActivity.CUDA)
        torch.cuda.synchronize()
    t0 = time.perf_counter_ns()
    with profile(activities=activities) as prof:
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
    wall_ms = (time.perf_counter_ns() - t0) / 1e6
    events = prof.key_averages()
    cpu_ops = [(e.key, float(e.self_cpu_time_total)) for e in events if e.key.startswith("aten::")]
    dispatched = sum(int(e.count) for e in events if e.key.startswith("aten::"))
    result: dict[str, Any] = {
        "source": "torch.profiler",
        "wall_ms": wall_ms,
        "aten_ops_count": dispatched,
        "op_share": shares(cpu_ops),
        "op_share_basis": "cpu self time",
    }
    if steps:
        result["ops_per_decode_step"] = dispatched / steps
    if device == "cuda":
        dev = [(e.key, float(getattr(e, "self_device_time_total", 0.0))) for e in events]
        kernel_us = sum(t for _, t in dev)
        result["op_share"] = shares(dev)
        result["op_share_basis"] = "device self time"
        busy = min(kernel_us / 1e3 / wall_ms, 1.0) if wall_ms > 0 else 0.0
        result["device_busy_fraction"] = busy
        result["device_idle_fraction"] = 1.0 - busy
    return result
