"""One command that proves the CUDA paths on a GPU in minutes (run by ``scripts/gpu_check``).

Checks, in order (budget under 8 minutes on one H200):

1. device facts: NVML by the ``CUDA_VISIBLE_DEVICES`` entry (UUIDs too), persistence mode,
   clocks, power limit;
2. timing: a known kernel (an 8192^3 bf16 matmul) by CUDA events and by host clock, and a
   launch-bound loop of tiny kernels where the CUDA-event interval includes the GPU's idle gaps
   and the profiler's device events show how little of it was busy;
3. benchmarks through pytest (``--mmperf-profile``): llm ``eager``, ``static_cache+cuda_graphs``
   and ``stack`` at tiny; llm ``static_cache+cuda_graphs`` and ``stack``, Chameleon (i2t)
   ``static_cache+cuda_graphs`` and Seamless (s2st) ``eager`` at small;
4. a compact report from the results documents: latency, speedup, quality verdict, CUDA-graph
   health (captured, replayed, re-records, skips), SDPA backend, device busy per decode step,
   GPU memory, SM clock, temperature, throttled rounds.

Without a GPU it says so in one line and exits 3 (``--dry``: prints the plan, exits 0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

NO_GPU = 3
ROOT = Path(__file__).resolve().parent.parent

# (scale, node ids, timeout in seconds): one pytest process per scale (the scale is a run option)
BENCHMARKS: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("tiny", (
        "suites/mmperf_suites/test_llm.py::test_llm[t2t-eager]",
        "suites/mmperf_suites/test_llm.py::test_llm[t2t-static_cache+cuda_graphs]",
        "suites/mmperf_suites/test_llm.py::test_llm[t2t-stack]",
    ), 190),
    ("small", (
        "suites/mmperf_suites/test_llm.py::test_llm[t2t-static_cache+cuda_graphs]",
        "suites/mmperf_suites/test_llm.py::test_llm[t2t-stack]",
        "suites/mmperf_suites/test_text_image.py::test_text_image[i2t-static_cache+cuda_graphs]",
        "suites/mmperf_suites/test_speech.py::test_speech[s2st-eager]",
    ), 250),
)
HEALTH = ("cuda_graphs_recorded_count", "cuda_graphs_replayed_count", "cuda_graph_rerecords_count",
          "cuda_graph_skips_count")


def plan() -> list[str]:
    lines = ["device facts (NVML by CUDA_VISIBLE_DEVICES entry, persistence mode, clocks)",
             "timing: 8192^3 bf16 matmul by CUDA events vs host; 2000 tiny kernels (launch-bound)"]
    for scale, ids, timeout in BENCHMARKS:
        lines += [f"benchmark at {scale} (<= {timeout} s): {node.split('::')[1]}" for node in ids]
    return lines


def device_facts() -> list[str]:
    from pytest_mmperf.measure import environment

    env = environment.collect("cuda")
    keys = ("gpu_name", "gpu_visible_entry", "gpu_uuid", "nvml", "driver_version", "cuda_version",
            "torch_version", "gpu_persistence_mode", "gpu_sm_clock_max_mhz",
            "gpu_sm_clock_applications_mhz", "gpu_power_limit_w", "mig_mode", "fingerprint")
    return [f"facts: {k}={env.get(k)}" for k in keys]


def timing() -> list[str]:
    """Host vs CUDA-event time on a compute-bound and on a launch-bound piece of work."""
    import torch

    from pytest_mmperf.measure.clocks.cuda import CudaEventClock
    from pytest_mmperf.measure.profiling import device_busy

    clock = CudaEventClock.for_current_device()
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ a  # warm-up: cuBLAS heuristics, clocks up
    clock.synchronize()
    rows = []
    for _ in range(5):
        start = clock.mark()
        a @ a
        end = clock.mark()
        clock.synchronize()
        rows.append(clock.interval(start, end))
    dev = sorted(r.device_ms for r in rows if r.device_ms is not None)[2]
    host = sorted(r.host_ms for r in rows)[2]
    tflops = 2 * n**3 / (dev / 1e3) / 1e12
    out = [f"timing: matmul {n}^3 bf16: device {dev:.3f} ms ({tflops:.0f} TFLOP/s), host launch {host:.3f} ms"]

    x = torch.zeros(1, device="cuda")
    launches = 2000
    from torch.profiler import DeviceType, ProfilerActivity, profile

    clock.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter_ns()
        start = clock.mark()
        for _ in range(launches):
            x.add_(1)
        end = clock.mark()
        host_ms = (time.perf_counter_ns() - t0) / 1e6
        clock.synchronize()
    iv = clock.interval(start, end)
    kernels = [(e.time_range.start, e.time_range.end) for e in prof.events()
               if e.device_type != DeviceType.CPU and not e.is_user_annotation]
    span = (min(k[0] for k in kernels), max(k[1] for k in kernels)) if kernels else (0.0, 0.0)
    busy = device_busy(kernels, [], span)["device_busy_fraction"]
    out.append(
        f"timing: {launches} tiny kernels: host {host_ms:.2f} ms, CUDA-event interval {iv.device_ms:.2f} ms "
        f"(includes idle gaps), device busy {busy:.0%} of their span (profiler device events)"
    )
    return out


def run_benchmarks(out_dir: Path) -> tuple[list[Path], list[str]]:
    docs, lines = [], []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), str(ROOT / "suites"), str(ROOT / "optimizations"), os.environ.get("PYTHONPATH", "")])}
    for scale, ids, timeout in BENCHMARKS:
        doc = out_dir / f"results-{scale}.json"
        cmd = [sys.executable, "-m", "pytest", *ids, "--mmperf", "--mmperf-device=cuda",
               f"--mmperf-scale={scale}", "--mmperf-rounds=5", "--mmperf-history=off",
               "--mmperf-profile", f"--mmperf-json={doc}", "-q", "-p", "no:cacheprovider"]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
            tail = (proc.stdout.strip().splitlines() or [""])[-1]
            lines.append(f"pytest {scale}: rc={proc.returncode} in {time.perf_counter() - t0:.0f} s: {tail}")
            (out_dir / f"pytest-{scale}.log").write_text(proc.stdout + proc.stderr)
        except subprocess.TimeoutExpired:
            lines.append(f"pytest {scale}: stopped after {timeout} s (budget); partial results only")
        if doc.exists():
            docs.append(doc)
    return docs, lines


def _median(bench: dict[str, Any], name: str) -> float | None:
    metric = bench.get("metrics", {}).get(name)
    return None if metric is None else float(metric["median"])


def _sum(bench: dict[str, Any], name: str) -> float | None:
    metric = bench.get("metrics", {}).get(name)
    return None if metric is None else float(sum(metric["samples"]))


def summarize(doc: dict[str, Any]) -> list[str]:
    """One line per benchmark of a results document (pure: tested on CPU)."""
    lines = []
    for b in doc.get("benchmarks", []):
        parts = [f"{b['id']} [{b.get('scale')}]"]
        lat = _median(b, "latency_ms")
        if lat is not None:
            parts.append(f"p50 {lat:.2f} ms")
        tpot = _median(b, "tpot_ms")
        if tpot is not None:
            parts.append(f"tpot {tpot:.3f} ms")
        speedup = b.get("speedup_vs_eager")
        if speedup:
            parts.append(f"speedup {speedup['median']:.2f}x [{speedup['ci_low']:.2f}, {speedup['ci_high']:.2f}]")
        quality = b.get("quality") or {}
        if quality:
            parts.append(f"quality {quality.get('verdict')}")
        health = {k: _median(b, k) for k in HEALTH}
        if health["cuda_graphs_recorded_count"] is not None:
            parts.append("graphs recorded {:.0f} replayed {} re-records {:.0f} skips {:.0f}".format(
                health["cuda_graphs_recorded_count"],
                "yes" if health["cuda_graphs_replayed_count"] else "NO",
                health["cuda_graph_rerecords_count"] or 0, health["cuda_graph_skips_count"] or 0))
        sdpa = {k.removeprefix("sdpa_").removesuffix("_count"): _median(b, k)
                for k in b.get("metrics", {}) if k.startswith("sdpa_") and k.endswith("_count")}
        ran = [name for name, count in sdpa.items() if count]
        if sdpa:
            parts.append(f"sdpa {'+'.join(ran) or 'none'}")
        profile = b.get("profile") or {}
        if "device_busy_fraction" in profile:
            parts.append(f"busy/step {profile['device_busy_fraction']:.0%}")
        peak = _median(b, "peak_memory_bytes")
        if peak is not None:
            parts.append(f"peak {peak / 2**30:.2f} GiB")
        clock = _median(b, "gpu_sm_clock_mhz")
        if clock is not None:
            parts.append(f"SM {clock:.0f} MHz")
        temp = _median(b, "gpu_temperature_celsius")
        if temp is not None:
            parts.append(f"{temp:.0f} C")
        throttled = _sum(b, "gpu_throttled_count")
        if throttled:
            parts.append(f"THROTTLED rounds {throttled:.0f}")
        lines.append("bench: " + "; ".join(parts))
    return lines


def problems(doc: dict[str, Any]) -> list[str]:
    """What a GPU run must not show: failed quality, graphs never replayed."""
    out = []
    for b in doc.get("benchmarks", []):
        if (b.get("quality") or {}).get("verdict") == "fail":
            out.append(f"{b['id']}: quality failed")
        if _median(b, "cuda_graphs_recorded_count") is not None and not _median(b, "cuda_graphs_replayed_count"):
            out.append(f"{b['id']}: CUDA graphs were not replayed")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="print the plan; on a machine without a GPU exit 0")
    parser.add_argument("--out", default=".mmperf/gpu_check", help="where results and logs go")
    parser.add_argument("--no-benchmarks", action="store_true", help="facts and timing only")
    args = parser.parse_args(argv)
    import torch

    has_gpu = torch.cuda.is_available()
    if args.dry:
        for line in plan():
            print(f"plan: {line}")
    if not has_gpu:
        print("gpu_check: no GPU (torch.cuda.is_available() is False); nothing checked")
        return 0 if args.dry else NO_GPU
    if args.dry:
        return 0
    out_dir = ROOT / args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report = [*device_facts(), *timing()]
    failures: list[str] = []
    if not args.no_benchmarks:
        docs, lines = run_benchmarks(out_dir)
        report += lines
        for path in docs:
            doc = json.loads(path.read_text())
            report += summarize(doc)
            failures += problems(doc)
        if not docs:
            failures.append("no results document was written")
    report.append(f"gpu_check: {time.perf_counter() - t0:.0f} s; "
                  + ("problems: " + "; ".join(failures) if failures else "no problems"))
    text = "\n".join(report)
    print(text)
    (out_dir / "report.txt").write_text(text + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
