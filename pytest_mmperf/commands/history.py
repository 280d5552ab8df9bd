"""``mmperf history --db URL``: each benchmark's metrics over the recorded runs, per commit.

Per benchmark: every metric's latest median with its CI, the trend over the last ``--last`` runs,
and the change points found in its whole history (commit, size, regression or improvement).
Exit status: 0, or 2 when the history cannot be read (one line on stderr).
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pytest_mmperf.report import model, terminal

    if args.last < 2:
        print("mmperf history: --last must be at least 2", file=sys.stderr)
        return 2
    try:
        with open_source(args) as store:
            view = model.collect(store, filters_from(args))
    except HistoryError as exc:
        print(f"mmperf history: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(terminal.render(view, last=args.last))
    return 0
