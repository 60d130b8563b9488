"""Shard strings and which subjects a shard takes."""

from __future__ import annotations

import pytest

from pipeline.preprocess.shards import parse_shard, select_shard


def test_parse_shard():
    assert parse_shard("0/4") == (0, 4)
    assert parse_shard("3/4") == (3, 4)
    assert parse_shard(None) is None and parse_shard("") is None
    for bad in ("4/4", "-1/2", "1", "a/b", "1/0"):
        with pytest.raises(ValueError, match=r"preprocess\.shard"):
            parse_shard(bad)


def test_shards_partition_the_subjects():
    subjects = [f"s{i:02d}" for i in range(10)]
    shards = [select_shard(subjects, (i, 3)) for i in range(3)]
    assert shards[0] == ["s00", "s03", "s06", "s09"]
    assert sorted(s for shard in shards for s in shard) == subjects
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert select_shard(subjects, None) == subjects
