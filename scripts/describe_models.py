"""Parameter counts, weight bytes and FLOPs per token of every workload at every scale, built on
the meta device (no memory, any machine): `python scripts/describe_models.py [--scale paper]`."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmperf_suites.harness import WORKLOAD_MODULES


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", action="append", help="scales to describe (default: all)")
    args = parser.parse_args()
    print("| workload | task | scale | parameters | weight bytes | GFLOP/token | layers | hidden |")
    print("|---|---|---|---|---|---|---|---|")
    for workload, name in WORKLOAD_MODULES.items():
        module = importlib.import_module(name)
        for scale in module.SCALES:
            if args.scale and scale not in args.scale:
                continue
            task = module.TASKS[0]
            f = module.describe(task, scale)
            print(f"| {workload} | {task} | {scale} | {f.parameters:,} ({f.parameters / 1e9:.3f}B) | "
                  f"{f.weight_bytes / 2**30:.2f} GiB | {f.flops_per_token / 1e9:.2f} | {f.layers} | {f.hidden_size} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
