"""``mmperf compare BASELINE.json CURRENT.json``: the gate's engine on two results documents.

Exit status: 0 no regression, 1 a regression or output drift (or, with ``--inconclusive fail``, a
benchmark left undecided), 2 bad input (one line on stderr). Timings and speedups are judged across
the two documents only when both name the same host and its drift is configured
(``--drift-allowance``); otherwise they are reported, not gated, and the summary says why.
Documents from different environments are refused unless ``--force``. The decision rule is the
gate's (:func:`pytest_mmperf.judge.policy.policy_from_settings`), its options generated from the
same table as the pytest options (``--threshold 5%`` reads as ``--mmperf-threshold=5%``); the
Bonferroni family is the gated statistical comparisons these two documents make.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pytest_mmperf.judge import compare, drift, health
from pytest_mmperf.judge.diagnosis import diagnose
from pytest_mmperf.judge.gate import host_trust
from pytest_mmperf.judge.policy import policy_from_settings
from pytest_mmperf.report.summary import short_id
from pytest_mmperf.results.fingerprint import differences
from pytest_mmperf.results.metrics import SPEEDUP
from pytest_mmperf.results.records import DocumentError, RunDocument
from pytest_mmperf.settings import POLICY_DESTS, UsageError, add_cli_options, settings_from_cli

OWN_DESTS = (*POLICY_DESTS, "compare_force", "inconclusive")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare two results documents (exit 1 on a regression)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("baseline", metavar="A.json", help="the baseline results document")
    p.add_argument("current", metavar="B.json", help="the results document to judge")
    # the decision rule's options, generated from the pytest option table (same parsing, defaults)
    add_cli_options(p, OWN_DESTS)
    p.add_argument("--no-absolute", dest="gate_absolute_timings", action="store_const", const="report",
                   help="the same as --absolute report (kept for older scripts)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_cli(args, OWN_DESTS)
    except UsageError as exc:
        print(f"mmperf compare: {exc}", file=sys.stderr)
        return 2
    try:
        base = RunDocument.load(args.baseline)
        cur = RunDocument.load(args.current)
    except DocumentError as exc:
        print(f"mmperf compare: {exc}", file=sys.stderr)
        return 2
    diff = differences(base.environment, cur.environment)
    if diff and not settings.compare_force:
        keys = ", ".join(f"{k} {a!r} vs {b!r}" for k, (a, b) in sorted(diff.items()))
        print(f"mmperf compare: different environments ({keys}); use --force to compare anyway",
              file=sys.stderr)
        return 2
    ids = set(cur.by_id())
    host_reason = host_trust(base, cur.environment, args.baseline)
    rule = policy_from_settings(settings, host_reason=host_reason)
    family = compare.family_size(base, ids, gate_absolute=settings.gate_absolute_timings,
                                 judged=lambda _bid, metric: rule.allowance_for(metric).known)
    policy = policy_from_settings(settings, family_size=family, host_reason=host_reason)
    comps, only_base, only_cur = compare.compare_documents(base, cur, policy)
    base_by_id, cur_by_id = base.by_id(), cur.by_id()
    failed = 0
    counts = {c.value: 0 for c in compare.Category}
    print(f"mmperf compare: {args.baseline} (@ {base.commit or '?'}) -> {args.current} "
          f"(@ {cur.commit or '?'}); alpha {policy.alpha:.2g} (Bonferroni over {policy.family_size}); "
          f"intervals: {policy.interval_label}")
    untimed = policy.allowance_for("latency_ms")
    if not untimed.known:
        print(f"timings and speedups not gated: {untimed.source}; bytes, output drift and counts gate")
    for comp in comps:
        q = cur_by_id[comp.benchmark].quality
        b = base_by_id[comp.benchmark].quality
        outputs = drift.compare_outputs(
            b.get(drift.KEY) if isinstance(b, dict) else None,
            q.get(drift.KEY) if isinstance(q, dict) else None,
        )
        worse = health.compare_health(base_by_id[comp.benchmark].metrics, cur_by_id[comp.benchmark].metrics)
        category = compare.Category.REGRESSED if outputs or worse else comp.category
        counts[category.value] += 1
        print(f"{short_id(comp.benchmark)}: {category.value}")
        for m in comp.metrics:
            notable = m.category is not compare.Category.UNCHANGED or m.metric in ("latency_ms", SPEEDUP)
            if m.gated and notable:
                print(f"  {m.describe()}")
        for o in outputs:
            print(f"  output drift: {o.message}")
        for w in worse:
            print(f"  lever health: {w.message}")
        if category is compare.Category.REGRESSED:
            failed += 1
            # why: lever health, operators (when both documents carry a profile), phases
            found = diagnose(base_by_id[comp.benchmark], cur_by_id[comp.benchmark],
                             regressed=[m.metric for m in comp.regressions])
            for line in found.lines():
                print(f"  {line}")
        elif category is compare.Category.INCONCLUSIVE and comp.gated and settings.inconclusive == "fail":
            print("  inconclusive fails (--inconclusive fail)")
            failed += 1
    for i in only_base:
        print(f"{short_id(i)}: only in {args.baseline}")
    for i in only_cur:
        print(f"{short_id(i)}: only in {args.current} (no baseline entry)")
    print(", ".join(f"{n} {k}" for k, n in counts.items()))
    return 1 if failed else 0
