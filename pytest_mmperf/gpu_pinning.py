"""One GPU per pytest-xdist worker: ``CUDA_VISIBLE_DEVICES`` set before torch initializes CUDA.

``pytest --mmperf -n N`` on a machine with G GPUs: worker ``gwI`` sees only GPU I of the GPUs
visible to the run (``CUDA_VISIBLE_DEVICES`` of the parent when set, else every GPU NVML counts),
so two benchmarks never share a GPU (GPUs found through NVML are named by UUID, a GPU in MIG mode
by its slices' UUIDs). More workers than GPUs is refused with one line. CUDA reads
``CUDA_VISIBLE_DEVICES`` once, when it initializes; the plugin calls :func:`pin` in
``pytest_configure`` before :meth:`session.RunSession.start` touches ``torch.cuda``, and
:func:`pin` refuses when something already initialized CUDA in the worker.

Plain module: GPU counting, CUDA state and the environment are arguments, so the tests use fakes.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from pytest_mmperf.settings import UsageError

ENV = "CUDA_VISIBLE_DEVICES"


def worker_index(workerinput: Mapping[str, Any]) -> tuple[int, int]:
    """(index, count) of an xdist worker from ``config.workerinput`` (ids are ``gw0``, ``gw1``...)."""
    wid = str(workerinput.get("workerid", ""))
    m = re.fullmatch(r"gw(\d+)", wid)
    if m is None:
        raise UsageError(f"pytest-xdist worker id {wid!r} is not gwN; cannot choose its GPU")
    index = int(m.group(1))
    count = int(workerinput.get("workercount", index + 1))
    return index, count


def visible_gpus(env: Mapping[str, str], count_gpus: Callable[[], int | list[str]]) -> list[str]:
    """The GPUs this run may use: the parent's CUDA_VISIBLE_DEVICES entries, else what
    ``count_gpus`` finds: device entries (UUIDs, see :func:`nvml_devices`) or a count (0..G-1)."""
    if ENV in env:
        return [d.strip() for d in env[ENV].split(",") if d.strip() and d.strip() != "-1"]
    found = count_gpus()
    return [str(i) for i in range(found)] if isinstance(found, int) else list(found)


def nvml_devices() -> list[str]:
    """Every device a worker can be pinned to, by UUID: a GPU's ``GPU-<uuid>``, or for a GPU in
    MIG mode the ``MIG-<uuid>`` of each slice (CUDA runs a process on one slice, named by its
    UUID). UUIDs, not indices: NVML numbers GPUs in PCI-bus order, CUDA fastest first unless
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID``. [] without a driver (NVML raises in 0.05 s there)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return []
    from pytest_mmperf.measure.memory.nvml import gpu_handles, mig_handles, text

    try:
        out: list[str] = []
        for gpu in gpu_handles(pynvml):
            slices = mig_handles(pynvml, gpu)
            out += [text(pynvml.nvmlDeviceGetUUID(h)) for h in (slices or [gpu])]
        return out
    except pynvml.NVMLError:
        return []
    finally:
        pynvml.nvmlShutdown()


def nvml_gpu_count() -> int:
    """GPUs NVML sees; 0 without a driver (NVML's init raises there, quickly)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return 0


def cuda_initialized() -> bool:
    """Whether torch already initialized CUDA in this process (without importing torch)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    try:
        return bool(torch.cuda.is_initialized())
    except Exception:
        return False


def _check_count(count: int, gpus: list[str]) -> None:
    if count > len(gpus):
        raise UsageError(
            f"-n {count}: {count} pytest-xdist workers but {len(gpus)} GPU(s) visible "
            f"({', '.join(gpus)}); use -n {len(gpus)} or fewer, so that two benchmarks never "
            "share a GPU (or --mmperf-device=cpu)"
        )


def pin(
    device: str,
    workerinput: Mapping[str, Any] | None,
    numprocesses: Any = None,
    env: MutableMapping[str, str] | None = None,
    *,
    count_gpus: Callable[[], int | list[str]] = nvml_devices,
    initialized: Callable[[], bool] = cuda_initialized,
) -> str | None:
    """Set ``CUDA_VISIBLE_DEVICES`` for this xdist worker; returns the GPU chosen, or None.

    ``workerinput``: ``config.workerinput`` on a worker, else None. ``numprocesses``: xdist's
    ``-n`` on the controller (an int once xdist resolved ``auto``), checked there so that too many
    workers fail once, before any starts. Nothing happens without xdist, with
    ``--mmperf-device=cpu``, or with ``auto`` on a machine without GPUs. Raises
    :class:`UsageError` (one line) for more workers than GPUs, or when CUDA was initialized before
    the worker could be pinned.
    """
    if device == "cpu":
        return None
    env = os.environ if env is None else env
    if workerinput is None:
        if isinstance(numprocesses, int) and numprocesses > 0:
            gpus = visible_gpus(env, count_gpus)
            if gpus:
                _check_count(numprocesses, gpus)
        return None
    index, count = worker_index(workerinput)
    gpus = visible_gpus(env, count_gpus)
    if not gpus:
        return None  # auto falls back to cpu; cuda is refused by RunSession.start with its message
    _check_count(count, gpus)
    if initialized():
        raise UsageError(
            f"pytest-xdist worker gw{index}: CUDA was initialized before pytest-mmperf could pin the "
            f"worker to one GPU (something called torch.cuda at import time); set {ENV} per worker yourself"
        )
    chosen = gpus[index]
    env[ENV] = chosen
    return chosen
