"""mmperf doctor and the noise facts in the environment, on faked /proc and /sys."""

import argparse
import json

import pytest

from pytest_mmperf.commands import doctor
from pytest_mmperf.measure.environment import SystemFiles, cpu_facts
from pytest_mmperf.results.fingerprint import fingerprint


class FakeFiles(SystemFiles):
    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def read(self, path: str) -> str | None:
        return self.files.get(path)

    def glob(self, pattern: str) -> list[str]:
        import fnmatch

        return sorted(p for p in self.files if fnmatch.fnmatch(p, pattern))


NOISY = FakeFiles({
    "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "powersave",
    "/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor": "performance",
    "/sys/devices/system/cpu/cpufreq/boost": "1",
    "/proc/loadavg": "3.50 2.00 1.00 3/200 12345",
    "/sys/class/thermal/thermal_zone0/temp": "91000",
    "/sys/class/thermal/thermal_zone1/temp": "45000",
    "/sys/devices/system/cpu/smt/active": "1",
})
QUIET = FakeFiles({
    "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "performance",
    "/sys/devices/system/cpu/intel_pstate/no_turbo": "1",
    "/proc/loadavg": "0.05 0.10 0.10 1/200 12345",
    "/sys/class/thermal/thermal_zone0/temp": "40000",
})


def test_cpu_facts_from_proc_and_sys():
    f = cpu_facts(NOISY)
    assert f["cpu_governors"] == ["performance", "powersave"]
    assert f["cpu_boost"] is True and f["smt_active"] is True
    assert f["load_avg_1m"] == 3.5 and f["cpu_temperature_max_c"] == 91.0
    q = cpu_facts(QUIET)
    assert q["cpu_boost"] is False  # intel_pstate no_turbo=1
    empty = cpu_facts(FakeFiles({}))
    assert empty["cpu_governors"] is None and empty["cpu_boost"] is None and empty["load_avg_1m"] is None


def _by_check(findings):
    return {f.check: f for f in findings}


def test_noisy_machine_gets_a_warning_and_a_fix_for_each_problem():
    facts = {**cpu_facts(NOISY), "valgrind": None}
    found = _by_check(doctor.diagnose(facts, {}, cpus=2, busy=[(42, "stress", 99.0)]))
    for check in ("CPU frequency governor", "CPU boost (turbo)", "load average", "other busy processes",
                  "CPU temperature", "valgrind (instruction mode)"):
        assert found[check].status == doctor.WARN, check
        assert found[check].fix, check
    assert "cpupower frequency-set -g performance" in found["CPU frequency governor"].fix
    assert "stress (pid 42" in found["other busy processes"].observed
    assert found["GPU"].status == doctor.INFO


def test_quiet_machine_has_no_warnings():
    facts = {**cpu_facts(QUIET), "valgrind": "/usr/bin/valgrind"}
    findings = doctor.diagnose(facts, {}, cpus=8, busy=[])
    assert [f for f in findings if f.status == doctor.WARN] == []
    assert doctor.render(findings)[-1] == "No warnings."


def test_gpu_findings():
    gpu = {"gpu_persistence_mode": "disabled", "gpu_sm_clock_mhz": 1980, "gpu_sm_clock_max_mhz": 1980,
           "gpu_throttle_reasons": 0x40, "gpu_temperature_c": 84, "mig_mode": 1, "gpu_other_processes": [7, 9]}
    found = _by_check(doctor.gpu_findings(gpu))
    persistence = found["GPU persistence mode"]
    assert persistence.status == doctor.WARN and "nvidia-smi -pm 1" in persistence.fix
    assert "hardware thermal slowdown" in found["GPU throttling"].observed
    assert found["GPU temperature"].status == doctor.WARN
    assert found["MIG"].status == doctor.INFO
    assert found["other GPU processes"].observed == "pids 7, 9"
    assert "lock-gpu-clocks" in found["GPU clocks"].fix


@pytest.mark.parametrize("strict, expected", [(False, 0), (True, 1)])
def test_command_output_and_exit_status(capsys, strict, expected):
    args = argparse.Namespace(json=False, strict=strict)
    rc = doctor.run(args, collect=lambda: ({"cpu_model": "Fake CPU", **cpu_facts(NOISY)}, {}), busy=lambda: [])
    out = capsys.readouterr().out
    assert rc == expected
    assert "INFO  CPU: Fake CPU" in out and "WARN  CPU frequency governor: performance, powersave" in out
    args = argparse.Namespace(json=True, strict=False)
    doctor.run(args, collect=lambda: (cpu_facts(QUIET), {}), busy=lambda: [])
    data = json.loads(capsys.readouterr().out)
    assert data["cpu"]["load_avg_1m"] == 0.05 and data["findings"]


def test_doctor_runs_on_this_machine(capsys):
    from pytest_mmperf.cli import main

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "CPU:" in out and "load average:" in out and "valgrind" in out


def test_noise_facts_do_not_change_the_fingerprint():
    env = {"device": "cpu", "machine": "x86_64", "cpu_model": "m", "cpu_count": 2}
    assert fingerprint(env) == fingerprint({**env, **cpu_facts(NOISY)}) == fingerprint({**env, **cpu_facts(QUIET)})
