"""The instruction clock (callgrind) and how its counts are judged, without valgrind where possible."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_mmperf.judge import compare, deterministic
from pytest_mmperf.measure.clocks import instructions
from pytest_mmperf.measure.clocks.instructions import CallgrindClock, read_totals, reexec_command
from pytest_mmperf.measure.sampler import PhaseLog, RoundPlan, Sampler
from pytest_mmperf.results.fingerprint import fingerprint
from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord
from pytest_mmperf.settings import INSTRUCTION_ROUNDS, resolve


class FakeCallgrind:
    """Writes a dump file per DUMP request, as callgrind does, with a count the test controls."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.part = 0
        self.pending = 0.0  # instructions "executed" since the last dump
        self.on = False
        self.log: list[str] = []

    def running_on_valgrind(self) -> bool:
        return True

    def start(self) -> None:
        self.on = True
        self.log.append("start")

    def stop(self) -> None:
        self.on = False
        self.log.append("stop")

    def execute(self, n: float) -> None:
        if self.on:
            self.pending += n

    def dump(self, label: str) -> None:
        self.part += 1
        Path(f"{self.prefix}.{self.part}").write_text(
            f"version: 1\ncmd: python\npart: {self.part}\nsummary: {self.pending:.0f}\ntotals: {self.pending:.0f}\n"
        )
        self.pending = 0.0
        self.log.append("dump")


def test_intervals_are_the_counts_between_marks_and_dumps_are_cleaned_up(tmp_path: Path) -> None:
    fake = FakeCallgrind(tmp_path / "callgrind.out.1")
    clock = CallgrindClock(fake, str(tmp_path / "callgrind.out.1"))
    fake.execute(999)  # before the round: not counted (instrumentation off)
    a = clock.mark()
    fake.execute(100)
    b = clock.mark()
    fake.execute(50)
    c = clock.mark()
    clock.synchronize()
    fake.execute(7)  # between rounds: instrumentation off
    assert clock.interval(a, b).instructions == 100
    assert clock.interval(b, c).instructions == 50
    assert clock.interval(a, c).instructions == 150
    assert fake.log == ["start", "dump", "dump", "dump", "stop"]
    clock.mark()  # the next round starts: every earlier dump file is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["callgrind.out.1.4"]


def test_sampler_records_counts_per_round_and_phase(tmp_path: Path) -> None:
    fake = FakeCallgrind(tmp_path / "out")
    clock = CallgrindClock(fake, str(tmp_path / "out"))
    phases = PhaseLog(clock)

    def work() -> None:
        with phases.phase("prefill"):
            fake.execute(1000)
        for _ in range(3):
            with phases.phase("decode_step"):
                fake.execute(200)

    # calibrate=False as the fixture sets it under this clock: a count has no timer overhead
    plan = RoundPlan(warmup=1, rounds=3, max_rounds=3, calibrate=False)
    (arm,) = Sampler(clock, [], plan, phases).run([work])
    assert arm.samples["latency_instructions"] == [1600, 1600, 1600]
    assert arm.samples["prefill_instructions"] == [1000] * 3
    assert arm.samples["decode_step_instructions"] == [200] * 9
    assert "latency_ms" not in arm.samples  # wall time under valgrind means nothing


def test_a_cheap_call_is_settled_before_it_is_counted(tmp_path: Path) -> None:
    """A call whose count falls over its first calls (as CPython's specialization makes it) is
    counted only after the settle budget's calls; the probe round is not kept."""
    fake = FakeCallgrind(tmp_path / "out")
    clock = CallgrindClock(fake, str(tmp_path / "out"))
    calls = [0]

    def work() -> None:
        calls[0] += 1
        fake.execute(1000 + max(0, 30 - calls[0]) * 10)  # settles after 30 calls

    plan = RoundPlan(warmup=1, rounds=2, max_rounds=2, calibrate=False, settle_instructions=50_000, settle_calls=64)
    (arm,) = Sampler(clock, [], plan, PhaseLog(clock)).run([work])
    # 1 warm-up, the probe (1280 instructions: 39 calls of budget), 38 more uncounted, 2 rounds
    assert arm.settle_calls == 38
    assert calls[0] == 1 + 1 + 38 + 2
    assert arm.samples["latency_instructions"] == [1000, 1000]
    assert arm.rounds["latency_instructions"] == [0, 1]
    assert arm.measured_rounds == 2


