"""NVML by UUID, per-round device state and persistence mode, on a fake pynvml."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_mmperf.measure import environment
from pytest_mmperf.measure.memory import nvml as nv
from pytest_mmperf.results.fingerprint import fingerprint
from pytest_mmperf.results.metrics import unit_of


class NVMLError(Exception):
    pass


@dataclass
class FakeGpu:
    uuid: str
    migs: list[Any] = field(default_factory=list)
    parent: Any = None
    gi: int = 0
    ci: int = 0
    reasons: int = 0x1  # idle
    violation_ns: int = 0
    sm_mhz: int = 1980
    temp_c: int = 41
    persistence: int = 1


class FakeNvml:
    """The pynvml calls the probe and the environment make, on two GPUs; GPU 1 has two MIG slices."""

    NVMLError = NVMLError
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def __init__(self) -> None:
        self.gpus = [FakeGpu("GPU-aaaa1111-0000"), FakeGpu("GPU-bbbb2222-0000")]
        g1 = self.gpus[1]
        g1.migs = [FakeGpu("MIG-cccc3333-0000", parent=g1, gi=1, ci=0),
                   FakeGpu("MIG-dddd4444-0000", parent=g1, gi=2, ci=0)]

    def _all(self) -> list[FakeGpu]:
        return [*self.gpus, *(m for g in self.gpus for m in g.migs)]

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:
        if i >= len(self.gpus):
            raise NVMLError("Invalid Argument")
        return self.gpus[i]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeGpu:
        for d in self._all():
            if d.uuid == uuid:
                return d
        raise NVMLError("Not Found")

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:
        return h.uuid

    def nvmlDeviceGetMaxMigDeviceCount(self, h: FakeGpu) -> int:
        return 7 if h.migs else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: FakeGpu, i: int) -> FakeGpu:
        if i >= len(h.migs):
            raise NVMLError("Not Found")
        return h.migs[i]

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, h: FakeGpu) -> FakeGpu:
        return h.parent

    def nvmlDeviceGetGpuInstanceId(self, h: FakeGpu) -> int:
        return h.gi

    def nvmlDeviceGetComputeInstanceId(self, h: FakeGpu) -> int:
        return h.ci

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> Any:
        return SimpleNamespace(used=10 * 2**30 if h.parent else 70 * 2**30, total=141 * 2**30)

    def _whole(self, h: FakeGpu) -> FakeGpu:
        if h.parent is not None:
            raise NVMLError("Not Supported")  # NVML answers these only for the whole GPU
        return h

    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu) -> Any:
        return SimpleNamespace(gpu=55)

    def nvmlDeviceGetClockInfo(self, h: FakeGpu, clock: int) -> int:
        return self._whole(h).sm_mhz

    def nvmlDeviceGetTemperature(self, h: FakeGpu, sensor: int) -> int:
        return self._whole(h).temp_c

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: FakeGpu) -> int:
        return self._whole(h).reasons

    def nvmlDeviceGetViolationStatus(self, h: FakeGpu, policy: int) -> Any:
        return SimpleNamespace(violationTime=self._whole(h).violation_ns if policy == 0 else 0,
                               referenceTime=0)

    def nvmlDeviceGetPersistenceMode(self, h: FakeGpu) -> int:
        return self._whole(h).persistence

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.00"

    def nvmlDeviceGetName(self, h: FakeGpu) -> str:
        return "NVIDIA H200"

    def nvmlDeviceGetMaxClockInfo(self, h: FakeGpu, clock: int) -> int:
        return 1980

    def nvmlDeviceGetApplicationsClock(self, h: FakeGpu, clock: int) -> int:
        return 1980

    def nvmlDeviceGetPowerManagementLimit(self, h: FakeGpu) -> int:
        return 700_000

    def nvmlDeviceGetMigMode(self, h: FakeGpu) -> tuple[int, int]:
        return (1 if h.migs else 0, 0)

    def nvmlDeviceGetCudaComputeCapability(self, h: FakeGpu) -> tuple[int, int]:
        return (9, 0)


@pytest.mark.parametrize(
    ("entry", "uuid"),
    [
        ("1", "GPU-bbbb2222-0000"),
        ("GPU-bbbb2222-0000", "GPU-bbbb2222-0000"),
        ("GPU-bbbb", "GPU-bbbb2222-0000"),  # CUDA takes a unique prefix
        ("MIG-dddd4444-0000", "MIG-dddd4444-0000"),
        ("MIG-cccc", "MIG-cccc3333-0000"),
        ("MIG-GPU-bbbb2222-0000/2/0", "MIG-dddd4444-0000"),
    ],
)
def test_resolve_visible_entries(entry: str, uuid: str) -> None:
    fake = FakeNvml()
    device = nv.resolve(fake, entry)
    assert device.handle.uuid == uuid
    assert device.mig == uuid.startswith("MIG-")
    assert device.gpu.uuid == ("GPU-bbbb2222-0000" if device.mig else uuid)


@pytest.mark.parametrize("entry", ["GPU-ffff", "MIG-GPU-bbbb2222-0000/9/0", "7", "gpu0", "GPU-"])
def test_unknown_entries_are_one_line_errors_never_gpu_0(entry: str) -> None:
    with pytest.raises(nv.NvmlLookupError, match="CUDA_VISIBLE_DEVICES entry") as info:
        nv.resolve(FakeNvml(), entry)
    assert "\n" not in str(info.value)


def test_visible_entry_is_the_first() -> None:
    assert nv.visible_entry({"CUDA_VISIBLE_DEVICES": "GPU-bbbb, 0"}) == "GPU-bbbb"
    assert nv.visible_entry({}) == "0"


def test_round_reads_clock_temperature_and_throttling_with_units() -> None:
    fake = FakeNvml()
    probe = nv.NvmlProbe(fake, nv.resolve(fake, "0"))
    probe.reset()
    out = probe.read()
    assert out["gpu_sm_clock_mhz"] == 1980 and out["gpu_temperature_celsius"] == 41
    assert out["gpu_throttled_count"] == 0.0  # idle is not throttling
    for name in out:
        unit_of(name)  # every name ends in its unit
        assert name in nv.DEVICE_STATE_METRICS


@pytest.mark.parametrize("when", ["start", "end", "violation"])
def test_a_round_measured_while_throttled_is_flagged(when: str) -> None:
    fake = FakeNvml()
    gpu = fake.gpus[0]
    probe = nv.NvmlProbe(fake, nv.resolve(fake, "0"))
    if when == "start":
        gpu.reasons = 0x20  # sw thermal slowdown while the round starts, gone by its end
    probe.reset()
    gpu.reasons = 0x4 if when == "end" else 0x1
    if when == "violation":
        gpu.violation_ns = 5_000_000  # power-capped for 5 ms somewhere inside the round
    assert probe.read()["gpu_throttled_count"] == 1.0
    assert nv.slowdown_reasons(0x24) == ["sw_power_cap", "sw_thermal_slowdown"]


def test_mig_slice_memory_is_its_own_and_state_is_the_parents() -> None:
    fake = FakeNvml()
    probe = nv.NvmlProbe(fake, nv.resolve(fake, "MIG-cccc"))
    probe.reset()
    out = probe.read()
    assert out["device_memory_used_bytes"] == 10 * 2**30
    assert out["gpu_sm_clock_mhz"] == 1980


def test_environment_facts_by_uuid_with_persistence_mode() -> None:
    fake = FakeNvml()
    fake.gpus[1].persistence = 0
    facts = environment.nvml_facts(fake, "GPU-bbbb")
    assert facts["nvml"] == "ok"
    assert facts["gpu_uuid"] == "GPU-bbbb2222-0000"
    assert facts["gpu_persistence_mode"] == "disabled"
    assert facts["mig_mode"] == 1
    bad = environment.nvml_facts(fake, "GPU-ffff")
    assert "GPU-ffff" in bad["nvml"] and "gpu_name" not in bad


def test_persistence_mode_is_comparable_but_leaves_old_fingerprints_alone() -> None:
    cpu = {"device": "cpu", "cpu_count": 2, "torch_threads": 2}
    assert fingerprint(cpu) == fingerprint({**cpu, "gpu_persistence_mode": None})
    gpu = {"device": "cuda", "gpu_name": "NVIDIA H200"}
    assert fingerprint({**gpu, "gpu_persistence_mode": "enabled"}) != fingerprint(
        {**gpu, "gpu_persistence_mode": "disabled"})
    assert environment.differences({**gpu, "gpu_persistence_mode": "enabled"},
                                   {**gpu, "gpu_persistence_mode": "disabled"})


def test_cpu_fingerprint_is_unchanged_by_the_new_key() -> None:
    """A stored CPU fingerprint from before persistence mode (and the instruction clock's ISA caps)
    were added still matches."""
    import hashlib
    import json

    from pytest_mmperf.results.fingerprint import COMPARABLE_KEYS, HASHED_WHEN_SET

    assert {"gpu_persistence_mode", "isa_caps"} <= HASHED_WHEN_SET
    env = {"device": "cpu", "cpu_count": 2, "torch_threads": 2, "machine": "x86_64"}
    old_keys = [k for k in COMPARABLE_KEYS if k not in HASHED_WHEN_SET]
    digest = hashlib.sha256(json.dumps({k: env.get(k) for k in old_keys}, sort_keys=True,
                                       default=str).encode()).hexdigest()
    assert fingerprint(env).endswith(digest[:10])


def test_pinning_names_devices_by_uuid_and_mig_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from pytest_mmperf import gpu_pinning

    fake = FakeNvml()
    fake.nvmlInit = lambda: None  # type: ignore[attr-defined]
    fake.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    devices = gpu_pinning.nvml_devices()
    assert devices == ["GPU-aaaa1111-0000", "MIG-cccc3333-0000", "MIG-dddd4444-0000"]
    env: dict[str, str] = {}
    chosen = gpu_pinning.pin("cuda", {"workerid": "gw2", "workercount": 3}, env=env,
                             count_gpus=gpu_pinning.nvml_devices, initialized=lambda: False)
    assert chosen == env["CUDA_VISIBLE_DEVICES"] == "MIG-dddd4444-0000"
    assert nv.resolve(fake, chosen).mig  # and the probe finds the same slice again
