"""``mmperf ab``: the paired test, the lockstep schedule and coordinator with fake workers (threads
speaking the real protocol, no processes), the CLI's input errors, and one real end-to-end run on a
throwaway git repository.

Noise robustness of the end-to-end test: the planted change is 4x (a pure-Python loop of 40k vs
160k steps), the threshold 20%, and the verdict is asserted only for the planted slowdown; the
identical-commits case asserts that no regression is reported, which the paired test controls at
1% per run (Holm), on this loaded machine too.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_mmperf import ab
from pytest_mmperf.ab import coordinator, paired
from pytest_mmperf.ab.coordinator import Schedule, WorkerSpec
from pytest_mmperf.cli import main
from pytest_mmperf.judge.compare import Category, Policy
from pytest_mmperf.measure import lockstep
from pytest_mmperf.measure.sampler import RoundPlan, Sampler
from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord, RunDocument

# -- the paired test ---------------------------------------------------------------------------------


def _doc(**benchmarks: dict[str, list[float]]) -> RunDocument:
    records = []
    for bench_id, metrics in benchmarks.items():
        recs = {name: MetricRecord.from_samples(name, values) for name, values in metrics.items()}
        records.append(BenchmarkRecord(id=bench_id, workload=None, task=None, optimizations=(), scale="tiny",
                                       device="cpu", batch_size=1, metrics=recs))
    return RunDocument(environment={"fingerprint": "x"}, benchmarks=tuple(records))


def _runs(base_medians: list[float], head_medians: list[float], metric: str = "latency_ms",
          spread: float = 0.01) -> tuple[list[RunDocument], list[RunDocument]]:
    def rounds(m: float) -> list[float]:
        return [m * (1 + spread * k) for k in (-2, -1, 0, 1, 2)]

    return ([_doc(b={metric: rounds(m)}) for m in base_medians],
            [_doc(b={metric: rounds(m)}) for m in head_medians])


def _one(base: list[RunDocument], head: list[RunDocument], **policy: float) -> paired.PairedComparison:
    (comp,) = paired.compare_runs(base, head, Policy(**policy))  # type: ignore[arg-type]
    return comp


def test_a_consistent_slowdown_over_pairs_regresses():
    comp = _one(*_runs([10.0, 10.4, 9.8, 10.1], [11.5, 12.0, 11.2, 11.6]))
    assert comp.category == Category.REGRESSED
    assert 0.14 < comp.change < 0.16 and comp.ci_low is not None and comp.ci_low > 0.05
    assert comp.pairs == 4 and comp.df == 3
    assert "regressed beyond the 5% threshold" in comp.describe()


def test_one_slow_process_is_not_a_regression():
    # pooled rounds would call +19% "certain"; over pairs the change is not consistent
    comp = _one(*_runs([10.0, 10.0, 10.0], [14.0, 10.0, 10.0]))
    assert comp.category != Category.REGRESSED


def test_identical_runs_are_unchanged_once_the_interval_is_inside_the_band():
    comp = _one(*_runs([10.0, 10.2, 9.9, 10.1, 10.0], [10.02, 10.19, 9.93, 10.08, 10.01]))
    assert comp.category == Category.UNCHANGED
    assert comp.ci_low is not None and comp.ci_high is not None and -0.05 < comp.ci_low < comp.ci_high < 0.05
    # three pairs that scatter +-1.7% cannot show it at 99%: inconclusive, not "unchanged"
    few = _one(*_runs([10.0, 10.2, 9.9], [10.1, 10.0, 10.0]))
    assert few.category == Category.INCONCLUSIVE and few.more_pairs_help


def test_one_pair_is_inconclusive_for_a_varying_metric_but_decides_a_deterministic_one():
    varying = _one(*_runs([10.0], [13.0]))
    assert varying.category == Category.INCONCLUSIVE and "--repeats" in varying.reason and varying.more_pairs_help
    memory = _one(*_runs([100e6], [120e6], metric="peak_memory_bytes", spread=0.0))
    assert memory.category == Category.REGRESSED and memory.p_value == 0.0


def test_deterministic_memory_growth_of_20_percent_regresses_over_pairs():
    comp = _one(*_runs([100e6, 100e6], [120e6, 120e6], metric="kv_cache_bytes", spread=0.0))
    assert comp.category == Category.REGRESSED and math.isclose(comp.change, 0.2)


def test_instruction_counts_are_judged_at_the_deterministic_threshold():
    base = [468.80e6, 468.87e6, 468.86e6]  # three processes of the tiny LLM: within 0.015%
    slower = _one(*_runs(base, [b * 1.008 for b in base], metric="latency_instructions", spread=0.0001))
    assert slower.category == Category.REGRESSED and slower.threshold == 0.005
    same = _one(*_runs(base, [468.85e6, 468.81e6, 468.88e6], metric="latency_instructions", spread=0.0001))
    assert same.category == Category.UNCHANGED
    looser = _one(*_runs(base, [b * 1.008 for b in base], metric="latency_instructions", spread=0.0001),
                  thresholds={"latency_instructions": 0.01})
    assert looser.category != Category.REGRESSED


def test_agreeing_benchmarks_lend_their_variance_to_each_other():
    # two pairs only: the first benchmark alone has 1 degree of freedom; nine unchanged benchmarks
    # of the same metric whose variances agree give a prior of up to the run's 10 degrees of freedom
    base = [_doc(**{f"b{i}": {"latency_ms": [10.0 + 0.1 * r + 0.01 * k for k in range(5)]} for i in range(10)})
            for r in range(2)]
    head = [_doc(**{f"b{i}": {"latency_ms": [(11.0 if i == 0 else 10.0) + 0.1 * r + 0.01 * k + 0.02 * ((i + r) % 2)
                                             for k in range(5)]} for i in range(10)})
            for r in range(2)]
    comps = {c.benchmark: c for c in paired.compare_runs(base, head, Policy())}
    assert comps["b0"].df == 11 and comps["b0"].category == Category.REGRESSED


def _noisy_run(noisy_change: float) -> tuple[list[RunDocument], list[RunDocument]]:
    """Ten quiet benchmarks (pairs within +-0.3%) and one noisy one (pairs +-30%) over 5 pairs."""
    wiggle = [-1.0, 0.5, 1.0, -0.5, 0.0]
    base, head = [], []
    for r in range(5):
        b, h = {}, {}
        for i in range(10):
            b[f"quiet{i}"] = {"latency_ms": [10.0] * 5}
            h[f"quiet{i}"] = {"latency_ms": [10.0 * (1 + 0.003 * wiggle[(r + i) % 5])] * 5}
        b["noisy"] = {"latency_ms": [10.0] * 5}
        h["noisy"] = {"latency_ms": [10.0 * (1 + noisy_change) * math.exp(0.3 * wiggle[r])] * 5}
        base.append(_doc(**b))
        head.append(_doc(**h))
    return base, head


def test_a_noisy_benchmark_is_tested_against_its_own_variance_not_the_pooled_one():
    # pooled over the run (the old rule), the noisy benchmark's +25% (pairs -7%..+62%) read a
    # pooled s of 7%, Holm p = 2.6e-5: "regressed" on noise; moderated, its own 24% pair-to-pair
    # spread dominates and nothing is claimed
    comps = {c.benchmark: c for c in paired.compare_runs(*_noisy_run(0.25), Policy())}
    noisy = comps["noisy"]
    assert noisy.category is Category.INCONCLUSIVE and noisy.more_pairs_help
    assert noisy.spread is not None and noisy.spread > 0.2
    assert noisy.p_value is not None and noisy.p_value > 0.01
    assert all(comps[f"quiet{i}"].category is Category.UNCHANGED for i in range(10))
    _, d0 = paired.fit_prior([(1e-5, 4)] * 10 + [(0.1, 4)])
    assert d0 < 10  # the outlier keeps the prior weak


def test_unchanged_needs_the_interval_inside_the_band_not_just_a_small_change():
    # a +1% change whose pairs scatter +-10%: not significant and within the threshold, but the
    # simultaneous interval reaches far beyond +-5%: inconclusive, with how many pairs would decide
    comp = _one(*_runs([10.0, 10.0, 10.0, 10.0], [10.1 * 1.1, 10.1 / 1.1, 10.1 * 1.05, 10.1 / 1.05]))
    assert comp.category is Category.INCONCLUSIVE
    assert "not shown unchanged" in comp.reason and "pairs would decide" in comp.reason
    assert comp.interval.endswith("simultaneous CI") and comp.ci_low is not None and comp.ci_low < -0.05


def test_each_look_is_paid_for():
    runs = _runs([10.0, 10.4, 9.8, 10.1], [10.9, 11.3, 10.7, 11.0])  # +9%, pairs within ~0.5%
    one = _one(*runs)
    (many,) = paired.compare_runs(*runs, Policy(), looks=50)
    assert one.ci_low is not None and many.ci_low is not None and many.ci_low < one.ci_low
    assert many.interval != one.interval


def test_higher_is_better_metrics_and_improvements():
    def speedup_runs(opt_ms: list[float]) -> list[RunDocument]:
        return [_doc(b={"eager_latency_ms": [10.0 * (1 + 0.01 * k) for k in range(5)],
                        "latency_ms": [m * (1 + 0.01 * k) for k in range(5)]}) for m in opt_ms]

    comps = {c.metric: c for c in paired.compare_runs(speedup_runs([5.0, 5.05, 4.95]),
                                                      speedup_runs([6.25, 6.3, 6.2]), Policy())}
    down = comps["speedup_vs_eager"]
    assert down.direction == "higher" and down.change < -0.15 and down.category == Category.REGRESSED
    up = _one(*_runs([10.0, 10.1, 9.9], [8.0, 8.1, 7.9]))
    assert up.category == Category.IMPROVED


def test_a_rate_is_not_gated_as_the_judge_does_not_gate_it():
    assert paired.compare_runs(*_runs([1.0, 1.0], [0.5, 0.5], metric="acceptance_rate"), Policy()) == []


def test_eager_arms_and_derived_metrics_are_not_gated_but_the_speedup_is():
    rec = _doc(b={"latency_ms": [5.0, 5.0], "eager_latency_ms": [10.0, 12.0], "tokens_per_s": [1.0, 1.0],
                  "latency_host_ms": [1.0, 1.0], "latency_device_ms": [5.0, 5.0], "first_call_ms": [9.0],
                  "resident_memory_bytes": [1e6]})
    metrics = paired.primary_metrics(rec.benchmarks[0])
    # the judge's definition (compare.gates): no CUDA host/device duplicates, no one-off costs
    assert set(metrics) == {"latency_ms", "resident_memory_bytes", "speedup_vs_eager"}
    assert metrics["speedup_vs_eager"][1] == (2.0, 2.4)


def test_per_round_summaries_are_the_unit_inside_a_process():
    rec = MetricRecord.from_samples("tpot_ms", [1.0, 1.0, 9.0, 2.0, 2.0, 2.0], rounds=[0, 0, 0, 1, 1, 1])
    bench = BenchmarkRecord(id="b", workload=None, task=None, optimizations=(), scale="tiny", device="cpu",
                            batch_size=1, metrics={"tpot_ms": rec})
    doc = RunDocument(environment={"fingerprint": "x"}, benchmarks=(bench,))
    values, _ = paired.pair_values([doc], [doc])
    assert values[("b", "tpot_ms")][0].base == 1.5  # median of the round medians 1.0 and 2.0


def test_zero_values_are_inconclusive_not_an_error():
    comp = _one(*_runs([0.0, 0.0], [1.0, 2.0], metric="extra_bytes"))
    assert comp.category == Category.INCONCLUSIVE and "zero" in comp.reason and not comp.more_pairs_help
    # deterministic bytes as the judge reads them: 0 B and 0 B unchanged, 0 B to 1 MiB a regression
    assert _one(*_runs([0.0], [0.0], metric="peak_memory_bytes", spread=0.0)).category == Category.UNCHANGED
    grown = _one(*_runs([0.0], [2.0**20], metric="peak_memory_bytes", spread=0.0))
    assert grown.category == Category.REGRESSED and grown.change == math.inf


def test_holm_adjusts_step_down():
    assert paired.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert paired.holm([]) == []


def _many(changes: list[float], noise: float) -> tuple[list[RunDocument], list[RunDocument]]:
    """Benchmark ``b{i}`` changed by ``changes[i]`` over 6 pairs whose processes scatter by ``noise``."""
    wobble = [1.0, 1 + noise, 1 - noise, 1 + noise / 2, 1 - noise / 2, 1.0]

    def rounds(m: float) -> list[float]:
        return [m * (1 + 0.01 * k) for k in (-2, -1, 0, 1, 2)]

    base = [_doc(**{f"b{i}": {"latency_ms": rounds(10.0)} for i in range(len(changes))}) for _ in wobble]
    head = [_doc(**{f"b{i}": {"latency_ms": rounds(10.0 * (1 + c) * w ** (1 + i % 3))}
                    for i, c in enumerate(changes)}) for w in wobble]
    return base, head


def test_a_regression_shows_the_interval_of_its_holm_step_which_excludes_no_change():
    # eight benchmarks 12-20% slower: Holm rejects them one step after another; each shows the
    # interval at the level its step was tested at (not the simultaneous one, which is every
    # step's most conservative level), and that interval lies past 0 as the decision does
    comps = paired.compare_runs(*_many([0.12, 0.14, 0.16, 0.18, 0.20, 0.13, 0.15, 0.17], 0.03), Policy())
    regressed = [c for c in comps if c.category is Category.REGRESSED]
    assert len(regressed) >= 2
    steps = sorted(int(c.interval.split()[2].split("/")[0]) for c in regressed)
    assert steps[0] == 1 and steps[-1] > 1
    for c in regressed:
        assert c.interval.startswith("Holm step ") and c.interval.endswith("% CI")
        assert c.ci_low is not None and c.ci_low > 0, c.describe()
        assert f"({c.interval} +" in c.describe()
    simultaneous = paired.interval_label(1 - 2 * 0.01 / len(comps))
    first = next(c for c in regressed if c.interval.startswith("Holm step 1/"))
    assert first.interval.endswith(simultaneous.split()[0] + " CI")  # step 1 is Bonferroni's level
    # an undecided metric keeps the simultaneous interval the equivalence test reads
    mixed = paired.compare_runs(*_many([0.15, 0.0, 0.01], 0.08), Policy())
    assert all(c.interval.endswith("simultaneous CI") for c in mixed if c.category is not Category.REGRESSED)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=-0.3, max_value=0.3), min_size=3, max_size=8),
       st.floats(min_value=0.001, max_value=0.2))
def test_every_decided_change_shows_an_interval_past_no_change(changes, noise):
    for c in paired.compare_runs(*_many(changes, noise), Policy()):
        if c.category is Category.REGRESSED:
            assert c.ci_low is not None and c.ci_low > 0 and c.interval.startswith("Holm step ")
        if c.category is Category.IMPROVED:
            assert c.ci_high is not None and c.ci_high < 0 and c.interval.startswith("Holm step ")


positive = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(positive, positive), min_size=1, max_size=12),
       st.sampled_from(["latency_ms", "peak_memory_bytes", "resident_memory_bytes"]))
def test_any_pairs_give_a_verdict(pairs, metric):
    base, head = _runs([b for b, _ in pairs], [h for _, h in pairs], metric=metric, spread=0.0)
    comp = _one(base, head)
    assert comp.category in (Category.REGRESSED, Category.IMPROVED, Category.UNCHANGED, Category.INCONCLUSIVE)
    assert comp.pairs == len(pairs)
    if comp.p_value is not None:
        assert 0.0 <= comp.p_value <= 1.0


# -- the schedule ------------------------------------------------------------------------------------


def test_schedule_alternates_abba():
    s = Schedule("base", "head")
    waiting = {"base": "t::a", "head": "t::a"}
    seen = {"base": {"t::a"}, "head": {"t::a"}}
    assert [s.choose(waiting, seen) for _ in range(8)] == ["base", "head", "head", "base"] * 2


def test_schedule_lets_the_side_that_is_behind_catch_up():
    s = Schedule("base", "head")
    # head has a benchmark base lacks and is still on it while base has moved on: ... head passed?
    # no: base waits on t::c, which head has not seen; head waits on t::b, which base has seen.
    waiting = {"base": "t::c", "head": "t::b"}
    seen = {"base": {"t::a", "t::b", "t::c"}, "head": {"t::a", "t::b"}}
    assert s.choose(waiting, seen) == "head"
    assert s.choose({"base": "t::c"}, seen) == "base"  # head finished: base goes on alone
    with pytest.raises(ValueError):
        s.choose({}, seen)


# -- the coordinator with fake workers ---------------------------------------------------------------


class Activity:
    """Shared by fake workers: who computes now; records any overlap."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.computing: set[str] = set()
        self.overlaps = 0
        self.order: list[tuple[str, str, int]] = []

    def compute(self, who: str, bench: str, rnd: int) -> None:
        with self.lock:
            if self.computing:
                self.overlaps += 1
            self.computing.add(who)
            self.order.append((who, bench, rnd))
        time.sleep(0.002)  # a stand-in for a measured round: the other side must stay blocked meanwhile
        with self.lock:
            self.computing.discard(who)


