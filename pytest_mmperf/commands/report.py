"""``mmperf report --db URL --html PATH``: one self-contained HTML report that works offline.

Interactive plots (plotly, its JavaScript inlined): each benchmark's history with change points,
the latest run against a baseline (``--baseline FILE``, or ``--baseline-dir`` holding
``<fingerprint>.json``), speedup per lever per workload, per-phase and operator-class breakdowns,
and the environment. ``--json RESULTS.json`` (repeatable) reads results documents instead of a
database. Exit status: 0, or 2 on bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pytest_mmperf.commands.sources import add_filter_arguments, add_source_arguments, filters_from, open_source
from pytest_mmperf.history import HistoryError
from pytest_mmperf.results.records import DocumentError, RunDocument


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of the history",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_source_arguments(p)
    p.add_argument("--html", required=True, metavar="PATH", help="where to write the report")
    p.add_argument("--baseline", metavar="FILE", help="a results document to compare the latest run with")
    p.add_argument("--baseline-dir", metavar="DIR", default="baselines",
                   help="without --baseline: use DIR/<fingerprint>.json when it exists (default baselines)")
    p.add_argument("--title", default="pytest-mmperf report", help="the page title")
    add_filter_arguments(p)
    p.set_defaults(func=run)


def _baseline(args: argparse.Namespace, fingerprint: str) -> RunDocument | None:
    if args.baseline:
        return RunDocument.load(args.baseline)
    candidate = Path(args.baseline_dir) / f"{fingerprint}.json"
    if fingerprint and "/" not in fingerprint and candidate.is_file():
        return RunDocument.load(candidate)
    return None


def run(args: argparse.Namespace) -> int:
    from pytest_mmperf.report import html, model
    from pytest_mmperf.results import atomic

    try:
        with open_source(args) as store:
            view = model.collect(store, filters_from(args))
        baseline = _baseline(args, view.latest.fingerprint)
    except (HistoryError, DocumentError) as exc:
        print(f"mmperf report: {exc}", file=sys.stderr)
        return 2
    page = html.render(view, baseline, title=args.title)
    try:
        atomic.write_text(args.html, page)
    except OSError as exc:
        print(f"mmperf report: cannot write {args.html}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    n_cp = sum(len(t.change_points) for t in view.trends)
    print(f"report: {args.html} ({len(view.runs)} run(s), {len(view.trends)} series, {n_cp} change point(s))")
    return 0
