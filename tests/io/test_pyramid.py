"""Planning a pyramid (``featuremap.io.pyramid``) and the viewer's chunks
(``featuremap.io.sizing.viewer_chunk``), without a job (levels written by jobs:
``jobs/test_pyramid.py``)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from featuremap.engine.geometry import StackGeometry
from featuremap.errors import InputError
from featuremap.io import OutputLayout
from featuremap.io.placement import Placement, Spacing
from featuremap.io.pyramid import (
    PyramidOptions,
    block_levels,
    parse_pyramid,
    plan_pyramid,
    pool,
)
from featuremap.io.sizing import OutputOptions, viewer_chunk


def _layout(sides: tuple[int, ...], block: tuple[int, ...], features: int = 4) -> OutputLayout:
    ndim = len(sides)
    return OutputLayout(
        batch_dims=(),
        shape=(features, *sides),
        chunks=(1, *block),
        shards=(features, *block),
        stack=StackGeometry((3,) * ndim, (2,) * ndim, (1.0,) * ndim),
        placement=Placement(y=Spacing(0.5, 10.0, "micrometer"), x=Spacing(2.0, -1.0, "micrometer")),
    )


def test_parse_pyramid_forms():
    assert parse_pyramid(None) is None
    assert parse_pyramid(False) is None
    assert parse_pyramid(True) == parse_pyramid("auto") == PyramidOptions()
    assert parse_pyramid(3) == PyramidOptions(3, "mean")
    assert parse_pyramid({"levels": 2, "method": "max"}) == PyramidOptions(2, "max")
    options = PyramidOptions(5, "max")
    assert PyramidOptions.from_dict(options.to_dict()) == options
    with pytest.raises(InputError, match=r"^levels must be auto or an integer >= 1, got -1$"):
        parse_pyramid({"levels": -1})


def test_auto_levels_stop_once_the_widest_side_fits_a_tile():
    # 100 000 x 70 000: 2^9 halvings bring 100 000 under 256
    pyramid = plan_pyramid(PyramidOptions(), _layout((100_000, 70_000), (1024, 1024)))
    assert pyramid is not None
    assert len(pyramid.levels) == 9
    assert pyramid.levels[-1].layout.shape[-2:] == (100_000 >> 9, 70_000 >> 9)
    assert plan_pyramid(PyramidOptions(), _layout((256, 200), (256, 256))) is None
    # a thin strip: never a side of 0 pixels
    strip = plan_pyramid(PyramidOptions(), _layout((3, 5000), (3, 1024)))
    assert strip is not None
    assert len(strip.levels) == 1


def test_block_levels_stop_at_the_smallest_block_part_then_the_tail():
    pyramid = plan_pyramid(PyramidOptions(6), _layout((8192, 8192), (1024, 1024)))
    assert pyramid is not None
    assert pyramid.block_levels == 4  # 1024 / 16 = 64 pixels a side
    block_level, tail_level = pyramid.levels[3].layout, pyramid.levels[4].layout
    assert (block_level.chunks, block_level.shards) == ((1, 64, 64), (4, 64, 64))
    assert (tail_level.chunks, tail_level.shards) == ((1, 256, 256), (4, 256, 256))
    # the pooled geometry: an avg pool of 2^l after the stack; ngff-zarr's placement
    assert tail_level.stack.jump == (64, 64)
    assert tail_level.placement.y == Spacing(0.5 * 32, 10.0 + 0.5 * 31 / 2, "micrometer")
    assert block_levels(3, (300, 1000), (1000, 1000)) == 2  # 300 = 4 x 75
    assert block_levels(3, (2000, 2000), (1000, 1000)) == 3  # one block a side: not aligned
    with pytest.raises(InputError, match=r"output.pyramid needs blocks of an even number"):
        block_levels(2, (301, 300), (1000, 1000))


def test_too_many_levels_are_refused():
    with pytest.raises(
        InputError, match=r"output.pyramid.levels: 9 levels would leave level 9 empty"
    ):
        plan_pyramid(PyramidOptions(9), _layout((300, 1000), (256, 256)))


@pytest.mark.parametrize("method", ["mean", "max"])
@pytest.mark.parametrize("shape", [(3, 7, 9), (2, 5, 6, 11)])
def test_pool_is_the_trimmed_coarsen(method, shape):
    values = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    ndim = len(shape) - 1
    reduce = np.mean if method == "mean" else np.max
    expected = da.coarsen(
        reduce,
        da.from_array(values.astype(np.float64)),
        dict.fromkeys(range(1, ndim + 1), 2),
        trim_excess=True,
    ).compute(scheduler="sync")
    np.testing.assert_allclose(pool(values, ndim, method), expected, rtol=1e-6, atol=1e-6)


def test_viewer_chunks_one_feature_and_a_z_band():
    assert viewer_chunk(OutputOptions(), (1024, 1024), 64) == (1, (1024, 1024))
    # 64 x 64 planes: 8 of them make 2^15 voxels; 26 planes: the first divisor from 8, 13
    assert viewer_chunk(OutputOptions(), (64, 64, 64), 30) == (1, (8, 64, 64))
    assert viewer_chunk(OutputOptions(), (26, 64, 64), 30) == (1, (13, 64, 64))
    # explicit chunks are the chunk; shards: false keeps all features in the block's one chunk
    assert viewer_chunk(OutputOptions(chunks=(16, 64, 64)), (16, 64, 64), 30) == (1, (16, 64, 64))
    assert viewer_chunk(OutputOptions(shards=None), (1024, 1024), 64) == (64, (1024, 1024))
    assert viewer_chunk(OutputOptions(feature_chunks=4), (1024, 1024), 64) == (4, (1024, 1024))
    # blocks under 2^16 pixels a feature keep every feature in one chunk (tiny chunks cost)
    assert viewer_chunk(OutputOptions(), (256, 256), 64) == (1, (256, 256))
    assert viewer_chunk(OutputOptions(), (255, 256), 64) == (64, (255, 256))
    assert viewer_chunk(OutputOptions(), (16, 64, 63), 30) == (30, (16, 64, 63))
