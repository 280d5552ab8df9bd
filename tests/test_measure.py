"""The measurement loop with fake clocks: no sleeping, no wall-clock bounds."""

import gc
import weakref
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_mmperf.measure.clocks.cuda import CudaEventClock
from pytest_mmperf.measure.clocks.host import HostClock
from pytest_mmperf.measure.contention import ContentionMonitor
from pytest_mmperf.measure.memory.cuda import CudaAllocatorProbe
from pytest_mmperf.measure.memory.torch_cpu import TorchCpuAccountant, peak_of
from pytest_mmperf.measure.sampler import PHASE_COST, RoundPlan, Sampler, iterations_for


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

    plan = RoundPlan(warmup=0, rounds=3, max_rounds=8, max_time_s=0.55, calibrate=False)
    (arm,) = Sampler(HostClock(t), [], plan).run([fn])
    # 100 ms per round: rounds continue while under 0.55 s -> 6 rounds
    assert len(arm.samples["latency_ms"]) == 6
    plan = RoundPlan(warmup=0, rounds=3, max_rounds=4, max_time_s=100, calibrate=False)
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
    assert arm.rounds["tpot_ms"] == [0] * 4 + [1] * 4  # the round each decode step belongs to
    assert arm.samples["latency_ms"] == [50.0, 50.0]


def test_interleaving_alternates_order():
    t = FakeCounter()
    order = []

    def a():
        order.append("a")

    def b():
        order.append("b")

    Sampler(HostClock(t), [], RoundPlan(warmup=0, rounds=4, max_rounds=4, calibrate=False)).run([a, b])
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
        self.allocated = 0
        self.resets = 0
        self.events_created = 0

    def Event(self, enable_timing: bool = False) -> FakeEvent:
        assert enable_timing
        self.events_created += 1
        return FakeEvent(self)

    def memory_allocated(self) -> int:
        return self.allocated

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
    # min_round_ms=1: one 2 ms call a round (calibration is tested elsewhere)
    sampler = Sampler(clock, [CudaAllocatorProbe(cuda)], RoundPlan(warmup=0, rounds=3, max_rounds=3, min_round_ms=1.0))

    def step():
        with sampler.phases.phase("decode"):
            host.advance_ms(2)  # dispatch takes 2 ms of host time ...
            cuda.launch(7)  # ... queuing 7 ms of GPU work
            cuda.peak = cuda.allocated + 1234

    (arm,) = sampler.run([step])
    assert arm.samples["latency_device_ms"] == [7.0] * 3
    assert arm.samples["latency_host_ms"] == [2.0] * 3
    assert arm.samples["decode_ms"] == [7.0] * 3  # phases report device time on a GPU
    assert arm.samples["decode_host_ms"] == [2.0] * 3
    assert arm.samples["peak_memory_bytes"] == [1234.0] * 3
    assert cuda.resets == 3  # peak reset before every round


def test_cuda_peak_is_above_the_round_start():
    """Weights of both arms (allocated before the round) are not the arm's own memory."""
    cuda = FakeCuda()
    cuda.allocated = 10_000  # both arms' weights
    probe = CudaAllocatorProbe(cuda)
    probe.reset()
    cuda.peak = 10_000 + 300  # this round's activations on top
    assert probe.read()["peak_memory_bytes"] == 300.0


def test_cuda_marks_come_from_a_pool_reused_across_rounds():
    host = FakeCounter()
    cuda = FakeCuda()
    clock = CudaEventClock(cuda, host, pool_size=4)
    assert cuda.events_created == 4
    # min_round_ms=1: one 4 ms call a round (calibration is tested elsewhere)
    sampler = Sampler(clock, [], RoundPlan(warmup=1, rounds=5, max_rounds=5, min_round_ms=1.0))

    def decode():
        for _ in range(40):  # 80 marks per round: more than the first pool holds
            with sampler.phases.phase("tpot"):
                host.advance_ms(0.1)
                cuda.launch(1)

    created = []
    original = sampler._round

    def counting_round(*args):
        before = cuda.events_created
        out = original(*args)
        created.append(cuda.events_created - before)
        return out

    sampler._round = counting_round
    (arm,) = sampler.run([decode])
    assert created == [0] * 5  # no event created inside any measured round: the warm-up sized the pool
    assert arm.samples["tpot_ms"] == [1.0] * 200
    assert clock.capacity >= 82  # 80 phase marks + the round's two
    assert len(arm.samples[PHASE_COST]) == 5  # the harness's own cost per phase entry, measured


