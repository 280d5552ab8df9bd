"""The measurement loop: warm-up kept apart, then measured rounds, every sample kept.

One or more *arms* (callables) are measured. With two arms (eager and optimized) rounds are
interleaved ABBA: arm order flips every round, so a machine that drifts during the run affects
both arms alike and their ratio cancels the drift (on a 2-core VM medians drifted up to 16%
between sessions; ratios measured inside one run did not).

Per round and arm this records ``latency_ms`` (wall time until the device is idle again, per
call; ``latency_instructions`` under the instruction clock), on a GPU also
``latency_device_ms`` (CUDA events) and ``latency_host_ms`` (until the call returned:
dispatch), one ``{phase}_ms`` sample per phase entered, the memory probes' readings
and the round's contention figures (:mod:`pytest_mmperf.measure.contention`). Every sample
carries the index of the round it was measured in (``ArmSamples.rounds``): a phase entered at
every decode step gives many samples per round, and the round, not the sample, is what repeats
independently.

**A true timer.** Nothing the harness does for its own purposes is inside the timed region or
changes its memory:

* results are not kept: ``observe(arm, result)`` sees each round's result after the timed
  region (fingerprints, determinism checks), and an arm's previous result is released before
  its next timed call; keeping every round's output made each round fault in fresh pages
  (measured +24% on a 2 ms matmul chain, +59% on a 7 us matmul);
* probes, contention readings and phase resolution run outside the timed region; the garbage
  collector is off inside it;
* short calls are repeated ``iterations`` times per round, calibrated as pytest-benchmark does
  (grow the count until a round lasts ``1 / max_overhead`` times the harness's own cost of an
  empty round, and at least ``min_round_ms``), so the timer's overhead stays below 1%; samples
  are per call;
* memory accounting that slows the call (CPU allocator accounting) is an extra untimed call;
  the resident-memory gauge (what the benchmark holds between calls) is read once, after the
  warm-up, outside every timed region.

Nothing here imports torch; clocks, probes and the accountant come in through their Protocols.
"""

from __future__ import annotations

import gc
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_mmperf.measure import lockstep
from pytest_mmperf.measure.clocks import Clock
from pytest_mmperf.measure.contention import ContentionMonitor
from pytest_mmperf.measure.memory import MemoryAccountant, MemoryProbe, ResidentGauge
from pytest_mmperf.results.metrics import phase_metric

PHASE_COST = "phase_entry_cost_ms"  # the harness's own cost of one phase entry (two marks)
CALIBRATION_TRIES = 20  # empty rounds timed; the least is the harness's overhead
MAX_ITERATIONS = 1_000_000


@dataclass(frozen=True)
class RoundPlan:
    warmup: int = 1
    rounds: int = 7  # minimum measured rounds
    max_rounds: int = 50
    max_time_s: float = 3.0  # keep measuring past ``rounds`` while under this budget
    # calls per timed round set by the user (pytest-benchmark's ``pedantic(iterations=)``): when
    # above 1 it replaces the calibrated count; every per-round time is divided by it
    iterations: int = 1
    # Wall-clock clocks: repeat short calls within a round, time the harness's own costs and mark
    # phases in warm-up (sizing the CUDA event pool). Off under the instruction clock: a count has
    # no timer overhead to amortize, and warm-up there stays uncounted and unmarked.
    calibrate: bool = True
    max_overhead: float = 0.01  # the harness's cost of a round, as a fraction of the round
    # Shortest calibrated round: between rounds the probes (a /proc read and write, parsing)
    # evict the caches the call runs in, and the round's first call refills them (with 64 us
    # rounds a 2 us matmul read +5-7% against back-to-back Timer blocks here; with 1 ms rounds a
    # ~2 ms matmul chain, one call a round, read +0.1..+5.1%). 5 ms rounds amortize that refill
    # over two or more calls of anything shorter than 2.5 ms; a call of 5 ms or more runs once.
    min_round_ms: float = 5.0
    # Instruction clock: settle the interpreter before counting. CPython specializes a code
    # object's bytecode only after it ran a few times (3.11: quickened after 8 calls, each
    # adaptive instruction tried after 31 more executions, failures retried at doubling
    # intervals), so code that runs once per call keeps changing its count for dozens of calls.
    # Measured on the recommender's eager forward (9.3M instructions a call, one warm-up call):
    # four rounds read 9.319M, 9.307M, 9.258M, 9.223M, its 177K-instruction input phase
    # 175.3K..180.6K (3%), the drop inside CPython's lookup and specialization functions. So the
    # first counted round is a probe: where one call costs less than ``settle_instructions``, the
    # probe is dropped and up to ``settle_calls`` calls (the budget's worth) run uncounted before
    # the counted rounds. Calls of which the budget holds fewer than ``settle_min_calls`` repeat
    # their code within the call (decode steps, layers) and keep the probe as their first round,
    # at no extra cost (the tiny LLM's 870M-instruction call: rounds within 0.005%). Both depend on the count only,
    # so every machine settles the same way. 0 turns it off.
    settle_instructions: float = 0.0
    settle_calls: int = 64
    settle_min_calls: int = 8  # a call worth fewer (over 250M instructions) keeps its probe round


