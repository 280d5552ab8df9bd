"""Paper-scale arms on one GPU: which fit together, and sequential arms that free eager first."""

from __future__ import annotations

import gc
import weakref
from types import SimpleNamespace
from typing import Any

import pytest
from mmperf_levers.contract import BuildOptions, Output
from mmperf_suites import harness
from mmperf_suites.workloads import llm

from pytest_mmperf.fixture import Mmperf
from pytest_mmperf.measure.clocks.host import HostClock
from pytest_mmperf.settings import Settings

H200_BYTES = 143_771 * 2**20  # what the driver reports for one H200


def test_34b_arms_do_not_fit_one_h200_together_7b_do() -> None:
    big = llm.describe("t2t", "paper-34b")
    assert big.weight_bytes == pytest.approx(67.5e9, rel=0.01)  # 33.7B parameters x 2 bytes
    assert not harness.arms_fit_together(big, H200_BYTES)
    assert harness.arms_fit_together(llm.describe("t2t", "paper"), H200_BYTES)


class FakeRunner:
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, phases: Any) -> Output:
        return Output(tokens=[[1, 2, 3]])

    def teacher_forced_logits(self, tokens: Any) -> Any:
        import torch

        return torch.zeros(1, 3, 4)


def test_sequential_arms_free_eager_before_building_the_optimized(monkeypatch: pytest.MonkeyPatch) -> None:
    eager = FakeRunner("eager")
    eager_alive = weakref.ref(eager)
    seen_alive_at_build: list[bool] = []

    def build(task: str, options: BuildOptions) -> FakeRunner:
        gc.collect()
        seen_alive_at_build.append(eager_alive() is not None)
        return FakeRunner("optimized")

    monkeypatch.setattr(harness, "calibration_ms", lambda device: 2.0)
    mmperf = Mmperf("t", Settings(rounds=2, warmup=0, max_rounds=2, max_time=0.0),
                    clock_factory=HostClock, probe_factory=lambda: [], device="cpu")
    arms = {"eager": eager}
    del eager
    health: dict[str, float] = {}
    lever = SimpleNamespace(apply=lambda runner: {"compile_ms": 1.0})
    eager_out, opt_out, optimized, ref, opt = harness._sequential_arms(
        mmperf, SimpleNamespace(build=build, WORKLOAD="fake"), "t2t", BuildOptions(), [lever], arms, health)
    assert seen_alive_at_build == [False]  # eager's model was gone when the optimized one was built
    assert optimized.name == "optimized" and eager_out.tokens == opt_out.tokens
    assert ref is not None and opt is not None
    assert health["calibration_drift_ratio"] == 1.0 and health["compile_ms"] == 1.0
    assert mmperf.description.params["arms"] == "sequential"
    assert len(mmperf.samples("latency_ms")) == 2 and len(mmperf.samples("eager_latency_ms")) == 2


def test_calibration_kernel_times_on_cpu() -> None:
    assert harness.calibration_ms("cpu", size=32, repeats=3) > 0


def test_device_memory_from_a_fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index: SimpleNamespace(total_memory=H200_BYTES))
    assert harness._device_memory_bytes() == H200_BYTES
