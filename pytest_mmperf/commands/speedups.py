"""``mmperf speedups RESULTS.json``: the paper's speedup figure as a table."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pytest_mmperf.results.records import DocumentError, RunDocument


def register(sub: Any) -> None:
    p = sub.add_parser("speedups", help="speedup of each lever over eager, per workload (the paper's figure)",
                       description="Print the speedup over eager of every lever set per workload/task "
                                   "(batch 1), with the bootstrap CI, as a Markdown table.")
    p.add_argument("results", help="a results document (--mmperf-json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pytest_mmperf.report.paper_tables import speedup_table

    try:
        doc = RunDocument.load(args.results)
    except DocumentError as exc:
        print(f"mmperf speedups: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(speedup_table(doc))
    return 0
