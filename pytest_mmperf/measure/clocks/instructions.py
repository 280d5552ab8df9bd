"""The instruction clock: instructions executed, counted by valgrind's callgrind (``--mmperf-clock=instructions``).

Wall time on a shared CPU moves 20-40% between processes with nothing changed; the number of
instructions a deterministic program executes does not. Under callgrind, with address-space
randomization off (``setarch -R``), a fixed ``PYTHONHASHSEED`` and one intra-op thread, the count
of a measured region repeats to within a few hundredths of a percent (docs/instructions.md).

How a region is counted:

* the process runs under ``valgrind --tool=callgrind --instr-atstart=no``: nothing is counted
  until :meth:`CallgrindClock.mark` switches instrumentation on (import and model build run at
  valgrind's uninstrumented speed);
* every mark is a callgrind *dump* (``CALLGRIND_DUMP_STATS_AT``): callgrind writes the counts of
  the segment since the previous dump to ``<out>.<part>`` and starts the next segment at zero;
* the count between two marks ``a`` and ``b`` is the sum over parts ``a+1 .. b`` of each part's
  self costs, less those of glibc's allocator (:func:`read_counts`): the work between them, on
  all threads;
* :meth:`synchronize` (called by the sampler before and after each round) switches
  instrumentation off, so bookkeeping between rounds is not slowed down by instrumentation.

Client requests (start/stop instrumentation, dump) are machine-code sequences that only C can
emit. pytest-codspeed's compiled hooks expose start/stop but not dump, which per-round and
per-phase counts need, so a five-function C shim is compiled on first use from valgrind's own
``callgrind.h`` (the header ships with Debian's ``valgrind`` package) and loaded with ctypes.
Outside valgrind the requests are no-ops.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from pytest_mmperf.measure.clocks import Interval

OUT_ENV = "MMPERF_CALLGRIND_OUT"  # set by the re-exec: the callgrind output prefix of this process
SHIM_ENV = "MMPERF_CALLGRIND_SHIM"  # the compiled shim, so the child does not compile again
KEEP_ENV = "MMPERF_CALLGRIND_KEEP"  # set (to 1): keep every dump for callgrind_annotate
HASH_SEED = "0"
# Python's object allocator in the re-exec: glibc's malloc, whose cost is left out of every count
# (ALLOCATOR_FUNCTIONS), instead of pymalloc, whose cost depends on the fill of its pools. A pure
# Python loop of 2,000 multiplications counted 1.1925M..1.2107M instructions (1.5%) with 0..135
# more small objects alive before it, one process, pymalloc; 1.0093M in 13 of 16 with
# PYTHONMALLOC=malloc. Between processes the same loop read 1.2109M or 1.1960M: which one
# depended on what the process had allocated before (paths, random names), a false alarm under
# the 0.5% threshold of a tiny benchmark.
PYTHON_MALLOC = "malloc"
# Instruction sets capped in the re-exec on x86-64 (unless already set), so that valgrind runs the
# code at a bearable speed, or at all; each cap is in the environment fingerprint (``isa_caps``):
# * MKL: its kernels beyond SSE4.2 run pathologically slowly under valgrind. A 160x256 @ 256x768
#   float32 matmul took 0.63 ms natively, 1.5 s under valgrind with MKL's default (AVX2) path and
#   9.4 ms with its SSE4.2 path (a batch-4 decode-shaped one: 0.04 ms, 37.7 ms, 0.17 ms). GEMM
#   counts are those of MKL's SSE4.2 kernels: more instructions than a native run, the same in
#   every run.
# * inductor (the compile levers): its C++ kernels are compiled natively (the compiler is not
#   traced) with -march=native and vectorized for the best ISA torch reports, AVX-512 here, which
#   valgrind does not emulate: the first compiled call died with SIGILL. x86-64-v3 (AVX2, FMA) and
#   ATen's AVX2 capability are what valgrind runs; ATen's own kernels already see AVX2 there.
ISA_CAPS = {
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "TORCHINDUCTOR_CPP_MARCH": "x86-64-v3",
}
X86_64 = ("x86_64", "AMD64")


def isa_caps(env: Mapping[str, str] | None = None) -> str:
    """The caps in force, for the fingerprint: ``MKL_ENABLE_INSTRUCTIONS=SSE4_2 ...`` ("" where unset)."""
    env = os.environ if env is None else env
    return " ".join(f"{name}={env.get(name, '')}" for name in ISA_CAPS)
# executables that pytest, torch or the fingerprint start: run natively, not under callgrind
# (valgrind itself: `valgrind --version` for the fingerprint, traced, printed nothing)
CHILDREN_SKIPPED = ("*/git,*/cc,*/gcc,*/g++,*/c++,*/ld,*/as,*/uname,*/ldconfig,*/ldconfig.real,*/lscpu,*/nvidia-smi,"
                    "*/valgrind,*/valgrind.bin")
VERSION_ENV = "MMPERF_VALGRIND_VERSION"  # set by the re-exec: valgrind's version, asked natively

SHIM_SOURCE = """\
#include <valgrind/callgrind.h>
int mmperf_running_on_valgrind(void) { return (int)RUNNING_ON_VALGRIND; }
void mmperf_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void mmperf_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
void mmperf_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
int mmperf_cpuid(unsigned leaf, unsigned sub, unsigned *out) {
  return __get_cpuid_count(leaf, sub, &out[0], &out[1], &out[2], &out[3]);
}
#else
int mmperf_cpuid(unsigned leaf, unsigned sub, unsigned *out) { (void)leaf; (void)sub; (void)out; return 0; }
#endif
"""


class InstructionClockError(RuntimeError):
    """The instruction clock cannot run here; the message is one line with the fix."""


class Requests(Protocol):
    """Callgrind's client requests (the compiled shim, or a fake in tests)."""

    def running_on_valgrind(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def dump(self, label: str) -> None: ...


class ShimRequests:
    """The client requests through the compiled shim."""

    def __init__(self, path: Path) -> None:
        self._lib = ctypes.CDLL(str(path))
        self._lib.mmperf_dump.argtypes = [ctypes.c_char_p]

    def running_on_valgrind(self) -> bool:
        return bool(self._lib.mmperf_running_on_valgrind())

    def start(self) -> None:
        self._lib.mmperf_start()

    def stop(self) -> None:
        self._lib.mmperf_stop()

    def dump(self, label: str) -> None:
        self._lib.mmperf_dump(label.encode("ascii", "replace"))

    def cpuid(self, leaf: int, subleaf: int = 0) -> tuple[int, int, int, int] | None:
        """(eax, ebx, ecx, edx) of CPUID as this process sees it (under valgrind: valgrind's own
        table), or None where the leaf does not exist or the machine has no CPUID."""
        out = (ctypes.c_uint * 4)()
        if not self._lib.mmperf_cpuid(ctypes.c_uint(leaf), ctypes.c_uint(subleaf), out):
            return None
        return (out[0], out[1], out[2], out[3])


def build_shim(cache_dir: Path, compiler: str | None = None) -> Path:
    """Compile the shim once per source and compiler into ``cache_dir``; returns the .so path."""
    cc = compiler or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise InstructionClockError("--mmperf-clock=instructions needs a C compiler (apt-get install gcc)")
    if not Path("/usr/include/valgrind/callgrind.h").exists() and not _header_elsewhere(cc):
        raise InstructionClockError(
            "--mmperf-clock=instructions needs valgrind and its headers (apt-get install valgrind)"
        )
    digest = hashlib.sha256((SHIM_SOURCE + cc).encode()).hexdigest()[:12]
    target = cache_dir / f"mmperf-callgrind-{digest}.so"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    source = cache_dir / f"mmperf-callgrind-{digest}.c"
    source.write_text(SHIM_SOURCE)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    out = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(partial), str(source)],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        first = (out.stderr.strip().splitlines() or ["failed"])[0]
        raise InstructionClockError(f"compiling the callgrind shim failed: {first}")
    os.replace(partial, target)  # atomic: a concurrent build never sees half a library
    return target


