"""``mmperf baseline list|show|promote|prune``: the stored baselines, one file per environment.

Exit status: 0 done, 1 nothing matched (``show`` of a missing baseline), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pytest_mmperf.report.summary import table
from pytest_mmperf.results import baselines
from pytest_mmperf.results.records import DocumentError, RunDocument


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("baseline", help="list, show, promote or prune stored baselines",
                              description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--dir", default="baselines", help="the baseline directory (default baselines/)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="one line per stored baseline")
    show = sub.add_parser("show", help="the entries of one baseline")
    show.add_argument("baseline", help="a fingerprint or a path to a baseline file")
    promote = sub.add_parser("promote", help="make a results document the baseline of its environment")
    promote.add_argument("results", metavar="RESULTS.json", help="a --mmperf-json results document")
    promote.add_argument("--replace", action="store_true",
                         help="replace the stored baseline instead of merging into it by benchmark id")
    prune = sub.add_parser("prune", help="remove baselines or stale entries")
    prune.add_argument("--fingerprint", action="append", default=[],
                       help="remove the whole baseline of this fingerprint (repeatable)")
    prune.add_argument("--keep-ids-from", metavar="RESULTS.json",
                       help="a complete run: remove its environment's entries not in it")
    prune.add_argument("--dry-run", action="store_true", help="say what would be removed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _ACTIONS[args.action](args)
    except (DocumentError, OSError) as exc:
        print(f"mmperf baseline {args.action}: {exc}", file=sys.stderr)
        return 2


def _list(args: argparse.Namespace) -> int:
    found = baselines.list_baselines(args.dir)
    if not found:
        print(f"no baselines in {args.dir}")
        return 0
    for b in found:
        if b.error:
            print(f"{b.path}: UNUSABLE: {b.error}")
        else:
            clock = "instruction counts" if b.clock == "instructions" else f"{b.clock} clock"
            print(f"{b.path}: {b.fingerprint} {b.device}, {clock}, {b.benchmarks} benchmark(s), "
                  f"commit {b.commit or '?'}, {b.created or '?'}")
    return 0


def _show(args: argparse.Namespace) -> int:
    path = baselines.resolve(args.baseline, args.dir)
    if not path.exists():
        print(f"mmperf baseline show: {path}: no such baseline", file=sys.stderr)
        return 1
    doc = baselines.load(path)
    print(f"{path}: {doc.fingerprint}, commit {doc.commit or '?'}, created {doc.created or '?'}")
    for line in table(doc.benchmarks, doc.fingerprint):
        print(line)
    return 0


def _promote(args: argparse.Namespace) -> int:
    path = baselines.promote(args.results, args.dir, replace_existing=args.replace)
    doc = RunDocument.load(args.results)
    how = "replaced" if args.replace else "merged into"
    print(f"{len(doc.benchmarks)} benchmark(s) from {args.results} {how} {path}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    keep = RunDocument.load(args.keep_ids_from) if args.keep_ids_from else None
    if not args.fingerprint and keep is None:
        print("mmperf baseline prune: give --fingerprint FP or --keep-ids-from RESULTS.json", file=sys.stderr)
        return 2
    done = baselines.prune(args.dir, fingerprints=args.fingerprint, keep_ids_from=keep, dry_run=args.dry_run)
    for line in done:
        print(("would have " if args.dry_run else "") + line)
    if not done:
        print("nothing to prune")
    return 0


_ACTIONS = {"list": _list, "show": _show, "promote": _promote, "prune": _prune}
