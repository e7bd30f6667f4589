"""The worker side of a job's output: write one computed block into its chunk or shard, and
its part of each block level of the pyramid (pooled in memory: level 0 is never read back)."""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

import numpy as np
import zarr

from featuremap._typing import Array
from featuremap.engine.cast import cast_to
from featuremap.engine.device import to_host
from featuremap.io._display import FeatureStats
from featuremap.io._guarded_store import zarr_store
from featuremap.io._zarr_private import write_whole_object
from featuremap.io.layout import FEATURES, OutputLayout
from featuremap.io.pyramid import block_level_values

__all__ = ["write_block"]


@functools.lru_cache(maxsize=32)
def _features(store: str, session: str, path: str = FEATURES) -> zarr.Array[Any]:
    """``features`` (or a level's, at ``path``), opened once per worker process and job
    (``session``, its token): a store replaced by another job is never written through the
    metadata of the one it replaced."""
    # in the format the store has (output.format): Zarr v3, or v2 for ngff-0.4
    node = zarr.open_group(
        store=zarr_store(store, read_only=False), mode="r+", use_consolidated=False
    )[path]
    assert isinstance(node, zarr.Array)
    # a block is always written whole: never scan it for "all fill value" first (NaN is the
    # fill value: the scan would cost a pass over the block to find what a block never is)
    return node.with_config({"write_empty_chunks": True})


def write_block(
    store: str,
    layout: OutputLayout,
    block_slices: tuple[slice, ...],
    block: Array,
    *,
    session: str,
) -> FeatureStats:
    """Write a computed block (compute order ``(*batch, feature, *spatial)``, float32) into the
    stored ``features``: moved to the storage order (features after the non-``z`` batch axes),
    converted to the stored dtype. A block is a whole chunk or shard, so concurrent writes never
    share an object and a retried task rewrites the same bytes.

    Returns the per-feature statistics of the values stored, gathered here from the block in
    memory for the store's display metadata (:mod:`featuremap.io._display`).
    """
    computed = to_host(block)
    with np.errstate(over="ignore"):  # counted below, never silent
        stored = cast_to(computed, layout.dtype)  # float16: the compiled cast when there
    values = _write(_features(store, session), layout, block_slices, stored)
    if layout.pyramid is not None:
        # the levels pool the block as stored, so they are the block means of the stored level 0
        for level, slices, pooled in block_level_values(
            layout.pyramid, layout.ndim, stored, block_slices
        ):
            array = _features(store, session, level.path)
            _write(array, level.layout, slices, cast_to(pooled, layout.dtype))
    stats = FeatureStats.of(values, layout.feature_axis)
    if stats.count.sum() < values.size:  # some value is not finite: did the conversion make it?
        overflow = _overflow(computed, stored, layout.ndim)
        if overflow is not None:
            stats = replace(stats, overflow=overflow.astype(np.float64))
    return stats


def _overflow(computed: np.ndarray, stored: np.ndarray, ndim: int) -> np.ndarray | None:
    """Per feature (compute order: the axis before the ``ndim`` spatial ones), the values
    finite as computed that the stored dtype (float16) made infinite; ``None`` when the
    conversion cannot overflow. Called only for a block with a value that is not finite (its
    statistics tell, at no extra pass): the usual block pays nothing."""
    if stored is computed or stored.dtype.itemsize >= computed.dtype.itemsize:
        return None
    overflowed = np.isinf(stored) & np.isfinite(computed)
    axes = tuple(axis for axis in range(overflowed.ndim) if axis != overflowed.ndim - ndim - 1)
    counts: np.ndarray = overflowed.sum(axis=axes)
    return counts


def _write(
    array: zarr.Array[Any], layout: OutputLayout, slices: tuple[slice, ...], values: np.ndarray
) -> np.ndarray:
    """Write ``values`` (compute order) into ``array`` in its storage order; returns them so."""
    moved = np.moveaxis(values, -layout.ndim - 1, layout.feature_axis)
    selection = layout.storage_slices(slices)
    if not write_whole_object(array, selection, moved):  # Zarr's own write for anything else
        array[selection] = moved
    return moved
