"""What one ``mmperf ab`` run found: the verdicts and how the run got there, as data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_mmperf.ab.paired import PairedComparison
from pytest_mmperf.judge.compare import Category
from pytest_mmperf.results.records import RunDocument

# Why the sequential design stopped adding process pairs.
DECIDED = "every gated metric decided"
REGRESSION = "a gated metric regressed"  # more pairs would not change the verdict
MAX_REPEATS = "--max-repeats reached"
TIME_BUDGET = "the next pair would pass --time-budget"
NO_HELP = "more pairs cannot decide what is open"


@dataclass
class ABResult:
    base_sha: str
    head_sha: str
    base: RunDocument  # every pair's rounds pooled, for display
    head: RunDocument
    comparisons: list[PairedComparison]
    drifts: dict[str, list[str]]  # benchmark -> output changes of head vs base
    notes: list[str]
    head_failures: list[str]  # head workers whose benchmark tests failed
    pairs: int = 0  # process pairs measured
    looks: int = 1  # looks the sequential design could take (each paid for: alpha / looks)
    stopped: str = DECIDED
    pair_seconds: list[float] = field(default_factory=list)
    inconclusive_fails: bool = False  # --mmperf-inconclusive=fail: an undecided gated metric fails
    # benchmark -> (base, head) compact operator profiles of the diagnosis's profiled run (failed
    # benchmarks only; absent when the pairs profiled already or the profiled run failed)
    profiles: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    # benchmark -> lever health counts that got worse (judge.health): fails like an output drift
    health: dict[str, list[str]] = field(default_factory=dict)

    @property
    def regressions(self) -> list[PairedComparison]:
        return [c for c in self.comparisons if c.category is Category.REGRESSED]

    @property
    def undecided(self) -> list[PairedComparison]:
        return [c for c in self.comparisons if c.category is Category.INCONCLUSIVE]

    @property
    def decided(self) -> bool:
        """Every gated metric has an answer (and there was something to compare)."""
        return bool(self.comparisons) and not self.undecided

    @property
    def failed(self) -> bool:
        return bool(self.head_failures or self.drifts or self.health or self.regressions
                    or (self.inconclusive_fails and not self.decided))

    @property
    def verdict(self) -> str:
        """``regression``, ``inconclusive`` or ``no regression``: the last only when every gated
        metric was decided (unchanged or improved) and nothing else failed."""
        if self.head_failures or self.drifts or self.health or self.regressions:
            return "regression"
        if not self.decided:
            return "inconclusive"
        return "no regression"

    def to_json(self) -> dict[str, Any]:
        """The verdicts as data (``--json-dir``/ab.json)."""
        return {
            "base": self.base_sha, "head": self.head_sha, "failed": self.failed, "verdict": self.verdict,
            "pairs": self.pairs, "looks": self.looks, "stopped": self.stopped,
            "pair_seconds": [round(s, 3) for s in self.pair_seconds],
            "comparisons": [{"benchmark": c.benchmark, **c.to_json()} for c in self.comparisons],
            "drifts": self.drifts, "health": self.health, "notes": self.notes, "head_failures": self.head_failures,
        }
