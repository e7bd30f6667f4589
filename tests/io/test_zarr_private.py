"""Zarr's private API that :mod:`featuremap.io._zarr_private` relies on is still there and still
behaves: if this fails after a Zarr upgrade, the chunk cache's concurrent reads need a new way."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ZstdCodec
from zarr.storage import MemoryStore

from featuremap.io._zarr_private import read_selections, write_whole_object


def test_zarr_still_has_sync_and_async_array(tmp_path):
    from zarr.codecs import ShardingCodec
    from zarr.core.sync import sync  # noqa: F401 -- the import itself is the check
    from zarr.storage import LocalStore

    array = zarr.create_array(tmp_path / "a.zarr", shape=(4,), chunks=(2,), dtype="i4")
    assert hasattr(array, "async_array")
    assert hasattr(array.async_array, "getitem")
    assert isinstance(array.store_path.store, LocalStore)
    assert hasattr(ShardingCodec, "_get_chunk_spec")
    for codec in (BytesCodec, BloscCodec, ZstdCodec, Crc32cCodec):
        assert hasattr(codec, "_encode_sync"), codec


def test_read_selections_reads_each_selection_and_reports_failures_in_place(tmp_path):
    data = np.arange(30, dtype=np.float32).reshape(5, 6)
    array = zarr.create_array(tmp_path / "a.zarr", shape=data.shape, chunks=(2, 4), dtype="f4")
    array[...] = data
    selections = [(slice(0, 2), slice(0, 4)), (slice(4, 5), slice(4, 6))]
    first, last = read_selections(array, selections)
    np.testing.assert_array_equal(first, data[:2, :4])
    np.testing.assert_array_equal(last, data[4:, 4:])
    (tmp_path / "a.zarr" / "c" / "0" / "0").write_bytes(b"garbage")
    damaged, intact = read_selections(array, selections)
    assert isinstance(damaged, Exception)
    np.testing.assert_array_equal(intact, data[4:, 4:])


def test_dimension_names_of_both_formats(tmp_path):
    from featuremap.io.input import dimension_names

    v3 = zarr.create_array(
        tmp_path / "v3.zarr", shape=(2, 3), dtype="u1", dimension_names=("y", "x")
    )
    v2 = zarr.create_array(tmp_path / "v2.zarr", shape=(2, 3), dtype="u1", zarr_format=2)
    v2.attrs["_ARRAY_DIMENSIONS"] = ["y", "x"]
    assert dimension_names(v3) == ("y", "x")
    assert dimension_names(v2) == ("y", "x")


def _sharded(path, shape, shards, chunks, dtype="float32", compressors=None):
    return zarr.create_array(
        path,
        shape=shape,
        shards=shards,
        chunks=chunks,
        dtype=dtype,
        serializer=BytesCodec(endian="little"),
        compressors=list(compressors or [Crc32cCodec()]),
        fill_value=np.nan if dtype.startswith("float") else 0,
        config={"write_empty_chunks": True},
    )


@pytest.mark.parametrize("compressed", [False, "lz4", "zstd"], ids=["plain", "lz4", "zstd"])
@pytest.mark.parametrize(
    ("shape", "shards", "chunks", "dtype"),
    [
        ((5, 64, 96), (5, 32, 48), (1, 32, 48), "float32"),  # one feature per inner chunk
        ((2, 3, 40, 40), (1, 3, 40, 40), (1, 3, 8, 20), "float16"),  # batch axis, 2-D chunks
        ((4, 12, 30, 30), (4, 6, 15, 10), (2, 3, 5, 5), "float32"),  # volume, odd sizes
    ],
)
def test_a_whole_shard_written_in_one_buffer_reads_back_through_zarr(
    tmp_path, shape, shards, chunks, dtype, compressed
):
    rng = np.random.default_rng(sum(shape))
    data = rng.standard_normal(shape).astype(dtype)
    data[0] = 0  # compressible chunks, and (compressed) an all-zero one
    compressor = {"lz4": BloscCodec(cname="lz4", shuffle="shuffle"), "zstd": ZstdCodec(level=3)}
    codecs = [compressor[compressed], Crc32cCodec()] if compressed else None
    ours = _sharded(tmp_path / "ours.zarr", shape, shards, chunks, dtype, codecs)
    theirs = _sharded(tmp_path / "theirs.zarr", shape, shards, chunks, dtype, codecs)
    for origin in np.ndindex(*(n // s for n, s in zip(shape, shards, strict=True))):
        selection = tuple(slice(o * s, (o + 1) * s) for o, s in zip(origin, shards, strict=True))
        assert write_whole_object(ours, selection, data[selection])
        theirs[selection] = data[selection]
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "ours.zarr")[...], data)
    # one inner chunk read alone (what a viewer does): through the index
    inner = tuple(slice(0, c) for c in chunks)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "ours.zarr")[inner], data[inner])
    for shard in (tmp_path / "theirs.zarr" / "c").rglob("*"):
        if shard.is_file():  # the same size as Zarr's own shard: nothing more, nothing less
            mine = tmp_path / "ours.zarr" / shard.relative_to(tmp_path / "theirs.zarr")
            assert mine.stat().st_size == shard.stat().st_size


def test_a_whole_shard_in_a_store_that_is_not_local_goes_through_zarr():
    data = np.random.default_rng(4).standard_normal((2, 16, 16)).astype(np.float32)
    store = MemoryStore()
    array = _sharded(store, data.shape, (2, 16, 16), (1, 8, 8), "float32", [ZstdCodec()])
    assert write_whole_object(array, (slice(0, 2), slice(0, 16), slice(0, 16)), data)
    np.testing.assert_array_equal(zarr.open_array(store, mode="r")[...], data)


def test_a_whole_chunk_of_an_unsharded_array_is_the_bytes_zarr_writes(tmp_path):
    data = np.random.default_rng(5).standard_normal((3, 20, 30)).astype(np.float32)
    arrays = {
        name: zarr.create_array(
            tmp_path / f"{name}.zarr",
            shape=data.shape,
            chunks=(3, 10, 15),
            dtype="float32",
            compressors=[Crc32cCodec()],
            config={"write_empty_chunks": True},
        )
        for name in ("ours", "theirs")
    }
    for y in range(2):
        for x in range(2):
            selection = (slice(0, 3), slice(10 * y, 10 * y + 10), slice(15 * x, 15 * x + 15))
            assert write_whole_object(arrays["ours"], selection, data[selection])
            arrays["theirs"][selection] = data[selection]
            key = f"c/0/{y}/{x}"
            mine, zarrs = (tmp_path / f"{n}.zarr" / key for n in ("ours", "theirs"))
            assert mine.read_bytes() == zarrs.read_bytes()
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "ours.zarr")[...], data)


def test_a_damaged_shard_written_so_is_refused(tmp_path):
    array = _sharded(tmp_path / "a.zarr", (2, 16, 16), (2, 16, 16), (1, 16, 16))
    assert write_whole_object(
        array, (slice(0, 2), slice(0, 16), slice(0, 16)), np.ones((2, 16, 16))
    )
    shard = tmp_path / "a.zarr" / "c" / "0" / "0" / "0"
    damaged = bytearray(shard.read_bytes())
    damaged[1030] ^= 0x01  # inside the second inner chunk
    shard.write_bytes(bytes(damaged))
    reopened = zarr.open_array(tmp_path / "a.zarr")
    np.testing.assert_array_equal(reopened[0], np.ones((16, 16)))
    with pytest.raises(ValueError, match="checksum"):
        reopened[1]


def test_anything_but_one_whole_object_of_featuremaps_layouts_is_left_to_zarr(tmp_path):
    values = np.zeros((2, 16, 16), dtype=np.float32)
    whole = (slice(0, 2), slice(0, 16), slice(0, 16))
    sharded = _sharded(tmp_path / "s.zarr", (2, 20, 16), (2, 16, 16), (1, 16, 16))
    assert not write_whole_object(sharded, (slice(0, 2), slice(0, 8), slice(0, 16)), values[:, :8])
    assert not write_whole_object(
        sharded, (slice(0, 2), slice(16, 20), slice(0, 16)), values[:, :4]
    )
    unsharded_compressed = zarr.create_array(
        tmp_path / "p.zarr", shape=(2, 16, 16), chunks=(2, 16, 16), dtype="f4"
    )
    v2 = zarr.create_array(
        tmp_path / "v2.zarr", shape=(2, 16, 16), chunks=(2, 16, 16), dtype="f4", zarr_format=2
    )
    for array in (unsharded_compressed, v2):
        assert not write_whole_object(array, whole, values)
    assert not list((tmp_path / "s.zarr").rglob("c/*"))  # nothing written
