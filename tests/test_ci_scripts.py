"""The CI scripts' contracts that a green check depends on, run for real in a scratch copy.

``scripts/test`` under ``CI``: a PostgreSQL server that cannot be started fails the run (one line
on stderr, exit 1) instead of letting the history tests skip. The setup, the system packages and
the server are stubbed; the script under test is the repository's own file.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _script(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _scratch(tmp_path: Path, *, postgres_ok: bool) -> tuple[Path, dict[str, str]]:
    scripts = tmp_path / "repo" / "scripts"
    scripts.mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "test", scripts / "test")
    _script(scripts / "setup.sh", "true\n")
    _script(scripts / "install_system_deps.sh", "true\n")
    if postgres_ok:
        _script(scripts / "start_postgres.sh", "echo 'start_postgres: up' >&2\necho postgresql+psycopg://u@127.0.0.1:5432/db\n")
    else:
        _script(scripts / "start_postgres.sh", "echo 'start_postgres: no server' >&2\nexit 1\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # the tests themselves: a stand-in python that says what it was given
    _script(bin_dir / "python", 'echo "pytest ran with url=${MMPERF_TEST_POSTGRES_URL:-} args=$*"\n')
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "MMPERF_TEST_POSTGRES_URL")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return scripts / "test", env


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_under_ci_a_postgres_that_cannot_start_fails_the_run(tmp_path: Path) -> None:
    test, env = _scratch(tmp_path, postgres_ok=False)
    out = subprocess.run(["bash", str(test)], env={**env, "CI": "true"}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "pytest ran" not in out.stdout
    lines = [line for line in out.stderr.splitlines() if line.startswith("scripts/test:")]
    assert len(lines) == 1 and "PostgreSQL" in lines[0] and "CI" in lines[0]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_outside_ci_the_history_tests_may_skip(tmp_path: Path) -> None:
    test, env = _scratch(tmp_path, postgres_ok=False)
    out = subprocess.run(["bash", str(test), "-k", "x"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pytest ran with url= args=-m pytest tests -q -p no:cacheprovider -k x" in out.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_under_ci_a_started_postgres_is_handed_to_the_tests(tmp_path: Path) -> None:
    test, env = _scratch(tmp_path, postgres_ok=True)
    out = subprocess.run(["bash", str(test)], env={**env, "CI": "true"}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "url=postgresql+psycopg://u@127.0.0.1:5432/db" in out.stdout


# -- scripts/cpu_gate: the gate's decisions around the measuring run (pytest itself stubbed) ------
FP = "cpu-1t-instr-0123456789"
FAKE_PYTEST = r'''#!/usr/bin/env bash
if [ "${1:-}" = "-m" ] && [ "${2:-}" = "pytest" ]; then
  printf '%s\n' "$@" > "$STUB_ARGS"
  for a in "$@"; do
    case "$a" in
      --mmperf-json=*) printf '{"environment": {"fingerprint": "%s"}}' "$STUB_FP" > "${a#--mmperf-json=}" ;;
      --mmperf-markdown=*) echo "| benchmark | verdict |" > "${a#--mmperf-markdown=}" ;;
    esac
  done
  exit "${STUB_RC:-0}"
fi
exec "$REAL_PYTHON" "$@"
'''


def _gate_scratch(tmp_path: Path, *, baseline: bool) -> tuple[Path, dict[str, str]]:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "baselines").mkdir()
    shutil.copy2(ROOT / "scripts" / "cpu_gate", repo / "scripts" / "cpu_gate")
    _script(repo / "scripts" / "setup.sh", "true\n")
    if baseline:
        (repo / "baselines" / f"{FP}.json").write_text("{}")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "python", FAKE_PYTEST.removeprefix("#!/usr/bin/env bash\n"))
    for tool in ("valgrind", "setarch", "cc", "mmperf"):
        _script(bin_dir / tool, 'echo "$0 $*" >> "$STUB_ARGS.tools"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMPERF_", "GITHUB_"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", REAL_PYTHON=sys.executable,
               STUB_ARGS=str(tmp_path / "args"), STUB_FP=FP)
    return repo / "scripts" / "cpu_gate", env


def _gate(script: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=60)


def test_cpu_gate_measures_under_the_instruction_clock_and_writes_the_job_summary(tmp_path: Path) -> None:
    script, env = _gate_scratch(tmp_path, baseline=True)
    summary = tmp_path / "summary.md"
    out = _gate(script, env | {"GITHUB_STEP_SUMMARY": str(summary)}, "-p", "a_plant")
    assert out.returncode == 0, out.stderr
    args = (tmp_path / "args").read_text().splitlines()
    for needed in ("--mmperf", "--mmperf-clock=instructions", "--mmperf-compare", "--mmperf-history=off",
                   "loadfile", "-p", "a_plant"):
        assert needed in args, needed
    assert any(a.endswith("test_llm[t2t-eager]") for a in args)
    assert "CPU gate" in summary.read_text() and "| benchmark | verdict |" in summary.read_text()


def test_cpu_gate_fails_on_a_regression(tmp_path: Path) -> None:
    script, env = _gate_scratch(tmp_path, baseline=True)
    out = _gate(script, env | {"STUB_RC": "1"})
    assert out.returncode == 1
    assert "FAILED" in out.stdout


def test_cpu_gate_without_a_baseline_for_the_fingerprint_fails_and_says_how_to_make_one(tmp_path: Path) -> None:
    script, env = _gate_scratch(tmp_path, baseline=False)
    summary = tmp_path / "summary.md"
    out = _gate(script, env | {"GITHUB_STEP_SUMMARY": str(summary)})
    assert out.returncode == 1
    assert f"no committed baseline for {FP}" in out.stderr and "--save" in out.stderr
    assert f"no committed baseline for {FP}" in summary.read_text()


def test_cpu_gate_save_promotes_the_run_and_does_not_compare(tmp_path: Path) -> None:
    script, env = _gate_scratch(tmp_path, baseline=False)
    out = _gate(script, env, "--save")
    assert out.returncode == 0, out.stderr
    assert "--mmperf-compare" not in (tmp_path / "args").read_text().splitlines()
    tools = (tmp_path / "args.tools").read_text()
    assert "baseline --dir baselines promote .mmperf/cpu-gate/head.json --replace" in tools


def test_cpu_gate_recording_without_a_history_url_is_a_usage_error(tmp_path: Path) -> None:
    script, env = _gate_scratch(tmp_path, baseline=True)
    out = _gate(script, env | {"MMPERF_CPU_GATE_RECORD": "1"})
    assert out.returncode == 2 and "MMPERF_HISTORY_URL" in out.stderr
    assert not (tmp_path / "args").exists()  # nothing measured
    out = _gate(script, env | {"MMPERF_CPU_GATE_RECORD": "1", "MMPERF_HISTORY_URL": "sqlite:///h.db"})
    assert out.returncode == 0, out.stderr
    assert "--mmperf-history=sqlite:///h.db" in (tmp_path / "args").read_text().splitlines()
