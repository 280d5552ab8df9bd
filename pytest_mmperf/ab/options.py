"""What ``mmperf ab`` is asked to do, and the pytest command line of one worker."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_mmperf.judge.compare import DEFAULT_CONFIDENCE, DEFAULT_THRESHOLD
from pytest_mmperf.settings import Settings

SIDES = ("base", "head")


class ABError(Exception):
    """Bad input or a failed step; the message is one line (exit 2)."""


@dataclass(frozen=True)
class ABOptions:
    base: str
    head: str
    rounds: int = 10  # per process; pair r's estimate is the median of its 10 adjacent-round ratios
    repeats: int = 5  # process pairs before the first look: the replication unit of the test (paired.py)
    # the sequential design: pairs are added while a gated metric is undecided, up to max_repeats
    # (None: twice ``repeats``) and while the next pair fits the time budget (seconds of measuring)
    max_repeats: int | None = None
    time_budget_s: float = 1800.0
    pytest_args: tuple[str, ...] = ()
    markdown: Path | None = None
    json_dir: Path | None = None
    threshold: float = DEFAULT_THRESHOLD
    confidence: float = DEFAULT_CONFIDENCE
    timeout_s: float = 1800.0  # longest a worker may compute without finishing a round
    settings: Settings | None = None  # the decision rule's options (mmperf ab's generated flags)
    repo: Path = field(default_factory=Path.cwd)
    python: str = sys.executable

    @property
    def most_pairs(self) -> int:
        return max(self.repeats, self.max_repeats if self.max_repeats is not None else 2 * self.repeats)

    @property
    def looks(self) -> int:
        """Times the run may judge: after ``repeats`` pairs and after each added pair."""
        return self.most_pairs - self.repeats + 1


def pytest_command(python: str, json_path: Path, rounds: int, pytest_args: Sequence[str]) -> list[str]:
    """One worker: a fixed number of rounds (both sides measure alike), no history."""
    return [
        python, "-m", "pytest", "--mmperf",
        f"--mmperf-json={json_path}",
        "--mmperf-history=off",
        f"--mmperf-rounds={rounds}",
        f"--mmperf-max-rounds={rounds}",
        "-p", "no:cacheprovider",
        *pytest_args,
    ]


def profile_command(python: str, json_path: Path, pytest_args: Sequence[str]) -> list[str]:
    """The diagnosis's run: natively (any ``--mmperf-clock`` dropped: operators are timed), one
    warm-up call, one round and one call under ``torch.profiler`` per benchmark; the benchmarks are
    chosen by ``MMPERF_ONLY_IDS`` (the failed ones)."""
    args = [a for a in pytest_args if not a.startswith("--mmperf-clock")]
    return [
        python, "-m", "pytest", "--mmperf", "--mmperf-profile", "--mmperf-adaptive=0",
        f"--mmperf-json={json_path}", "--mmperf-history=off", "--mmperf-rounds=1", "--mmperf-max-rounds=1",
        "--mmperf-diagnose=off", "-p", "no:cacheprovider", *args,
    ]


def split_args(values: Sequence[str]) -> tuple[str, ...]:
    """``--pytest-args "suites -k llm"`` (repeatable) into arguments."""
    return tuple(arg for value in values for arg in shlex.split(value))
