"""Measured detection power and false-alarm rate of the regression gate on this machine.

Not a timed test: a script that reports numbers (docs/gate.md).

Each *session* is a fresh Python process (torch imported anew, as a CI run would) that measures
a real torch workload (1 thread, warm-up 1, ``--rounds`` rounds, the sampler's loop):

* absolute path: a loop of ``MATMULS`` 128x128 matmuls, with ``s`` more matmuls injected
  (slowdown ``s`` in ``ABS_LEVELS``); judged on ``latency_ms`` (timing, drift allowance applies);
* in-run path: the same loop as "eager" interleaved ABBA with an "optimized" loop of half the
  matmuls, slowdown ``s`` injected into the optimized arm (``RATIO_LEVELS``); judged on the
  per-round speedups (in-run ratio, plain threshold).

Session 0 is the baseline; sessions 1..N are compared with it through
:func:`pytest_mmperf.judge.compare.compare_samples` with the gate's defaults (confidence 0.99, threshold
5%, drift allowance 20%) and a Bonferroni family of ``--family`` comparisons (a suite of about 20
benchmarks x 3 gated timing metrics). Sessions are spaced ``--gap`` seconds apart so that the
machine's drift between sessions is part of what is measured.

    python scripts/detection_power.py --sessions 24 --gap 10     # about 8 minutes
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MATMULS = 200
ABS_LEVELS = (0.0, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.40)
RATIO_LEVELS = (0.0, 0.02, 0.03, 0.05, 0.07, 0.10, 0.15)


def session(rounds: int) -> dict[str, object]:
    """One session's samples, as JSON-able data (runs in a child process).

    The loop is the sampler's (warm-up apart, garbage collector off in the timed region, ABBA
    order for two arms) without its per-round ``gc.collect()``, which costs 40-80 ms here and
    would make 20+ sessions too slow for a script; torch loops make almost no garbage.
    """
    import gc

    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    a = torch.randn(128, 128)
    w = torch.randn(128, 128) / 12

    def loop(n: int) -> torch.Tensor:
        x = a
        for _ in range(n):
            x = torch.tanh(x @ w)
        return x

    def timed(fn: object) -> float:
        gc.disable()
        try:
            t0 = time.perf_counter_ns()
            fn()  # type: ignore[operator]
            return (time.perf_counter_ns() - t0) / 1e6
        finally:
            gc.enable()

    def measure(*arms: object) -> list[list[float]]:
        for arm in arms:
            arm()  # type: ignore[operator]  # warm-up
        out: list[list[float]] = [[] for _ in arms]
        for r in range(rounds):
            order = range(len(arms)) if r % 2 == 0 else reversed(range(len(arms)))
            for i in order:
                out[i].append(timed(arms[i]))
        return out

    out: dict[str, dict[str, list[float]]] = {"abs": {}, "ratio": {}}
    for s in ABS_LEVELS:
        n = round(MATMULS * (1 + s))
        (lat,) = measure(lambda n=n: loop(n))
        out["abs"][str(s)] = lat
    for s in RATIO_LEVELS:
        n_opt = round(MATMULS / 2 * (1 + s))
        eager, opt = measure(lambda: loop(MATMULS), lambda n=n_opt: loop(n))
        out["ratio"][str(s)] = [e / o for e, o in zip(eager, opt)]
    return out  # type: ignore[return-value]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=24, help="compared sessions (plus 1 baseline)")
    ap.add_argument("--gap", type=float, default=8.0, help="seconds between sessions")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--family", type=int, default=60, help="Bonferroni family size")
    ap.add_argument("--json", help="also write the raw samples and rates here")
    ap.add_argument("--from-json", help="analyse the sessions saved by an earlier --json run")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(session(args.rounds)))
        return 0

    from pytest_mmperf.judge import compare

    runs = []
    started = time.monotonic()
    if args.from_json:
        runs = json.loads(Path(args.from_json).read_text())["runs"]
        args.sessions = len(runs) - 1
    for i in range(0 if args.from_json else args.sessions + 1):
        if i:
            time.sleep(args.gap)
        proc = subprocess.run([sys.executable, __file__, "--child", "--rounds", str(args.rounds)],
                              capture_output=True, text=True, check=True)
        runs.append(json.loads(proc.stdout))
        print(f"session {i}/{args.sessions} done at {time.monotonic() - started:.0f} s", file=sys.stderr)
    base, rest = runs[0], runs[1:]
    policy = compare.Policy(family_size=args.family)
    naive_alarms = 0
    report: dict[str, dict[str, dict[str, float]]] = {"abs": {}, "ratio": {}}
    for path, levels, direction, kind, metric in (
        ("abs", ABS_LEVELS, "lower", compare.TIMING, "latency_ms"),
        ("ratio", RATIO_LEVELS, "higher", compare.IN_RUN, "speedup_vs_eager"),
    ):
        for s in levels:
            verdicts = [
                compare.compare_samples("bench", metric, base[path]["0.0"], r[path][str(s)],
                                        direction, policy, kind=kind)
                for r in rest
            ]
            n = len(verdicts)
            caught = sum(v.category is compare.Category.REGRESSED for v in verdicts)
            inconclusive = sum(v.category is compare.Category.INCONCLUSIVE for v in verdicts)
            changes = sorted(v.change for v in verdicts)
            report[path][str(s)] = {
                "regressed_rate": caught / n,
                "inconclusive_rate": inconclusive / n,
                "median_change": changes[n // 2],
                "min_change": changes[0],
                "max_change": changes[-1],
            }
            if path == "abs" and s == 0.0:
                naive_alarms = sum(c > 0.05 for c in changes)  # pytest-benchmark's median:5%
    print(f"\n{args.sessions} sessions vs 1 baseline session, {args.rounds} rounds each, "
          f"Bonferroni family {args.family} (alpha {policy.alpha:.2g}), "
          f"{time.monotonic() - started:.0f} s in all")
    for path, label in (("abs", "absolute latency_ms (threshold max(5%, 20% drift allowance))"),
                        ("ratio", "in-run speedup_vs_eager (threshold 5%)")):
        print(f"\n{label}")
        print(f"  {'injected':>8}  {'caught':>7}  {'inconcl.':>8}  {'change of the metric: median [min..max]'}")
        smallest: float | None = None
        levels_seen = list(report[path].items())
        for level, r in levels_seen:
            print(f"  {float(level):>8.0%}  {r['regressed_rate']:>7.0%}  {r['inconclusive_rate']:>8.0%}  "
                  f"{r['median_change']:+.1%} [{r['min_change']:+.1%}..{r['max_change']:+.1%}]")
        for i, (level, _) in enumerate(levels_seen):
            if float(level) > 0 and all(r["regressed_rate"] >= 0.95 for _, r in levels_seen[i:]):
                smallest = float(level)
                break
        fa = report[path]["0.0"]["regressed_rate"]
        print(f"  false alarms on unchanged reruns: {fa:.0%} of {args.sessions}; smallest slowdown "
              f"caught in >= 95%: {'none tested' if smallest is None else f'{smallest:.0%}'}")
    print(f"\nfor reference, a bare 'median +5%' check (pytest-benchmark's compare-fail) on the "
          f"unchanged absolute reruns: {naive_alarms}/{args.sessions} false alarms")
    if args.json:
        Path(args.json).write_text(json.dumps({"report": report, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
