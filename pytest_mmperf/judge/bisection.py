"""Bisection over a linear range of commits with the gate's verdict as the oracle; pure.

The range is ``good`` (excluded, known good) .. ``bad`` (the last candidate, taken as bad, as
``git bisect`` does). Each step measures the middle of the candidates still open and asks the
oracle: ``BAD`` (its verdict against ``good`` is a regression), ``GOOD``, or ``SKIP`` (it cannot
be built or measured: never blamed). A skipped commit is replaced by its nearest unskipped
neighbour inside the open range, alternating after and before, the way ``git bisect skip`` moves
away from an untestable commit. The answer is the first bad commit, or, when skipped commits
stand between the last good and the first bad one, the range that contains it.

With N candidates and no skip this takes ceil(log2 N) oracle calls: 16 candidates (a 16-commit
series) need 4.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

GOOD = "good"
BAD = "bad"
SKIP = "skip"


@dataclass(frozen=True)
class Step:
    commit: str
    outcome: str  # GOOD, BAD or SKIP
    reason: str = ""


@dataclass(frozen=True)
class Bisection:
    candidates: tuple[str, ...]  # oldest first; the last is the bad end
    steps: tuple[Step, ...]
    first_bad: str | None  # None: the skipped commits hide it (see ``suspects``)
    suspects: tuple[str, ...] = field(default_factory=tuple)  # the commits that may be first bad

    @property
    def measured(self) -> int:
        return len(self.steps)


def _probe_order(lo: int, hi: int, skipped: set[int]) -> list[int]:
    """Open candidates are lo+1 .. hi-1 (lo is good, hi is bad): the middle first, then its
    neighbours alternating after/before; skipped ones left out."""
    mid = (lo + hi) // 2
    order: list[int] = []
    for d in range(0, hi - lo):
        for i in ((mid + d, mid - d) if d else (mid,)):
            if lo < i < hi and i not in skipped and i not in order:
                order.append(i)
    return order


def bisect(
    candidates: Sequence[str],
    oracle: Callable[[str], tuple[str, str]],
    *,
    on_step: Callable[[Step, int, int], None] | None = None,
) -> Bisection:
    """``oracle(commit) -> (outcome, reason)``; ``on_step(step, open_candidates, steps_so_far)``
    reports progress. The last candidate is the bad end and is not measured."""
    if not candidates:
        raise ValueError("no commits between good and bad")
    lo, hi = -1, len(candidates) - 1  # candidates[lo] known good (lo = -1: the good ref), [hi] bad
    skipped: set[int] = set()
    steps: list[Step] = []
    while True:
        order = _probe_order(lo, hi, skipped)
        if not order:
            break
        i = order[0]
        outcome, reason = oracle(candidates[i])
        if outcome not in (GOOD, BAD, SKIP):
            raise ValueError(f"oracle outcome {outcome!r}")
        step = Step(candidates[i], outcome, reason)
        steps.append(step)
        if outcome == SKIP:
            skipped.add(i)
        elif outcome == BAD:
            hi = i
        else:
            lo = i
        if on_step is not None:
            on_step(step, max(0, len(_probe_order(lo, hi, skipped))), len(steps))
    suspects = tuple(candidates[i] for i in range(lo + 1, hi + 1))  # skipped ones, then the bad one
    first = candidates[hi] if len(suspects) == 1 else None
    return Bisection(tuple(candidates), tuple(steps), first, suspects)


__all__ = ["BAD", "GOOD", "SKIP", "Bisection", "Step", "bisect"]
