"""Characterization (``--mmperf-profile``): where time goes, by operator class.

The paper's core finding is *where* inference time goes: linear layers at small batch,
attention at large batch and long context, beam-search KV-cache reorder in Seamless, and on a
GPU long idle gaps during decode. One extra call of the benchmark runs under ``torch.profiler``;
every aten operator's self time is attributed to a class by name (:func:`classify`, pure and
tested without torch).

On CUDA the figures come from the profiler's *device* events only (kernels, memcpy, memset:
what the GPU executed), never from CPU ops, whose ``device_time`` is the same kernels counted a
second time:

* ``op_share`` is each class's share of device time, classified by kernel name;
* ``device_busy_fraction`` is, over the decode steps, the time covered by at least one device
  event (the union of their intervals, so overlapping kernels on two streams count once) within
  each step's window, over the windows' total length. A step's window is the host interval of
  its phase mark (``tpot``, or LayerSkip's ``speculation_round``), recorded while profiling as a
  ``record_function`` range (:func:`annotate_phase`). ``device_busy_per_step`` gives the
  median/min/max over steps; ``device_busy_fraction_call`` the same over the whole call.

Host time vs device time: ``latency_host_ms`` is until the call returned (launch work);
``latency_ms`` until the device finished; ``latency_device_ms`` is between two CUDA events, an
interval on the GPU's timeline that *includes* the gaps in which the GPU waited for the host.
None of these is idle time: a launch-bound decode step can have equal host and device latency
and still keep the GPU busy a fraction of it. Idle time is what the busy union leaves uncovered.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
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


STEP_PHASES = ("tpot", "speculation_round")
ANNOTATION_PREFIX = "mmperf.phase:"

Interval = tuple[float, float]  # (start, end), microseconds on the profiler's clock


def annotate_phase(name: str) -> AbstractContextManager[Any]:
    """The phase mark used while profiling: a profiler range named ``mmperf.phase:<name>``."""
    from torch.profiler import record_function

    return record_function(ANNOTATION_PREFIX + name)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping intervals covering the same time."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def covered(merged: Sequence[Interval], window: Interval) -> float:
    """Length of ``window`` covered by the (merged) intervals."""
    lo, hi = window
    return sum(max(0.0, min(end, hi) - max(start, lo)) for start, end in merged)


def busy_fractions(device: Iterable[Interval], windows: Sequence[Interval]) -> list[float]:
    """Per window, the fraction of it in which at least one device event ran. Never above 1
    by construction (a union within the window), so nothing needs clamping."""
    merged = merge(device)
    return [covered(merged, w) / (w[1] - w[0]) if w[1] > w[0] else 0.0 for w in windows]


def device_busy(device: Sequence[Interval], windows: Sequence[Interval],
                call: Interval) -> dict[str, Any]:
    """The device-busy figures of one profiled call (see the module docstring)."""
    merged = merge(device)
    out: dict[str, Any] = {}
    call_len = call[1] - call[0]
    out["device_busy_fraction_call"] = covered(merged, call) / call_len if call_len > 0 else 0.0
    steps = [w for w in windows if w[1] > w[0]]
    if steps:
        per_step = sorted(covered(merged, w) / (w[1] - w[0]) for w in steps)
        busy = sum(covered(merged, w) for w in steps) / sum(w[1] - w[0] for w in steps)
        out["device_busy_fraction"] = busy
        out["device_idle_fraction"] = 1.0 - busy
        out["device_busy_basis"] = "union of device events within each decode step's window"
        out["device_busy_per_step"] = {
            "steps_count": len(per_step),
            "median_fraction": per_step[len(per_step) // 2],
            "min_fraction": per_step[0],
            "max_fraction": per_step[-1],
        }
    else:
        out["device_busy_fraction"] = out["device_busy_fraction_call"]
        out["device_idle_fraction"] = 1.0 - out["device_busy_fraction_call"]
        out["device_busy_basis"] = "union of device events over the whole call (no decode steps)"
    return out


def profile_call(fn: Callable[[], Any], device: str, steps: int = 0) -> dict[str, Any]:
    """Run ``fn`` once under torch.profiler and characterize it.

    ``steps``: decode steps in one call (from the ``tpot`` phase count), to report operators
    dispatched per step: the CPU-side cost the paper finds dominates decode at batch 1. The
    caller makes phase marks inside ``fn`` into :func:`annotate_phase` ranges (the fixture does)
    so that the device-busy figures have step windows.
    """
    import torch
    from torch.profiler import DeviceType, ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(ProfilerActivity.CUDA)
        torch.cuda.synchronize()
    t0 = time.perf_counter_ns()
    with profile(activities=activities) as prof, torch.profiler.record_function(ANNOTATION_PREFIX + "call"):
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
    result["operators"] = compact_profile(operator_rows(events), steps)  # what a diagnosis compares
    if device == "cuda":
        raw = prof.events()
        kernels = [e for e in raw if e.device_type != DeviceType.CPU and not e.is_user_annotation]
        marks = [e for e in raw if e.device_type == DeviceType.CPU and e.is_user_annotation
                 and e.name.startswith(ANNOTATION_PREFIX)]
        calls = [(e.time_range.start, e.time_range.end) for e in marks
                 if e.name == ANNOTATION_PREFIX + "call"]
        windows = [(e.time_range.start, e.time_range.end) for e in marks
                   if e.name.removeprefix(ANNOTATION_PREFIX) in STEP_PHASES]
        intervals = [(e.time_range.start, e.time_range.end) for e in kernels]
        result["op_share"] = shares((e.name, e.time_range.elapsed_us()) for e in kernels)
        result["op_share_basis"] = "device event time (kernels, copies)"
        result["device_events_count"] = len(kernels)
        call = calls[0] if calls else (min(w[0] for w in intervals or [(0.0, 0.0)]),
                                       max(w[1] for w in intervals or [(0.0, 0.0)]))
        result.update(device_busy(intervals, windows, call))
    return result


# -- the compact per-operator profile (diagnosis of a regression) -------------------------------------
COMPACT_VERSION = 1
TOP_OPERATORS = 25  # kept per benchmark: enough to name a cause, small enough for a committed baseline


def _sig(x: float, digits: int = 3) -> float:
    """Rounded to ``digits`` significant digits: a profiled call's times carry no more."""
    return float(f"{x:.{digits}g}") if x else 0.0


