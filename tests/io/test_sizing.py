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


def test_3d_blocks_follow_anisotropic_and_isotropic_chunks():
    """Blocks read whole stored chunks, at least 64 voxels a side, within the byte budget."""
    from featuremap.io.sizing import MAX_BLOCK_BYTES, block_chunks

    anisotropic = block_chunks((16, 256, 256), (1, 1, 1), (400, 2048, 2048), 30, None)
    assert anisotropic[0] % 16 == 0
    assert anisotropic[0] >= 64
    assert 30 * 4 * np.prod(anisotropic) <= MAX_BLOCK_BYTES
    assert block_chunks((64, 64, 64), (1, 1, 1), (512, 512, 512), 10, None) == (64, 64, 64)
    assert block_chunks((64, 64, 64), (2, 2, 2), (20, 300, 300), 10, None) == (20, 64, 64)
    assert block_chunks((16, 256, 256), (1, 1, 1), (40, 80, 80), 4, (8, 32, 32)) == (8, 32, 32)


def test_3d_shards_are_cubes_of_chunks():
    side = int(np.ceil(SHARD_FROM_CHUNKS ** (1 / 3)))
    factor = shard_factor(OutputOptions(), (64, 64, 64), 4, (side, side, side))
    assert factor is not None
    assert len(set(factor)) == 1
    assert factor[0] >= 2
    assert shard_factor(OutputOptions(shards=(128, 64, 64)), (64, 64, 64), 4, (2, 2, 2)) == (
        2,
        1,
        1,
    )


def test_chunks_of_the_wrong_rank_are_one_line():
    import pytest

    from featuremap.errors import InputError
    from featuremap.io.sizing import block_chunks

    with pytest.raises(InputError, match=r"output.chunks \[64, 64\] has 2 sizes .* 3 spatial"):
        block_chunks((16, 64, 64), (1, 1, 1), (40, 80, 80), 4, (64, 64))
