"""The import contract (pyproject's [tool.importlinter]) holds, and a planted upward import breaks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    paths = [str(root), str(root / "suites"), str(root / "optimizations")]
    code = (
        "import sys; sys.path[:0] = " + repr(paths) + "; "
        "from importlinter.cli import lint_imports; "
        f"sys.exit(lint_imports(config_filename={str(root / 'pyproject.toml')!r}, no_cache=True))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=root)


def test_contracts_hold() -> None:
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pytest_mmperf", "suites", "optimizations"):
        shutil.copytree(ROOT / name, dst / name, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_planted_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    dst = _copy(tmp_path)
    stats = dst / "pytest_mmperf" / "results" / "stats.py"
    stats.write_text(stats.read_text() + "\nfrom pytest_mmperf.judge import compare  # planted\n")
    out = _lint(dst)
    assert out.returncode != 0
    assert "pytest_mmperf.results is not allowed to import pytest_mmperf.judge" in out.stdout


def test_planted_lever_to_suite_import_breaks_the_contract(tmp_path: Path) -> None:
    dst = _copy(tmp_path)
    lever = dst / "optimizations" / "mmperf_levers" / "sdpa.py"
    lever.write_text(lever.read_text() + "\nimport mmperf_suites.harness  # planted\n")
    out = _lint(dst)
    assert out.returncode != 0
    assert "BROKEN" in out.stdout
