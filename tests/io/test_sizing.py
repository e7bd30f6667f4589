"""Output sizing (``featuremap.io.sizing``): when a store is sharded, and how much per shard."""

from __future__ import annotations

import numpy as np

from featuremap.io.sizing import SHARD_FROM_CHUNKS, OutputOptions, shard_factor


def test_automatic_shards_only_for_large_grids():
    options, chunk = OutputOptions(), (256, 256)
    assert shard_factor(options, chunk, 16, (16, 16)) is None  # 256 chunks: one object each
    side = int(np.ceil(np.sqrt(SHARD_FROM_CHUNKS)))
    factor = shard_factor(options, chunk, 16, (side, side))
    assert factor is not None
    assert factor[0] >= 2
    # about 256 MiB per shard (100 MB to 1 GB): 16 features x float32 x (256 * factor)^2
    assert 100e6 <= 16 * 4 * (256 * factor[0]) ** 2 <= 1e9
    assert shard_factor(OutputOptions(shards=None), chunk, 16, (side, side)) is None