class FakeWorker:
    """A worker as a thread: connects to MMPERF_LOCKSTEP with the real client and runs rounds."""

    def __init__(self, spec: WorkerSpec, activity: Activity, benchmarks: list[str], rounds: int,
                 behaviour: str = "ok") -> None:
        self.spec = spec
        self.stopped = threading.Event()
        self.rc: int | None = None
        self.thread = threading.Thread(target=self._main, args=(activity, benchmarks, rounds, behaviour),
                                       daemon=True)
        self.thread.start()

    def _main(self, activity: Activity, benchmarks: list[str], rounds: int, behaviour: str) -> None:
        try:
            if behaviour == "no-lockstep":
                for bench in benchmarks:
                    for r in range(rounds):
                        activity.compute(self.spec.side, bench, r)
                self.rc = 0
                return
            turn = lockstep.Turnstile(self.spec.env[lockstep.ENV])
            try:
                for bench in benchmarks:
                    for r in range(rounds):
                        turn.wait_turn(bench)
                        if behaviour == "hang":
                            self.stopped.wait(30)
                            return
                        if behaviour == "die":
                            self.rc = 3
                            return
                        activity.compute(self.spec.side, bench, r)
            finally:
                turn.close()
            self.rc = 0
        except lockstep.LockstepError:
            self.rc = 2

    def poll(self) -> int | None:
        return self.rc if not self.thread.is_alive() else None

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)


