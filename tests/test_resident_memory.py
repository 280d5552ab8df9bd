"""resident_memory_bytes: what a benchmark's models and state hold between calls, with real torch
allocations (the CPU census) and a fake CUDA allocator; and the gate failing on it."""

import gc

import torch

from pytest_mmperf.fixture import Mmperf
from pytest_mmperf.judge.compare import Category, Policy, compare_benchmarks, gates
from pytest_mmperf.measure.clocks.host import HostClock
from pytest_mmperf.measure.memory import PEAK, RESIDENT, make_resident
from pytest_mmperf.measure.memory.cuda import CudaResidentGauge
from pytest_mmperf.measure.memory.tensors import LiveTensorCensus
from pytest_mmperf.measure.memory.torch_cpu import TorchCpuAccountant
from pytest_mmperf.settings import Settings

MiB = 2**20


def test_census_counts_tensors_kept_since_start_and_nothing_freed_or_older():
    older = torch.ones(MiB // 4)  # alive before the start: not the benchmark's
    census = LiveTensorCensus()
    census.start()
    kept = torch.ones(4 * MiB)  # 16 MiB of float32
    view = kept[: MiB]  # a view shares the storage: counted once
    freed = torch.ones(MiB)
    del freed
    assert census.read() == {RESIDENT: 16 * MiB}
    del older, kept, view
    assert census.read() == {RESIDENT: 0.0}


def test_census_does_not_count_garbage_waiting_in_a_cycle():
    census = LiveTensorCensus()
    census.start()
    cycle: dict = {"t": torch.ones(MiB)}
    cycle["self"] = cycle
    del cycle  # unreachable, freed only by the collector
    gc_was = gc.isenabled()
    gc.disable()
    try:
        assert census.read()[RESIDENT] == 0.0
    finally:
        if gc_was:
            gc.enable()


def test_factory_picks_the_census_on_cpu():
    assert isinstance(make_resident("cpu"), LiveTensorCensus)


class FakeCuda:
    def __init__(self) -> None:
        self.allocated = 1000

    def synchronize(self) -> None:
        pass

    def memory_allocated(self) -> int:
        return self.allocated


def test_cuda_gauge_reads_the_allocator_above_its_start_and_primes_cublas_first():
    cuda = FakeCuda()
    primed = []

    def prime():
        primed.append(cuda.allocated)
        cuda.allocated += 4 * MiB  # the process's cuBLAS workspace, allocated by its first matmul

    gauge = CudaResidentGauge(cuda, prime)
    assert gauge.read() == {}  # never started: nothing to say
    gauge.start()
    cuda.allocated += 16 * MiB
    assert primed == [1000]
    assert gauge.read() == {RESIDENT: 16 * MiB}
    cuda.allocated -= 32 * MiB  # freed more than the benchmark made: never negative
    assert gauge.read() == {RESIDENT: 0.0}


class Model:
    """A 1 MiB "model" whose ``planted`` variant keeps 16 MiB more from its first call on."""

    def __init__(self, planted: bool) -> None:
        self.weight = torch.ones(256, 1024)
        self.planted = planted
        self.cache: torch.Tensor | None = None

    def __call__(self) -> torch.Tensor:
        if self.planted and self.cache is None:
            self.cache = torch.zeros(4 * MiB)  # kept: never freed
        return (self.weight * 2.0).sum(dim=1)  # 1 KiB out, 1 MiB temporary


def measure(planted: bool):
    settings = Settings(enabled=True, rounds=5, max_rounds=5, warmup=1, max_time=0.0)
    bench = Mmperf(
        "bench", settings, clock_factory=HostClock, probe_factory=lambda: [], device="cpu",
        accountant_factory=TorchCpuAccountant, resident_factory=LiveTensorCensus,
    )
    model = Model(planted)  # built after the fixture was set up, as a test body builds it
    bench(model)
    record = bench.to_record()
    assert record is not None
    del model
    return record


def test_memory_kept_from_the_first_call_shows_in_resident_not_in_the_peak_and_fails_the_gate():
    base, head = measure(planted=False), measure(planted=True)
    assert base.metrics[RESIDENT].median == 1 * MiB  # the weights
    assert head.metrics[RESIDENT].median == 17 * MiB  # + the 16 MiB kept
    assert base.metrics[PEAK].median == head.metrics[PEAK].median  # the per-call peak cannot see it
    assert base.metrics[RESIDENT].unit == "bytes" and base.metrics[RESIDENT].direction.value == "lower"
    assert gates(RESIDENT, base.metrics[RESIDENT], head.metrics[RESIDENT])
    comp = compare_benchmarks(base, head, Policy())
    (resident,) = [m for m in comp.metrics if m.metric == RESIDENT]
    assert resident.category is Category.REGRESSED and resident.gated
    assert resident in comp.regressions
    unchanged = compare_benchmarks(base, measure(planted=False), Policy())
    (same,) = [m for m in unchanged.metrics if m.metric == RESIDENT]
    assert same.category is Category.UNCHANGED and same.change == 0.0


def test_not_measured_under_the_instruction_clock_or_when_disabled():
    started = []

    class Gauge:
        def start(self):
            started.append(1)

        def read(self):
            return {RESIDENT: 1.0}

    for settings, disabled in ((Settings(enabled=True, clock="instructions"), False),
                               (Settings(enabled=True), True)):
        Mmperf("b", settings, clock_factory=HostClock, probe_factory=lambda: [], device="cpu",
               resident_factory=Gauge, disabled=disabled)
    assert started == []



def test_census_skips_a_compile_s_fake_tensors_without_asking_their_data_pointer():
    # filterwarnings = error: asking a FakeTensor for its data pointer warns, which would fail this
    from torch._subclasses.fake_tensor import FakeTensorMode

    census = LiveTensorCensus()
    census.start()
    with FakeTensorMode():
        fake = torch.empty(1 << 18)  # 1 MiB that holds no data
    kept = torch.ones(1 << 16)  # 256 KiB that does
    assert census.read()[RESIDENT] == kept.untyped_storage().nbytes()
    del fake