def _header_elsewhere(cc: str) -> bool:
    probe = subprocess.run([cc, "-E", "-x", "c", "-"], input="#include <valgrind/callgrind.h>\n",
                           capture_output=True, text=True, timeout=60)
    return probe.returncode == 0


def valgrind_version(which: Callable[[str], str | None] = shutil.which,
                     env: Mapping[str, str] | None = None) -> str | None:
    """``valgrind-3.19.0``; inside the re-executed process, the version its parent asked for
    natively (a traced ``valgrind --version`` under ``--trace-children=yes`` printed nothing)."""
    known = (os.environ if env is None else env).get(VERSION_ENV)
    if known:
        return known
    exe = which("valgrind")
    if not exe:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() or None


# -- the CPU that counted code sees ------------------------------------------------------------------
# Under valgrind, CPUID does not reach the host: VEX answers from one of a few fixed tables, chosen by
# what the host supports (valgrind 3.19 on an AVX2 host: vendor GenuineIntel, brand "Intel(R)
# Core(TM) i7-4910MQ CPU @ 2.90GHz", that CPU's feature bits and cache descriptors, whatever the
# host's vendor, model or caches). What MKL, oneDNN, glibc's string functions and ATen dispatch on
# is that table, so it, not the host's CPU, belongs in an instruction count's fingerprint.
# Leaves read: 0 (vendor, max leaf), 1 (family/model/stepping, features; EBX left out: it holds the
# initial APIC id, which names the core), 4 (cache descriptors), 7 (extended features), 0xD
# (XSAVE state components), 0x80000001 (extended features), 0x80000002-4 (brand string).
CpuidReader = Callable[[int, int], "tuple[int, int, int, int] | None"]


