"""Chunks read straight from their files (``featuremap.io.chunk_files``) equal Zarr's own reads,
for every layout read there, and every other layout is left to Zarr; a damaged chunk is an
error in its place, named by the window read through the chunk cache."""

from __future__ import annotations

import itertools

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import (
    BloscCodec,
    BytesCodec,
    Crc32cCodec,
    GzipCodec,
    TransposeCodec,
    ZstdCodec,
)
from zarr.storage import LocalStore, LoggingStore, MemoryStore

from featuremap.errors import InputError
from featuremap.io.chunk_cache import ChunkCache, read_region
from featuremap.io.chunk_files import read_chunk_files


def _positions(array: zarr.Array) -> list[tuple[int, ...]]:
    grid = [range(-(-n // c)) for n, c in zip(array.shape, array.chunks, strict=True)]
    return list(itertools.product(*grid))


def _zarr_chunk(array: zarr.Array, position: tuple[int, ...]) -> np.ndarray:
    return array[
        tuple(
            slice(p * c, min((p + 1) * c, n))
            for p, c, n in zip(position, array.chunks, array.shape, strict=True)
        )
    ]


V3_CHAINS = {
    "zstd": [ZstdCodec(level=3)],
    "blosc": [BloscCodec(cname="lz4", shuffle="shuffle", typesize=4)],
    "gzip+crc32c": [GzipCodec(level=1), Crc32cCodec()],
    "crc32c": [Crc32cCodec()],
    "none": [],
}


@pytest.mark.parametrize("chain", list(V3_CHAINS))
@pytest.mark.parametrize("dtype", ["float32", "uint16", "int8", "float64"])
def test_v3_chunks_equal_zarr_reads(tmp_path, chain, dtype):
    rng = np.random.default_rng(1)
    shape, chunks = (2, 23, 37), (1, 10, 16)  # ragged edge chunks on every axis
    data = (rng.standard_normal(shape) * 50).astype(dtype)
    array = zarr.create_array(
        str(tmp_path / "a.zarr"),
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        serializer=BytesCodec(),
        compressors=V3_CHAINS[chain],
        fill_value=7,
    )
    array[:, :20, :] = data[:, :20, :]  # the last row of chunks is never written
    positions = _positions(array)
    read = read_chunk_files(array, positions)
    assert read is not None
    for position, chunk in zip(positions, read, strict=True):
        assert not isinstance(chunk, Exception), chunk
        np.testing.assert_array_equal(chunk, _zarr_chunk(array, position))
    assert (read[-1] == 7).all()  # a chunk without a file holds the fill value


@pytest.mark.parametrize(
    "compressor", [None, numcodecs.Zstd(level=1), numcodecs.Blosc(cname="lz4")], ids=str
)
@pytest.mark.parametrize("separator", [".", "/"])
def test_v2_chunks_equal_zarr_reads(tmp_path, compressor, separator):
    rng = np.random.default_rng(2)
    array = zarr.create_array(
        str(tmp_path / "a.zarr"),
        shape=(19, 26),
        chunks=(8, 8),
        dtype="float32",
        zarr_format=2,
        compressors=compressor,
        chunk_key_encoding={"name": "v2", "separator": separator},
        fill_value=None,
    )
    array[:16, :] = rng.standard_normal((16, 26)).astype(np.float32)
    positions = _positions(array)
    read = read_chunk_files(array, positions)
    assert read is not None
    for position, chunk in zip(positions, read, strict=True):
        np.testing.assert_array_equal(chunk, _zarr_chunk(array, position))


def test_other_layouts_are_left_to_zarr(tmp_path):
    def make(name, **options):
        return zarr.create_array(
            str(tmp_path / f"{name}.zarr"), shape=(8, 8), chunks=(4, 4), **options
        )

    left = {
        "shards": make("shards", dtype="float32", shards=(8, 8)),
        "transpose": make(
            "transpose",
            dtype="float32",
            filters=[TransposeCodec(order=(1, 0))],
        ),
        "big-endian": make("big", dtype="float32", serializer=BytesCodec(endian="big")),
        "v2 F order": make("f", dtype="float32", zarr_format=2, order="F"),
        "v2 filters": make(
            "filters", dtype="float32", zarr_format=2, filters=[numcodecs.Delta(dtype="f4")]
        ),
        "strings": make("strings", dtype=str),
        "memory": zarr.create_array(MemoryStore(), shape=(8, 8), chunks=(4, 4), dtype="f4"),
        "wrapped store": zarr.open_array(
            LoggingStore(LocalStore(str(tmp_path / "shards.zarr"))), mode="r"
        ),
    }
    for name, array in left.items():
        assert read_chunk_files(array, [(0, 0)]) is None, name


def test_a_damaged_chunk_is_an_error_in_its_place(tmp_path):
    array = zarr.create_array(
        str(tmp_path / "a.zarr"),
        data=np.ones((16, 16), np.float32),
        chunks=(8, 8),
        compressors=[ZstdCodec(), Crc32cCodec()],
    )
    chunk = tmp_path / "a.zarr" / "c" / "1" / "0"
    stored = bytearray(chunk.read_bytes())
    stored[0] ^= 0xFF  # the checksum no longer matches
    chunk.write_bytes(bytes(stored))
    (tmp_path / "a.zarr" / "c" / "1" / "1").write_bytes(b"garbage")
    read = read_chunk_files(array, [(0, 0), (1, 0), (1, 1)])
    assert read is not None
    np.testing.assert_array_equal(read[0], np.ones((8, 8), np.float32))
    assert isinstance(read[1], ValueError)
    assert "crc32c" in str(read[1])
    assert isinstance(read[2], Exception)
    with pytest.raises(InputError, match=r"unreadable input chunk \(1, 0\) \[8:16, 0:8\]"):
        read_region(array, [slice(4, 12), slice(0, 8)], session="a", cache=ChunkCache(2**20))
