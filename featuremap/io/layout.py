"""The layout of an output store: names, the ``features`` array's shape and chunks, and codecs.

A Zarr format 3 group (format 2 for ``output.format: ngff-0.4``: :mod:`.formats`; DESIGN
section 6)::

    features            (*batch, c, [z,] y, x) float32, one shard per output block of one
                        chunk per feature (and z band; one chunk per block in Zarr v2),
                        crc32c-checked (``output.checksum``), geometry in
                        attrs["featuremap"]
    y, x                1-D centres of the output pixels in the input's physical units,
                        translation + scale * (offset + i * jump), with ``units``
    c                   readable labels of the features ("gabor θ=45° f=0.2 σ=2.81 even")
    <batch dims>        the batch axes' own coordinates (time stamps, z positions), when known
    spatial_ref         the CRS (CF grid mapping), when the input has one
    levels/<l>/features multiscale level l (``output.pyramid``) with its own coordinates
    layers/<i>/weight   conv weights and biases (a subgroup: xarray reads only root arrays)
    layers/<i>/bias
    _job/done           done-markers, one chunk per block (job bookkeeping, never at the root)
    _job/display        the display statistics gathered so far (group attributes)

with the job status, provenance and OME-NGFF ``multiscales`` in the root attributes under
:data:`ROOT_KEY` and ``ome``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from featuremap._vocabulary import OutputCodec, OutputDtype
from featuremap.engine.geometry import StackGeometry, axis_names, ceil_div
from featuremap.io.formats import DEFAULT_FORMAT, StoreFormat
from featuremap.io.placement import Placement

if TYPE_CHECKING:
    from featuremap.io.codec_choice import CodecDecision
    from featuremap.io.pyramid import Pyramid

__all__ = [
    "CODEC_LEVELS",
    "DISPLAY",
    "FEATURES",
    "FEATURE_AXIS",
    "FEATURE_DIMS",
    "JOB_GROUP",
    "LEGACY_FEATURE_AXIS",
    "MARKERS",
    "ROOT_KEY",
    "OutputLayout",
    "feature_axis_of",
    "feature_codecs",
    "feature_dims",
    "output_batch_names",
]

#: The features array.
FEATURES = "features"
#: The name of the feature axis, in a store and from ``featuremap.apply``. NGFF calls the axis
#: a viewer splits into layers the ``channel`` axis, and bioio and ome-zarr-py find it by the
#: name ``c`` (bioio refuses names longer than one letter); NGFF 0.5 requires the array's
#: ``dimension_names`` to equal the NGFF axis names, so xarray sees ``c`` too, its labels the
#: feature labels.
FEATURE_AXIS = "c"
#: The feature axis's name in stores of featuremap 0.1 (read, never written).
LEGACY_FEATURE_AXIS = "feature"
#: The last three dimension names of ``features`` (of a 2-D stack; :func:`feature_dims`).
FEATURE_DIMS = (FEATURE_AXIS, "y", "x")


def feature_dims(ndim: int) -> tuple[str, ...]:
    """The feature axis and the spatial axes of a rank-``ndim`` stack's ``features``."""
    return (FEATURE_AXIS, *axis_names(ndim))


def output_batch_names(names: Sequence[str], kinds: Sequence[str], ndim: int) -> tuple[str, ...]:
    """The output's batch axis names: NGFF's letters where the axes fit NGFF, else ``names``.

    NGFF allows at most one time axis and 3 space axes; a fitting output names its batch axis
    that is not ``z`` (time, an ML batch, ...) ``t`` -- NGFF's time axis, a slider in viewers --
    and a batch ``z`` axis ``z``. bioio reads only one-letter axis names, and NGFF requires the
    array's dimension names to be its axis names, so these are the names xarray sees too. An
    output with several non-``z`` batch axes has no NGFF form and keeps the input's names.
    """
    kinds = tuple(kinds) or ("n",) * len(names)
    others = sum(1 for kind in kinds if kind != "z")
    if others > 1 or len(kinds) - others + ndim > 3:
        return tuple(names)
    return tuple("z" if kind == "z" else "t" for kind in kinds)


def feature_axis_of(names: Sequence[str] | None, rank: int, ndim: int) -> int:
    """Where the features are in a rank-``rank`` array of a rank-``ndim`` stack with dimension
    ``names`` (a 0.1 store's ``feature`` axis too); just before the spatial axes when the names
    do not say."""
    for name in (FEATURE_AXIS, LEGACY_FEATURE_AXIS):
        if names and name in names:
            return list(names).index(name)
    return rank - ndim - 1


#: Root (and ``features``) attribute key holding everything featuremap writes.
ROOT_KEY = "featuremap"
#: The subgroup of job bookkeeping (owner, heartbeat, done-markers).
JOB_GROUP = "_job"
#: The done-markers: one bit per block, packed (:mod:`featuremap.io.markers`).
MARKERS = f"{JOB_GROUP}/done"
#: The group whose attributes hold the display statistics of the blocks marked done so far
#: (:mod:`featuremap.io._display`).
DISPLAY = f"{JOB_GROUP}/display"
#: Default Blosc level of each codec (LZ4 is fast at any level; zstd 1 is its fast setting).
CODEC_LEVELS = {"lz4": 5, "zstd": 1}