def compact_profile(
    ops: Iterable[tuple[str, float, float, float, float]], steps: int = 0, top: int = TOP_OPERATORS
) -> dict[str, Any]:
    """(name, calls, self_us, total_us, self_bytes) per operator of one call -> the compact profile
    stored with a record (``profile["operators"]``): the ``top`` operators by self time, rounded,
    plus what the rest add up to and the rest's calls by name. Pure; the judge's diagnosis reads it."""
    rows = sorted(((n, c, s, t, b) for n, c, s, t, b in ops if c > 0), key=lambda r: (-r[2], r[0]))
    kept, rest = rows[:top], rows[top:]
    # an operator that allocates a lot but takes little time must not be cut (a kept buffer)
    by_bytes = sorted(rest, key=lambda r: -r[4])[:5]
    kept += [r for r in by_bytes if r[4] > 0]
    rest = [r for r in rest if r not in kept]
    return {
        "version": COMPACT_VERSION,
        "steps": int(steps),
        "truncated": bool(rest),
        "total_self_us": _sig(sum(r[2] for r in rows), 4),
        "total_self_bytes": _sig(sum(max(r[4], 0.0) for r in rows), 4),
        "rest": {"operators": len(rest), "calls": int(sum(r[1] for r in rest)),
                 "self_us": _sig(sum(r[2] for r in rest))},
        # every other operator's calls (names and counts only): "new" and "vanished" stay exact
        "rest_calls": {n: int(c) for n, c, _, _, _ in sorted(rest)},
        "ops": {n: {"calls": int(c), "self_us": _sig(s), "total_us": _sig(t), "self_bytes": int(b)}
                for n, c, s, t, b in kept},
    }


KERNEL_PREFIX = "kernel::"  # a device kernel's row in the compact profile (its name cut to 100 characters)


def operator_rows(events: Iterable[Any]) -> list[tuple[str, float, float, float, float]]:
    """The aten operators of ``prof.key_averages()`` as (name, calls, self_us, total_us, self_bytes);
    on a GPU also every device kernel, as ``kernel::<name>`` with its device time (the aten
    operators' times are then what the host spent launching)."""
    rows = []
    for e in events:
        key = str(e.key)
        if key.startswith("aten::"):
            rows.append((key, float(e.count), float(e.self_cpu_time_total), float(e.cpu_time_total),
                         float(getattr(e, "self_cpu_memory_usage", 0) or 0)))
            continue
        device_us = float(getattr(e, "self_device_time_total", 0) or 0)
        if device_us > 0 and not float(getattr(e, "self_cpu_time_total", 0) or 0):
            rows.append((KERNEL_PREFIX + key[:100], float(e.count), device_us,
                         float(getattr(e, "device_time_total", device_us) or device_us), 0.0))
    return rows


def profile_operators(fn: Callable[[], Any], device: str, steps: int = 0) -> dict[str, Any]:
    """Run ``fn`` once under torch.profiler (with memory) and return its compact profile."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(ProfilerActivity.CUDA)
        torch.cuda.synchronize()
    with profile(activities=activities, profile_memory=True) as prof:
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
    return compact_profile(operator_rows(prof.key_averages()), steps)


TORCH_TRACE_LOGGER = "torch.__trace"


def quiet_torch_trace() -> bool:
    """Keep torch's structured-trace log (``torch.__trace``: hundreds of DEBUG records per
    compiled benchmark) out of pytest's captured logs, where they buried a failure's message.

    torch marks that logger non-propagating and pytest attaches its capture handlers to every
    non-propagating logger, which also makes torch build each trace record. Made propagating and
    raised above CRITICAL, it reaches no handler of pytest's and torch skips the work. Left alone
    when the user asked for a trace (``TORCH_TRACE``). Returns whether it changed anything.
    """
    import logging
    import os

    if os.environ.get("TORCH_TRACE"):
        return False
    log = logging.getLogger(TORCH_TRACE_LOGGER)
    log.propagate = True
    log.setLevel(logging.CRITICAL + 1)
    return True