def _specs(tmp_path: Path, first: str = "base") -> list[WorkerSpec]:
    sides = ["base", "head"] if first == "base" else ["head", "base"]
    return [WorkerSpec(s, 1, ("true",), tmp_path, {}, tmp_path / f"{s}.log") for s in sides]


@pytest.fixture
def sockets(tmp_path: Path) -> Path:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"mmperf-ab-test-{os.getpid()}-{time.monotonic_ns()}"
    path.mkdir()  # a short path: Unix socket paths are limited to ~100 characters
    yield path
    for p in path.iterdir():
        p.unlink()
    path.rmdir()


def test_a_pair_takes_turns_abba_and_never_overlaps(tmp_path, sockets):
    activity = Activity()
    lines: list[str] = []

    def spawn(spec: WorkerSpec) -> FakeWorker:
        return FakeWorker(spec, activity, ["t::a", "t::b"], rounds=4)

    report = coordinator.run_pair(_specs(tmp_path), sockets, spawn=spawn, progress=lines.append, timeout_s=10)
    assert activity.overlaps == 0
    assert report.returncodes == {"base": 0, "head": 0} and report.turns == {"base": 8, "head": 8}
    who = [w for w, _, _ in activity.order]
    assert who[:8] == ["base", "head", "head", "base", "base", "head", "head", "base"]
    # each benchmark's rounds of both sides are adjacent in time
    assert [b for _, b, _ in activity.order[:8]] == ["t::a"] * 8
    assert lines[:2] == ["[1/1] base t::a", "[1/1] head t::a"]
    assert not report.notes


