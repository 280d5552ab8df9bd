"""The GPU's state per round through NVML (pynvml), when a driver is present.

Which device: the first entry of ``CUDA_VISIBLE_DEVICES`` (the GPU torch calls ``cuda:0``),
resolved the way CUDA reads it (:func:`resolve`): an index, a ``GPU-<uuid>``, a ``MIG-<uuid>``
or the older ``MIG-GPU-<uuid>/<gi>/<ci>``, whole or as a unique prefix. An entry NVML cannot
match is an error with the entry in it, never a silent fall back to GPU 0. (An index is NVML's
index, which is PCI-bus order; CUDA numbers GPUs the same way when ``CUDA_DEVICE_ORDER=PCI_BUS_ID``
or when the GPUs are alike. Set UUIDs to be sure.) On a MIG slice, memory is the slice's; clocks,
temperature and throttling are the parent GPU's (NVML answers those only for the whole GPU).

Per round (reset before it, read after it), every metric with its unit, none gated (they
describe the device, not the workload):

* ``device_memory_used_bytes``; ``gpu_utilization_pct`` (NVML's own sampling window, about a
  second: over millisecond rounds it mostly reflects earlier rounds; informative only);
* ``gpu_sm_clock_mhz``: the SM clock at the end of the round;
* ``gpu_temperature_celsius``: GPU temperature at the end of the round;
* ``gpu_throttled_count``: 1 when the round ran while the GPU slowed itself down (power cap,
  thermal or hardware slowdown, power brake) at its start or end, or when NVML's power/thermal
  violation counters advanced during it; else 0. Idle clocks and application-clock settings
  are not throttling. Such a round's timings are not comparable with an unthrottled one's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# NVML's clock-event (throttle) reason bits that slow a busy GPU down (nvml.h,
# nvmlClocksEventReason*): SwPowerCap, HwSlowdown, SwThermalSlowdown, HwThermalSlowdown,
# HwPowerBrakeSlowdown. GpuIdle (0x1), ApplicationsClocksSetting (0x2), SyncBoost (0x10) and
# DisplayClockSetting (0x100) are not.
SLOWDOWN_REASONS: dict[int, str] = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
}
SLOWDOWN_MASK = sum(SLOWDOWN_REASONS)
PERF_POLICY_POWER = 0  # NVML_PERF_POLICY_POWER
PERF_POLICY_THERMAL = 1  # NVML_PERF_POLICY_THERMAL
CLOCK_SM = 1  # NVML_CLOCK_SM
TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU

# Device-state metrics this probe records: the fixture records them ungated.
DEVICE_STATE_METRICS = frozenset({
    "device_memory_used_bytes", "gpu_utilization_pct", "gpu_sm_clock_mhz",
    "gpu_temperature_celsius", "gpu_throttled_count",
})


class NvmlLookupError(LookupError):
    """A ``CUDA_VISIBLE_DEVICES`` entry that names no device NVML sees (one-line message)."""


def _nvml() -> Any | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None  # no driver / no GPU: reported in the environment, never a crash
    return pynvml


def visible_entry(env: Mapping[str, str] | None = None) -> str:
    """The first ``CUDA_VISIBLE_DEVICES`` entry (what torch calls ``cuda:0``); ``"0"`` unset."""
    env = os.environ if env is None else env
    entries = [e.strip() for e in env.get("CUDA_VISIBLE_DEVICES", "0").split(",") if e.strip()]
    return entries[0] if entries else "0"


@dataclass(frozen=True)
class Device:
    """An NVML device: ``handle`` for memory, ``gpu`` (the parent of a MIG slice, else the same
    handle) for clocks, temperature and throttling."""

    handle: Any
    gpu: Any
    entry: str
    mig: bool = False


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_handles(nvml: Any) -> list[Any]:
    return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]


def mig_handles(nvml: Any, gpu: Any) -> list[Any]:
    """The MIG slices of a GPU (none when MIG is off)."""
    try:
        count = nvml.nvmlDeviceGetMaxMigDeviceCount(gpu)
    except nvml.NVMLError:
        return []
    out = []
    for i in range(count):
        try:
            out.append(nvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu, i))
        except nvml.NVMLError:
            continue  # an empty slot
    return out


def _by_uuid_prefix(nvml: Any, entry: str) -> Device:
    matches: list[Device] = []
    for gpu in gpu_handles(nvml):
        if entry.startswith("GPU-") and text(nvml.nvmlDeviceGetUUID(gpu)).startswith(entry):
            matches.append(Device(gpu, gpu, entry))
        if entry.startswith("MIG-"):
            for mig in mig_handles(nvml, gpu):
                if text(nvml.nvmlDeviceGetUUID(mig)).startswith(entry):
                    matches.append(Device(mig, gpu, entry, mig=True))
    if len(matches) != 1:
        found = "no device" if not matches else f"{len(matches)} devices"
        raise NvmlLookupError(f"CUDA_VISIBLE_DEVICES entry {entry!r}: {found} with that UUID in NVML")
    return matches[0]


def resolve(nvml: Any, entry: str) -> Device:
    """The NVML device a ``CUDA_VISIBLE_DEVICES`` entry names; :class:`NvmlLookupError` if none."""
    try:
        if entry.isdigit():
            gpu = nvml.nvmlDeviceGetHandleByIndex(int(entry))
            return Device(gpu, gpu, entry)
        if entry.startswith("MIG-GPU-"):  # CUDA 11.0's form: MIG-GPU-<gpu uuid>/<gi>/<ci>
            gpu_uuid, _, ids = entry.removeprefix("MIG-").partition("/")
            gi, _, ci = ids.partition("/")
            gpu = nvml.nvmlDeviceGetHandleByUUID(gpu_uuid)
            for mig in mig_handles(nvml, gpu):
                if (str(nvml.nvmlDeviceGetGpuInstanceId(mig)) == gi
                        and str(nvml.nvmlDeviceGetComputeInstanceId(mig)) == ci):
                    return Device(mig, gpu, entry, mig=True)
            raise NvmlLookupError(f"CUDA_VISIBLE_DEVICES entry {entry!r}: no MIG slice {gi}/{ci} on that GPU")
        if entry.startswith(("GPU-", "MIG-")):
            try:
                handle = nvml.nvmlDeviceGetHandleByUUID(entry)
            except nvml.NVMLError:
                return _by_uuid_prefix(nvml, entry)  # CUDA accepts unique UUID prefixes
            if entry.startswith("MIG-"):
                return Device(handle, nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle), entry, mig=True)
            return Device(handle, handle, entry)
    except nvml.NVMLError as exc:
        raise NvmlLookupError(f"CUDA_VISIBLE_DEVICES entry {entry!r}: NVML cannot open it ({exc})") from None
    raise NvmlLookupError(
        f"CUDA_VISIBLE_DEVICES entry {entry!r} is neither an index nor a GPU-/MIG- UUID"
    )


def slowdown_reasons(mask: int) -> list[str]:
    """Names of the slowdown bits set in a clock-event-reasons mask."""
    return [name for bit, name in SLOWDOWN_REASONS.items() if mask & bit]


class NvmlProbe:
    name = "nvml"

    def __init__(self, nvml: Any, device: Device) -> None:
        self._nvml = nvml
        self._device = device
        self._reasons_at_start = 0
        self._violations_at_start: tuple[int, ...] | None = None

    @classmethod
    def open(cls, entry: str | None = None) -> NvmlProbe | None:
        """The probe of ``entry`` (default: the first visible device); None without NVML.
        Raises :class:`NvmlLookupError` for an entry NVML does not know."""
        nvml = _nvml()
        if nvml is None:
            return None
        return cls(nvml, resolve(nvml, visible_entry() if entry is None else entry))

    def _reasons(self) -> int:
        gpu = self._device.gpu
        for query in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
            fn = getattr(self._nvml, query, None)
            if fn is None:
                continue
            try:
                return int(fn(gpu))
            except self._nvml.NVMLError:
                return 0
        return 0

    def _violations(self) -> tuple[int, ...] | None:
        """Cumulative ns the GPU spent held back by power and by thermal policy."""
        try:
            return tuple(
                int(self._nvml.nvmlDeviceGetViolationStatus(self._device.gpu, policy).violationTime)
                for policy in (PERF_POLICY_POWER, PERF_POLICY_THERMAL)
            )
        except self._nvml.NVMLError:
            return None  # not supported on this GPU

    def reset(self) -> None:
        self._reasons_at_start = self._reasons()
        self._violations_at_start = self._violations()

    def read(self) -> dict[str, float]:
        nvml, dev = self._nvml, self._device
        out: dict[str, float] = {}
        try:
            out["device_memory_used_bytes"] = float(nvml.nvmlDeviceGetMemoryInfo(dev.handle).used)
        except nvml.NVMLError:
            return {}
        queries: dict[str, Callable[[], Any]] = {
            "gpu_utilization_pct": lambda: nvml.nvmlDeviceGetUtilizationRates(dev.gpu).gpu,
            "gpu_sm_clock_mhz": lambda: nvml.nvmlDeviceGetClockInfo(dev.gpu, CLOCK_SM),
            "gpu_temperature_celsius": lambda: nvml.nvmlDeviceGetTemperature(dev.gpu, TEMPERATURE_GPU),
        }
        for key, query in queries.items():
            try:
                out[key] = float(query())
            except nvml.NVMLError:
                continue  # unsupported here (e.g. utilization under MIG)
        violations = self._violations()
        advanced = (
            violations is not None
            and self._violations_at_start is not None
            and any(b > a for a, b in zip(self._violations_at_start, violations))
        )
        slowed = bool((self._reasons_at_start | self._reasons()) & SLOWDOWN_MASK)
        out["gpu_throttled_count"] = 1.0 if slowed or advanced else 0.0
        return out


def persistence_mode(nvml: Any, device: Device) -> str | None:
    """``"enabled"`` / ``"disabled"``, or None where NVML cannot say (e.g. not on Linux)."""
    try:
        return "enabled" if int(nvml.nvmlDeviceGetPersistenceMode(device.gpu)) == 1 else "disabled"
    except nvml.NVMLError:
        return None
