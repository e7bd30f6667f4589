"""The layout of an output store: names, the ``features`` array's shape and chunks, and codecs.

A Zarr format 3 group (DESIGN section 6)::

    features            (*batch, feature, y, x) float32, one chunk per output block,
                        crc32c-checked, geometry in attrs["featuremap"]
    y, x                1-D centres of the output pixels in input pixel units (offset + i * jump)
    feature             0..J-1
    layers/<i>/weight   conv weights and biases (a subgroup: xarray reads only root arrays)
    layers/<i>/bias
    _job/done           done-markers, one chunk per block (job bookkeeping, never at the root)

with the job status, provenance and OME-NGFF ``multiscales`` in the root attributes under
:data:`ROOT_KEY` and ``ome``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import zarr.codecs

from featuremap.geometry import StackGeometry, ceil_div

__all__ = [
    "FEATURES",
    "FEATURE_DIMS",
    "JOB_GROUP",
    "MARKERS",
    "ROOT_KEY",
    "OutputLayout",
    "checked_codecs",
    "feature_codecs",
]

#: The features array.
FEATURES = "features"
#: The last three dimension names of ``features``.
FEATURE_DIMS = ("feature", "y", "x")
#: Root (and ``features``) attribute key holding everything featuremap writes.
ROOT_KEY = "featuremap"
#: The subgroup of job bookkeeping (owner, heartbeat, done-markers).
JOB_GROUP = "_job"
#: The done-marker array: one ``uint8`` chunk per output block, ``1`` once the block is on disk.
MARKERS = f"{JOB_GROUP}/done"


def feature_codecs() -> list[Any]:
    """Bytes-to-bytes codecs of ``features``: Blosc LZ4 with byte shuffle, then a crc32c checksum.

    Float features of noisy data barely compress; LZ4 costs about what raw bytes cost to write
    while Zstandard (Zarr's default) nearly doubles the write time for ~1 % more savings.
    """
    return [
        zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
        zarr.codecs.Crc32cCodec(),
    ]


def checked_codecs() -> list[Any]:
    """Default compression plus a checksum, for the small arrays (weights, coordinates)."""
    return [zarr.codecs.ZstdCodec(level=3), zarr.codecs.Crc32cCodec()]


@dataclass(frozen=True)
class OutputLayout:
    """Shape, chunking, names and geometry of the ``features`` array of one job."""

    batch_dims: tuple[str, ...]
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    stack: StackGeometry

    @property
    def dims(self) -> tuple[str, ...]:
        return (*self.batch_dims, *FEATURE_DIMS)

    @property
    def out_chunks(self) -> tuple[int, int]:
        return (self.chunks[-2], self.chunks[-1])

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Blocks per axis, the feature axis left out: ``(*batch_blocks, blocks_y, blocks_x)``."""
        return tuple(
            ceil_div(n, c)
            for i, (n, c) in enumerate(zip(self.shape, self.chunks, strict=True))
            if i != len(self.shape) - 3
        )

    @property
    def blocks_total(self) -> int:
        return math.prod(self.grid_shape)
