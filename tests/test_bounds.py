"""The dependency bounds hold: the lowest-versions constraints match pyproject's lower bounds."""

import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # the lowest supported Python
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _lower_bounds(reqs):
    out = {}
    for text in reqs:
        req = Requirement(text)
        lows = [Version(s.version) for s in req.specifier if s.operator == ">="]
        assert lows, f"{text}: no lower bound"
        out[req.name.lower()] = max(lows)
    return out


def _constraints():
    pins = {}
    for line in (ROOT / "constraints" / "lowest.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = Version(version.strip())
    return pins


def test_every_lower_bound_is_pinned_in_the_lowest_constraints():
    project = _pyproject()["project"]
    bounds = _lower_bounds(project["dependencies"]) | _lower_bounds(project["optional-dependencies"]["test"])
    pins = _constraints()
    assert set(bounds) == set(pins)
    for name, low in bounds.items():
        assert pins[name] == low, f"{name}: pyproject allows >= {low}, constraints/lowest.txt pins {pins[name]}"


def test_test_only_packages_are_not_runtime_dependencies():
    runtime = _lower_bounds(_pyproject()["project"]["dependencies"])
    for name in ("hypothesis", "playwright", "ruff", "mypy", "pytest-xdist", "import-linter", "pyyaml"):
        assert name not in runtime


def test_license_and_build_backend_agree():
    data = _pyproject()
    assert data["project"]["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")
    (setuptools,) = [Requirement(r) for r in data["build-system"]["requires"] if r.startswith("setuptools")]
    # a PEP 639 license expression is read by setuptools 77 and later
    assert setuptools.specifier.contains("77") and not setuptools.specifier.contains("76.9")


def test_scipy_bound_allows_the_bootstrap_call():
    import inspect

    from scipy import stats

    assert "rng" in inspect.signature(stats.bootstrap).parameters  # added in scipy 1.15
    assert _lower_bounds(_pyproject()["project"]["dependencies"])["scipy"] >= Version("1.15")
