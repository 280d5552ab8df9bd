"""``mmperf ab --base REF --head REF``: measure two commits on this machine in lockstep and gate head.

Both refs are checked out as temporary git worktrees (always removed). K process pairs run one
after the other; in each, a base and a head ``pytest --mmperf`` are alive at once and take turns
round by round (ABBA), so they never compute at the same time. Head is judged against base per
metric by a t test on the per-pair log ratios (the process pair is the replication unit; each
benchmark's variance moderated towards the run's), Holm over the run, regressed when significant
AND beyond the threshold, unchanged when the interval lies within it (``pytest_mmperf.ab.paired``).

While a gated metric is undecided, pairs are added one at a time (up to ``--max-repeats``, within
``--time-budget``), each look paid for; the last line says "regression", "inconclusive" (what is
undecided, the pairs' spread, about how many pairs would decide it) or, only when every gated
metric was decided, "no regression".

Exit status: 0 no regression or inconclusive (said so), 1 a regression, output drift or a benchmark
test failing on head, 2 bad input or a failed step (unknown ref, uncommitted changes, pytest usage
error, a worker that died or hung), one line on stderr.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pytest_mmperf.settings import POLICY_DESTS, UsageError, add_cli_options, fraction, settings_from_cli

# The decision rule's options, generated from the pytest option table (same parsing, same
# defaults, same MMPERF_ variables); the cross-session drift allowance is not one of them: base
# and head run in lockstep in this job.
AB_POLICY_DESTS = tuple(d for d in POLICY_DESTS if d != "drift_allowance")


def _fraction(text: str) -> float:
    """The option parser's fraction (``settings.fraction``), as an argparse type."""
    try:
        return fraction(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive integer")
    return value


def register(subparsers: Any) -> None:
    from pytest_mmperf.ab.options import ABOptions

    p = subparsers.add_parser(
        "ab",
        help="measure base and head commits in lockstep on this machine; exit 1 on a regression",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog='example: mmperf ab --base origin/main --head HEAD --repeats 5 --rounds 10 '
               '--pytest-args "suites --mmperf-scale=small" --markdown ab.md',
    )
    p.add_argument("--base", required=True, metavar="REF", help="the commit to compare with (e.g. origin/main)")
    p.add_argument("--head", required=True, metavar="REF", help="the commit to judge (e.g. HEAD)")
    p.add_argument("--rounds", type=_positive, default=ABOptions.rounds, metavar="N",
                   help=f"measured rounds per benchmark in each process (default {ABOptions.rounds})")
    p.add_argument("--repeats", type=_positive, default=ABOptions.repeats, metavar="K",
                   help="process pairs (base and head in lockstep) before the first look; the replication "
                        f"unit of the test, at least 2 to judge metrics that vary (default {ABOptions.repeats})")
    p.add_argument("--max-repeats", type=_positive, default=None, metavar="M",
                   help="add pairs one at a time while a gated metric is undecided, up to M in all; each "
                        "possible look is paid for (Bonferroni over the M - K + 1 looks) (default 2K; "
                        "K: no pair added)")
    p.add_argument("--time-budget", type=_positive, default=int(ABOptions.time_budget_s), metavar="SECONDS",
                   help="add a pair only while the pairs so far plus one more of their mean length fit "
                        f"this many seconds (default {int(ABOptions.time_budget_s)})")
    p.add_argument("--pytest-args", action="append", default=[], metavar="ARGS",
                   help='arguments for pytest in each worktree, one shell-quoted string, e.g. '
                        '"suites --mmperf-scale=tiny -k llm"; write --pytest-args="-k llm" when it '
                        'starts with a dash (repeatable)')
    p.add_argument("--markdown", type=Path, metavar="PATH",
                   help="write the Markdown summary (PR comment, $GITHUB_STEP_SUMMARY) to PATH")
    p.add_argument("--json-dir", type=Path, metavar="DIR",
                   help="keep every process's results document, its log and the pooled base.json/head.json in DIR")
    add_cli_options(p, AB_POLICY_DESTS)
    p.add_argument("--timeout", type=_positive, default=1800, metavar="SECONDS",
                   help="stop a worker that computes this long without finishing a round (default 1800)")
    p.add_argument("--drift-allowance", type=_fraction, default=None, metavar="FRACTION",
                   help=argparse.SUPPRESS)  # no effect since the lockstep pairs; kept for old scripts
    p.add_argument("--repo", type=Path, default=Path("."),
                   help="the repository (or a folder inside it, where pytest runs) (default .)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from pytest_mmperf.ab import ABOptions, run_ab, split_args

    try:
        settings = settings_from_cli(args, AB_POLICY_DESTS)
    except UsageError as exc:
        print(f"mmperf ab: {exc}", file=sys.stderr)
        return 2
    if args.drift_allowance is not None:
        print("mmperf ab: --drift-allowance has no effect (base and head run in lockstep); ignored",
              file=sys.stderr)
    options = ABOptions(
        base=args.base,
        head=args.head,
        rounds=args.rounds,
        repeats=args.repeats,
        max_repeats=args.max_repeats,
        time_budget_s=float(args.time_budget),
        pytest_args=split_args(args.pytest_args),
        markdown=args.markdown,
        json_dir=args.json_dir,
        threshold=settings.threshold,
        confidence=settings.compare_confidence,
        settings=settings,
        timeout_s=float(args.timeout),
        repo=args.repo,
    )
    return run_ab(options)