def test_a_benchmark_on_one_side_only_runs_alone_and_the_rest_stays_aligned(tmp_path, sockets):
    activity = Activity()
    benches = {"base": ["t::a", "t::c"], "head": ["t::a", "t::b", "t::c"]}

    def spawn(spec: WorkerSpec) -> FakeWorker:
        return FakeWorker(spec, activity, benches[spec.side], rounds=2)

    report = coordinator.run_pair(_specs(tmp_path), sockets, spawn=spawn, timeout_s=10)
    assert activity.overlaps == 0 and report.turns == {"base": 4, "head": 6}
    assert [b for _, b, _ in activity.order[:4]] == ["t::a"] * 4
    # base may start t::c while head is on t::b (neither knows the other's list); once head reaches
    # t::c the two alternate again, so t::c's rounds of both sides lie within a few turns
    c_rounds = [i for i, (_, b, _) in enumerate(activity.order) if b == "t::c"]
    assert c_rounds[-1] - c_rounds[0] <= 5


def test_a_hanging_worker_is_stopped_with_one_line(tmp_path, sockets):
    activity = Activity()
    workers: list[FakeWorker] = []

    def spawn(spec: WorkerSpec) -> FakeWorker:
        workers.append(FakeWorker(spec, activity, ["t::a"], 3, "hang" if spec.side == "head" else "ok"))
        return workers[-1]

    with pytest.raises(coordinator.WorkerError, match=r"head worker \(pair 1\) computed 1 s without"):
        coordinator.run_pair(_specs(tmp_path), sockets, spawn=spawn, timeout_s=1)
    assert all(w.stopped.is_set() for w in workers)


