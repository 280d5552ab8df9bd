"""Simulated catch rates of the gate's per-round rule for a speedup drop (docs/gate.md).

Per-round speedups with lognormal noise, judged by ``compare_samples`` at the level of a
whole-suite family (330 comparisons, 3 looks, 99%). A simulation of the rule, not a measurement
of the machine: ``python scripts/gate_power.py``.
"""

from __future__ import annotations

import numpy as np

from pytest_mmperf.judge import compare
from pytest_mmperf.judge.compare import Category, Policy

TRIALS = 200


def main() -> None:
    rng = np.random.default_rng(0)
    # the plain threshold: one job, or a host whose drift is known to be nil (no cross-session allowance)
    policy = Policy(family_size=330, looks=3, cross_session=False)
    print(f"alpha {policy.alpha:.2g}; regressed in {TRIALS} trials")
    for cv in (0.03, 0.05):
        for n in (12, 24):
            rates = []
            for drop in (0.0, 0.10, 0.20):
                hits = 0
                for _ in range(TRIALS):
                    b = 2.0 * np.exp(cv * rng.standard_normal(n))
                    c = 2.0 * (1 - drop) * np.exp(cv * rng.standard_normal(n))
                    m = compare.compare_samples("b", "speedup_vs_eager", b, c, "higher", policy,
                                                kind=compare.IN_RUN)
                    hits += m.category is Category.REGRESSED
                rates.append(f"{hits / TRIALS:.0%}")
            print(f"noise {cv:.0%}, {n} rounds: drop 0% / 10% / 20%: {' / '.join(rates)}")


if __name__ == "__main__":
    main()
