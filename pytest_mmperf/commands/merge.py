"""``mmperf merge OUT.json IN1.json IN2.json ...``: one results document from shards or repeats.

The shards of a CI matrix (``--mmperf-shard I/N``) merge into a document equal in content to an
unsharded run. Inputs must share an environment fingerprint and commit (``--force`` overrides);
a benchmark id in two inputs is an error unless ``--pool`` pools the repeats' samples.

With ``--history URL`` the merged run is also recorded in the history store (what a sharded CI
run on main does: each shard runs with ``--mmperf-history=off``, the merge records one run).

Exit status: 0 written, 2 bad input or a history store that cannot be written (one line on
stderr). The output is written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pytest_mmperf.results import atomic
from pytest_mmperf.results.merge import MergeError, merge_shards
from pytest_mmperf.results.records import DocumentError, RunDocument


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "merge",
        help="merge shard results (or pooled repeats) into one results document",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("output", metavar="OUT.json", help="the merged results document to write")
    p.add_argument("inputs", metavar="IN.json", nargs="+", help="results documents (--mmperf-json)")
    p.add_argument("--pool", action="store_true",
                   help="pool repeats of the same benchmark (concatenate samples) instead of refusing duplicates")
    p.add_argument("--force", action="store_true",
                   help="merge documents from different environments or commits")
    p.add_argument("--history", metavar="URL",
                   help="also record the merged run in this history store (sqlite:///PATH or postgresql://...)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        docs = [RunDocument.load(path) for path in args.inputs]
        merged, notes = merge_shards(docs, args.inputs, force=args.force, pool_repeats=args.pool)
    except (DocumentError, MergeError) as exc:
        print(f"mmperf merge: {exc}", file=sys.stderr)
        return 2
    try:
        atomic.write_text(args.output, merged.dumps())
    except OSError as exc:
        print(f"mmperf merge: cannot write {args.output}: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"mmperf merge: {note}", file=sys.stderr)
    print(f"mmperf merge: {len(merged.benchmarks)} benchmark(s) from {len(docs)} document(s) -> {args.output}")
    if args.history:
        from pytest_mmperf.history import HistoryError, open_store

        try:
            with open_store(args.history, Path.cwd()) as store:
                run_id = store.record_run(merged)
        except HistoryError as exc:
            print(f"mmperf merge: --history: {exc}", file=sys.stderr)
            return 2
        print(f"mmperf merge: history: run {run_id} recorded")
    return 0