def test_a_dying_worker_is_reported_with_its_last_log_line(tmp_path, sockets):
    (tmp_path / "head.log").write_text("E   RuntimeError: boom\n=== 1 error in 0.1s ===\n")

    def spawn(spec: WorkerSpec) -> FakeWorker:
        return FakeWorker(spec, Activity(), ["t::a"], 3, "die" if spec.side == "head" else "ok")

    with pytest.raises(coordinator.WorkerError, match=r"head worker \(pair 1\): pytest exited 3 "
                                                      r"\(internal error\): 1 error in 0.1s"):
        coordinator.run_pair(_specs(tmp_path), sockets, spawn=spawn, timeout_s=10)


def test_a_worker_without_lockstep_runs_alone_and_is_noted(tmp_path, sockets):
    activity = Activity()

    def spawn(spec: WorkerSpec) -> FakeWorker:
        return FakeWorker(spec, activity, ["t::a"], 3, "no-lockstep" if spec.side == "base" else "ok")

    report = coordinator.run_pair(_specs(tmp_path), sockets, spawn=spawn, timeout_s=10)
    assert activity.overlaps == 0 and report.turns == {"base": 0, "head": 3}
    assert report.notes and "base never asked for a turn" in report.notes[0]


def test_the_worker_sees_a_vanished_coordinator_as_one_line(tmp_path, sockets):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sockets / "c.sock"))
    server.listen(1)

    def hang_up() -> None:
        conn, _ = server.accept()
        conn.recv(100)
        conn.close()

    t = threading.Thread(target=hang_up)
    t.start()
    with pytest.raises(lockstep.LockstepError, match=r"coordinator at .* is gone"):
        lockstep.Turnstile(str(sockets / "c.sock")).wait_turn("t::a")
    t.join()
    server.close()


