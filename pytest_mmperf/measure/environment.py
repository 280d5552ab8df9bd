"""The environment a run measured on (``collect`` imports torch; only called when benchmarks run).

Which keys make two runs comparable, and the fingerprint hashed from them, are stored-data facts:
:mod:`pytest_mmperf.results.fingerprint`.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from pytest_mmperf.measure.memory.nvml import NvmlLookupError, persistence_mode, resolve, visible_entry
from pytest_mmperf.results.fingerprint import COMPARABLE_KEYS, differences, fingerprint

__all__ = ["COMPARABLE_KEYS", "collect", "cpu_facts", "differences", "fingerprint", "git_commit", "gpu_noise_facts"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _total_ram_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # pragma: no cover - psutil is a dependency; belt and braces
        return None


def _gpu_facts() -> dict[str, Any]:
    """GPU name, driver, memory, clocks, power limit, MIG and persistence mode from NVML, or why
    not. The GPU is the one the first ``CUDA_VISIBLE_DEVICES`` entry names (index or UUID)."""
    try:
        import pynvml
    except ImportError:
        return {"nvml": "pynvml not installed"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return {"nvml": f"unavailable ({type(exc).__name__})"}
    return nvml_facts(pynvml, visible_entry())


def nvml_facts(nvml: Any, entry: str) -> dict[str, Any]:
    """The device facts of ``entry`` through an initialized NVML module (or a fake)."""
    facts: dict[str, Any] = {"nvml": "ok"}
    try:
        facts["driver_version"] = _text(nvml.nvmlSystemGetDriverVersion())
        count = nvml.nvmlDeviceGetCount()
        facts["gpu_count"] = count
        if count:
            device = resolve(nvml, entry)
            facts["gpu_visible_entry"] = entry
            facts["gpu_uuid"] = _text(nvml.nvmlDeviceGetUUID(device.handle))
            facts["gpu_name"] = _text(nvml.nvmlDeviceGetName(device.gpu))
            facts["gpu_memory_bytes"] = int(nvml.nvmlDeviceGetMemoryInfo(device.handle).total)
            facts["gpu_persistence_mode"] = persistence_mode(nvml, device)
            facts.update(_optional_nvml(nvml, device.gpu))
    except NvmlLookupError as exc:
        facts["nvml"] = str(exc)
    except nvml.NVMLError as exc:
        facts["nvml"] = f"partial ({type(exc).__name__})"
    return facts


def _optional_nvml(pynvml: Any, h: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    queries = {
        "gpu_sm_clock_max_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
        "gpu_mem_clock_max_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM),
        "gpu_sm_clock_applications_mhz": lambda: pynvml.nvmlDeviceGetApplicationsClock(h, pynvml.NVML_CLOCK_SM),
        "gpu_power_limit_w": lambda: pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000.0,
        "mig_mode": lambda: pynvml.nvmlDeviceGetMigMode(h)[0],
        "gpu_compute_capability": lambda: ".".join(map(str, pynvml.nvmlDeviceGetCudaComputeCapability(h))),
    }
    for key, query in queries.items():
        try:
            out[key] = query()
        except pynvml.NVMLError:
            out[key] = None  # not supported on this GPU (e.g. MIG on consumer cards)
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def collect(device: str, clock: str = "time") -> dict[str, Any]:
    """Everything known about this machine and software stack; imports torch."""
    import torch

    try:
        import transformers

        transformers_version: str | None = transformers.__version__
    except ImportError:
        transformers_version = None
    env: dict[str, Any] = {
        "device": device,
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_bytes": _total_ram_bytes(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers_version": transformers_version,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
    env.update(_gpu_facts())
    env.update(cpu_facts())
    if device == "cuda":
        env.update({k: v for k, v in gpu_noise_facts().items() if k not in env})
    else:
        # a GPU on the machine does not matter to CPU runs; keep it informative only
        for key in ("gpu_count", "gpu_memory_bytes", "gpu_power_limit_w", "mig_mode", "gpu_persistence_mode"):
            if key in env:
                env[f"host_{key}"] = env.pop(key)
        if "gpu_name" in env:
            env["host_gpu_name"] = env.pop("gpu_name")
    env.update(clock_facts(clock))
    env["fingerprint"] = fingerprint(env)
    return env


def git_commit(cwd: Path) -> tuple[str | None, str | None]:
    """(commit SHA, branch) from CI variables or ``git``; (None, None) outside a repository."""
    sha = os.environ.get("MMPERF_COMMIT") or os.environ.get("GITHUB_SHA")
    branch = os.environ.get("MMPERF_BRANCH") or os.environ.get("GITHUB_HEAD_REF") or os.environ.get(
        "GITHUB_REF_NAME"
    )
    import subprocess

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() or None

    if not sha:
        sha = git("rev-parse", "HEAD")
        if sha and git("status", "--porcelain", "--untracked-files=no"):
            sha = f"{sha}-dirty"
    if not branch:
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
    return sha, branch


def clock_facts(clock: str) -> dict[str, Any]:
    """What a measurement's numbers depend on besides the machine: the clock and, for instruction
    counts, the counting tool's version, address randomization, the hash seed, the instruction-set
    caps, the CPU that CPUID reports under valgrind, the interpreter's build and the C libraries."""
    facts: dict[str, Any] = {"clock": clock}
    if clock == "instructions":
        from pytest_mmperf.measure.clocks import instructions

        facts["valgrind_version"] = instructions.valgrind_version()
        facts["aslr"] = os.environ.get("MMPERF_ASLR", "on")
        facts["python_hash_seed"] = os.environ.get("PYTHONHASHSEED")
        facts["python_malloc"] = os.environ.get("PYTHONMALLOC")
        facts["isa_caps"] = instructions.isa_caps()
        # what the counted code runs on and with (results.fingerprint.INSTRUCTION_KEYS): the CPU as
        # valgrind presents it, not the host's; the interpreter's build; glibc and libstdc++
        facts["guest_cpu"] = instructions.process_guest_cpu()
        facts["python_build"] = instructions.python_build()
        facts["system_libraries"] = instructions.system_libraries()
    return facts