@dataclass
class ArmSamples:
    """Everything measured for one arm: metric name -> samples and their round indices, the
    last round's result (released before each timed call), calls per round, contended rounds."""

    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    rounds: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    result: Any = None
    iterations: int = 1
    contended_rounds: int = 0
    measured_rounds: int = 0
    # instruction clock: self instructions per function, summed over the measured calls
    functions: dict[str, float] = field(default_factory=dict)
    function_calls: int = 0

    settle_calls: int = 0  # instruction clock: uncounted calls after the probe round (RoundPlan)

    def add(self, name: str, value: float, round_index: int) -> None:
        self.samples[name].append(value)
        self.rounds[name].append(round_index)

    def absorb(self, other: ArmSamples) -> None:
        """Take ``other``'s measured rounds as this arm's own (a kept probe round)."""
        for name, values in other.samples.items():
            self.samples[name].extend(values)
            self.rounds[name].extend(other.rounds[name])
        for name, cost in other.functions.items():
            self.functions[name] = self.functions.get(name, 0.0) + cost
        self.function_calls += other.function_calls
        self.measured_rounds += other.measured_rounds
        self.contended_rounds += other.contended_rounds
        self.result = other.result


class _PhaseScope:
    __slots__ = ("_log", "_name", "_start")

    def __init__(self, log: PhaseLog, name: str) -> None:
        self._log = log
        self._name = name

    def __enter__(self) -> None:
        self._start = self._log.clock.mark()

    def __exit__(self, *exc: object) -> None:
        self._log.marks.append((self._name, self._start, self._log.clock.mark()))


class _NoScope:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SCOPE = _NoScope()