def test_the_sampler_asks_for_a_turn_before_each_round(sockets, monkeypatch):
    from pytest_mmperf.measure.clocks.host import HostClock

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sockets / "s.sock"))
    server.listen(1)
    lines: list[str] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rw") as f:
            for line in f:
                lines.append(line.strip())
                f.write("go\n")
                f.flush()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    monkeypatch.setenv(lockstep.ENV, str(sockets / "s.sock"))
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "t.py::bench (call)")
    calls: list[int] = []
    plan = RoundPlan(warmup=1, rounds=3, max_rounds=3, calibrate=False)
    Sampler(HostClock(), [], plan).run([lambda: calls.append(1)])
    lockstep._TURNSTILES.pop(str(sockets / "s.sock")).close()
    t.join(5)
    server.close()
    assert lines == ["wait t.py::bench"] * 3 and len(calls) == 4  # 1 warm-up + 3 rounds
    monkeypatch.delenv(lockstep.ENV)
    assert isinstance(lockstep.from_environment(), lockstep.NoTurnstile)


# -- the CLI and a real run ----------------------------------------------------------------------------

CONFTEST = '''
def work(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total
'''

BENCH = '''
import pytest
from conftest import work

STEPS = {steps}


@pytest.mark.mmperf(workload="llm", task="t2t")
def test_loop(mmperf):
    mmperf(work, STEPS)
'''

STEPS = 40_000


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=mmperf", "-c", "user.email=mmperf@example.invalid", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def commit(repo: Path, message: str, steps: int | None = None) -> str:
    if steps is not None:
        (repo / "test_bench.py").write_text(BENCH.format(steps=steps))
        git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    (path / "conftest.py").write_text(CONFTEST)
    return path


def worktree_count(repo: Path) -> int:
    return git(repo, "worktree", "list", "--porcelain").count("worktree ")


def test_end_to_end_a_slower_head_fails_in_lockstep(repo, tmp_path, capsys):
    base = commit(repo, "fast", STEPS)
    head = commit(repo, "four times slower", STEPS * 4)
    md, out_dir = tmp_path / "ab.md", tmp_path / "json"
    # four pairs (3 df): with three, one disagreeing pair left a 4x slowdown inconclusive in a CI run
    rc = main(["ab", "--repo", str(repo), "--base", base, "--head", head, "--rounds", "5", "--repeats", "4",
               "--threshold", "20%", "--markdown", str(md), "--json-dir", str(out_dir)])
    captured = capsys.readouterr()
    assert rc == 1, captured.out
    assert "REGRESSED test_bench.py::test_loop latency_ms" in captured.out
    assert "[1/4] base test_bench.py::test_loop" in captured.err and "pair 4/4 done: 5 base and 5 head" in captured.err
    text = md.read_text()
    assert text.startswith(ab.MARKER) and "❌ regressed" in text
    assert RunDocument.load(out_dir / "head.json").commit == head
    verdicts = json.loads((out_dir / "ab.json").read_text())
    assert verdicts["failed"] and {c["metric"] for c in verdicts["comparisons"]} >= {"latency_ms"}
    assert len(list(out_dir.glob("*-?.json"))) == 8
    assert worktree_count(repo) == 1  # only the main worktree is left


def test_end_to_end_one_pair_says_inconclusive_and_adds_a_pair_while_undecided(repo, tmp_path, capsys):
    base = commit(repo, "one", STEPS)
    out_dir = tmp_path / "json"
    rc = main(["ab", "--repo", str(repo), "--base", base, "--head", base, "--rounds", "3", "--repeats", "1",
               "--json-dir", str(out_dir)])
    captured = capsys.readouterr()
    assert rc == 0, captured.out  # inconclusive passes (said so), unless --inconclusive=fail
    last = captured.out.strip().splitlines()[-1]
    assert last.startswith("mmperf ab: inconclusive: 1 gated metric(s) undecided after 2 pair(s)"), captured.out
    assert "no regression" not in captured.out
    assert "undecided after 1 pair(s): one more pair" in captured.err and "pair 2/2 at most done" in captured.err
    verdicts = json.loads((out_dir / "ab.json").read_text())
    assert verdicts["verdict"] == "inconclusive" and verdicts["pairs"] == 2 and verdicts["looks"] == 2
    assert verdicts["stopped"] == ab.result.MAX_REPEATS and len(verdicts["pair_seconds"]) == 2


