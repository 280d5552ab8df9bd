"""``mmperf history --db URL``: each benchmark's metrics over the recorded runs, per commit.

Per benchmark: every metric's latest median with its CI, the trend over the last ``--last`` runs,
and the change points found in its whole history (commit, size, regression or improvement).
With ``--since A [--until B]`` (commits, revisions or dates): what changed between them across
every benchmark, biggest first, each change with its commit range (``pytest_mmperf.report.triage``).
Exit status: 0, or 2 when the history cannot be read or an end matches no run (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pytest_mmperf.commands.sources import add_filter_arguments, add_source_arguments, filters_from, open_source
from pytest_mmperf.history import HistoryError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "history",
        help="show the performance history per benchmark with change points",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_source_arguments(p)
    add_filter_arguments(p)
    p.add_argument("--last", type=int, default=10, metavar="N", help="runs in the trend column (default 10)")
    p.add_argument("--since", metavar="COMMIT|DATE",
                   help="what changed since this commit (a revision git resolves here, or a commit prefix) or "
                        "date (2026-11-30): across every benchmark, ranked by size, with commit ranges")
    p.add_argument("--until", metavar="COMMIT|DATE", help="the other end for --since (default: the newest run)")
    p.set_defaults(func=run)


def _resolve(rev: str) -> str | None:
    """A revision as git resolves it in the current folder (None outside a repository)."""
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run(args: argparse.Namespace) -> int:
    from pytest_mmperf.report import model, terminal

    if args.last < 2:
        print("mmperf history: --last must be at least 2", file=sys.stderr)
        return 2
    if args.until and not args.since:
        print("mmperf history: --until needs --since", file=sys.stderr)
        return 2
    try:
        with open_source(args) as store:
            view = model.collect(store, filters_from(args))
    except HistoryError as exc:
        print(f"mmperf history: {exc}", file=sys.stderr)
        return 2
    if args.since:
        from pytest_mmperf.report import triage

        newest = view.runs[-1]
        until = triage.parse_end(args.until, _resolve) if args.until else triage.End(
            f"the newest run ({newest.label})", None, triage.when(newest.created))
        try:
            result = triage.triage(view.trends, triage.parse_end(args.since, _resolve), until)
        except triage.TriageError as exc:
            print(f"mmperf history: {exc}", file=sys.stderr)
            return 2
        sys.stdout.write(triage.render(result))
        return 0
    sys.stdout.write(terminal.render(view, last=args.last))
    return 0