def test_an_expensive_call_keeps_its_probe_as_the_first_round(tmp_path: Path) -> None:
    fake = FakeCallgrind(tmp_path / "out")
    clock = CallgrindClock(fake, str(tmp_path / "out"))
    calls = [0]

    def work() -> None:
        calls[0] += 1
        fake.execute(80_000)

    # 80K a call: the 500K budget holds 6, under settle_min_calls (8): the probe is round 0
    plan = RoundPlan(warmup=1, rounds=2, max_rounds=2, calibrate=False, settle_instructions=500_000)
    (arm,) = Sampler(clock, [], plan, PhaseLog(clock)).run([work])
    assert arm.settle_calls == 0
    assert calls[0] == 1 + 2  # no call beyond the warm-up and the two rounds
    assert arm.samples["latency_instructions"] == [80_000, 80_000]
    assert arm.rounds["latency_instructions"] == [0, 1]
    assert arm.measured_rounds == 2


def test_read_totals_refuses_a_dump_without_totals(tmp_path: Path) -> None:
    bad = tmp_path / "d"
    bad.write_text("version: 1\n")
    with pytest.raises(instructions.InstructionClockError, match="no totals"):
        read_totals(bad)


DUMP = """# callgrind format
version: 1
positions: line
events: Ir
summary: 1175

ob=(1) /usr/lib/x86_64-linux-gnu/libc.so.6
fl=(1) ./malloc/./malloc/malloc.c
fn=(1) _int_malloc
10 40
+2 60
fn=(2) malloc
5 20
cfn=(1)
calls=1 10
* 100

ob=(2) /lib/libtorch_cpu.so
fl=(2) ???
fn=(3) at::add
1 1000
cfl=(1)
cfn=(2)
calls=1 5
3 120
fl=(3) ???
fn=(4) free
2 15
fn=(3)
+4 40
"""


def test_read_counts_leaves_glibcs_allocator_out(tmp_path: Path) -> None:
    """Self costs sum to the dump's total (a call line's inclusive cost is not added again); the
    allocator's share is malloc.c's functions, or known names where libc has no debug info."""
    dump = tmp_path / "callgrind.out.1.1"
    dump.write_text(DUMP)
    total, allocator = instructions.read_counts(dump)
    assert total == 1175 == read_totals(dump)
    assert allocator == 40 + 60 + 20 + 15  # _int_malloc, malloc (not its call line), free by name
    assert instructions.is_allocator("./malloc/./malloc/malloc.c", "whatever")
    assert instructions.is_allocator("???", "unlink_chunk.constprop.0")
    assert not instructions.is_allocator("/src/obmalloc.c", "_PyObject_Malloc")
    assert not instructions.is_allocator("/src/torch.cpp", "malloc")  # someone else's malloc


def test_the_clock_counts_without_the_allocator(tmp_path: Path) -> None:
    prefix = tmp_path / "callgrind.out.7"

    class Writer(FakeCallgrind):
        def dump(self, label: str) -> None:
            self.part += 1
            Path(f"{self.prefix}.{self.part}").write_text(DUMP)
            self.log.append("dump")

    clock = CallgrindClock(Writer(prefix), str(prefix))
    a, b = clock.mark(), clock.mark()
    assert clock.interval(a, b).instructions == 1175 - 135
    # and per function, named with its object file, the allocator left out: the diagnosis's input
    assert clock.functions(a, b) == {"at::add (libtorch_cpu.so)": 1000 + 40}  # 120: the call line, inclusive


def test_a_regressed_count_names_the_functions_it_grew_in() -> None:
    from pytest_mmperf.judge.diagnosis import FUNCTIONS_KEY, compact_functions, diagnose, function_changes
    from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord

    base_fns = {"PyEval (libpython)": 6000.0, "sgemm (libmkl)": 3000.0, "tiny (x)": 1.0}
    head_fns = {"PyEval (libpython)": 6100.0, "sgemm (libmkl)": 3000.0, "mul_kernel (libtorch)": 900.0}
    base, head = compact_functions(base_fns, calls=2), compact_functions(head_fns, calls=2)
    assert base["total"] == 4500.5 and "tiny (x)" not in base["self"] and base["other"] == 0.5  # below 0.1%
    changes = function_changes({FUNCTIONS_KEY: base}, {FUNCTIONS_KEY: head})
    assert [c.name for c in changes] == ["mul_kernel (libtorch)", "PyEval (libpython)"]  # sgemm did not move
    assert changes[0].text() == "mul_kernel (libtorch) +450 (new)"

    def record(fns, count):
        return BenchmarkRecord("t.py::b", "llm", "t2t", (), "tiny", "cpu", 1,
                               {"latency_instructions": MetricRecord.from_samples("latency_instructions", [count] * 2)},
                               profile={FUNCTIONS_KEY: fns})

    found = diagnose(record(base, 4500.5), record(head, 5000.0), regressed=["latency_instructions"])
    text = "\n".join(found.lines())
    assert ("functions (self instructions a call): mul_kernel (libtorch) +450 (new); "
            "PyEval (libpython) +50 (+1.7%)") in text
    assert "no operator profile" not in text
    assert found.to_json()["functions"][0] == {"function": "mul_kernel (libtorch)", "base_per_call": 0.0,
                                               "head_per_call": 450.0}