def test_unknown_ref_exits_2_with_one_line(repo, capsys):
    commit(repo, "one", STEPS)
    rc = main(["ab", "--repo", str(repo), "--base", "no-such-branch", "--head", "HEAD"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "--base 'no-such-branch': unknown revision" in err


def test_uncommitted_changes_exit_2(repo, capsys):
    commit(repo, "one", STEPS)
    (repo / "test_bench.py").write_text(BENCH.format(steps=1))
    rc = main(["ab", "--repo", str(repo), "--base", "HEAD~0", "--head", "HEAD"])
    err = capsys.readouterr().err
    assert rc == 2 and "uncommitted changes" in err and err.count("\n") == 1


def test_max_repeats_below_repeats_exits_2(repo, capsys):
    commit(repo, "one", STEPS)
    rc = main(["ab", "--repo", str(repo), "--base", "HEAD", "--head", "HEAD", "--repeats", "3", "--max-repeats", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "--max-repeats 2 is below --repeats 3" in err and err.count("\n") == 1


def test_not_a_repository_exits_2(tmp_path, capsys):
    rc = main(["ab", "--repo", str(tmp_path), "--base", "a", "--head", "b"])
    assert rc == 2 and "not inside a git repository" in capsys.readouterr().err


def test_workers_and_worktrees_go_away_on_ctrl_c(repo):
    base = commit(repo, "one", STEPS)
    seen: list[Path] = []

    def interrupted(spec: WorkerSpec) -> FakeWorker:
        seen.append(spec.cwd)
        assert worktree_count(repo) == 3  # both worktrees exist while measuring
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ab.measure(ab.ABOptions(base=base, head=base, repo=repo), spawn=interrupted, log=lambda s: None)
    assert worktree_count(repo) == 1
    assert seen and not seen[0].exists() and not seen[0].parent.exists()


def test_a_pytest_usage_error_exits_2_and_cleans_up(repo, capsys):
    base = commit(repo, "one", STEPS)
    rc = main(["ab", "--repo", str(repo), "--base", base, "--head", base, "--rounds", "1", "--repeats", "1",
               "--pytest-args=--no-such-option"])
    err = capsys.readouterr().err
    assert rc == 2 and "pytest exited 4 (usage error)" in err
    assert worktree_count(repo) == 1


def test_command_and_environment_measure_the_worktree(tmp_path):
    cmd = ab.pytest_command("py", tmp_path / "r.json", 5, ab.split_args(["suites -k 'llm and not int8'"]))
    assert cmd[:4] == ["py", "-m", "pytest", "--mmperf"]
    assert "--mmperf-history=off" in cmd and "--mmperf-rounds=5" in cmd and "--mmperf-max-rounds=5" in cmd
    assert cmd[-3:] == ["suites", "-k", "llm and not int8"]
    from pytest_mmperf.ab.worktrees import side_env

    env = side_env(tmp_path, "abc", "main", {"PYTHONPATH": "/elsewhere", "MMPERF_SHARD": "1/2",
                                             lockstep.ENV: "/stray.sock"})
    assert env["PYTHONPATH"].split(":")[0] == str(tmp_path)
    assert env["MMPERF_COMMIT"] == "abc" and "MMPERF_SHARD" not in env and lockstep.ENV not in env


def test_the_old_drift_allowance_flag_is_accepted_and_said_to_do_nothing(repo, capsys):
    commit(repo, "one", STEPS)
    rc = main(["ab", "--repo", str(repo), "--base", "no-such", "--head", "HEAD", "--drift-allowance", "20%"])
    err = capsys.readouterr().err
    assert rc == 2 and "--drift-allowance has no effect" in err


# -- honest answers and the sequential design ------------------------------------------------------

def _result(comparisons: list[paired.PairedComparison], **kw: object) -> ab.ABResult:
    doc = _doc()
    return ab.ABResult("a" * 40, "b" * 40, doc, doc, comparisons, {}, [], [], pairs=1, **kw)  # type: ignore[arg-type]


def test_one_pair_says_inconclusive_never_no_regression():
    comps = paired.compare_runs(*_runs([10.0], [10.1]), Policy())
    result = _result(comps, stopped=ab.result.MAX_REPEATS)
    lines = ab.terminal_lines(result)
    assert result.verdict == "inconclusive" and not result.failed
    assert lines[-1].startswith("mmperf ab: inconclusive: 1 gated metric(s) undecided after 1 pair(s)")
    assert not any("no regression" in line for line in lines)
    assert any(line.startswith("inconclusive b latency_ms") for line in lines)
    md = ab.markdown(result, ab.ABOptions(base="main", head="HEAD"))
    assert "⚠️ inconclusive" in md and "no regression" not in md
    assert _result(comps, inconclusive_fails=True).failed  # --inconclusive=fail
    assert _result([]).verdict == "inconclusive"  # nothing compared is not a pass


def test_no_regression_only_when_every_gated_metric_was_decided():
    decided = paired.compare_runs(*_runs([10.0, 10.2, 9.9, 10.1, 10.0], [10.02, 10.19, 9.93, 10.08, 10.01]),
                                  Policy())
    result = _result(decided)
    assert result.verdict == "no regression" and ab.terminal_lines(result)[-1].startswith("mmperf ab: no regression")


def test_pairs_are_added_while_undecided_within_the_repeats_and_the_time_budget():
    from pytest_mmperf.ab import result as res
    from pytest_mmperf.ab.run import next_pair

    options = ab.ABOptions(base="a", head="b", repeats=2, max_repeats=4, time_budget_s=250.0)
    assert options.looks == 3 and ab.ABOptions(base="a", head="b", repeats=3).most_pairs == 6
    open_ = paired.compare_runs(*_runs([10.0, 10.2], [10.1, 10.0]), Policy())
    assert open_[0].category is Category.INCONCLUSIVE and open_[0].more_pairs_help
    done = paired.compare_runs(*_runs([10.0, 10.2, 9.9, 10.1, 10.0], [10.02, 10.19, 9.93, 10.08, 10.01]), Policy())
    zero = paired.compare_runs(*_runs([0.0, 0.0], [1.0, 2.0], metric="extra_bytes"), Policy())
    assert next_pair(1, options, [], []) is None  # before the first look
    assert next_pair(2, options, open_, [60.0, 60.0]) is None  # undecided: one more pair
    assert next_pair(2, options, done, [60.0, 60.0]) == res.DECIDED
    assert next_pair(4, options, open_, [60.0] * 4) == res.MAX_REPEATS
    assert next_pair(2, options, open_, [100.0, 100.0]) == res.TIME_BUDGET  # 200 s + 100 s > 250 s
    assert next_pair(2, options, zero, [1.0, 1.0]) == res.NO_HELP
    grown = paired.compare_runs(*_runs([1e6, 1e6], [2e6, 2e6], metric="resident_memory_bytes", spread=0.0),
                                Policy())
    assert next_pair(2, options, open_ + grown, [1.0, 1.0]) == res.REGRESSION


def test_one_percent_formatter_and_no_import_circle_in_ab():
    import ast

    from pytest_mmperf.judge.compare import percent

    assert percent(math.nan) == "n/a" and percent(0.05) == "+5.0%" and percent(-math.inf) == "-inf%"
    package = Path(ab.__file__).parent
    imports: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pytest_mmperf.ab"):
                names.add(node.module.removeprefix("pytest_mmperf.ab").lstrip(".") or "__init__")
                names.update(a.name for a in node.names if node.module == "pytest_mmperf.ab")
        imports[path.stem] = names - {path.stem}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n}))
                   for n in imports.get(start, ()) if n != "__init__")

    assert not [m for m in imports if m != "__init__" and reaches(m, m, set())]


