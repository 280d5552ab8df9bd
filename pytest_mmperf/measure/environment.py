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

__all__ = ["COMPARABLE_KEYS", "collect", "differences", "fingerprint", "git_commit"]


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
    if device != "cuda":
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
    counts, the counting tool's version, address randomization and the hash seed."""
    facts: dict[str, Any] = {"clock": clock}
    if clock == "instructions":
        from pytest_mmperf.measure.clocks.instructions import valgrind_version

        facts["valgrind_version"] = valgrind_version()
        facts["aslr"] = os.environ.get("MMPERF_ASLR", "on")
        facts["python_hash_seed"] = os.environ.get("PYTHONHASHSEED")
    return facts