def guest_cpu(cpuid: CpuidReader) -> str:
    """``<vendor> <brand> [cpuid <12 hex digits>]``: the CPU as CPUID answers inside this process."""
    regs = cpuid(0, 0)
    if regs is None:
        return "no cpuid"
    vendor = b"".join(r.to_bytes(4, "little") for r in (regs[1], regs[3], regs[2])).decode("ascii", "replace")
    words: list[int] = list(regs)
    leaf1 = cpuid(1, 0)
    if leaf1 is not None:
        words += [leaf1[0], leaf1[2], leaf1[3]]
    for sub in range(8):
        cache = cpuid(4, sub)
        if cache is None or cache[0] & 0x1F == 0:  # type 0: no more caches
            break
        words += list(cache[:3])
    for leaf, sub in ((7, 0), (0xD, 0), (0xD, 1), (0x80000001, 0)):
        words += list(cpuid(leaf, sub) or (0, 0, 0, 0))
    brand_regs = [cpuid(leaf, 0) for leaf in (0x80000002, 0x80000003, 0x80000004)]
    brand = b"".join(r.to_bytes(4, "little") for regs4 in brand_regs if regs4 for r in regs4)
    name = brand.split(b"\0", 1)[0].decode("ascii", "replace").strip()
    digest = hashlib.sha256(",".join(f"{w:08x}" for w in words).encode()).hexdigest()[:12]
    return " ".join(p for p in (vendor, name, f"[cpuid {digest}]") if p)


def process_guest_cpu(env: Mapping[str, str] | None = None) -> str:
    """The CPU this (re-executed, valgrind'd) process sees, through the compiled shim; a reason
    instead where it is not running under valgrind (then nothing is counted anyway)."""
    env = os.environ if env is None else env
    shim = env.get(SHIM_ENV)
    if not shim or not Path(shim).exists():
        return "unknown (not started under callgrind)"
    try:
        requests = ShimRequests(Path(shim))
    except OSError as exc:
        return f"unknown ({exc})"
    if not requests.running_on_valgrind():
        return "unknown (not running under valgrind)"
    return guest_cpu(requests.cpuid)


def system_libraries(maps: str | None = None) -> str:
    """glibc's version and the loaded libstdc++ (its file names the version): their string,
    memory and container functions run inside every counted region."""
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            maps = ""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    cxx = sorted({Path(line.split()[-1]).name for line in maps.splitlines()
                  if "/libstdc++.so" in line and line.split()[-1].startswith("/")})
    return ", ".join(p for p in (libc or platform.libc_ver()[0] + " " + platform.libc_ver()[1], *cxx) if p.strip())


