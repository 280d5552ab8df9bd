"""``mmperf export --db URL|--json FILE --format github-action-benchmark|bencher -o PATH``.

Writes the newest run (or ``--run ID``) in a format another tool reads. github-action-benchmark:
``--direction lower`` (default) writes the lower-is-better metrics for its ``customSmallerIsBetter``
tool, ``--direction higher`` the higher-is-better ones (and speedups) for ``customBiggerIsBetter``.
Bencher: ``--format bencher`` writes Bencher Metric Format (BMF) JSON for ``bencher run --adapter json``.
Exit status: 0, or 2 on bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pytest_mmperf.commands.sources import add_source_arguments, open_source
from pytest_mmperf.history import HistoryError

FORMATS = ("github-action-benchmark", "bencher")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a run for another tool (github-action-benchmark, Bencher)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_source_arguments(p)
    p.add_argument("--format", choices=FORMATS, default=FORMATS[0], help="output format")
    p.add_argument("--direction", choices=("lower", "higher"), default="lower",
                   help="which metrics: lower-is-better (customSmallerIsBetter) or higher-is-better "
                        "(customBiggerIsBetter)")
    p.add_argument("--run", type=int, metavar="ID", help="the run to export (default: the newest)")
    p.add_argument("--branch", help="the newest run on this branch")
    p.add_argument("-o", "--output", required=True, metavar="PATH", help="where to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pytest_mmperf.report import export
    from pytest_mmperf.results import atomic

    try:
        with open_source(args) as store:
            if args.run is not None:
                doc = store.load_run(args.run)
            else:
                runs = store.runs(branch=args.branch, limit=1)
                if not runs:
                    raise HistoryError("no runs recorded" + (f" on branch {args.branch!r}" if args.branch else ""))
                doc = store.load_run(runs[-1].id)
    except HistoryError as exc:
        print(f"mmperf export: {exc}", file=sys.stderr)
        return 2
    entries: Any
    if args.format == "bencher":
        entries = export.bencher_metric_format(doc)
    else:
        entries = export.github_action_benchmark(doc, args.direction)
    try:
        atomic.write_text(args.output, json.dumps(entries, indent=1) + "\n")
    except OSError as exc:
        print(f"mmperf export: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.format == "bencher":
        n = sum(len(m) for m in entries.values())
        print(f"export: {len(entries)} benchmark(s), {n} measure(s) to {args.output} "
              "(bencher run --adapter json --file PATH)")
        return 0
    tool = export.TOOL_FOR_DIRECTION[args.direction]
    print(f"export: {len(entries)} entries to {args.output} (github-action-benchmark tool: {tool})")
    return 0
