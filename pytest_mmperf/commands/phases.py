"""``mmperf phases RESULTS.json``: where time goes, per benchmark and per batch size (the
paper's characterization)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pytest_mmperf.results.records import DocumentError, RunDocument


def register(sub: Any) -> None:
    p = sub.add_parser("phases", help="phase and operator-class shares per benchmark, batch findings",
                       description="Print each benchmark's phase shares of its latency (per-round sums) "
                                   "and, for runs with --mmperf-profile, its operator-class shares, then "
                                   "the batch findings (attention and KV-reorder shares, KV-cache bytes, "
                                   "the attention lever's speedup per batch size), as Markdown.")
    p.add_argument("results", help="a results document (--mmperf-json)")
    p.add_argument("--eager-only", action="store_true", help="only benchmarks without levers")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pytest_mmperf.report.paper_tables import batch_table, phase_table

    try:
        doc = RunDocument.load(args.results)
    except DocumentError as exc:
        print(f"mmperf phases: {exc}", file=sys.stderr)
        return 2
    benches = [b for b in doc.benchmarks if not args.eager_only or not b.optimizations]
    sys.stdout.write(phase_table(doc, benches))
    sys.stdout.write("\n### Batch findings\n\n")
    sys.stdout.write(batch_table(doc))
    return 0