class PhaseLog:
    """The phase recorder handed to measured code: two marks per phase, resolved after the round.

    Outside measured rounds and warm-up (calibration, quality runs) ``phase`` is a no-op.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.marks: list[tuple[str, Any, Any]] = []
        self.active = False

    def phase(self, name: str) -> _PhaseScope | _NoScope:
        return _PhaseScope(self, name) if self.active else _NO_SCOPE

    def drain(self) -> list[tuple[str, Any, Any]]:
        marks, self.marks = self.marks, []
        return marks


def _noop() -> None:
    return None


def iterations_for(round_ns: float, iterations: int, target_ns: float) -> int:
    """The next iteration count to try (pytest-benchmark's rule): done when a round of
    ``iterations`` calls took at least ``target_ns``; else scale to the target with 20% margin,
    at least doubling so a wildly fast first reading cannot stall the search."""
    if round_ns >= target_ns:
        return iterations
    if round_ns <= 0:
        return min(iterations * 10, MAX_ITERATIONS)
    scaled = math.ceil(iterations * target_ns / round_ns * 1.2)
    return min(max(scaled, iterations * 2), MAX_ITERATIONS)


class Sampler:
    def __init__(
        self,
        clock: Clock,
        probes: Sequence[MemoryProbe],
        plan: RoundPlan,
        phases: PhaseLog | None = None,
        *,
        observe: Callable[[int, Any], None] | None = None,
        accountant: MemoryAccountant | None = None,
        monitor: ContentionMonitor | None = None,
        before_round: Callable[[], None] | None = None,
        after_round: Callable[[], None] | None = None,
        resident: ResidentGauge | None = None,
    ) -> None:
        self.clock = clock
        self.probes = list(probes)
        self.plan = plan
        self.phases = phases or PhaseLog(clock)
        self.observe = observe  # (arm index, result) after each measured round, untimed
        self.accountant = accountant
        self.monitor = monitor
        self.overhead_ns = 0.0  # the harness's own cost of an empty round (calibration)
        # untimed work around every call, warm-up included (pytest-benchmark's setup/teardown):
        # outside the timed region and before the memory probes are reset
        self.before_round = before_round
        self.after_round = after_round
        # read once after the warm-up (and the accounting call), the results released: what the
        # benchmark holds between calls; recorded on the last arm (the benchmark's own)
        self.resident = resident

    def run(self, arms: Sequence[Callable[[], Any]]) -> list[ArmSamples]:
        if not arms:
            raise ValueError("nothing to measure")
        out = [ArmSamples() for _ in arms]
        for arm, acc in zip(arms, out):
            self._warm_up(arm, acc)
        if self.plan.calibrate:
            self._phase_cost(out[-1])
        if self.accountant is not None:
            for arm, acc in zip(arms, out):
                acc.result = None
                for key, value in self.accountant.account(arm).items():
                    acc.add(key, value, 0)
        if self.resident is not None:
            for acc in out:
                acc.result = None  # a call's output is not what the benchmark holds between calls
            for key, value in self.resident.read().items():
                out[-1].add(key, value, 0)
        if self.plan.iterations > 1:
            for acc in out:
                acc.iterations = self.plan.iterations  # the user's count wins over calibration
        elif self.plan.calibrate:
            self.overhead_ns = min(self._time(_noop, 1) for _ in range(CALIBRATION_TRIES))
            for arm, acc in zip(arms, out):
                acc.iterations = self._calibrate(arm, acc)
        turn = lockstep.from_environment()  # a no-op unless ``mmperf ab`` runs this process in lockstep
        started = self.clock.now_ns()
        n = self._settle(arms, out, turn) if self.plan.settle_instructions > 0 else 0
        while n < self.plan.rounds or (
            n < self.plan.max_rounds
            and (self.clock.now_ns() - started) / 1e9 < self.plan.max_time_s
        ):
            order = range(len(arms)) if n % 2 == 0 else reversed(range(len(arms)))
            turn.wait_turn()  # a round (all arms) only in this process's turn
            for i in order:
                out[i].result = None  # release the previous round's result before timing again
                result = self._round(arms[i], out[i], n)
                if self.observe is not None:
                    self.observe(i, result)
                out[i].result = result
                del result  # this frame's reference, too, must not outlive the round
            n += 1
        return out

    def _warm_up(self, arm: Callable[[], Any], acc: ArmSamples) -> None:
        for i in range(self.plan.warmup):
            if self.before_round is not None:
                self.before_round()
            self.clock.synchronize()
            self.clock.rewind()
            # phases are marked (and dropped) in warm-up too: that sizes the CUDA event pool
            self.phases.active = self.plan.calibrate
            try:
                t0 = self.clock.now_ns()
                acc.result = arm()
                self.clock.synchronize()
                t1 = self.clock.now_ns()
            finally:
                self.phases.active = False
                self.phases.drain()
            if i == 0:
                # the first call includes compilation, autotuning and lazy allocation
                acc.add("first_call_ms", (t1 - t0) / 1e6, 0)
            if self.after_round is not None:
                self.after_round()

    def _settle(self, arms: Sequence[Callable[[], Any]], out: list[ArmSamples], turn: lockstep.Turn) -> int:
        """The instruction clock's probe round (``RoundPlan.settle_instructions``): returns the
        next round's index, 1 when every arm kept its probe as round 0, else 0."""
        probes = [ArmSamples(iterations=acc.iterations) for acc in out]
        turn.wait_turn()
        for arm, probe in zip(arms, probes):
            probe.result = self._round(arm, probe, 0)
        extra = []
        for probe in probes:
            count = (probe.samples.get("latency_instructions") or [0.0])[0]
            calls = min(self.plan.settle_calls, int(self.plan.settle_instructions // count)) if count > 0 else 0
            # fewer than settle_min_calls: the call is big enough to repeat its code inside it
            extra.append(calls - 1 if calls >= self.plan.settle_min_calls else 0)
        if all(k <= 0 for k in extra):
            for acc, probe in zip(out, probes):
                acc.absorb(probe)
            return 1
        for arm, acc, probe, k in zip(arms, out, probes, extra):
            probe.result = None
            acc.settle_calls = max(k, 0)
            self._uncounted_calls(arm, acc, acc.settle_calls)
        return 0

    def _uncounted_calls(self, arm: Callable[[], Any], acc: ArmSamples, calls: int) -> None:
        for _ in range(calls):
            if self.before_round is not None:
                self.before_round()
            self.clock.synchronize()
            self.clock.rewind()
            acc.result = None
            acc.result = arm()
            self.clock.synchronize()
            if self.after_round is not None:
                self.after_round()
        acc.result = None

    def _phase_cost(self, acc: ArmSamples) -> None:
        """The harness's own cost of one phase entry (scope, two marks, the log), as measured
        code pays it inside the timed region: 5 samples of 100 entries each."""
        for _ in range(5):
            self.clock.synchronize()
            self.clock.rewind()
            self.phases.active = True
            try:
                t0 = self.clock.now_ns()
                for _ in range(100):
                    with self.phases.phase("mark_cost"):
                        pass
                t1 = self.clock.now_ns()
            finally:
                self.phases.active = False
                self.phases.drain()
            acc.add(PHASE_COST, (t1 - t0) / 100 / 1e6, 0)
        self.clock.synchronize()
        self.clock.rewind()

    def _time(self, arm: Callable[[], Any], iterations: int) -> float:
        """One untimed-by-the-record round of ``iterations`` calls, as the rounds time it."""
        self.clock.synchronize()
        self.clock.rewind()
        t0 = self.clock.now_ns()
        start = self.clock.mark()
        for _ in range(iterations):
            arm()
        end = self.clock.mark()
        self.clock.synchronize()
        t1 = self.clock.now_ns()
        del start, end
        return float(t1 - t0)

    def _calibrate(self, arm: Callable[[], Any], acc: ArmSamples) -> int:
        target = max(self.overhead_ns / self.plan.max_overhead, self.plan.min_round_ms * 1e6)
        warm = acc.samples.get("first_call_ms", [])
        if warm and warm[-1] * 1e6 >= 10 * target:
            # a long first call: no calibration calls needed (the margin covers a first call
            # that was long only because it compiled)
            return 1
        acc.result = None
        iterations = 1
        while True:
            nxt = iterations_for(self._time(arm, iterations), iterations, target)
            if nxt == iterations or iterations >= MAX_ITERATIONS:
                return iterations
            iterations = nxt

    def _round(self, arm: Callable[[], Any], acc: ArmSamples, n: int) -> Any:
        # No gc.collect() per round: with torch models it costs 40-80 ms a round here. The
        # collector is off inside the timed call and runs between rounds as it would anyway.
        if self.before_round is not None:
            self.before_round()
        for probe in self.probes:
            probe.reset()
        self.phases.drain()
        self.clock.synchronize()
        self.clock.rewind()
        iterations = acc.iterations
        gc_was_enabled = gc.isenabled()
        gc.disable()  # a collection inside the timed region is noise, not the workload
        seen = self.monitor.start() if self.monitor is not None else None
        self.phases.active = True
        try:
            t0 = self.clock.now_ns()
            start = self.clock.mark()
            for _ in range(iterations - 1):
                arm()
            result = arm()
            end = self.clock.mark()
            self.clock.synchronize()
            t1 = self.clock.now_ns()
        finally:
            self.phases.active = False
            if gc_was_enabled:
                gc.enable()
        if self.monitor is not None and seen is not None:
            reading = self.monitor.stop(seen, t1 - t0)
            for key, value in reading.items():
                acc.add(key, value, n)
            acc.contended_rounds += self.monitor.contended(reading)
        acc.measured_rounds += 1
        whole = self.clock.interval(start, end)
        if whole.instructions is not None:
            # instruction clock: counts replace times (wall time under valgrind means nothing)
            acc.add("latency_instructions", whole.instructions / iterations, n)
            per_function = getattr(self.clock, "functions", None)
            if per_function is not None:
                for name, cost in per_function(start, end).items():
                    acc.functions[name] = acc.functions.get(name, 0.0) + cost
                acc.function_calls += iterations
        else:
            acc.add("latency_ms", (t1 - t0) / 1e6 / iterations, n)
        if whole.device_ms is not None:
            acc.add("latency_device_ms", whole.device_ms / iterations, n)
            acc.add("latency_host_ms", whole.host_ms / iterations, n)
        for name, a, b in self.phases.drain():
            iv = self.clock.interval(a, b)
            metric = phase_metric(name)
            if iv.instructions is not None:
                acc.add(metric.removesuffix("_ms") + "_instructions", iv.instructions, n)
            elif iv.device_ms is not None:
                acc.add(metric, iv.device_ms, n)
                acc.add(metric.removesuffix("_ms") + "_host_ms", iv.host_ms, n)
            else:
                acc.add(metric, iv.host_ms, n)
        for probe in self.probes:
            for key, value in probe.read().items():
                acc.add(key, value, n)
        if self.after_round is not None:
            self.after_round()
        return result


# pytest-benchmark's default --benchmark-min-time: the shortest round it calibrates to (seconds)
PYTEST_BENCHMARK_MIN_TIME_S = 5e-6
# pytest-benchmark's statistic for a pytest-benchmark test: per-call times in rounds as short as
# pytest-benchmark's, next to latency_ms (5 ms rounds: block means); see docs/adoption.md
SHORT_ROUNDS = "short_round_latency_ms"


def short_rounds(
    clock: Clock,
    call: Callable[[], Any],
    *,
    min_round_s: float = PYTEST_BENCHMARK_MIN_TIME_S,
    rounds: int = 7,
    max_rounds: int = 200,
    max_time_s: float = 1.0,
) -> tuple[list[float], int]:
    """Per-call times (ms) in rounds as short as pytest-benchmark's: ``iterations`` calls a round,
    the fewest that last ``min_round_s`` (one call for anything of 5 us or more), at least
    ``rounds`` rounds and more while under ``max_time_s``; the collector off in each round.
    Returns (samples, iterations). The median of these is what pytest-benchmark reports as a
    test's median; the fixture's ``latency_ms`` rounds last 5 ms (block means), see
    docs/adoption.md."""
    lockstep.from_environment().wait_turn()  # under ``mmperf ab``: one turn for the whole series
    clock.synchronize()
    t0 = clock.now_ns()
    call()
    clock.synchronize()
    single_ns = max(clock.now_ns() - t0, 1)
    iterations = max(1, math.ceil(min_round_s * 1e9 / single_ns))
    out: list[float] = []
    started = clock.now_ns()
    gc_was_enabled = gc.isenabled()
    try:
        while len(out) < rounds or (len(out) < max_rounds and (clock.now_ns() - started) / 1e9 < max_time_s):
            gc.disable()
            clock.synchronize()
            a = clock.now_ns()
            for _ in range(iterations):
                call()
            clock.synchronize()
            b = clock.now_ns()
            if gc_was_enabled:
                gc.enable()
            out.append((b - a) / 1e6 / iterations)
    finally:
        if gc_was_enabled:
            gc.enable()
    return out, iterations