def feature_codecs(
    codec: OutputCodec = "lz4", level: int | None = None, store_format: StoreFormat = DEFAULT_FORMAT
) -> Any:
    """The ``compressors`` of ``features``: Blosc ``lz4`` or ``zstd`` with byte shuffle (or no
    compression, ``none``), then the store's checksum (:class:`StoreFormat`).

    Float features of noisy data barely compress; LZ4 costs about what raw bytes cost to write
    while Zstandard (Zarr's default) nearly doubles the write time for ~1 % more savings, and
    wins on smooth or float16 features.
    """
    return store_format.feature_compressors(
        codec, CODEC_LEVELS.get(codec, 0) if level is None else level
    )


@dataclass(frozen=True)
class OutputLayout:
    """Shape, chunking, names and placement of the ``features`` array of one job.

    Blocks are computed in ``(*batch, feature, y, x)`` order (:attr:`shape`, :attr:`chunks`,
    the block grid), batch axes other than ``z`` first. The array is stored in NGFF's axis order:
    those batch axes, the features (in the channel place), the space batch axes (``z``), then
    ``y, x`` -- ``(t, feature, z, y, x)`` for a ``(t, c, z, y, x)`` input, and simply
    ``(*batch, feature, y, x)`` without a ``z``. A 3-D stack (``stack.ndim == 3``) computes and
    stores ``(*batch, feature, z, y, x)`` with ``z`` spatial.

    ``placement`` is the *output's*: each output pixel's centre in the input's physical units
    (:meth:`featuremap.io.placement.Spacing.compose`), the batch axes' coordinates and the CRS.

    A *block* is what one task computes and writes and one done-marker covers: a chunk, or with
    ``shards`` a shard of whole chunks (Zarr v3 sharding; one writer per shard, so concurrent
    tasks never touch the same object).

    ``pyramid``: the multiscale levels written beside the features (:mod:`featuremap.io.pyramid`),
    each with its own layout.

    ``codec`` is ``auto`` until :func:`featuremap.io.codec_choice.apply_decision` resolves it
    (each level's layout then has its own codec); ``codec_decision`` is that choice, recorded.
    """

    batch_dims: tuple[str, ...]
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    stack: StackGeometry
    batch_kinds: tuple[str, ...] = ()
    placement: Placement = field(default_factory=Placement)
    feature_labels: tuple[str, ...] = ()
    dtype: OutputDtype = "float32"
    codec: OutputCodec = "lz4"
    codec_level: int | None = None
    shards: tuple[int, ...] | None = None
    store_format: StoreFormat = DEFAULT_FORMAT
    pyramid: Pyramid | None = None
    codec_decision: CodecDecision | None = None

    @property
    def block_shape(self) -> tuple[int, ...]:
        """The shape of one block (a shard when sharded, else a chunk), compute order."""
        return self.shards if self.shards is not None else self.chunks

    @property
    def ndim(self) -> int:
        """The number of spatial axes (2 or 3)."""
        return self.stack.ndim

    @property
    def block_out(self) -> tuple[int, ...]:
        """The spatial size of one block, ``(y, x)`` or ``(z, y, x)``."""
        return tuple(self.block_shape[-self.ndim :])

    @property
    def storage_shards(self) -> tuple[int, ...] | None:
        return None if self.shards is None else self._to_storage(self.shards)

    def to_dict(self) -> dict[str, Any]:
        """How the features are stored, for the store's attributes."""
        return {
            "dtype": self.dtype,
            "codec": self.codec,
            "codec_level": CODEC_LEVELS.get(self.codec)
            if self.codec_level is None
            else self.codec_level,
            "chunks": list(self.storage_chunks),
            "shards": None if self.shards is None else list(self._to_storage(self.shards)),
            **self.store_format.to_dict(),
            "pyramid": None if self.pyramid is None else self.pyramid.to_dict(),
            **(
                {}
                if self.codec_decision is None
                else {"codec_choice": self.codec_decision.to_dict()}
            ),
        }

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
        split = len(values) - self.ndim - 1
        batch, feature, spatial = values[:split], values[split], values[split + 1 :]
        at = self.feature_axis
        return (*batch[:at], feature, *batch[at:], *spatial)

    @property
    def dims(self) -> tuple[str, ...]:
        """The stored array's dimension names."""
        return self._to_storage((*self.batch_dims, *feature_dims(self.ndim)))

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
    def out_chunks(self) -> tuple[int, ...]:
        """The spatial chunk size, ``(y, x)`` or ``(z, y, x)``."""
        return tuple(self.chunks[-self.ndim :])

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Blocks per axis, the feature axis left out: ``(*batch_blocks, *spatial_blocks)``."""
        return tuple(
            ceil_div(n, c)
            for i, (n, c) in enumerate(zip(self.shape, self.block_shape, strict=True))
            if i != len(self.shape) - self.ndim - 1
        )

    def block_slices(self, block: tuple[int, ...]) -> tuple[slice, ...]:
        """Where ``block`` (``(*batch_blocks, *spatial_blocks)``) lies in the output, compute
        order."""
        split = len(block) - self.ndim
        per_axis = [*block[:split], 0, *block[split:]]
        return tuple(
            slice(index * size, min((index + 1) * size, length))
            for index, size, length in zip(per_axis, self.block_shape, self.shape, strict=True)
        )

    @property
    def blocks_total(self) -> int:
        return math.prod(self.grid_shape)