TORCH_BENCH = '''
import pytest
import torch

A = torch.randn(32, 32, generator=torch.Generator().manual_seed(0))
W = torch.randn(32, 32, generator=torch.Generator().manual_seed(1)) / 8
EXTRA = {extra}


def work(steps=40):
    x = A
    for _ in range(steps):
        x = torch.tanh(x @ W)
        for _ in range(EXTRA):  # the plant: elementwise work in every step
            x = x * 1.0
    return x


@pytest.mark.mmperf(workload="llm", task="t2t")
def test_changed(mmperf):
    mmperf(work)


@pytest.mark.mmperf(workload="llm", task="t2t", optimizations=["sdpa"])
def test_same(mmperf):
    mmperf(lambda: torch.relu(A @ W))
'''


def test_end_to_end_ab_profiles_both_sides_of_a_regressed_benchmark_only(repo, tmp_path, capsys):
    """No --mmperf-profile given: the regressed benchmark's operators still come out, from one short
    profiled run per side of that benchmark alone."""
    (repo / "test_bench.py").write_text(TORCH_BENCH.format(extra=0))
    git(repo, "add", "-A")
    base = commit(repo, "base")
    (repo / "test_bench.py").write_text(TORCH_BENCH.format(extra=4))
    git(repo, "add", "-A")
    head = commit(repo, "four more elementwise ops a step")
    out_dir = tmp_path / "json"
    rc = main(["ab", "--repo", str(repo), "--base", base, "--head", head, "--rounds", "5", "--repeats", "4",
               "--threshold", "20%", "--json-dir", str(out_dir)])
    captured = capsys.readouterr()
    assert rc == 1, captured.out
    assert "REGRESSED test_bench.py::test_changed latency_ms" in captured.out
    assert "new operator aten::mul: calls per call 0 -> 160" in captured.out, captured.out
    assert "profiling 1 failed benchmark(s) on both sides" in captured.err
    for side in ("base", "head"):
        profiled = RunDocument.load(out_dir / f"{side}-profile.json")
        assert [b.id for b in profiled.benchmarks] == ["test_bench.py::test_changed"]  # none for the passing one
    assert worktree_count(repo) == 1
