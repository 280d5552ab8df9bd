"""Change-point detection on synthetic histories: steps are found at the right commit, noise is not."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_mmperf.judge.changepoints import ChangePoint, detect


def _history(values: np.ndarray) -> list[tuple[str | None, float]]:
    return [(f"commit{i:03d}", float(v)) for i, v in enumerate(values)]


def _noise(seed: int, n: int, cv: float, level: float = 100.0) -> np.ndarray:
    return level * (1 + cv * np.random.default_rng(seed).standard_normal(n))


@given(seed=st.integers(0, 2**32 - 1), cv=st.floats(0.005, 0.02), after=st.integers(3, 30),
       up=st.booleans())
@settings(max_examples=200, deadline=None)
def test_a_15_percent_step_after_20_runs_is_one_change_point_at_its_commit(
    seed: int, cv: float, after: int, up: bool
) -> None:
    x = _noise(seed, 20 + after, cv)
    x[20:] *= 1.15 if up else 1 / 1.15
    cps = detect(_history(x), direction="lower")
    assert len(cps) == 1
    cp = cps[0]
    assert (cp.index, cp.commit) == (20, "commit020")
    assert cp.kind == ("regression" if up else "improvement")
    # the medians of short segments carry noise: a few CVs of slack
    assert cp.change_fraction == pytest.approx(0.15 if up else 1 / 1.15 - 1, abs=5 * cv + 0.01)


@pytest.mark.parametrize("cv", [0.03, 0.05, 0.07])
def test_a_15_percent_step_in_noisier_histories(cv: float) -> None:
    """At CV 3-7% the step is 2-5 noise sigmas: one change point, within a run of the step."""
    found = near = 0
    for seed in range(100):
        x = _noise(seed, 40, cv)
        x[20:] *= 1.15
        cps = detect(_history(x))
        found += len(cps) == 1
        near += len(cps) == 1 and abs(cps[0].index - 20) <= 1
    assert found >= 95
    assert near >= 85


@given(seed=st.integers(0, 2**32 - 1), cv=st.floats(0.03, 0.07), n=st.integers(40, 60))
@settings(max_examples=300, deadline=None)
def test_noise_only_history_has_no_change_point(seed: int, cv: float, n: int) -> None:
    assert detect(_history(_noise(seed, n, cv))) == []


def test_noise_only_over_many_seeds() -> None:
    hits = [seed for seed in range(300) if detect(_history(_noise(seed, 40, 0.03 + 0.04 * (seed % 5) / 4)))]
    assert hits == []


def test_a_lone_outlier_is_not_a_change_point() -> None:
    x = _noise(1, 40, 0.03)
    x[30] *= 1.8
    x[38] *= 0.5
    assert detect(_history(x)) == []


def test_direction_decides_regression_or_improvement() -> None:
    x = _noise(2, 30, 0.01)
    x[15:] *= 1.3
    (lower,) = detect(_history(x), direction="lower")
    (higher,) = detect(_history(x), direction="higher")
    assert lower.kind == "regression" and lower.is_regression
    assert higher.kind == "improvement" and not higher.is_regression


def test_two_steps_are_two_change_points() -> None:
    x = _noise(3, 90, 0.02)
    x[30:] *= 1.2
    x[60:] *= 0.8
    cps = detect(_history(x))
    assert [c.index for c in cps] == [30, 60]
    assert [c.kind for c in cps] == ["regression", "improvement"]


def test_small_shifts_below_min_change_are_ignored() -> None:
    x = np.r_[np.full(20, 100.0), np.full(20, 103.0)] + _noise(4, 40, 0.001, 1.0) - 1.0
    assert detect(_history(x)) == []
    assert [c.index for c in detect(_history(x), min_change=0.02)] == [20]


def test_noise_free_metrics() -> None:
    assert detect(_history(np.full(20, 2e8))) == []
    (cp,) = detect(_history(np.r_[np.full(10, 2e8), np.full(10, 3e8)]))
    assert (cp.index, cp.change_fraction, cp.kind) == (10, pytest.approx(0.5), "regression")
    (cp,) = detect(_history(np.r_[np.zeros(10), np.full(10, 3.0)]))
    assert math.isinf(cp.change_fraction)


@pytest.mark.parametrize("values", [[], [1.0], [1.0, 2.0, 3.0, 4.0, 5.0], [1.0] * 10 + [math.nan] + [1.0] * 10])
def test_short_or_non_finite_histories_give_nothing(values: list[float]) -> None:
    assert detect([(None, v) for v in values]) == []


def test_commits_may_be_missing() -> None:
    x = _noise(5, 30, 0.01)
    x[10:] *= 1.5
    assert detect([(None, float(v)) for v in x]) == [
        ChangePoint(10, None, pytest.approx(100, rel=0.05), pytest.approx(150, rel=0.05),  # type: ignore[arg-type]
                    pytest.approx(0.5, abs=0.05), pytest.approx(0, abs=1e-6), "regression")  # type: ignore[arg-type]
    ]


def test_bad_direction_is_refused() -> None:
    with pytest.raises(ValueError, match="direction"):
        detect([], direction="sideways")
