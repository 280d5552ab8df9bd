"""The measurement loop with fake clocks: no sleeping, no wall-clock bounds."""

from dataclasses import dataclass

import pytest

from pytest_mmperf.measure.clocks.cuda import CudaEventClock
from pytest_mmperf.measure.clocks.host import HostClock
from pytest_mmperf.measure.memory.cuda import CudaAllocatorProbe
from pytest_mmperf.measure.sampler import RoundPlan, Sampler


class FakeCounter:
    """A clock that advances only when the measured code says so."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now

    def advance_ms(self, ms: float) -> None:
        self.now += int(ms * 1e6)


def test_rounds_samples_and_first_call():
    t = FakeCounter()
    calls = []

    def fn():
        calls.append(1)
        t.advance_ms(50 if len(calls) == 1 else 10)  # the first call "compiles"
        return len(calls)

    clock = HostClock(t)
    (arm,) = Sampler(clock, [], RoundPlan(warmup=1, rounds=5, max_rounds=5, max_time_s=10)).run([fn])
    assert arm.samples["first_call_ms"] == [50.0]
    assert arm.samples["latency_ms"] == [10.0] * 5
    assert arm.result == 6  # one warm-up + five rounds


def test_time_budget_extends_past_min_rounds_and_stops_at_max():
    t = FakeCounter()

    def fn():
        t.advance_ms(100)

    plan = RoundPlan(warmup=0, rounds=3, max_rounds=8, max_time_s=0.55)
    (arm,) = Sampler(HostClock(t), [], plan).run([fn])
    # 100 ms per round: rounds continue while under 0.55 s -> 6 rounds
    assert len(arm.samples["latency_ms"]) == 6
    plan = RoundPlan(warmup=0, rounds=3, max_rounds=4, max_time_s=100)
    (arm,) = Sampler(HostClock(t), [], plan).run([fn])
    assert len(arm.samples["latency_ms"]) == 4


def test_phases_each_entry_is_a_sample():
    t = FakeCounter()
    sampler = Sampler(HostClock(t), [], RoundPlan(warmup=1, rounds=2, max_rounds=2))
    log = sampler.phases

    def generate():
        with log.phase("ttft"):
            t.advance_ms(30)
        for _ in range(4):
            with log.phase("tpot"):
                t.advance_ms(5)

    (arm,) = sampler.run([generate])
    assert arm.samples["ttft_ms"] == [30.0, 30.0]  # warm-up phases are not recorded
    assert arm.samples["tpot_ms"] == [5.0] * 8
    assert arm.samples["latency_ms"] == [50.0, 50.0]


def test_interleaving_alternates_order():
    t = FakeCounter()
    order = []

    def a():
        order.append("a")

    def b():
        order.append("b")

    Sampler(HostClock(t), [], RoundPlan(warmup=0, rounds=4, max_rounds=4)).run([a, b])
    assert order == list("abbaabba")


@dataclass
class FakeEvent:
    device: "FakeCuda"
    t_ms: float | None = None

    def record(self) -> None:
        self.t_ms = self.device.gpu_ms

    def elapsed_time(self, end: "FakeEvent") -> float:
        assert self.device.synced, "elapsed_time read before synchronize"
        return end.t_ms - self.t_ms


class FakeCuda:
    """Enough of torch.cuda for the clock and allocator probe: a GPU timeline apart from the host."""

    def __init__(self) -> None:
        self.gpu_ms = 0.0
        self.synced = True
        self.peak = 0
        self.resets = 0

    def Event(self, enable_timing: bool = False) -> FakeEvent:
        assert enable_timing
        return FakeEvent(self)

    def synchronize(self) -> None:
        self.synced = True

    def launch(self, gpu_ms: float) -> None:
        self.gpu_ms += gpu_ms
        self.synced = False

    def reset_peak_memory_stats(self) -> None:
        self.resets += 1
        self.peak = 0

    def max_memory_allocated(self) -> int:
        return self.peak

    def max_memory_reserved(self) -> int:
        return self.peak * 2


def test_cuda_clock_records_device_and_host_time_apart():
    host = FakeCounter()
    cuda = FakeCuda()
    clock = CudaEventClock(cuda, host)
    sampler = Sampler(clock, [CudaAllocatorProbe(cuda)], RoundPlan(warmup=0, rounds=3, max_rounds=3))

    def step():
        with sampler.phases.phase("decode"):
            host.advance_ms(2)  # dispatch takes 2 ms of host time ...
            cuda.launch(7)  # ... queuing 7 ms of GPU work
            cuda.peak = 1234

    (arm,) = sampler.run([step])
    assert arm.samples["latency_device_ms"] == [7.0] * 3
    assert arm.samples["latency_host_ms"] == [2.0] * 3
    assert arm.samples["decode_ms"] == [7.0] * 3  # phases report device time on a GPU
    assert arm.samples["decode_host_ms"] == [2.0] * 3
    assert arm.samples["peak_memory_bytes"] == [1234.0] * 3
    assert arm.samples["peak_reserved_bytes"] == [2468.0] * 3
    assert cuda.resets == 3  # peak reset before every round


def test_nothing_to_measure():
    with pytest.raises(ValueError):
        Sampler(HostClock(), [], RoundPlan()).run([])
