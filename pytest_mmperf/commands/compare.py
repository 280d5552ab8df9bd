"""``mmperf compare BASELINE.json CURRENT.json``: the gate's engine on two results documents.

Exit status: 0 no regression, 1 a regression or output drift, 2 bad input (one line on stderr).
Documents from different environments are refused unless ``--force``. There is no run-wide
family here, so Bonferroni counts the comparisons these two documents make.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pytest_mmperf.judge import compare, drift
from pytest_mmperf.report.summary import short_id
from pytest_mmperf.results.fingerprint import differences
from pytest_mmperf.results.metrics import SPEEDUP
from pytest_mmperf.results.records import DocumentError, RunDocument
from pytest_mmperf.settings import fraction


def _metric_threshold(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected METRIC=FRACTION, e.g. latency_ms=0.1")
    try:
        return name, fraction(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare two results documents (exit 1 on a regression)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("baseline", metavar="A.json", help="the baseline results document")
    p.add_argument("current", metavar="B.json", help="the results document to judge")
    p.add_argument("--threshold", type=float, default=compare.DEFAULT_THRESHOLD,
                   help="smallest relative change that counts (default 0.05)")
    p.add_argument("--metric-threshold", type=_metric_threshold, action="append", default=[],
                   metavar="METRIC=FRACTION", help="threshold for one metric (repeatable)")
    p.add_argument("--confidence", type=float, default=compare.DEFAULT_CONFIDENCE,
                   help="confidence a regression must reach (default 0.99)")
    p.add_argument("--drift-allowance", type=float, default=compare.DRIFT_ALLOWANCE,
                   help="the smallest change of an absolute timing that counts, since runs at "
                        "different times drift (default 0.20; 0 for A/B runs made back to back)")
    p.add_argument("--no-absolute", dest="gate_absolute", action="store_false",
                   help="report absolute timings without gating them (shared, contended machines); "
                        "in-run ratios, bytes, counts and outputs still gate")
    p.add_argument("--force", action="store_true",
                   help="compare documents from different environments")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        base = RunDocument.load(args.baseline)
        cur = RunDocument.load(args.current)
    except DocumentError as exc:
        print(f"mmperf compare: {exc}", file=sys.stderr)
        return 2
    if not 0.5 <= args.confidence < 1 or args.threshold < 0 or args.drift_allowance < 0:
        print("mmperf compare: --confidence must be in [0.5, 1); thresholds must be >= 0", file=sys.stderr)
        return 2
    diff = differences(base.environment, cur.environment)
    if diff and not args.force:
        keys = ", ".join(f"{k} {a!r} vs {b!r}" for k, (a, b) in sorted(diff.items()))
        print(f"mmperf compare: different environments ({keys}); use --force to compare anyway",
              file=sys.stderr)
        return 2
    ids = set(cur.by_id())
    policy = compare.Policy(
        threshold=args.threshold,
        thresholds=dict(args.metric_threshold),
        confidence=args.confidence,
        family_size=compare.family_size(base, ids, gate_absolute=args.gate_absolute),
        drift_allowance=args.drift_allowance,
        gate_absolute=args.gate_absolute,
    )
    comps, only_base, only_cur = compare.compare_documents(base, cur, policy)
    base_by_id, cur_by_id = base.by_id(), cur.by_id()
    failed = 0
    counts = {c.value: 0 for c in compare.Category}
    print(f"mmperf compare: {args.baseline} (@ {base.commit or '?'}) -> {args.current} "
          f"(@ {cur.commit or '?'}); alpha {policy.alpha:.2g} (Bonferroni over {policy.family_size})")
    for comp in comps:
        q = cur_by_id[comp.benchmark].quality
        b = base_by_id[comp.benchmark].quality
        outputs = drift.compare_outputs(
            b.get(drift.KEY) if isinstance(b, dict) else None,
            q.get(drift.KEY) if isinstance(q, dict) else None,
        )
        category = compare.Category.REGRESSED if outputs else comp.category
        counts[category.value] += 1
        print(f"{short_id(comp.benchmark)}: {category.value}")
        for m in comp.metrics:
            notable = m.category is not compare.Category.UNCHANGED or m.metric in ("latency_ms", SPEEDUP)
            if m.gated and notable:
                print(f"  {m.describe()}")
        for o in outputs:
            print(f"  output drift: {o.message}")
        if category is compare.Category.REGRESSED:
            failed += 1
    for i in only_base:
        print(f"{short_id(i)}: only in {args.baseline}")
    for i in only_cur:
        print(f"{short_id(i)}: only in {args.current} (no baseline entry)")
    print(", ".join(f"{n} {k}" for k, n in counts.items()))
    return 1 if failed else 0
