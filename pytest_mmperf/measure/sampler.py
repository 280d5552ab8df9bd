"""The measurement loop: warm-up kept apart, then measured rounds, every sample kept.

One or more *arms* (callables) are measured. With two arms (eager and optimized) rounds are
interleaved ABBA: arm order flips every round, so a machine that drifts during the run affects
both arms alike and their ratio cancels the drift (on a 2-core VM medians drifted up to 16%
between sessions; ratios measured inside one run did not).

Per round and arm this records ``latency_ms`` (wall time until the device is idle again), on a
GPU also ``latency_device_ms`` (CUDA events) and ``latency_host_ms`` (until the call returned:
dispatch), one ``{phase}_ms`` sample per phase entered, and the memory probes' readings.
Nothing here imports torch; clocks and probes come in through their Protocols.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_mmperf.measure import lockstep
from pytest_mmperf.measure.clocks import Clock
from pytest_mmperf.measure.memory import MemoryProbe
from pytest_mmperf.results.metrics import phase_metric


@dataclass(frozen=True)
class RoundPlan:
    warmup: int = 1
    rounds: int = 7  # minimum measured rounds
    max_rounds: int = 50
    max_time_s: float = 3.0  # keep measuring past ``rounds`` while under this budget
    # calls per timed round (pytest-benchmark's ``iterations``): for calls too short for one
    # clock reading; every per-round time is divided by it
    iterations: int = 1
    # Rounds run exactly like measured ones after the warm-up, then thrown away: they warm the
    # harness's own code (phase marks, clock reads), which warm-up calls do not run. The
    # instruction clock counts that code, and Python specializes it over its first executions.
    discard: int = 0


@dataclass
class ArmSamples:
    """Everything measured for one arm: metric name -> samples, and the last return value."""

    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    result: Any = None
    results: list[Any] = field(default_factory=list)  # one per measured round, for determinism


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

    Outside a measured round (warm-up, quality runs) ``phase`` is a no-op.
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


class Sampler:
    def __init__(
        self,
        clock: Clock,
        probes: Sequence[MemoryProbe],
        plan: RoundPlan,
        phases: PhaseLog | None = None,
        keep_results: bool = False,
        before_round: Callable[[], None] | None = None,
        after_round: Callable[[], None] | None = None,
    ) -> None:
        self.clock = clock
        self.probes = list(probes)
        self.plan = plan
        self.phases = phases or PhaseLog(clock)
        self.keep_results = keep_results
        # untimed work around every call, warm-up included (pytest-benchmark's setup/teardown):
        # outside the timed region and before the memory probes are reset
        self.before_round = before_round
        self.after_round = after_round

    def run(self, arms: Sequence[Callable[[], Any]]) -> list[ArmSamples]:
        if not arms:
            raise ValueError("nothing to measure")
        out = [ArmSamples() for _ in arms]
        for arm, acc in zip(arms, out):
            self._warm_up(arm, acc)
        for _ in range(self.plan.discard):
            for arm in arms:
                self._round(arm, ArmSamples())
        turn = lockstep.from_environment()  # a no-op unless ``mmperf ab`` runs this process in lockstep
        started = self.clock.now_ns()
        n = 0
        while n < self.plan.rounds or (
            n < self.plan.max_rounds
            and (self.clock.now_ns() - started) / 1e9 < self.plan.max_time_s
        ):
            order = range(len(arms)) if n % 2 == 0 else reversed(range(len(arms)))
            turn.wait_turn()  # a round (all arms) only in this process's turn
            for i in order:
                self._round(arms[i], out[i])
            n += 1
        return out

    def _warm_up(self, arm: Callable[[], Any], acc: ArmSamples) -> None:
        for i in range(self.plan.warmup):
            if self.before_round is not None:
                self.before_round()
            self.clock.synchronize()
            t0 = self.clock.now_ns()
            acc.result = arm()
            self.clock.synchronize()
            if i == 0:
                # the first call includes compilation, autotuning and lazy allocation
                acc.samples["first_call_ms"].append((self.clock.now_ns() - t0) / 1e6)
            if self.after_round is not None:
                self.after_round()

    def _round(self, arm: Callable[[], Any], acc: ArmSamples) -> None:
        # No gc.collect() per round: with torch models it costs 40-80 ms a round here. The
        # collector is off inside the timed call and runs between rounds as it would anyway.
        if self.before_round is not None:
            self.before_round()
        for probe in self.probes:
            probe.reset()
        self.phases.drain()
        self.clock.synchronize()
        gc_was_enabled = gc.isenabled()
        gc.disable()  # a collection inside the timed region is noise, not the workload
        self.phases.active = True
        try:
            t0 = self.clock.now_ns()
            start = self.clock.mark()
            result = arm()
            for _ in range(self.plan.iterations - 1):
                result = arm()
            end = self.clock.mark()
            self.clock.synchronize()
            t1 = self.clock.now_ns()
        finally:
            self.phases.active = False
            if gc_was_enabled:
                gc.enable()
        acc.result = result
        if self.keep_results:
            acc.results.append(result)
        per_call = float(self.plan.iterations)
        whole = self.clock.interval(start, end)
        if whole.instructions is not None:
            # instruction clock: counts replace times (wall time under valgrind means nothing)
            acc.samples["latency_instructions"].append(whole.instructions / per_call)
        else:
            acc.samples["latency_ms"].append((t1 - t0) / 1e6 / per_call)
        if whole.device_ms is not None:
            acc.samples["latency_device_ms"].append(whole.device_ms / per_call)
            acc.samples["latency_host_ms"].append(whole.host_ms / per_call)
        for name, a, b in self.phases.drain():
            iv = self.clock.interval(a, b)
            metric = phase_metric(name)
            if iv.instructions is not None:
                acc.samples[metric.removesuffix("_ms") + "_instructions"].append(iv.instructions)
            elif iv.device_ms is not None:
                acc.samples[metric].append(iv.device_ms)
                acc.samples[metric.removesuffix("_ms") + "_host_ms"].append(iv.host_ms)
            else:
                acc.samples[metric].append(iv.host_ms)
        for probe in self.probes:
            for key, value in probe.read().items():
                acc.samples[key].append(value)
        if self.after_round is not None:
            self.after_round()
