"""``mmperf phases RESULTS.json``: where time goes, per benchmark (the paper's characterization)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pytest_mmperf.results.records import DocumentError, RunDocument


def register(sub: Any) -> None:
    p = sub.add_parser("phases", help="phase and operator-class shares per benchmark (characterization)",
                       description="Print each benchmark's phase shares of its latency and, for runs "
                                   "with --mmperf-profile, its operator-class shares, as Markdown.")
    p.add_argument("results", help="a results document (--mmperf-json)")
    p.add_argument("--eager-only", action="store_true", help="only benchmarks without levers")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pytest_mmperf.report.paper_tables import phase_table

    try:
        doc = RunDocument.load(args.results)
    except DocumentError as exc:
        print(f"mmperf phases: {exc}", file=sys.stderr)
        return 2
    benches = [b for b in doc.benchmarks if not args.eager_only or not b.optimizations]
    sys.stdout.write(phase_table(doc, benches))
    return 0