def python_build() -> str:
    """The interpreter's build: two builds of one Python version (another compiler, flags or PGO)
    execute different machine code for the same bytecode."""
    number, date = platform.python_build()
    compiler = platform.python_compiler()
    return f"{platform.python_implementation()} {platform.python_version()} ({number}, {date}; {compiler})"


# -- re-executing pytest under callgrind ------------------------------------------------------------
def under_callgrind(env: Mapping[str, str] | None = None) -> bool:
    """Is this process the re-executed one (started by :func:`reexec_command`)?"""
    return bool((os.environ if env is None else env).get(OUT_ENV))


def child_pids(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """The direct children of ``pid``, from Linux's ``/proc/<pid>/stat`` (field 4 is the parent)."""
    children = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        fields = text.rpartition(")")[2].split()  # after "pid (comm)": comm may hold ") "
        if len(fields) > 1 and fields[1] == str(pid):
            children.append(int(stat.parent.name))
    return sorted(children)


def stop_children_on_termination() -> None:
    """In the controller of traced pytest-xdist workers: on SIGTERM or SIGHUP, terminate the
    workers too, then end by the same signal. Without it, killing the controller left its
    valgrind'd workers running their queued benchmarks for minutes."""
    import signal

    def handler(signum: int, frame: object) -> None:
        for child in child_pids(os.getpid()):
            with contextlib.suppress(OSError):  # it ended meanwhile
                os.kill(child, signal.SIGTERM)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def reexec_command(
    args: Sequence[str],
    out_dir: Path,
    shim: Path,
    env: Mapping[str, str] | None = None,
    *,
    python: str = sys.executable,
    which: Callable[[str], str | None] = shutil.which,
    machine: str | None = None,
    children: bool = False,
) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run the same pytest invocation under callgrind.

    Address randomization off (``setarch -R``), a fixed hash seed and one thread in every math
    library make the counts repeat; instruction sets capped (:data:`ISA_CAPS`) make them affordable;
    ``--instr-atstart=no`` keeps start-up (the torch import alone takes minutes instrumented) out
    of the counts and fast. ``children``: pytest-xdist workers
    (``-n``) are traced too, each process counting its own benchmarks; tools that pytest or torch
    start (git, a compiler, ldconfig) are not.
    """
    valgrind = which("valgrind")
    if not valgrind:
        raise InstructionClockError(
            "--mmperf-clock=instructions needs valgrind (apt-get install valgrind, or scripts/install_system_deps.sh)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    new_env = dict(os.environ if env is None else env)
    if (machine or platform.machine()) in X86_64:
        for name, value in ISA_CAPS.items():
            new_env.setdefault(name, value)
    new_env.update({
        OUT_ENV: str(out_dir / "callgrind.out"),
        SHIM_ENV: str(shim),
        "PYTHONHASHSEED": HASH_SEED,
        "PYTHONMALLOC": PYTHON_MALLOC,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    })
    cmd: list[str] = []
    setarch = which("setarch")
    if setarch:
        cmd += [setarch, machine or platform.machine(), "-R"]
        new_env["MMPERF_ASLR"] = "off"
    else:
        new_env["MMPERF_ASLR"] = "on"
    cmd += [
        valgrind, "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no",
        "--compress-strings=yes", "--compress-pos=yes", "--quiet",
        *(["--trace-children=yes", f"--trace-children-skip={CHILDREN_SKIPPED}"] if children
          else ["--trace-children=no"]),
        # %p: each process (an xdist worker too) writes <out>.<pid>.<part>
        f"--callgrind-out-file={out_dir / 'callgrind.out'}.%p",
        python, "-m", "pytest", *args,
    ]
    return cmd, new_env


_PROCESS_CLOCK: CallgrindClock | None = None


def exec_under_callgrind(args: Sequence[str], cwd: Path, work_dir: Path, *, children: bool = False) -> None:
    """Replace this process by the same pytest invocation under callgrind; never returns."""
    shim = build_shim(work_dir)
    # a fixed-length name: the environment's size moves the stack, and with it alignment
    cmd, env = reexec_command(args, work_dir / f"run-{os.getpid():08d}", shim, children=children)
    env[VERSION_ENV] = valgrind_version() or ""
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(cwd)
    os.execve(cmd[0], cmd, env)


# -- the clock ----------------------------------------------------------------------------------------
# glibc's allocator: how many instructions malloc and free execute depends on the heap's history
# (which bin a chunk comes from, when fastbins are consolidated), and that history differs between
# processes and between rounds of one process with strings of different lengths (paths, pids,
# times) allocated before. Measured on the tiny LLM's prefill: 55.20-55.23M instructions over six
# rounds of one process, the spread entirely inside malloc/malloc.c; without those functions
# 54.808-54.812M. Their self cost is left out of every count; memset/memcpy of new tensors and
# torch's caching stay in. Python's objects are allocated by glibc too in the re-exec
# (PYTHON_MALLOC), so pymalloc's pool bookkeeping, which depends on the same history, is not counted.
ALLOCATOR_FILE = "malloc/malloc.c"
ALLOCATOR_FUNCTIONS = frozenset({  # the same, recognized by name when libc has no debug info
    "malloc", "free", "calloc", "realloc", "cfree", "memalign", "posix_memalign", "aligned_alloc",
    "valloc", "pvalloc", "_int_malloc", "_int_free", "_int_realloc", "_int_memalign", "_mid_memalign",
    "malloc_consolidate", "unlink_chunk", "sysmalloc", "systrim", "malloc_trim", "mtrim",
    "tcache_init", "tcache_get", "tcache_put", "__libc_malloc", "__libc_free", "__libc_calloc",
    "__libc_realloc", "__libc_memalign", "__malloc_arena_thread_freeres",
})


def is_allocator(file: str | None, function: str | None) -> bool:
    """Is this function part of glibc's malloc (its self cost is not counted)?"""
    if file and file.endswith(ALLOCATOR_FILE):
        return True
    if function is None or (file and file not in ("???", "")):
        return False
    return function.split("'", 1)[0].split(".", 1)[0] in ALLOCATOR_FUNCTIONS


def _name(table: dict[str, str], text: str) -> str:
    """A possibly compressed name: ``(id) name`` defines id, ``(id)`` refers to it."""
    text = text.strip()
    if text.startswith("(") and ")" in text:
        key, _, rest = text[1:].partition(")")
        rest = rest.strip()
        if rest:
            table[key] = rest
        return table.get(key, "???")
    return text


def read_counts(path: Path) -> tuple[float, float]:
    """One callgrind dump: (instructions in that segment, of which inside glibc's allocator).

    The self cost of every function is summed from the dump's cost lines (the line after a
    ``calls=`` line is the callee's inclusive cost, already counted in the callee's own lines);
    the sum equals the dump's ``summary:``/``totals:`` line.
    """
    total, allocator, _ = read_dump(path)
    return total, allocator


def read_dump(path: Path) -> tuple[float, float, dict[str, float]]:
    """One callgrind dump: (instructions, of which in glibc's allocator, self instructions per
    function outside the allocator, keyed ``name (object file)``)."""
    files: dict[str, str] = {}
    functions: dict[str, str] = {}
    objects: dict[str, str] = {}
    per_function: dict[str, float] = {}
    file: str | None = None
    obj = ""
    key = ""
    total = allocator = 0
    inside = after_call = False
    seen_cost = False
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for line in f:
            head = line[:1]
            if head.isdigit() or head in "+-*":
                if after_call:
                    after_call = False
                    continue
                fields = line.split()
                cost = int(fields[1]) if len(fields) > 1 else 0
                total += cost
                seen_cost = True
                if inside:
                    allocator += cost
                elif cost:
                    per_function[key] = per_function.get(key, 0) + cost
            elif line.startswith("fl="):
                file = _name(files, line[3:])
            elif line.startswith("ob="):
                obj = os.path.basename(_name(objects, line[3:]))
            elif line.startswith("cob="):
                _name(objects, line[4:])
            elif line.startswith(("fi=", "fe=", "cfi=", "cfl=")):
                _name(files, line.split("=", 1)[1])
            elif line.startswith("fn="):
                name = _name(functions, line[3:])
                inside = is_allocator(file, name)
                key = f"{name} ({obj})" if obj else name
            elif line.startswith("cfn="):
                _name(functions, line[4:])
            elif line.startswith("calls="):
                after_call = True
    if not seen_cost:  # an empty segment: its totals line says 0 (or the dump is broken)
        return read_totals(path), 0.0, {}
    return float(total), float(allocator), per_function


def read_totals(path: Path) -> float:
    """The ``totals:`` (or ``summary:``) line of one callgrind dump: instructions in that segment."""
    summary: float | None = None
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("totals:"):
                return float(line.split()[1])
            if line.startswith("summary:"):
                summary = float(line.split()[1])
    if summary is None:
        raise InstructionClockError(f"{path}: no totals in this callgrind dump")
    return summary


class CallgrindClock:
    """A :class:`~pytest_mmperf.measure.clocks.Clock` whose intervals are instruction counts."""

    device = "cpu"
    metric_suffix = "_instructions"

    def __init__(self, requests: Requests, out_prefix: str, counter_ns: Callable[[], int] | None = None) -> None:
        import time

        self._req = requests
        self._prefix = out_prefix  # "<dir>/callgrind.out.<pid>": parts are "<prefix>.<n>"
        self._counter_ns = counter_ns or time.perf_counter_ns
        self._part = 0  # dumps so far in this process
        self._on = False
        self._totals: dict[int, float] = {}
        self._functions: dict[int, dict[str, float]] = {}  # per part: self instructions per function
        self._clean_upto = 0  # parts up to here are deleted and forgotten
        self._keep = bool(os.environ.get(KEEP_ENV))

    @classmethod
    def from_environment(cls) -> CallgrindClock:
        """This process's clock: one per process, since callgrind numbers its dumps per process."""
        global _PROCESS_CLOCK
        if _PROCESS_CLOCK is None:
            _PROCESS_CLOCK = cls._open()
        return _PROCESS_CLOCK

    @classmethod
    def _open(cls) -> CallgrindClock:
        out, shim = os.environ.get(OUT_ENV), os.environ.get(SHIM_ENV)
        if not out or not shim:
            raise InstructionClockError("--mmperf-clock=instructions: this process was not started under callgrind")
        requests = ShimRequests(Path(shim))
        if not requests.running_on_valgrind():
            raise InstructionClockError("--mmperf-clock=instructions: not running under valgrind")
        return cls(requests, f"{out}.{os.getpid()}")

    def mark(self) -> int:
        if not self._on:
            # a new round: the previous round's intervals are resolved, its parts are not needed
            self._forget_upto(self._part)
            self._req.start()
            self._on = True
        self._req.dump("mmperf")
        self._part += 1
        return self._part

    def rewind(self) -> None:
        return None  # parts are forgotten when the next round's first mark starts counting

    def synchronize(self) -> None:
        if self._on:
            self._req.stop()
            self._on = False

    def now_ns(self) -> int:
        return self._counter_ns()

    def _segment(self, part: int) -> float:
        if part not in self._totals:
            path = Path(f"{self._prefix}.{part}")
            if not path.exists():
                raise InstructionClockError(f"{path}: callgrind wrote no dump for this mark")
            total, allocator, functions = read_dump(path)
            self._totals[part] = total - allocator
            self._functions[part] = functions
            if not self._keep:
                path.unlink()  # a dump is ~100 kB; thousands of decode steps would fill a disk
        return self._totals[part]

    def interval(self, start: int, end: int) -> Interval:
        count = sum(self._segment(p) for p in range(start + 1, end + 1))
        return Interval(host_ms=0.0, device_ms=None, instructions=count)

    def functions(self, start: int, end: int) -> dict[str, float]:
        """Self instructions per function between two marks (allocator left out), for the
        diagnosis: which functions a regressed count grew in."""
        out: dict[str, float] = {}
        for p in range(start + 1, end + 1):
            self._segment(p)
            for name, cost in self._functions.get(p, {}).items():
                out[name] = out.get(name, 0.0) + cost
        return out

    def _forget_upto(self, part: int) -> None:
        for p in range(self._clean_upto + 1, part + 1):
            self._totals.pop(p, None)
            self._functions.pop(p, None)
            if not self._keep:
                Path(f"{self._prefix}.{p}").unlink(missing_ok=True)
        self._clean_upto = max(self._clean_upto, part)
