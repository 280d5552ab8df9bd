"""Split benchmarks into N shards for a CI matrix or one worker per GPU.

Deterministic from the node ids alone, so every shard of a matrix agrees on the split without
talking to the others: sort, then deal round-robin (shards differ in size by at most one).
"""

from __future__ import annotations

from collections.abc import Sequence


def select(node_ids: Sequence[str], index: int, count: int) -> list[str]:
    """The ids of shard ``index`` (1-based) of ``count``."""
    if not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count}: need 1 <= I <= N")
    ordered = sorted(set(node_ids))
    return [nid for i, nid in enumerate(ordered) if i % count == index - 1]
