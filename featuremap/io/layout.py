"""The layout of an output store: names, the ``features`` array's shape and chunks, and codecs.

A Zarr format 3 group (DESIGN section 6)::

    features            (*batch, feature, [z,] y, x) float32, one chunk per output block,
                        crc32c-checked, geometry in attrs["featuremap"]
    y, x                1-D centres of the output pixels in the input's physical units,
                        translation + scale * (offset + i * jump), with ``units``
    feature             readable labels of the features ("gabor θ=45° f=0.2 σ=2.81 even")
    <batch dims>        the batch axes' own coordinates (time stamps, z positions), when known
    spatial_ref         the CRS (CF grid mapping), when the input has one
    layers/<i>/weight   conv weights and biases (a subgroup: xarray reads only root arrays)
    layers/<i>/bias
    _job/done           done-markers, one chunk per block (job bookkeeping, never at the root)

with the job status, provenance and OME-NGFF ``multiscales`` in the root attributes under
:data:`ROOT_KEY` and ``ome``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import zarr.codecs

from featuremap.geometry import StackGeometry, ceil_div
from featuremap.io.placement import Placement

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
    """Shape, chunking, names and placement of the ``features`` array of one job.

    Blocks are computed in ``(*batch, feature, y, x)`` order (:attr:`shape`, :attr:`chunks`,
    the block grid), batch axes other than ``z`` first. The array is stored in NGFF's axis order:
    those batch axes, the features (in the channel place), the space batch axes (``z``), then
    ``y, x`` -- ``(t, feature, z, y, x)`` for a ``(t, c, z, y, x)`` input, and simply
    ``(*batch, feature, y, x)`` without a ``z``.

    ``placement`` is the *output's*: each output pixel's centre in the input's physical units
    (:meth:`featuremap.io.placement.Spacing.compose`), the batch axes' coordinates and the CRS.
    """

    batch_dims: tuple[str, ...]
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    stack: StackGeometry
    batch_kinds: tuple[str, ...] = ()
    placement: Placement = field(default_factory=Placement)
    feature_labels: tuple[str, ...] = ()

    @property
    def feature_axis(self) -> int:
        """Where the features are stored: after the batch axes that are not ``z``."""
        return (
            sum(1 for kind in self.batch_kinds if kind != "z")
            if self.batch_kinds
            else len(self.batch_dims)
        )

    def _to_storage(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        """Per-axis ``values`` (compute order) in storage order."""
        *batch, feature, y, x = values
        at = self.feature_axis
        return (*batch[:at], feature, *batch[at:], y, x)

    @property
    def dims(self) -> tuple[str, ...]:
        """The stored array's dimension names."""
        return self._to_storage((*self.batch_dims, *FEATURE_DIMS))

    @property
    def storage_shape(self) -> tuple[int, ...]:
        return self._to_storage(self.shape)

    @property
    def storage_chunks(self) -> tuple[int, ...]:
        return self._to_storage(self.chunks)

    def storage_slices(self, block_slices: tuple[slice, ...]) -> tuple[slice, ...]:
        """Where a computed block (compute-order slices) lies in the stored array."""
        return self._to_storage(block_slices)

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