# -- what makes measurements noisy: recorded in the environment, checked by `mmperf doctor` ------
# Informational keys: not in COMPARABLE_KEYS, so they never change the fingerprint.


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo, else the platform's)."""
    return _cpu_model()


class SystemFiles:
    """Reads /proc and /sys; tests pass a fake with the same two methods."""

    def read(self, path: str) -> str | None:
        try:
            return Path(path).read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return None

    def glob(self, pattern: str) -> list[str]:
        import glob

        return sorted(glob.glob(pattern))


def cpu_facts(files: SystemFiles | None = None) -> dict[str, Any]:
    """CPU frequency governor and boost, load, SMT, temperature, valgrind and thread settings;
    a value is None where this machine does not expose it (VMs and containers often do not)."""
    import shutil

    fs = files or SystemFiles()
    governors = [g for p in fs.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")
                 if (g := fs.read(p))]
    boost = fs.read("/sys/devices/system/cpu/cpufreq/boost")
    no_turbo = fs.read("/sys/devices/system/cpu/intel_pstate/no_turbo")
    if boost in ("0", "1"):
        boost_on: bool | None = boost == "1"
    elif no_turbo in ("0", "1"):
        boost_on = no_turbo == "0"
    else:
        boost_on = None
    loadavg = (fs.read("/proc/loadavg") or "").split()
    temps = []
    for p in fs.glob("/sys/class/thermal/thermal_zone*/temp"):
        raw = fs.read(p)
        if raw and raw.lstrip("-").isdigit():
            temps.append(int(raw) / 1000.0)  # millidegrees Celsius
    smt = fs.read("/sys/devices/system/cpu/smt/active")
    return {
        "cpu_governors": sorted(set(governors)) or None,
        "cpu_boost": boost_on,
        "load_avg_1m": float(loadavg[0]) if loadavg else None,
        "cpu_temperature_max_c": max(temps) if temps else None,
        "smt_active": smt == "1" if smt in ("0", "1") else None,
        "valgrind": shutil.which("valgrind"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def gpu_noise_facts() -> dict[str, Any]:
    """NVML facts that make GPU timings noisy: persistence mode, current vs maximum clocks,
    throttle reasons, temperature and the other processes on the GPU; {} without NVML or GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        if not pynvml.nvmlDeviceGetCount():
            return {}
        device = resolve(pynvml, visible_entry())
    except Exception:  # no driver, no library, no device: nothing to check
        return {}
    me = os.getpid()
    gpu = device.gpu  # clocks, temperature and throttling belong to the whole GPU (a MIG slice's parent)
    queries = {
        "gpu_persistence_mode": lambda: persistence_mode(pynvml, device),
        "gpu_sm_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(gpu, pynvml.NVML_CLOCK_SM),
        "gpu_sm_clock_max_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(gpu, pynvml.NVML_CLOCK_SM),
        "gpu_temperature_c": lambda: pynvml.nvmlDeviceGetTemperature(gpu, pynvml.NVML_TEMPERATURE_GPU),
        "gpu_throttle_reasons": lambda: int(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(gpu)),
        "mig_mode": lambda: pynvml.nvmlDeviceGetMigMode(gpu)[0],
        "gpu_other_processes": lambda: sorted(
            int(p.pid) for p in pynvml.nvmlDeviceGetComputeRunningProcesses(device.handle) if int(p.pid) != me
        ),
    }
    out: dict[str, Any] = {}
    for key, query in queries.items():
        try:
            out[key] = query()
        except Exception:  # not supported on this GPU or driver
            out[key] = None
    return out
