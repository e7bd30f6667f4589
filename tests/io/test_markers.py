"""Packed done-markers: one bit per block, written by one writer, counted in milliseconds."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from featuremap.errors import FencedError
from featuremap.io.markers import (
    BLOCKS_PER_CHUNK,
    MarkerWriter,
    block_number,
    chunk_bits,
    create_markers,
    done_numbers,
    marker_chunk_count,
)


def test_block_numbers_are_row_major():
    assert block_number((0, 0, 0), (2, 3, 4)) == 0
    assert block_number((1, 2, 3), (2, 3, 4)) == 23
    assert marker_chunk_count(1) == 1
    assert marker_chunk_count(BLOCKS_PER_CHUNK + 1) == 2


def test_markers_round_trip_and_the_check_runs_before_each_flush(tmp_path):
    total = BLOCKS_PER_CHUNK + 10
    group = zarr.open_group(tmp_path / "m.zarr", mode="w")
    markers = create_markers(group, "done", total)
    checks = []
    writer = MarkerWriter(markers, total, lambda: checks.append(1))
    for number in (0, 5, BLOCKS_PER_CHUNK + 9):
        writer.mark(number)
    writer.flush()
    assert checks == [1]
    assert np.flatnonzero(chunk_bits(markers, 0, total)).tolist() == [0, 5]
    assert np.flatnonzero(chunk_bits(markers, 1, total)).tolist() == [9]
    done = [
        int(first + n) for first, bits in done_numbers(markers, total) for n in np.flatnonzero(bits)
    ]
    assert done == [0, 5, BLOCKS_PER_CHUNK + 9]
    writer.mark(5, done=False)
    writer.flush()
    assert np.flatnonzero(chunk_bits(markers, 0, total)).tolist() == [0]


def test_a_fenced_writer_writes_nothing(tmp_path):
    group = zarr.open_group(tmp_path / "m.zarr", mode="w")
    markers = create_markers(group, "done", 100)

    def fenced():
        raise FencedError("another job owns the store")

    writer = MarkerWriter(markers, 100, fenced)
    writer.mark(3)
    with pytest.raises(FencedError):
        writer.flush()
    assert not chunk_bits(markers, 0, 100).any()
