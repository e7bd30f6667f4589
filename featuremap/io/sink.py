"""The worker side of a job: write one computed block into its chunk, then its done-marker."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import zarr

from featuremap._device import array_device, to_host
from featuremap.io.output import Block, OutputStore

__all__ = ["write_block"]


@functools.lru_cache(maxsize=4)
def _output_arrays(store: str, job_id: str) -> tuple[zarr.Array[Any], zarr.Array[Any]]:
    """``features`` and the done-markers, opened once per worker process and job."""
    output = OutputStore.open(store, "r+")
    return output.features, output.markers


def write_block(
    block_index: Block,
    block_slices: tuple[slice, ...],
    block: Any,
    store: str,
    job_id: str,
    feature_axis: int,
) -> str:
    """Sink of a block task: write the block into its chunk, then its done-marker.

    Runs on a worker. The block comes in compute order ``(*batch, feature, y, x)`` and is stored
    with its features at ``feature_axis`` (NGFF order, see :class:`~featuremap.io.OutputLayout`).
    Blocks are whole chunks, so concurrent writes never share a chunk and a retried task rewrites
    the same bytes. Returns where the block was computed (``"cpu"`` or ``"gpu"``), so only a word
    travels back.
    """
    features, markers = _output_arrays(store, job_id)
    device = array_device(block)
    *batch, feature, y, x = block_slices
    stored = (*batch[:feature_axis], feature, *batch[feature_axis:], y, x)
    values = np.moveaxis(np.asarray(to_host(block), dtype=np.float32), -3, feature_axis)
    features[stored] = values
    markers[block_index] = 1  # after the data: a marker always means the block is on disk
    return device