def test_cuda_pool_grows_when_a_round_marks_more_than_ever():
    cuda = FakeCuda()
    clock = CudaEventClock(cuda, FakeCounter(), pool_size=2)
    marks = [clock.mark() for _ in range(5)]
    assert marks == [0, 1, 2, 3, 4] and clock.capacity == 8 and clock.growths == 2
    clock.rewind()
    assert clock.mark() == 0 and cuda.events_created == 8  # reused, not created


class TickingCounter(FakeCounter):
    """Every read of the clock costs ``tick_ns``: the harness's own overhead."""

    def __init__(self, tick_ns: int) -> None:
        super().__init__()
        self.tick_ns = tick_ns

    def __call__(self) -> int:
        self.now += self.tick_ns
        return self.now


def test_short_calls_are_calibrated_to_one_percent_overhead_and_reported_per_call():
    t = TickingCounter(100)  # an empty round reads the clock 3 times after t0: 300 ns overhead

    def fn():
        t.advance_ms(0.01)  # 10 us per call

    sampler = Sampler(HostClock(t), [], RoundPlan(warmup=1, rounds=3, max_rounds=3, min_round_ms=0))
    (arm,) = sampler.run([fn])
    assert sampler.overhead_ns == 300
    # target 300 ns / 1% = 30 us: 1 call -> 10.3 us -> ceil(1 * 30 / 10.3 * 1.2) = 4 calls -> 40.3 us
    assert arm.iterations == 4
    assert arm.samples["latency_ms"] == [pytest.approx((4 * 10_000 + 300) / 4 / 1e6)] * 3


def test_calibrated_rounds_last_at_least_min_round_ms():
    t = TickingCounter(100)

    def fn():
        t.advance_ms(0.01)

    (arm,) = Sampler(HostClock(t), [], RoundPlan(warmup=1, rounds=3, max_rounds=3, min_round_ms=1.0)).run([fn])
    assert arm.iterations * 0.01 >= 1.0  # >= 100 calls of 10 us


def test_long_calls_need_no_calibration_calls():
    t = TickingCounter(100)
    calls = []

    def fn():
        calls.append(1)
        t.advance_ms(50)

    (arm,) = Sampler(HostClock(t), [], RoundPlan(warmup=1, rounds=3, max_rounds=3)).run([fn])
    assert arm.iterations == 1 and len(calls) == 1 + 3  # warm-up and rounds only


@pytest.mark.parametrize(
    ("round_ns", "iterations", "target", "expected"),
    [
        (50.0, 1, 40.0, 1),  # long enough
        (10.0, 1, 40.0, 5),  # ceil(1 * 40 / 10 * 1.2)
        (39.0, 4, 40.0, 8),  # at least doubling
        (0.0, 3, 40.0, 30),  # no reading at all: times ten
    ],
)
def test_iteration_arithmetic(round_ns, iterations, target, expected):
    assert iterations_for(round_ns, iterations, target) == expected


class Output:
    """A stand-in for a round's output, weakly referenceable."""


def test_round_results_are_not_kept_and_observed_outside_the_timed_region():
    t = FakeCounter()
    alive_at_call = []
    last = []
    seen = []

    def fn():
        gc.collect()
        alive_at_call.append(last[-1]() is not None if last else False)
        t.advance_ms(5)
        out = Output()
        last.append(weakref.ref(out))
        return out

    def observe(arm, result):
        t.advance_ms(1000)  # a slow fingerprint must not show in the latency
        seen.append((arm, type(result).__name__))

    sampler = Sampler(HostClock(t), [], RoundPlan(warmup=1, rounds=4, max_rounds=4, calibrate=False),
                      observe=observe)
    (arm,) = sampler.run([fn])
    assert alive_at_call == [False] * 5  # the previous output is gone before every timed call
    assert seen == [(0, "Output")] * 4
    assert arm.samples["latency_ms"] == [5.0] * 4
    assert isinstance(arm.result, Output)  # the last round's result, returned to the caller
    assert not hasattr(arm, "results")


