"""The one front door to the decision rule: :class:`compare.Policy` from :class:`Settings`.

The plugin's gate (``--mmperf-compare``), ``mmperf compare`` and ``mmperf ab`` all build their
rule here, from the same :class:`~pytest_mmperf.settings.Settings` that the option table
(:data:`pytest_mmperf.settings.OPTIONS`) resolves, so a threshold, a confidence or a drift
allowance means the same thing and has the same default everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping

from pytest_mmperf.judge.allowance import Allowance
from pytest_mmperf.judge.compare import Policy
from pytest_mmperf.settings import Settings


def policy_from_settings(
    settings: Settings,
    *,
    family_size: int = 1,
    looks: int = 1,
    session: Settings | None = None,
    cross_session: bool = True,
    allowances: Mapping[str, Allowance] | None = None,
    host_reason: str = "",
) -> Policy:
    """The decision rule for one comparison.

    ``family_size``: the gated statistical comparisons of the run (Bonferroni);
    ``looks``: how many measurements of one benchmark may be judged (the first plus adaptive
    extra measurements); ``session``: the run's settings when ``settings`` are one benchmark's
    (its marker): a marker ``threshold=`` then applies to every metric of that benchmark, over
    the per-metric thresholds; ``cross_session``: False when both sides were measured in one job
    (``mmperf ab``), so absolute timings need no drift allowance; ``allowances``: per metric, the
    drift allowance learned from this host's history (or why none); ``host_reason``: why the
    baseline's host cannot be trusted for timings ("" when it is this host).
    """
    per_metric = dict(settings.metric_thresholds)
    if session is not None and settings.threshold != session.threshold:
        per_metric = {}  # a marker keyword threshold= applies to every metric of its test
    return Policy(
        threshold=settings.threshold,
        thresholds=per_metric,
        confidence=settings.compare_confidence,
        family_size=max(1, family_size),
        looks=max(1, looks),
        drift_allowance=settings.drift_allowance,
        gate_absolute=settings.gate_absolute_timings,
        cross_session=cross_session,
        allowances=dict(allowances or {}),
        host_reason=host_reason,
    )
