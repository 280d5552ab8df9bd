"""The wheel carries the plugin, the bundled suites and the levers, and runs them outside the repository.

Built from a copy of the sources (nothing is written into the working tree), installed without
dependencies into a fresh virtual environment that reuses this interpreter's installed packages
(torch, transformers, ...) through a path file, and run from a temporary directory with no
``PYTHONPATH``: what runs is the wheel's code, not the repository's.
"""

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "pytest_mmperf", "suites", "optimizations")
TOP_LEVEL = {"pytest_mmperf", "mmperf_suites", "mmperf_levers"}


def _run(*args: object, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".mmperf")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=junk)
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("dist")
    # no build isolation: the installed setuptools builds it, no index is needed
    _run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, src, cwd=src)
    (whl,) = out.glob("pytest_mmperf-*.whl")
    return whl


def test_wheel_carries_plugin_suites_and_levers(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == TOP_LEVEL  # no bare "suites" or "optimizations" in site-packages
    for module in ("pytest_mmperf/plugin.py", "pytest_mmperf/py.typed", "mmperf_levers/contract.py",
                   "mmperf_levers/registry.py", "mmperf_suites/harness.py", "mmperf_suites/conftest.py",
                   "mmperf_suites/test_recommender.py", "mmperf_suites/workloads/recommender.py"):
        assert module in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "mmperf = pytest_mmperf.plugin" in text and "mmperf = pytest_mmperf.cli:main" in text


def test_installed_wheel_runs_a_bundled_benchmark_outside_the_repository(
    wheel: Path, tmp_path: Path
) -> None:
    # no PYTHONPATH (the repository), no pytest or mmperf settings from the calling environment
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST", "MMPERF"))}
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index",
         wheel, cwd=tmp_path, env=env)
    # reuse the installed torch and the other dependencies: a path file adds this interpreter's
    # site-packages after the venv's own (a plain path line: their .pth files, such as an
    # editable install of this repository, are not run)
    purelib = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                        cwd=tmp_path).stdout.strip())
    here = [*site.getsitepackages(), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    (purelib / "mmperf-host-packages.pth").write_text("\n".join(dict.fromkeys(here)) + "\n")

    work = tmp_path / "work"
    work.mkdir()
    where = _run(python, "-c", "import pytest_mmperf, mmperf_suites, mmperf_levers as l; "
                 "print(pytest_mmperf.__file__, mmperf_suites.__file__, l.__file__)", cwd=work, env=env)
    for path in where.stdout.split():
        assert Path(path).is_relative_to(venv) and not Path(path).is_relative_to(ROOT)

    # the documented command (README, docs/usage.md)
    done = _run(python, "-m", "pytest", "--pyargs", "mmperf_suites", "--mmperf", "-k", "recommender and eager",
                "--mmperf-history=off", "--mmperf-rounds=5", "--mmperf-max-time=0.5",
                "--mmperf-json=results.json", "--mmperf-save-baseline", "-p", "no:cacheprovider",
                cwd=work, env=env)
    assert "1 passed" in done.stdout, done.stdout
    assert f"rootdir: {work}" in done.stdout
    doc = json.loads((work / "results.json").read_text())
    (bench,) = doc["benchmarks"]
    # node ids relative to the installed package: the same wherever the venv lives
    assert bench["id"] == "test_recommender.py::test_recommender[ranking-eager]"
    assert bench["workload"] == "recommender" and bench["metrics"]["latency_ms"]["n"] >= 5
    # the baseline goes to the directory the user runs from, not into site-packages
    assert len(list((work / "baselines").glob("*.json"))) == 1
    assert not (purelib / "baselines").exists()
