"""Instruction-count fingerprints travel between machines: they hold what a count depends on
(results.fingerprint.INSTRUCTION_KEYS) and not the host's CPU model, core count or affinity;
the time clock's fingerprints are what they were."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_mmperf.measure.clocks import instructions
from pytest_mmperf.results import baselines
from pytest_mmperf.results.fingerprint import COMPARABLE_KEYS, INSTRUCTION_KEYS, differences, fingerprint

ROOT = Path(__file__).resolve().parent.parent

INSTR = {
    "device": "cpu", "machine": "x86_64", "clock": "instructions", "torch_threads": 1,
    "torch_version": "2.13.0+cpu", "transformers_version": "5.24.0", "python": "3.11.7",
    "python_build": "CPython 3.11.7 (main, May  9 2026; GCC 12.2.0)",
    "system_libraries": "glibc 2.36, libstdc++.so.6.0.30",
    "valgrind_version": "valgrind-3.19.0", "guest_cpu": "GenuineIntel Intel(R) Core(TM) i7-4910MQ [cpuid 8817a32706ad]",
    "aslr": "off", "python_hash_seed": "0", "python_malloc": "malloc",
    "isa_caps": "MKL_ENABLE_INSTRUCTIONS=SSE4_2 ATEN_CPU_CAPABILITY=avx2 TORCHINDUCTOR_CPP_MARCH=x86-64-v3",
    # the host: what a count does not see
    "cpu_model": "Intel(R) Xeon(R) Processor", "cpu_count": 2, "cpu_affinity": 2, "ram_bytes": 25 * 2**30,
    "os": "Linux 6.18", "cuda_version": None,
}


def test_the_host_cpu_does_not_name_an_instruction_baseline() -> None:
    runner = INSTR | {"cpu_model": "AMD EPYC 7763 64-Core Processor", "cpu_count": 4, "cpu_affinity": 1,
                      "ram_bytes": 16 * 2**30, "os": "Linux 6.8"}
    assert fingerprint(runner) == fingerprint(INSTR)
    assert fingerprint(INSTR).startswith("cpu-1t-instr-")
    assert differences(INSTR, runner) == {}


@pytest.mark.parametrize("key", INSTRUCTION_KEYS)
def test_every_instruction_key_moves_the_fingerprint(key: str) -> None:
    other = INSTR | {key: f"other-{INSTR[key]}"}
    if key == "clock":
        other = INSTR | {"clock": "time"}
    assert fingerprint(other) != fingerprint(INSTR)
    assert key in differences(INSTR, other)


def test_time_clock_fingerprints_are_what_they_were() -> None:
    # the committed time baseline still names itself: its environment hashes to its file name
    path = ROOT / "baselines" / "cpu-2c-1t-22affa9653.json"
    doc = baselines.load(path)
    assert doc.environment.get("clock") == "time"
    assert fingerprint(doc.environment) == path.stem
    # and a time environment is still compared on the host CPU
    assert "cpu_model" in COMPARABLE_KEYS
    assert differences(doc.environment, dict(doc.environment, cpu_model="AMD EPYC 7763")) == {
        "cpu_model": (doc.environment["cpu_model"], "AMD EPYC 7763")}
    # a time run never matches an instruction run
    assert "clock" in differences(doc.environment, INSTR)


def test_an_old_instruction_baseline_is_refused_with_the_keys_it_lacks(tmp_path: Path) -> None:
    # stored before guest_cpu, python_build and system_libraries were recorded
    old = {k: v for k, v in INSTR.items() if k not in ("guest_cpu", "python_build", "system_libraries")}
    diff = differences(old, INSTR)
    assert set(diff) == {"guest_cpu", "python_build", "system_libraries"}


def _table(regs: dict[tuple[int, int], tuple[int, int, int, int]]) -> instructions.CpuidReader:
    return lambda leaf, sub: regs.get((leaf, sub))


def _regs(name: bytes = b"Intel(R) Core(TM) i7-4910MQ CPU @ 2.90GHz", apic: int = 0,
          features: int = 0x7FFAFBFF) -> dict[tuple[int, int], tuple[int, int, int, int]]:
    vendor = b"GenuineIntel"
    words = [int.from_bytes(vendor[i:i + 4], "little") for i in (0, 4, 8)]
    padded = name.ljust(48, b"\0")
    brand = [int.from_bytes(padded[i:i + 4], "little") for i in range(0, 48, 4)]
    return {
        (0, 0): (13, words[0], words[2], words[1]),
        (1, 0): (0x306C3, apic << 24 | 0x0800, features, 0xBFEBFBFF),
        (4, 0): (0x1C004121, 0x01C0003F, 0x3F, 0), (4, 1): (0x1C004122, 0x01C0003F, 0x3F, 0),
        (4, 2): (0, 0, 0, 0),
        (7, 0): (0, 0x427AA, 0, 0),
        (0x80000002, 0): tuple(brand[0:4]), (0x80000003, 0): tuple(brand[4:8]),  # type: ignore[dict-item]
        (0x80000004, 0): tuple(brand[8:12]),  # type: ignore[dict-item]
    }


def test_guest_cpu_names_vendor_brand_and_the_feature_tables() -> None:
    text = instructions.guest_cpu(_table(_regs()))
    assert text.startswith("GenuineIntel Intel(R) Core(TM) i7-4910MQ CPU @ 2.90GHz [cpuid ")
    # the initial APIC id (the core a process happens to run on) does not change it
    assert instructions.guest_cpu(_table(_regs(apic=3))) == text
    # a feature bit does
    assert instructions.guest_cpu(_table(_regs(features=0x7FFAFBFF & ~(1 << 28)))) != text
    assert instructions.guest_cpu(lambda leaf, sub: None) == "no cpuid"


def test_system_libraries_names_glibc_and_the_loaded_libstdcxx() -> None:
    maps = ("7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30\n"
            "7f02-7f03 r--p 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30\n"
            "7f04-7f05 rw-p 00000000 00:00 0 [heap]\n")
    text = instructions.system_libraries(maps)
    assert text.endswith(", libstdc++.so.6.0.30") and text.startswith("glibc ")
    assert "libstdc++" not in instructions.system_libraries("")


def test_process_guest_cpu_outside_callgrind_says_why() -> None:
    assert instructions.process_guest_cpu({}).startswith("unknown (")


@pytest.mark.skipif(shutil.which("valgrind") is None or shutil.which("cc") is None
                    or not Path("/usr/include/valgrind/callgrind.h").exists(),
                    reason="valgrind, its headers and a C compiler are needed")
@pytest.mark.skipif(sys.platform != "linux", reason="valgrind runs on Linux")
def test_under_valgrind_cpuid_is_valgrinds_table_not_the_hosts(tmp_path: Path) -> None:
    shim = instructions.build_shim(tmp_path)
    code = ("import json, sys; from pathlib import Path; from pytest_mmperf.measure.clocks import instructions as i;"
            f" r = i.ShimRequests(Path({str(shim)!r}));"
            " print(json.dumps([r.running_on_valgrind(), i.guest_cpu(r.cpuid)]))")
    native = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True, timeout=120).stdout)
    guest = json.loads(subprocess.run(["valgrind", "--tool=none", "-q", sys.executable, "-c", code],
                                      capture_output=True, text=True, check=True, timeout=300).stdout)
    assert native[0] is False and guest[0] is True
    assert guest[1] != native[1]  # valgrind answers CPUID from its own table
    env = {instructions.SHIM_ENV: str(shim)}
    assert instructions.process_guest_cpu(env) == "unknown (not running under valgrind)"


def test_valgrind_version_inside_the_reexec_is_the_parents() -> None:
    # under pytest-xdist (--trace-children=yes) a traced `valgrind --version` printed nothing
    assert instructions.valgrind_version(lambda name: None, {instructions.VERSION_ENV: "valgrind-3.19.0"}) == (
        "valgrind-3.19.0")
    assert instructions.valgrind_version(lambda name: None, {}) is None
    assert "*/valgrind" in instructions.CHILDREN_SKIPPED.split(",")
