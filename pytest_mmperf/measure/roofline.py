"""Roofline context: the floor that bytes moved per step imply, and how close we get.

Decode at small batch is memory-bound (paper: 0.024-0.058 FLOP/byte for the LLM and Chameleon):
every step must read all weights and the KV cache. At a bandwidth of B bytes/s the step cannot
take less than bytes / B; ``achieved_fraction`` = floor / measured step time (gpt-fast reports
~72% of bandwidth after compile on an A100). With a peak FLOP/s too, the step's arithmetic
intensity against the ridge point (peak FLOP/s over bandwidth) says whether the step is
memory- or compute-bound.
"""

from __future__ import annotations

import time
from typing import Any


def roofline(
    bytes_per_step: float,
    flops_per_step: float,
    step_ms: float,
    bandwidth_gbps: float,
    peak_tflops: float | None = None,
) -> dict[str, Any]:
    if bandwidth_gbps <= 0 or step_ms <= 0:
        raise ValueError("bandwidth and step time must be positive")
    memory_floor_ms = bytes_per_step / (bandwidth_gbps * 1e9) * 1e3
    out: dict[str, Any] = {
        "bytes_per_step": bytes_per_step,
        "flops_per_step": flops_per_step,
        "arithmetic_intensity_flop_per_byte": flops_per_step / bytes_per_step if bytes_per_step else None,
        "bandwidth_gbps": bandwidth_gbps,
        "memory_floor_ms": memory_floor_ms,
        "step_ms": step_ms,
        "achieved_fraction": memory_floor_ms / step_ms,
        "achieved_bandwidth_gbps": bytes_per_step / (step_ms / 1e3) / 1e9,
    }
    if peak_tflops:
        compute_floor_ms = flops_per_step / (peak_tflops * 1e12) * 1e3
        out["peak_tflops"] = peak_tflops
        out["compute_floor_ms"] = compute_floor_ms
        out["ridge_flop_per_byte"] = peak_tflops * 1e12 / (bandwidth_gbps * 1e9)
        out["bound"] = "memory" if memory_floor_ms >= compute_floor_ms else "compute"
    return out


def measure_peak_tflops(device: str, size: int = 1024, repeats: int = 5) -> float:
    """Matmul throughput of a square ``size`` matrix product (fp32 on CPU, bf16 on CUDA), best
    of ``repeats``: the practical compute ceiling, measured once per session."""
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    n = size * 4 if device == "cuda" else size
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e12


def measure_bandwidth_gbps(device: str, megabytes: int = 256, repeats: int = 5) -> float:
    """Copy bandwidth (read + write) of a large tensor, best of ``repeats``: a practical ceiling
    for what a decode step can stream, measured once per session."""
    import torch

    n = megabytes * (1 << 20) // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        dst.copy_(src)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n * 4 / best / 1e9
