"""Sharding (``--mmperf-shard I/N``): every id in exactly one shard, shard sizes within one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_mmperf.sharding import select

ids = st.lists(st.text(min_size=1, max_size=20), max_size=60)


@given(ids, st.integers(min_value=1, max_value=12))
def test_shards_partition_the_ids(node_ids, count):
    shards = [select(node_ids, i, count) for i in range(1, count + 1)]
    flat = [nid for shard in shards for nid in shard]
    assert sorted(flat) == sorted(set(node_ids))  # every id once, none twice
    assert len(flat) == len(set(flat))


@given(ids, st.integers(min_value=1, max_value=12))
def test_shards_are_balanced_within_one(node_ids, count):
    sizes = [len(select(node_ids, i, count)) for i in range(1, count + 1)]
    assert max(sizes) - min(sizes) <= 1


@given(ids, st.integers(min_value=1, max_value=12), st.randoms(use_true_random=False))
def test_split_ignores_collection_order(node_ids, count, rnd):
    shuffled = list(node_ids)
    rnd.shuffle(shuffled)
    for i in range(1, count + 1):
        assert select(shuffled, i, count) == select(node_ids, i, count)


@pytest.mark.parametrize(("index", "count"), [(0, 2), (3, 2), (1, 0)])
def test_bad_shard_is_refused(index, count):
    with pytest.raises(ValueError, match="need 1 <= I <= N"):
        select(["a"], index, count)
