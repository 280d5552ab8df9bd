"""Where the history commands read from (``--db URL`` or ``--json FILE``...) and their filters;
shared by ``history``, ``report`` and ``export`` (not a command itself)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pytest_mmperf.history import HistoryError, HistoryStore, open_documents, open_store
from pytest_mmperf.report.model import LATEST, Filters
from pytest_mmperf.results.records import DocumentError, RunDocument
from pytest_mmperf.settings import DEFAULT_HISTORY


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--db", metavar="URL",
                     help=f"history database: sqlite:///PATH (relative to the current folder) or "
                          f"postgresql://... (default {DEFAULT_HISTORY})")
    src.add_argument("--json", metavar="RESULTS.json", action="append", dest="json_files",
                     help="read results documents instead of a database (repeat for several runs, oldest first)")


def add_filter_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workload", help="only this workload (llm, speech, text_image, recommender)")
    p.add_argument("--lever", help="only benchmarks using this optimization (eager: the unoptimized ones)")
    p.add_argument("--metric", help="only this metric (e.g. latency_ms, tpot_ms, speedup_vs_eager)")
    p.add_argument("--branch", help="only runs on this branch")
    p.add_argument("--benchmark", metavar="ID", help="only this benchmark (pytest node id)")
    p.add_argument("--fingerprint", default=LATEST,
                   help="environment to show: 'latest' (of the newest run; default), 'all', or a fingerprint")


def filters_from(args: argparse.Namespace) -> Filters:
    return Filters(
        workload=args.workload, lever=args.lever, metric=args.metric, branch=args.branch,
        benchmark=args.benchmark, fingerprint=args.fingerprint,
    )


def open_source(args: Any) -> HistoryStore:
    """The history the arguments name; HistoryError (one line) when it cannot be read."""
    if getattr(args, "json_files", None):
        docs = []
        for path in args.json_files:
            try:
                docs.append(RunDocument.load(path))
            except DocumentError as exc:
                raise HistoryError(str(exc)) from None
        return open_documents(docs)
    return open_store(args.db or DEFAULT_HISTORY, Path.cwd(), create=False)
