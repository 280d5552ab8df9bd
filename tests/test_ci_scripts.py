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
