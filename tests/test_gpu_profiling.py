"""Device-busy per decode step from device events only: the interval arithmetic, the CUDA path
of profile_call on a fake profiler, and the fixture turning phase marks into step windows."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.profiler import DeviceType

from pytest_mmperf.fixture import Mmperf
from pytest_mmperf.measure import profiling
from pytest_mmperf.settings import Settings


def test_overlapping_device_events_count_once() -> None:
    # two streams overlap on [2, 4]; the window [0, 10] is busy 2..6 = 4 us
    assert profiling.busy_fractions([(2.0, 5.0), (4.0, 6.0)], [(0.0, 10.0)]) == [pytest.approx(0.4)]


def test_events_outside_a_window_do_not_count_in_it() -> None:
    kernels = [(1.0, 3.0), (9.0, 12.0)]  # the second spills into the next step's window
    assert profiling.busy_fractions(kernels, [(0.0, 10.0), (10.0, 20.0)]) == [
        pytest.approx(0.3), pytest.approx(0.2)]


def test_device_busy_over_steps_and_call() -> None:
    kernels = [(0.0, 1.0), (2.0, 3.0), (10.0, 19.0)]
    busy = profiling.device_busy(kernels, [(0.0, 10.0), (10.0, 20.0)], call=(0.0, 40.0))
    assert busy["device_busy_fraction"] == pytest.approx(11.0 / 20.0)
    assert busy["device_idle_fraction"] == pytest.approx(9.0 / 20.0)
    assert busy["device_busy_per_step"]["min_fraction"] == pytest.approx(0.2)
    assert busy["device_busy_per_step"]["max_fraction"] == pytest.approx(0.9)
    assert busy["device_busy_fraction_call"] == pytest.approx(11.0 / 40.0)


def test_without_steps_the_call_is_the_window() -> None:
    busy = profiling.device_busy([(0.0, 5.0)], [], call=(0.0, 10.0))
    assert busy["device_busy_fraction"] == pytest.approx(0.5)
    assert "whole call" in busy["device_busy_basis"]


intervals = st.lists(
    st.tuples(st.floats(0, 100), st.floats(0, 50)).map(lambda t: (t[0], t[0] + t[1])), max_size=30
)


@given(intervals, intervals)
def test_busy_is_a_fraction_without_clamping(kernels: list[tuple[float, float]],
                                             windows: list[tuple[float, float]]) -> None:
    for f in profiling.busy_fractions(kernels, windows):
        assert 0.0 <= f <= 1.0 + 1e-9


@given(intervals)
def test_merge_keeps_the_covered_length(kernels: list[tuple[float, float]]) -> None:
    merged = profiling.merge(kernels)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(merged))
    window = (0.0, 200.0)
    assert profiling.covered(merged, window) <= sum(e - s for s, e in kernels) + 1e-9


def event(name: str, start: float, end: float, device: DeviceType, annotation: bool = False) -> Any:
    return SimpleNamespace(name=name, device_type=device, is_user_annotation=annotation,
                           time_range=SimpleNamespace(start=start, end=end,
                                                      elapsed_us=lambda: end - start))


class FakeProfile:
    """torch.profiler.profile with CUDA: CPU ops that carry device time, device kernels, the
    host-side step ranges and the GPU-side copies of the annotations kineto adds."""

    def __init__(self, activities: Any) -> None:
        self.activities = activities

    def __enter__(self) -> FakeProfile:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def key_averages(self) -> list[Any]:
        return [SimpleNamespace(key="aten::mm", self_cpu_time_total=5.0, cpu_time_total=5.0, count=2,
                                self_device_time_total=80.0)]

    def events(self) -> list[Any]:
        cpu, gpu = DeviceType.CPU, DeviceType.CUDA
        return [
            event("mmperf.phase:call", 0.0, 100.0, cpu, annotation=True),
            event("mmperf.phase:ttft", 0.0, 20.0, cpu, annotation=True),
            event("mmperf.phase:tpot", 20.0, 60.0, cpu, annotation=True),
            event("mmperf.phase:tpot", 60.0, 100.0, cpu, annotation=True),
            event("mmperf.phase:tpot", 20.0, 60.0, gpu, annotation=True),  # kineto's GPU copy
            event("aten::mm", 21.0, 59.0, cpu),  # a CPU op: never device time
            event("ampere_sgemm_128x64_nn", 30.0, 40.0, gpu),
            event("void at::native::softmax_kernel", 35.0, 45.0, gpu),  # overlaps (other stream)
            event("ampere_sgemm_128x64_nn", 70.0, 80.0, gpu),
        ]


def test_profile_call_on_fake_cuda_uses_device_events_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.profiler, "profile", FakeProfile)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    p = profiling.profile_call(lambda: None, "cuda", steps=2)
    # steps [20, 60] busy 30..45 = 15 us, [60, 100] busy 10 us: 25 / 80
    assert p["device_busy_fraction"] == pytest.approx(25.0 / 80.0)
    assert p["device_busy_per_step"]["steps_count"] == 2
    assert p["device_busy_fraction_call"] == pytest.approx(25.0 / 100.0)
    assert p["device_events_count"] == 3
    assert p["op_share"]["linear"] == pytest.approx(20.0 / 30.0)
    assert p["op_share"]["attention"] == pytest.approx(10.0 / 30.0)


def test_fixture_marks_phases_as_profiler_ranges_while_profiling(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def fake_profile_call(fn: Any, device: str, steps: int = 0) -> dict[str, Any]:
        fn()
        return {"ok": True}

    monkeypatch.setattr(profiling, "profile_call", fake_profile_call)
    monkeypatch.setattr(profiling, "annotate_phase", lambda name: _Recorder(seen, name))
    m = Mmperf("t", Settings(profile=True), clock_factory=lambda: None,  # type: ignore[arg-type]
               probe_factory=lambda: [], device="cuda")

    def run() -> None:
        with m.phase("tpot"):
            pass

    m._characterize(run)
    assert seen == ["tpot"]
    assert m.profile == {"ok": True}
    assert m._annotate is None  # back to plain phase marks afterwards


class _Recorder:
    def __init__(self, seen: list[str], name: str) -> None:
        self.seen, self.name = seen, name

    def __enter__(self) -> None:
        self.seen.append(self.name)

    def __exit__(self, *exc: object) -> None:
        return None


def test_annotate_phase_names_a_profiler_range_on_cpu() -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof, profiling.annotate_phase("tpot"):
        torch.ones(4).sum()
    names = [e.name for e in prof.events() if e.is_user_annotation]
    assert "mmperf.phase:tpot" in names