def test_kernels_compiled_under_hashed_names_are_pooled_so_a_recompile_is_no_change() -> None:
    """inductor names each compile's shared object by a hash that differs between folders: the
    same kernels under new names are no "new" functions; a real change in them still shows."""
    from pytest_mmperf.judge.diagnosis import FUNCTIONS_KEY, compact_functions, function_changes

    a, b, c = ("kernel (" + "c" + ch * 51 + ".main.so)" for ch in "abc")
    base = {a: 4000.0, b: 3000.0, "mul_kernel (libtorch_cpu.so)": 1000.0}
    head = {c: 7000.0, "kernel (/tmp/x/y/" + "c" + "d" * 51 + ".so)": 0.0, "mul_kernel (libtorch_cpu.so)": 1900.0}
    base_c, head_c = compact_functions(base, calls=1), compact_functions(head, calls=1)
    assert base_c["self"]["kernel (inductor-compiled code)"] == 7000.0
    changes = function_changes({FUNCTIONS_KEY: base_c}, {FUNCTIONS_KEY: head_c})
    assert [ch.name for ch in changes] == ["mul_kernel (libtorch_cpu.so)"]
    # a baseline saved before pooling: pooled when read
    unpooled = {"version": 1, "total": 8000.0, "other": 0.0, "self": base}
    assert [ch.name for ch in function_changes({FUNCTIONS_KEY: unpooled}, {FUNCTIONS_KEY: head_c})] == [
        "mul_kernel (libtorch_cpu.so)"]


def test_reexec_with_xdist_traces_the_workers_only(tmp_path: Path) -> None:
    tools = {"valgrind": "/usr/bin/valgrind", "setarch": "/usr/bin/setarch"}
    serial, _ = reexec_command(["-k", "x"], tmp_path / "o", tmp_path / "s.so", {}, which=tools.get)
    parallel, _ = reexec_command(["-n", "2"], tmp_path / "o", tmp_path / "s.so", {}, which=tools.get,
                                 children=True)
    assert "--trace-children=no" in serial
    assert "--trace-children=yes" in parallel
    skip = next(a for a in parallel if a.startswith("--trace-children-skip="))
    assert "*/git" in skip and "python" not in skip