def test_contention_per_round_and_the_rule():
    t = FakeCounter()
    cpu = FakeCounter()
    switches = iter(range(0, 100, 3))
    busy = iter([1.0, 0.5, 1.0, 0.95])  # the share of each round the thread was on a CPU

    def fn():
        share = next(busy)
        t.advance_ms(10)
        cpu.advance_ms(10 * share)

    monitor = ContentionMonitor("cpu", cpu_ns=cpu, switches=lambda: next(switches))
    sampler = Sampler(HostClock(t), [], RoundPlan(warmup=0, rounds=4, max_rounds=4, calibrate=False),
                      monitor=monitor)
    (arm,) = sampler.run([fn])
    assert arm.samples["cpu_wall_ratio"] == pytest.approx([1.0, 0.5, 1.0, 0.95])
    assert arm.samples["involuntary_switches_count"] == [3.0] * 4
    assert arm.contended_rounds == 1  # 0.5 < 0.9
    assert ContentionMonitor("cuda").contended({"cpu_wall_ratio": 0.1}) is False  # host waits on a GPU


@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(-(10**9), 10**9)), max_size=50))
def test_peak_of_is_the_largest_running_sum(deltas):
    peak = peak_of(deltas)
    running, best = 0, 0
    for _, nbytes in sorted(deltas, key=lambda d: d[0]):
        running += nbytes
        best = max(best, running)
    assert peak == best >= 0


def test_cpu_accountant_counts_the_calls_own_tensors():
    import torch

    held = torch.ones(2**20)  # 4 MiB allocated before the call: not the call's

    def call():
        a = torch.ones(2**18)  # 1 MiB
        b = torch.ones(2**18)  # 1 MiB more: the peak is 2 MiB
        del a, b
        c = torch.ones(2**18)
        return c

    accountant = TorchCpuAccountant()
    first = accountant.account(call)["peak_memory_bytes"]
    assert first == 2 * 2**20
    assert accountant.account(call)["peak_memory_bytes"] == first  # deterministic
    del held


def test_nothing_to_measure():
    with pytest.raises(ValueError):
        Sampler(HostClock(), [], RoundPlan()).run([])


def make_fixture(t, rounds=3):
    from pytest_mmperf.fixture import Mmperf
    from pytest_mmperf.settings import Settings

    return Mmperf(
        "bench",
        Settings(enabled=True, rounds=rounds, max_rounds=rounds, warmup=1),
        clock_factory=lambda: HostClock(t),
        probe_factory=lambda: [],
        device="cpu",
        monitor_factory=lambda: ContentionMonitor("cpu", cpu_ns=t, switches=lambda: 0),
    )


def test_fixture_passes_round_indices_for_both_arms_and_counts_contended_rounds():
    t = FakeCounter()
    bench = make_fixture(t)

    def arm(steps):
        def generate():
            with bench.phase("ttft"):
                t.advance_ms(3)
            for _ in range(steps):
                with bench.phase("tpot"):
                    t.advance_ms(1)
            return steps

        return generate

    seen = {"eager": [], "optimized": []}
    bench.observe(seen["optimized"].append, eager=seen["eager"].append)
    assert bench.interleaved(arm(4), arm(2)) == (4, 2)
    assert seen == {"eager": [4] * 3, "optimized": [2] * 3}
    m = bench.metrics
    assert m["tpot_ms"].rounds == (0, 0, 1, 1, 2, 2)
    assert m["eager_tpot_ms"].rounds == (0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2)
    assert m["tpot_ms"].per_round() == (1.0, 1.0, 1.0)
    assert m["ttft_ms"].rounds is None and m["latency_ms"].rounds is None  # one per round
    assert m["contended_rounds_count"].median == 0 and not m["contended_rounds_count"].gated
    assert not m["cpu_wall_ratio"].gated and not m["phase_entry_cost_ms"].gated
    rec = bench.record("tokens_per_s", [1.0, 2.0, 3.0, 4.0], rounds=[0, 0, 1, 1])
    assert rec.per_round() == (1.5, 3.5)


def test_old_process_memory_name_still_checks_with_a_deprecation_warning():
    bench = make_fixture(FakeCounter())
    bench._probe_factory = lambda: [FakeRss()]
    bench(lambda: None)
    with pytest.warns(DeprecationWarning, match="process_peak_rss_bytes"):
        bench.check("peak_rss_bytes", below=2e9)
    with pytest.warns(DeprecationWarning):
        assert bench.samples("peak_rss_bytes") == bench.samples("process_peak_rss_bytes")


class FakeRss:
    name = "host"

    def reset(self):
        return None

    def read(self):
        return {"process_peak_rss_bytes": 1e9}
