"""Device memory in use and utilization through NVML (pynvml), when a driver is present."""

from __future__ import annotations

import os
from typing import Any


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


class NvmlProbe:
    name = "nvml"

    def __init__(self, nvml: Any, handle: Any) -> None:
        self._nvml = nvml
        self._handle = handle

    @classmethod
    def open(cls, index: int | None = None) -> NvmlProbe | None:
        nvml = _nvml()
        if nvml is None:
            return None
        if index is None:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
            index = int(visible) if visible.isdigit() else 0
        try:
            return cls(nvml, nvml.nvmlDeviceGetHandleByIndex(index))
        except nvml.NVMLError:
            return None

    def reset(self) -> None:
        return None  # NVML has no peak to reset; values are read at the end of a round

    def read(self) -> dict[str, float]:
        try:
            mem = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
            util = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
        except self._nvml.NVMLError:
            return {}
        return {"device_memory_used_bytes": float(mem.used), "gpu_utilization_pct": float(util.gpu)}