def test_reexec_command_pins_what_counts_depend_on(tmp_path: Path) -> None:
    tools = {"valgrind": "/usr/bin/valgrind", "setarch": "/usr/bin/setarch"}
    cmd, env = reexec_command(["suites", "-k", "llm", "--mmperf-clock=instructions"], tmp_path / "o",
                              tmp_path / "shim.so", {"PATH": "/bin"}, python="/py", which=tools.get,
                              machine="x86_64")
    assert cmd[:3] == ["/usr/bin/setarch", "x86_64", "-R"]
    assert "--tool=callgrind" in cmd and "--instr-atstart=no" in cmd
    assert cmd[-7:] == ["/py", "-m", "pytest", "suites", "-k", "llm", "--mmperf-clock=instructions"]
    assert env["PYTHONHASHSEED"] == "0" and env["OMP_NUM_THREADS"] == "1" and env["MMPERF_ASLR"] == "off"
    assert env["PYTHONMALLOC"] == "malloc"  # pymalloc's cost depends on its pools' fill
    # what valgrind runs fast (MKL's SSE4.2 kernels) or at all (no AVX-512 in inductor's kernels)
    assert instructions.isa_caps(env) == ("MKL_ENABLE_INSTRUCTIONS=SSE4_2 ATEN_CPU_CAPABILITY=avx2 "
                                          "TORCHINDUCTOR_CPP_MARCH=x86-64-v3")
    assert instructions.under_callgrind(env)
    # a cap the user set is kept (and lands in the fingerprint as isa_caps); other machines get none
    _, env = reexec_command([], tmp_path / "o", tmp_path / "shim.so", {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
                            which=tools.get, machine="x86_64")
    assert env["MKL_ENABLE_INSTRUCTIONS"] == "AVX2" and env["ATEN_CPU_CAPABILITY"] == "avx2"
    _, env = reexec_command([], tmp_path / "o", tmp_path / "shim.so", {}, which=tools.get, machine="aarch64")
    assert instructions.isa_caps(env) == "MKL_ENABLE_INSTRUCTIONS= ATEN_CPU_CAPABILITY= TORCHINDUCTOR_CPP_MARCH="


def test_reexec_without_valgrind_is_one_line_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(instructions.InstructionClockError, match="apt-get install valgrind"):
        reexec_command([], tmp_path, tmp_path / "shim.so", {}, which=lambda name: None)


def test_instruction_clock_defaults_to_few_rounds_unless_asked() -> None:
    s = resolve({"clock": "instructions"}, {}, env={})
    assert (s.rounds, s.max_rounds) == (INSTRUCTION_ROUNDS, INSTRUCTION_ROUNDS)
    s = resolve({"clock": "instructions", "rounds": "5"}, {}, env={})
    assert (s.rounds, s.max_rounds) == (5, 5)
    assert resolve({}, {}, env={}).clock == "time"


def test_fingerprint_separates_clocks() -> None:
    env = {"device": "cpu", "cpu_count": 2, "torch_threads": 1, "clock": "time"}
    instr = env | {"clock": "instructions", "valgrind_version": "valgrind-3.19.0", "aslr": "off"}
    assert fingerprint(instr).startswith("cpu-1t-instr-")  # no core count: a count does not depend on it
    assert fingerprint(env) != fingerprint(instr)
    # the ISA caps change what a GEMM counts; a time-clock fingerprint (no caps) is what it was
    caps = instructions.isa_caps({"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"})
    assert fingerprint(instr | {"isa_caps": caps}) != fingerprint(instr | {"isa_caps": instructions.isa_caps({})})
    assert fingerprint(env | {"isa_caps": None}) == fingerprint(env)


# -- judging ------------------------------------------------------------------------------------------
def _rec(counts: list[float], name: str = "latency_instructions") -> BenchmarkRecord:
    return BenchmarkRecord(id="t::b", workload="llm", task="t2t", optimizations=(), scale="tiny", device="cpu",
                           batch_size=1, metrics={name: MetricRecord.from_samples(name, counts)})


@pytest.mark.parametrize(("current", "category"), [
    ([1_002_000.0, 1_002_100.0], "unchanged"),
    ([1_008_000.0, 1_008_100.0], "regressed"),
    ([990_000.0, 990_010.0], "improved"),
    ([1_000_000.0, 1_010_000.0], "inconclusive"),
])
def test_counts_threshold_after_a_noise_check(current: list[float], category: str) -> None:
    base = _rec([1_000_000.0, 1_000_100.0])
    comp = compare.compare_benchmarks(base, _rec(current), compare.Policy())
    (m,) = comp.metrics
    assert (m.kind, m.category.value) == ("deterministic", category)
    if category == "inconclusive":
        assert "disagree" in m.reason


def test_a_small_phase_is_judged_on_what_it_costs_not_on_its_own_scale() -> None:
    # a 170K-instruction phase whose rounds move by a few thousand instructions of interpreter
    # residue: not "non-deterministic", and a change inside the floor is no verdict either way
    base = [170_651.0, 168_869.0]
    assert deterministic.judge_counts(base, [168_964.0, 170_421.0]).category == "unchanged"
    assert deterministic.judge_counts(base, [173_700.0, 174_100.0]).category == "unchanged"  # +2%, 4K
    assert deterministic.judge_counts(base, [180_500.0, 181_000.0]).category == "regressed"  # +6%, 11K
    wide = deterministic.judge_counts(base, [170_000.0, 190_000.0])
    assert wide.category == "inconclusive" and "5,000 instructions" in wide.reason


counts = st.lists(st.floats(min_value=0.0, max_value=1e12, allow_nan=False), min_size=0, max_size=12)


@given(counts, counts, st.booleans())
def test_judge_counts_never_raises(baseline: list[float], current: list[float], lower: bool) -> None:
    v = deterministic.judge_counts(baseline, current, lower_is_better=lower)
    assert v.category in ("regressed", "improved", "unchanged", "inconclusive")
    if v.category != "inconclusive":
        assert v.reason == ""


# -- for real, under valgrind ---------------------------------------------------------------------------
BENCH = """
import torch

def test_chain(mmperf):
    torch.manual_seed(0)
    # large enough that the harness's own few thousand instructions per mark are noise-free
    net = torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(6)])
    x = torch.randn(4, 256)
    extra = int(__import__("os").environ.get("EXTRA_LAYERS", "0"))
    more = torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(extra)])

    def run():
        with torch.inference_mode():
            for _ in range(4):
                with mmperf.phase("decode_step"):
                    more(net(x))

    mmperf(run)


@__import__("pytest").mark.parametrize("held", [0, 45, 90])
def test_heap(mmperf, held):
    # more small objects alive before the count: pymalloc's pools fill differently (the loop read
    # 1.1925M..1.2107M instructions so); glibc's allocator, which the count leaves out, does not
    keep = [int(str(10**6 + j)) for j in range(held)]
    mmperf(lambda: sum(i * i for i in range(2000)))
    del keep
"""


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_one_command_counts_repeat_and_a_planted_layer_is_caught(tmp_path: Path) -> None:
    """`pytest --mmperf --mmperf-clock=instructions` re-runs itself under callgrind; two runs give
    the same counts, and one more Linear per step fails the comparison."""
    (tmp_path / "test_chain.py").write_text(BENCH)

    def run(*extra: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        import os

        env = dict(os.environ) | (env_extra or {})
        return subprocess.run(
            [sys.executable, "-m", "pytest", "test_chain.py", "-q", "-p", "no:cacheprovider", "--mmperf",
             "--mmperf-clock=instructions", "--mmperf-history=off", "--mmperf-warmup=3",
             f"--mmperf-baseline-dir={tmp_path / 'b'}", *extra],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
        )

    first = run("--mmperf-json=a.json", "--mmperf-save-baseline")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    again = run("--mmperf-json=b.json", "--mmperf-compare")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    docs = [{r["id"].split("::")[-1]: r["metrics"] for r in json.loads((tmp_path / f).read_text())["benchmarks"]}
            for f in ("a.json", "b.json")]
    heap = [docs[0][f"test_heap[{k}]"]["latency_instructions"]["median"] for k in (0, 45, 90)]
    assert max(heap) / min(heap) - 1 < 0.001, heap  # the heap's history is not counted
    a, b = docs[0]["test_chain"], docs[1]["test_chain"]
    la, lb = a["latency_instructions"]["median"], b["latency_instructions"]["median"]
    assert abs(lb / la - 1) < deterministic.DEFAULT_THRESHOLD  # unchanged code: below the gate's threshold
    assert "latency_ms" not in a
    planted = run("--mmperf-json=c.json", "--mmperf-compare", env_extra={"EXTRA_LAYERS": "1"})
    assert planted.returncode == 1, planted.stdout[-2000:]
    # the first regressed count named: the call's or, judged per round, the planted step's
    assert "_instructions" in planted.stdout and "regressed" in planted.stdout
    # the diagnosis names the functions the count grew in (the extra Linear's GEMM among them)
    assert "functions (self instructions a call): " in planted.stdout, planted.stdout[-3000:]


def test_summary_shows_counts_in_millions() -> None:
    from pytest_mmperf.report.summary import table

    lines = table([_rec([875_741_000.0, 875_745_000.0])])
    assert "latency_instructions" in lines[1]
    assert "875.743M instructions [875.741M..875.745M]" in lines[3]
    assert "latency_ms" not in lines[1]  # a column no benchmark has is dropped


def test_child_pids_reads_the_parent_field(tmp_path: Path) -> None:
    for pid, stat in {"10": "10 (python) S 1 10", "11": "11 (a) b) (c) R 10 10", "12": "12 (w) S 10 10",
                      "13": "13 (other) S 99 13"}.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "stat").write_text(stat + " 0 0\n")
    assert instructions.child_pids(10, tmp_path) == [11, 12]
    assert instructions.child_pids(12, tmp_path) == []


def test_terminating_the_controller_terminates_its_workers(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import subprocess, sys, time\n"
        "from pytest_mmperf.measure.clocks import instructions\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "instructions.stop_children_on_termination()\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    def gone(pid: int) -> bool:  # ended: no such process, or a zombie waiting for init
        stat = Path(f"/proc/{pid}/stat")
        try:
            return stat.read_text().rpartition(")")[2].split()[0] == "Z"
        except OSError:
            return True

    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == -signal.SIGTERM  # it ends by the signal, as before
    deadline = time.monotonic() + 30
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(child)


def test_instruction_clock_skips_only_gpu_levers() -> None:
    from types import SimpleNamespace

    from mmperf_suites.harness import _skip_for_clock

    counted = SimpleNamespace(clock="instructions")
    for levers in (("compiled",), ("stack",), ("sdpa", "int8_weight_only")):
        _skip_for_clock(levers, counted)  # compile levers run under callgrind (ISA-capped inductor)
    with pytest.raises(pytest.skip.Exception, match="CUDA graphs run on a GPU"):
        _skip_for_clock(("static_cache", "cuda_graphs"), counted)
    _skip_for_clock(("cuda_graphs",), SimpleNamespace(clock="time"))  # the time clock skips nothing here
