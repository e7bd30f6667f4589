"""Windows assembled from cached decoded chunks equal Zarr's own reads, and shared chunks are
decoded once (counted on a real LocalStore through Zarr's LoggingStore)."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore, LoggingStore

from featuremap.errors import InputError
from featuremap.io.chunk_cache import ChunkCache, read_region


def _random_region(rng: np.random.Generator, shape: tuple[int, ...]) -> list[slice]:
    region = []
    for extent in shape:
        start = int(rng.integers(0, extent + 1))
        region.append(slice(start, int(rng.integers(start, extent + 1))))
    return region


@pytest.mark.parametrize("sharded", [False, True], ids=["chunks", "shards"])
def test_regions_equal_zarr_reads_under_eviction(tmp_path, sharded):
    rng = np.random.default_rng(3)
    for trial in range(12):
        shape = tuple(int(n) for n in rng.integers(1, 30, size=int(rng.integers(2, 5))))
        chunks = tuple(int(rng.integers(1, n + 4)) for n in shape)  # ragged, or past the edge
        extra = {"shards": tuple(2 * c for c in chunks)} if sharded else {}
        array = zarr.create_array(
            str(tmp_path / f"{trial}.zarr"), shape=shape, chunks=chunks, dtype="float32", **extra
        )
        data = rng.standard_normal(shape).astype(np.float32)
        array[...] = data
        chunk_bytes = int(np.prod(chunks)) * 4
        cache = ChunkCache(5 * chunk_bytes)  # room for 5 chunks: windows evict each other
        for _ in range(8):
            region = _random_region(rng, shape)
            got = read_region(array, region, session="job", cache=cache)
            np.testing.assert_array_equal(got, data[tuple(region)])
            assert cache.nbytes <= cache.capacity


def _counted(path) -> tuple[zarr.Array, LoggingStore]:
    store = LoggingStore(LocalStore(str(path), read_only=True))
    return zarr.open_array(store=store, mode="r"), store


def test_neighbouring_windows_decode_shared_chunks_once(tmp_path):
    data = np.arange(32 * 48, dtype=np.float32).reshape(32, 48)
    zarr.create_array(str(tmp_path / "in.zarr"), data=data, chunks=(16, 16))
    array, store = _counted(tmp_path / "in.zarr")
    cache = ChunkCache(2**20)
    gets = store.counter["get"]
    # block (0, 1) with a 3-pixel halo reaches into chunks (0|1, 0|1|2): all six
    first = read_region(array, [slice(0, 19), slice(13, 35)], session="a", cache=cache)
    assert store.counter["get"] - gets == 6
    # block (0, 2) needs chunks (0|1, 1|2): all already decoded
    second = read_region(array, [slice(0, 19), slice(29, 48)], session="a", cache=cache)
    assert store.counter["get"] - gets == 6
    np.testing.assert_array_equal(first, data[0:19, 13:35])
    np.testing.assert_array_equal(second, data[0:19, 29:48])
    # another job (session) never reuses them: the input may have been replaced since
    read_region(array, [slice(0, 19), slice(29, 48)], session="b", cache=cache)
    assert store.counter["get"] - gets == 10


def test_chunks_too_large_to_keep_a_few_are_read_directly(tmp_path):
    data = np.ones((64, 64), dtype=np.float32)
    zarr.create_array(str(tmp_path / "in.zarr"), data=data, chunks=(64, 64))
    array, _ = _counted(tmp_path / "in.zarr")
    cache = ChunkCache(3 * 64 * 64 * 4)  # fewer than 4 chunks fit
    window = read_region(array, [slice(5, 9), slice(0, 64)], session="a", cache=cache)
    np.testing.assert_array_equal(window, data[5:9])
    assert cache.nbytes == 0


def test_an_undecodable_chunk_is_named(tmp_path):
    data = np.ones((32, 48), dtype=np.float32)
    zarr.create_array(str(tmp_path / "in.zarr"), data=data, chunks=(16, 16))
    (tmp_path / "in.zarr" / "c" / "1" / "2").write_bytes(b"garbage")
    array, _ = _counted(tmp_path / "in.zarr")
    cache = ChunkCache(2**20)
    # the window's other chunks read fine; the broken one is named by position and pixels
    with pytest.raises(InputError, match=r"unreadable input chunk \(1, 2\) \[16:32, 32:48\]"):
        read_region(array, [slice(10, 20), slice(20, 40)], session="a", cache=cache)
    assert cache.nbytes == 0  # nothing from the failed read is kept
