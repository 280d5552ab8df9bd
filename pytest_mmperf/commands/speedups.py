"""``mmperf speedups RESULTS.json``: the paper's speedup figures, measured beside reported."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pytest_mmperf.results.records import DocumentError, RunDocument


def register(sub: Any) -> None:
    p = sub.add_parser("speedups", help="the paper's lever progression: measured speedups beside the paper's",
                       description="Print, per workload/task and batch size, the speedup over eager of each "
                                   "step of the paper's progression (attention, + static cache and compile, "
                                   "+ int8 = the optimized baseline 'stack', + LayerSkip) with its bootstrap "
                                   "CI and the paper's reported figure, the geometric mean across workloads, "
                                   "then every lever set's speedup (batch 1), as Markdown.")
    p.add_argument("results", help="a results document (--mmperf-json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pytest_mmperf.report.paper_tables import progression_table, speedup_table

    try:
        doc = RunDocument.load(args.results)
    except DocumentError as exc:
        print(f"mmperf speedups: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(progression_table(doc))
    sys.stdout.write("\n### Every lever set at batch 1: speedup over eager [95% CI]\n\n")
    sys.stdout.write(speedup_table(doc))
    return 0
