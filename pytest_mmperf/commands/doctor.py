"""``mmperf doctor``: what on this machine will make measurements noisy or wrong, each with the fix.

Checks the CPU (frequency governor, boost, load, other busy processes, temperature, SMT, thread
settings), the GPU through NVML (persistence mode, clocks and throttling, MIG, temperature, other
processes) and the tools (valgrind for ``--mmperf-clock=instructions``). The same facts are
recorded in every results document's environment (they do not change its fingerprint).
Exit status: 0; with ``--strict`` 1 when any check warns.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

OK, WARN, INFO = "ok", "warn", "info"

# NVML clock-throttle reason bits that mean the GPU slowed itself down (not idle or app clocks)
_THROTTLE_BITS = {0x4: "software power cap", 0x8: "hardware slowdown", 0x20: "software thermal slowdown",
                  0x40: "hardware thermal slowdown", 0x80: "power brake"}
BUSY_CPU_PERCENT = 20.0  # another process above this share of one core competes with the benchmark
HOT_CPU_C = 85.0
HOT_GPU_C = 80.0


@dataclass(frozen=True)
class Finding:
    status: str  # ok, warn or info
    check: str
    observed: str
    fix: str = ""


def busy_processes(interval_s: float = 0.5, limit: int = 5) -> list[tuple[int, str, float]]:
    """(pid, name, % of one core) of other processes using the CPU over ``interval_s``."""
    import time

    import psutil

    me = os.getpid()
    procs = []
    for p in psutil.process_iter(["pid", "name"]):
        try:
            p.cpu_percent(None)  # the first call starts the interval
            procs.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    time.sleep(interval_s)  # cpu_percent is a rate: it needs an interval to measure over
    busy = []
    for p in procs:
        try:
            share = p.cpu_percent(None)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if p.pid != me and share >= BUSY_CPU_PERCENT:
            busy.append((p.pid, str(p.info.get("name") or "?"), float(share)))
    return sorted(busy, key=lambda t: -t[2])[:limit]


def cpu_findings(facts: Mapping[str, Any], cpus: int, busy: Sequence[tuple[int, str, float]]) -> list[Finding]:
    out: list[Finding] = [Finding(INFO, "CPU", f"{facts.get('cpu_model') or 'unknown model'}, {cpus} CPU(s) "
                                  "available to this process")]
    governors = facts.get("cpu_governors")
    if governors is None:
        out.append(Finding(INFO, "CPU frequency governor", "not exposed (typical in a VM or container)"))
    elif set(governors) != {"performance"}:
        out.append(Finding(WARN, "CPU frequency governor", ", ".join(governors),
                           "sudo cpupower frequency-set -g performance"))
    else:
        out.append(Finding(OK, "CPU frequency governor", "performance"))
    boost = facts.get("cpu_boost")
    if boost is None:
        out.append(Finding(INFO, "CPU boost (turbo)", "not exposed"))
    elif boost:
        out.append(Finding(WARN, "CPU boost (turbo)", "on: clocks follow temperature and load",
                           "echo 0 | sudo tee /sys/devices/system/cpu/cpufreq/boost "
                           "(Intel: echo 1 | sudo tee /sys/devices/system/cpu/intel_pstate/no_turbo)"))
    else:
        out.append(Finding(OK, "CPU boost (turbo)", "off"))
    load = facts.get("load_avg_1m")
    if load is None:
        out.append(Finding(INFO, "load average", "unknown"))
    elif load >= max(1.0, 0.5 * cpus):
        out.append(Finding(WARN, "load average", f"{load:.2f} over 1 min on {cpus} CPU(s)",
                           "run benchmarks on an otherwise idle machine (stop other jobs, or use a "
                           "dedicated runner); compare only in-run ratios meanwhile (--mmperf-absolute=report)"))
    else:
        out.append(Finding(OK, "load average", f"{load:.2f} over 1 min on {cpus} CPU(s)"))
    if busy:
        shown = ", ".join(f"{name} (pid {pid}, {share:.0f}%)" for pid, name, share in busy)
        out.append(Finding(WARN, "other busy processes", shown, "stop them while measuring"))
    else:
        out.append(Finding(OK, "other busy processes", f"none above {BUSY_CPU_PERCENT:.0f}% of a core"))
    temp = facts.get("cpu_temperature_max_c")
    if temp is None:
        out.append(Finding(INFO, "CPU temperature", "not exposed"))
    elif temp >= HOT_CPU_C:
        out.append(Finding(WARN, "CPU temperature", f"{temp:.0f} °C: the CPU throttles",
                           "let it cool, check the cooling; do not benchmark right after a heavy job"))
    else:
        out.append(Finding(OK, "CPU temperature", f"{temp:.0f} °C"))
    smt = facts.get("smt_active")
    if smt:
        out.append(Finding(INFO, "SMT (hyper-threading)", "on: sibling threads share a core",
                           "pin the benchmark to one thread per core (taskset) or turn SMT off"))
    threads = facts.get("omp_num_threads")
    out.append(Finding(INFO, "threads", f"OMP_NUM_THREADS={threads or 'unset'}; pytest-mmperf sets torch to "
                       "--mmperf-threads (default 1: resists noise from other processes)"))
    if facts.get("valgrind"):
        out.append(Finding(OK, "valgrind (instruction mode)", str(facts["valgrind"])))
    else:
        out.append(Finding(WARN, "valgrind (instruction mode)", "not installed: --mmperf-clock=instructions "
                           "cannot count instructions", "sudo apt-get install valgrind"))
    return out


def gpu_findings(facts: Mapping[str, Any]) -> list[Finding]:
    if not facts:
        return [Finding(INFO, "GPU", "no NVIDIA GPU visible through NVML (CPU measurements only)")]
    out: list[Finding] = []
    pm = facts.get("gpu_persistence_mode")  # "enabled" / "disabled" / None (NVML cannot say)
    if pm == "disabled":
        out.append(Finding(WARN, "GPU persistence mode", "off: the driver re-initializes between processes",
                           "sudo nvidia-smi -pm 1"))
    elif pm == "enabled":
        out.append(Finding(OK, "GPU persistence mode", "on"))
    sm, sm_max = facts.get("gpu_sm_clock_mhz"), facts.get("gpu_sm_clock_max_mhz")
    if sm is not None and sm_max:
        out.append(Finding(INFO, "GPU clocks", f"SM {sm} MHz now, {sm_max} MHz max; unlocked clocks boost "
                           "and fall with temperature", "sudo nvidia-smi --lock-gpu-clocks=BASE,BASE "
                           "(the base clock of nvidia-smi -q -d CLOCK; --reset-gpu-clocks undoes it)"))
    reasons = facts.get("gpu_throttle_reasons")
    if reasons:
        named = [text for bit, text in _THROTTLE_BITS.items() if reasons & bit]
        if named:
            out.append(Finding(WARN, "GPU throttling", ", ".join(named),
                               "check cooling and the power limit (nvidia-smi -q -d PERFORMANCE)"))
    temp = facts.get("gpu_temperature_c")
    if temp is not None:
        status = WARN if temp >= HOT_GPU_C else OK
        out.append(Finding(status, "GPU temperature", f"{temp} °C",
                           "let it cool before measuring" if status == WARN else ""))
    mig = facts.get("mig_mode")
    if mig:
        out.append(Finding(INFO, "MIG", "enabled: a benchmark gets a slice of the GPU; compare only with "
                           "baselines from the same slice profile", "sudo nvidia-smi -mig 0 for whole-GPU numbers"))
    others = facts.get("gpu_other_processes")
    if others:
        out.append(Finding(WARN, "other GPU processes", "pids " + ", ".join(map(str, others)),
                           "stop them while measuring (nvidia-smi lists them)"))
    elif others is not None:
        out.append(Finding(OK, "other GPU processes", "none"))
    return out


def diagnose(
    cpu: Mapping[str, Any],
    gpu: Mapping[str, Any],
    cpus: int,
    busy: Sequence[tuple[int, str, float]],
) -> list[Finding]:
    return cpu_findings(cpu, cpus, busy) + gpu_findings(gpu)


def render(findings: Sequence[Finding]) -> list[str]:
    lines = ["mmperf doctor: what on this machine will make measurements noisy or wrong"]
    for f in findings:
        lines.append(f"  {f.status.upper():<4}  {f.check}: {f.observed}")
        if f.fix and f.status != OK:
            lines.append(f"        fix: {f.fix}")
    n = sum(1 for f in findings if f.status == WARN)
    lines.append(f"{n} warning(s)." if n else "No warnings.")
    return lines


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="what on this machine will make measurements noisy or wrong, with the fix",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--json", action="store_true", help="print the facts and findings as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when any check warns")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, *, collect: Callable[[], tuple[dict[str, Any], dict[str, Any]]] | None = None,
        busy: Callable[[], list[tuple[int, str, float]]] = busy_processes) -> int:
    from pytest_mmperf.measure import environment

    if collect is not None:
        cpu, gpu = collect()
    else:
        cpu = {"cpu_model": environment.cpu_model(), **environment.cpu_facts()}
        gpu = environment.gpu_noise_facts()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    findings = diagnose(cpu, gpu, cpus, busy())
    if args.json:
        print(json.dumps({"cpu": cpu, "gpu": gpu, "findings": [asdict(f) for f in findings]}, indent=1))
    else:
        print("\n".join(render(findings)))
    return 1 if args.strict and any(f.status == WARN for f in findings) else 0
