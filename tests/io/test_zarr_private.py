"""Zarr's private API that :mod:`featuremap.io._zarr_private` relies on is still there and still
behaves: if this fails after a Zarr upgrade, the chunk cache's concurrent reads need a new way."""

from __future__ import annotations

import numpy as np
import zarr

from featuremap.io._zarr_private import read_selections


def test_zarr_still_has_sync_and_async_array(tmp_path):
    from zarr.core.sync import sync  # noqa: F401 -- the import itself is the check

    array = zarr.create_array(tmp_path / "a.zarr", shape=(4,), chunks=(2,), dtype="i4")
    assert hasattr(array, "async_array")
    assert hasattr(array.async_array, "getitem")


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
