"""Split benchmarks into N shards for a CI matrix or one worker per GPU.

Deterministic from the node ids alone, so every shard of a matrix agrees on the split without
talking to the others: sort, then deal round-robin (shards differ in size by at most one).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# A file of node ids, one a line: only those benchmarks run (the plugin deselects the others). Set
# by ``mmperf ab`` and ``mmperf bisect`` for the profiled run of the benchmarks that failed.
ONLY_IDS_ENV = "MMPERF_ONLY_IDS"


def only_ids(path: str) -> set[str]:
    """The node ids listed in ``path`` (blank lines ignored); OSError when it cannot be read."""
    return {line.strip() for line in Path(path).read_text().splitlines() if line.strip()}


def select(node_ids: Sequence[str], index: int, count: int) -> list[str]:
    """The ids of shard ``index`` (1-based) of ``count``."""
    if not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count}: need 1 <= I <= N")
    ordered = sorted(set(node_ids))
    return [nid for i, nid in enumerate(ordered) if i % count == index - 1]
