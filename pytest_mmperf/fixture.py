"""The object behind the ``mmperf`` fixture; plain Python, usable without pytest.

    result = mmperf(fn, *args, **kwargs)            # measure fn, return its result
    with mmperf.phase("ttft"): ...                  # inside fn: a named phase -> ttft_ms
    eager_out, opt_out = mmperf.interleaved(eager_fn, optimized_fn)   # ABBA, speedup with CI
    mmperf.check("tpot_ms", below=5.0)              # an assertion on a metric
    mmperf.observe(lambda result: ...)              # see each round's result, untimed

Round results are not kept (keeping them changes what is timed, see
:mod:`pytest_mmperf.measure.sampler`): a test that checks outputs across rounds registers an
``observe`` callback and keeps a fingerprint.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_mmperf.judge.checks import check_bound
from pytest_mmperf.measure import contention
from pytest_mmperf.measure.clocks import Clock
from pytest_mmperf.measure.contention import ContentionMonitor
from pytest_mmperf.measure.memory import MemoryAccountant, MemoryProbe, ResidentGauge
from pytest_mmperf.measure.memory.host import PROCESS_PEAK_RSS
from pytest_mmperf.measure.memory.nvml import DEVICE_STATE_METRICS
from pytest_mmperf.measure.sampler import (
    PHASE_COST,
    SHORT_ROUNDS,
    ArmSamples,
    PhaseLog,
    RoundPlan,
    Sampler,
    short_rounds,
)
from pytest_mmperf.results import stats
from pytest_mmperf.results.metrics import EAGER_PREFIX, Direction
from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord, Speedup
from pytest_mmperf.settings import INSTRUCTION_SETTLE, Settings

if TYPE_CHECKING:
    from pytest_mmperf.session import RunSession

# Recorded, never gated: NVML describes the device and the process figures everything the process
# holds (not the workload); first calls include compilation; the harness's own costs and the
# contention figures describe the measurement, not the code measured.
UNGATED = DEVICE_STATE_METRICS | {
    "first_call_ms", PROCESS_PEAK_RSS, "process_cuda_reserved_bytes", PHASE_COST,
    contention.RATIO, contention.SWITCHES, contention.CONTENDED, SHORT_ROUNDS,
}

# Old metric names still accepted by check() and samples(), with a DeprecationWarning.
RENAMED = {"peak_rss_bytes": PROCESS_PEAK_RSS}


def _current_name(name: str) -> str:
    new = RENAMED.get(name)
    if new is None:
        return name
    warnings.warn(
        f"metric {name!r} is now {new!r} (the process's figure, informational); the benchmark's "
        "own memory is 'peak_memory_bytes'",
        DeprecationWarning,
        stacklevel=3,
    )
    return new


@dataclass
class Description:
    workload: str | None = None
    task: str | None = None
    optimizations: tuple[str, ...] = ()
    scale: str = "tiny"
    batch_size: int = 1
    params: dict[str, Any] = field(default_factory=dict)


class Mmperf:
    """Measures callables for one benchmark and builds its :class:`BenchmarkRecord`."""

    def __init__(
        self,
        node_id: str,
        settings: Settings,
        *,
        context: RunSession | None = None,
        clock_factory: Callable[[], Clock],
        probe_factory: Callable[[], Sequence[MemoryProbe]],
        device: str,
        accountant_factory: Callable[[], MemoryAccountant | None] | None = None,
        monitor_factory: Callable[[], ContentionMonitor | None] | None = None,
        resident_factory: Callable[[], ResidentGauge | None] | None = None,
        describe: Mapping[str, Any] | None = None,
        disabled: bool = False,
    ) -> None:
        self.node_id = node_id
        # pytest-benchmark's --benchmark-disable: every call runs once, unmeasured, no record
        self.disabled = disabled
        self.settings = settings
        self.context = context  # the RunSession: environment, cached bandwidth, ...
        self.device = device
        self._clock_factory = clock_factory
        self._probe_factory = probe_factory
        self._accountant_factory = accountant_factory
        self._monitor_factory = monitor_factory
        self._observers: dict[str, Callable[[Any], None]] = {}
        self._clock: Clock | None = None
        self._phases: PhaseLog | None = None
        # while profiling, phase marks become profiler ranges (the device-busy step windows)
        self._annotate: Callable[[str], AbstractContextManager[Any]] | None = None
        self.description = Description(scale=settings.scale)
        self._samples: dict[str, list[float]] = {}
        self._rounds: dict[str, list[int]] = {}
        self._extra: dict[str, MetricRecord] = {}
        self._speedup: Speedup | None = None
        self.quality: dict[str, Any] | None = None
        self.profile: dict[str, Any] | None = None
        self._profile_target: Callable[[], Any] | None = None  # the measured callable, for a diagnosis
        self.roofline: dict[str, Any] | None = None
        self.measured = False
        # started now, before the test body builds its models: read after the warm-up calls
        # (resident_memory_bytes); not under callgrind (two heap walks there cost seconds and
        # the instruction clock gates counts) nor with measuring disabled
        self._resident: ResidentGauge | None = None
        if resident_factory is not None and not disabled and settings.clock != "instructions":
            self._resident = resident_factory()
            if self._resident is not None:
                self._resident.start()
        if describe:
            self.describe(**describe)

    # -- description ---------------------------------------------------------------------------
    def describe(
        self,
        workload: str | None = None,
        task: str | None = None,
        optimizations: Sequence[str] | None = None,
        scale: str | None = None,
        batch_size: int | None = None,
        **params: Any,
    ) -> None:
        """Say what this benchmark measures (fields of the results document)."""
        d = self.description
        if workload is not None:
            d.workload = workload
        if task is not None:
            d.task = task
        if optimizations is not None:
            d.optimizations = tuple(optimizations)
        if scale is not None:
            d.scale = scale
        if batch_size is not None:
            d.batch_size = int(batch_size)
        d.params.update(params)

    # -- measuring -----------------------------------------------------------------------------
    def observe(
        self, callback: Callable[[Any], None] | None = None, *, eager: Callable[[Any], None] | None = None
    ) -> None:
        """Callbacks that see every measured round's result after the timed region (the
        benchmark's own arm, and the eager arm of ``interleaved``): compute a fingerprint or
        compare on the fly there; the result is released before the next timed call."""
        if callback is not None:
            self._observers[""] = callback
        if eager is not None:
            self._observers[EAGER_PREFIX] = eager

    def _sampler(
        self,
        prefixes: Sequence[str],
        plan: RoundPlan | None = None,
        before_round: Callable[[], None] | None = None,
        after_round: Callable[[], None] | None = None,
    ) -> Sampler:
        if self._clock is None:
            self._clock = self._clock_factory()
            self._phases = PhaseLog(self._clock)
        assert self._phases is not None
        instructions = self.settings.clock == "instructions"
        if plan is None:
            plan = RoundPlan(
                warmup=self.settings.warmup,
                rounds=self.settings.rounds,
                max_rounds=self.settings.max_rounds,
                max_time_s=self.settings.max_time,
                calibrate=not instructions,  # a count has no timer overhead to amortize
                settle_instructions=INSTRUCTION_SETTLE if instructions else 0.0,
            )
        observers = [self._observers.get(p) for p in prefixes]

        def observe(arm: int, result: Any) -> None:
            callback = observers[arm]
            if callback is not None:
                callback(result)

        return Sampler(
            self._clock,
            self._probe_factory(),
            plan,
            self._phases,
            observe=observe if any(observers) else None,
            # under callgrind an extra profiled call would cost minutes and count nothing new
            accountant=self._accountant_factory() if self._accountant_factory and not instructions else None,
            # wall time under valgrind says nothing about contention
            monitor=self._monitor_factory() if self._monitor_factory and not instructions else None,
            before_round=before_round,
            after_round=after_round,
            resident=self._resident,
        )

    def phase(self, name: str) -> AbstractContextManager[None]:
        """A named phase inside the measured call; a no-op outside measured rounds."""
        if self._annotate is not None:
            return self._annotate(name)
        if self._phases is None:
            from contextlib import nullcontext

            return nullcontext()
        return self._phases.phase(name)  # type: ignore[return-value]

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self._ensure_once()
        if self.disabled:
            return fn(*args, **kwargs)
        # fn itself when it takes no arguments, else a C-level partial: a Python lambda with
        # argument unpacking cost ~0.3 us per call here, +15% on a 2 us call
        call = fn if not args and not kwargs else functools.partial(fn, *args, **kwargs)
        (arm,) = self._sampler([""]).run([call])
        self._take(arm, prefix="")
        self._characterize(call)
        return arm.result

    def measure_short_rounds(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """After :meth:`__call__`: the same call in rounds as short as pytest-benchmark's
        (``short_round_latency_ms``, informational), so a suite moved from pytest-benchmark keeps
        the figure its old numbers are (see docs/adoption.md)."""
        if self.disabled or not self.measured or self._clock is None or self.settings.clock == "instructions":
            return
        call = fn if not args and not kwargs else functools.partial(fn, *args, **kwargs)
        samples, iterations = short_rounds(self._clock, call, rounds=max(self.settings.rounds, 5))
        self._samples[SHORT_ROUNDS] = samples
        self._rounds[SHORT_ROUNDS] = list(range(len(samples)))
        self.description.params["short_round_iterations"] = iterations

    def pedantic(
        self,
        target: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        setup: Callable[[], Any] | None = None,
        teardown: Callable[..., Any] | None = None,
        rounds: int = 1,
        warmup_rounds: int = 0,
        iterations: int = 1,
    ) -> Any:
        """pytest-benchmark's ``pedantic``: exactly ``rounds`` measured rounds after
        ``warmup_rounds``, ``iterations`` calls per round; ``setup`` runs before every round
        outside the timed region and may return ``(args, kwargs)`` for that round."""
        for name, value, least in (("rounds", rounds, 1), ("warmup_rounds", warmup_rounds, 0),
                                   ("iterations", iterations, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"pedantic: {name} must be an integer >= {least}, not {value!r}")
        if iterations > 1 and setup is not None:
            raise ValueError("pedantic: setup runs once per round, so iterations must be 1 with a setup")
        self._ensure_once()
        fixed_args, fixed_kwargs = tuple(args), dict(kwargs or {})
        current: list[tuple[tuple[Any, ...], dict[str, Any]]] = [(fixed_args, fixed_kwargs)]

        def prepare() -> None:
            if setup is None:
                return
            made = setup()
            if made is None:
                current[0] = (fixed_args, fixed_kwargs)
                return
            if fixed_args or fixed_kwargs:
                raise TypeError("pedantic: setup returned arguments but args or kwargs were given too")
            new_args, new_kwargs = made
            current[0] = (tuple(new_args), dict(new_kwargs))

        def finish() -> None:
            if teardown is not None:
                teardown(*current[0][0], **current[0][1])

        def call() -> Any:
            return target(*current[0][0], **current[0][1])

        if self.disabled:
            prepare()
            try:
                return call()
            finally:
                finish()
        # the user chose rounds and iterations: no calibration, exactly what pedantic asked for
        plan = RoundPlan(warmup=warmup_rounds, rounds=rounds, max_rounds=rounds, max_time_s=0.0,
                         iterations=iterations, calibrate=False)
        (arm,) = self._sampler([""], plan=plan, before_round=prepare, after_round=finish).run([call])
        self._take(arm, prefix="")
        return arm.result

    def interleaved(
        self, eager: Callable[[], Any], optimized: Callable[[], Any]
    ) -> tuple[Any, Any]:
        """Measure eager and optimized in alternating rounds; record the speedup with its CI.

        The optimized arm's metrics are this benchmark's; the eager arm's are kept under the
        ``eager_`` prefix.
        """
        self._ensure_once()
        if self.disabled:
            return eager(), optimized()
        if self.settings.clock == "instructions":
            # A count does not drift, so nothing needs cancelling, and eager's count is the eager
            # benchmark's own: eager runs once, uncounted, for the output checks; only the
            # optimized arm is counted (half the time under valgrind), and no speedup is recorded.
            self.describe(arms="optimized only (instruction clock: eager is the eager benchmark's count)")
            eager_result = eager()
            (opt_arm,) = self._sampler([""]).run([optimized])
            self._take(opt_arm, prefix="")
            self._profile_target = optimized
            return eager_result, opt_arm.result
        eager_arm, opt_arm = self._sampler([EAGER_PREFIX, ""]).run([eager, optimized])
        self._take_arms(eager_arm, opt_arm)
        self._characterize(optimized)
        return eager_arm.result, opt_arm.result

    def sequential(
        self, eager: Callable[[], Any], make_optimized: Callable[[Any], Callable[[], Any]]
    ) -> tuple[Any, Any]:
        """Measure eager's rounds, then the optimized arm's: for arms too large to be alive
        together (a 34B model twice does not fit one GPU).

        ``make_optimized(eager's last result)`` runs between the two: it may free eager's
        model and build the optimized one, and returns the optimized callable. The speedup
        compares two stretches of time, so drift between them is not cancelled as in
        :meth:`interleaved`; the description says ``arms: sequential``.
        """
        self._ensure_once()
        self.describe(arms="sequential")
        (eager_arm,) = self._sampler([EAGER_PREFIX]).run([eager])
        optimized = make_optimized(eager_arm.result)
        (opt_arm,) = self._sampler([""]).run([optimized])
        self._take_arms(eager_arm, opt_arm)
        self._characterize(optimized)
        return eager_arm.result, opt_arm.result

    def _take_arms(self, eager_arm: ArmSamples, opt_arm: ArmSamples) -> None:
        """The optimized arm's metrics as this benchmark's, eager's under ``eager_``, and the
        speedup (ratio of median latencies with its CI)."""
        self._take(opt_arm, prefix="")
        self._take(eager_arm, prefix=EAGER_PREFIX)
        latency = _latency_metric(opt_arm.samples)
        e = eager_arm.samples[latency]
        o = opt_arm.samples[latency]
        r = stats.ratio_of_medians(e, o, self.settings.confidence)
        self._speedup = Speedup(r.ratio, r.ci_low, r.ci_high, r.confidence, len(e), len(o))

    def _steps(self) -> int:
        """Decode steps in one call (``tpot`` phases per call)."""
        if not self._samples:
            return 0
        calls = max(len(self._samples.get(_latency_metric(self._samples), [])), 1) * int(
            self.description.params.get("iterations_per_round", 1)
        )
        steps = self._samples.get("tpot_ms") or self._samples.get("tpot_instructions") or []
        return len(steps) // calls

    def profile_operators(self) -> dict[str, Any] | None:
        """One more call of the measured callable under torch.profiler: its compact per-operator
        profile (what a regression's diagnosis compares; the gate asks for it only on a failed
        verdict, the baseline on save). None when nothing was measured or profiling failed."""
        fn = self._profile_target
        if fn is None:
            return None
        from pytest_mmperf.measure.profiling import profile_operators

        try:
            compact = profile_operators(fn, self.device, steps=self._steps())
        except Exception:  # a diagnosis must never turn a verdict into an error
            return None
        self.profile = {**(self.profile or {}), "operators": compact}
        return compact

    def _characterize(self, fn: Callable[[], Any]) -> None:
        """With --mmperf-profile: one more call under torch.profiler (not a measured round)."""
        self._profile_target = fn
        if not self.settings.profile:
            return
        from pytest_mmperf.measure.profiling import annotate_phase, profile_call

        steps = self._steps()
        self._annotate = annotate_phase
        try:
            self.profile = profile_call(fn, self.device, steps=steps)
        finally:
            self._annotate = None

    def _ensure_once(self) -> None:
        if self.measured:
            raise RuntimeError(
                "mmperf measures once per test; parametrize the test for more benchmarks"
            )
        self.measured = True

    def _take(self, arm: ArmSamples, prefix: str) -> None:
        for name, values in arm.samples.items():
            if values:
                self._samples[prefix + name] = list(values)
                self._rounds[prefix + name] = list(arm.rounds[name])
        if arm.measured_rounds and self._monitor_factory is not None and self.settings.clock != "instructions":
            self._samples[prefix + contention.CONTENDED] = [float(arm.contended_rounds)]
            self._rounds[prefix + contention.CONTENDED] = [0]
        if not prefix:
            self.description.params["iterations_per_round"] = arm.iterations
            if arm.settle_calls:
                self.description.params["settle_calls"] = arm.settle_calls
            if arm.function_calls:
                # instruction clock: the functions a count is made of, for a regression's diagnosis
                from pytest_mmperf.judge.diagnosis import FUNCTIONS_KEY, compact_functions

                self.profile = {**(self.profile or {}),
                                FUNCTIONS_KEY: compact_functions(arm.functions, arm.function_calls)}

    # -- extra metrics, assertions ---------------------------------------------------------------
    def record(
        self,
        name: str,
        values: float | Sequence[float],
        *,
        direction: str | Direction | None = None,
        gated: bool = True,
        rounds: Sequence[int] | None = None,
    ) -> MetricRecord:
        """Add a metric computed by the benchmark (``tokens_per_s``, ``kv_cache_bytes``, ...);
        ``rounds``: the measured round of each sample, where a round gave several."""
        seq = [float(values)] if isinstance(values, (int, float)) else [float(v) for v in values]
        rec = MetricRecord.from_samples(
            name,
            seq,
            confidence=self.settings.confidence,
            direction=Direction(direction) if direction is not None else None,
            gated=gated,
            rounds=_several_per_round(rounds),
        )
        self._extra[name] = rec
        return rec

    def rounds_of(self, name: str) -> list[int]:
        """The measured round of each sample of ``name`` (0, 1, 2, ... for one per round)."""
        if name in self._rounds:
            return list(self._rounds[name])
        rec = self._extra.get(name)
        if rec is None:
            raise KeyError(f"no metric {name!r}")
        return list(rec.rounds) if rec.rounds is not None else list(range(rec.n))

    def samples(self, name: str) -> list[float]:
        name = _current_name(name)
        if name in self._samples:
            return list(self._samples[name])
        if name in self._extra:
            return list(self._extra[name].samples)
        raise KeyError(f"no metric {name!r}; have {', '.join(sorted(self.metrics))}")

    @property
    def metrics(self) -> dict[str, MetricRecord]:
        out = {
            name: MetricRecord.from_samples(
                name,
                values,
                confidence=self.settings.confidence,
                gated=name.removeprefix(EAGER_PREFIX) not in UNGATED,
                rounds=_several_per_round(self._rounds.get(name)),
            )
            for name, values in self._samples.items()
        }
        out.update(self._extra)
        return out

    @property
    def speedup(self) -> Speedup | None:
        return self._speedup

    def check(
        self,
        metric: str,
        *,
        below: float | None = None,
        above: float | None = None,
        stat: str = "median",
    ) -> None:
        """Assert a bound on a metric; the failure names the metric, its value with CI and the bound."""
        if self.disabled:
            return  # --benchmark-disable: nothing was measured, nothing to check
        metric = _current_name(metric)
        metrics = self.metrics
        if metric not in metrics:
            raise AssertionError(
                f"{self.node_id}: no metric {metric!r} was measured "
                f"(have: {', '.join(sorted(metrics)) or 'none'})"
            )
        failure = check_bound(
            metrics[metric], below=below, above=above, stat=stat, benchmark=self.node_id
        )
        if failure is not None:
            raise AssertionError(failure.message)

    # -- the record ----------------------------------------------------------------------------
    def to_record(self) -> BenchmarkRecord | None:
        if not self.measured or self.disabled:
            return None
        d = self.description
        return BenchmarkRecord(
            id=self.node_id,
            workload=d.workload,
            task=d.task,
            optimizations=d.optimizations,
            scale=d.scale,
            device=self.device,
            batch_size=d.batch_size,
            metrics=self.metrics,
            speedup_vs_eager=self._speedup,
            quality=self.quality,
            params=dict(d.params),
            profile=self.profile,
            roofline=self.roofline,
        )


def _several_per_round(rounds: Sequence[int] | None) -> list[int] | None:
    """Round indices where they say something: None when sample i is simply round i."""
    if rounds is None or list(rounds) == list(range(len(rounds))):
        return None
    return list(rounds)


def _latency_metric(samples: Mapping[str, Sequence[float]]) -> str:
    """``latency_instructions`` under the instruction clock, ``latency_ms`` otherwise."""
    return "latency_instructions" if samples.get("latency_instructions") else "latency_ms"
