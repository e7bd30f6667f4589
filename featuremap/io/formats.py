"""How an output store is encoded: its Zarr format (with the NGFF version that goes with it) and
its checksum -- ``output.format`` and ``output.checksum`` (DESIGN section 6).

``ngff-0.5`` (the default) is a Zarr format 3 store: ``zarr.json`` documents, ``dimension_names``,
sharding where it pays, NGFF metadata under the ``ome`` attribute. ``ngff-0.4`` is a Zarr format
2 store for the readers of Zarr v2 only (GDAL 3.10, which reads no Zarr v3 as the spec has it,
older viewers and tools): ``.zarray`` / ``.zattrs``, xarray's ``_ARRAY_DIMENSIONS``, chunk keys
``0/1/2`` (NGFF 0.4 requires the ``/`` separator), never sharded, NGFF 0.4 ``multiscales`` and
``omero`` at the top of the group's attributes, and no checksum: no Zarr v2 reader but
zarr-python knows one.

``crc32c`` (the default in format 3) makes a damaged chunk an error on read; ``none`` leaves it
out for readers that lack it (GDAL reads it from 3.13 on). Every difference between the formats
that the arrays show is decided here, in :class:`StoreFormat`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from featuremap._validation import parse_choice
from featuremap._vocabulary import (
    OUTPUT_CHECKSUMS,
    OUTPUT_FORMATS,
    OutputChecksum,
    OutputCodec,
    OutputFormat,
)
from featuremap.errors import InputError

__all__ = ["DEFAULT_FORMAT", "StoreFormat"]

#: The checksum each format has unless one is asked for.
_DEFAULT_CHECKSUM: Mapping[OutputFormat, OutputChecksum] = {
    "ngff-0.5": "crc32c",
    "ngff-0.4": "none",
}
#: The Zarr format of each NGFF version.
_ZARR_FORMAT: Mapping[OutputFormat, Literal[2, 3]] = {"ngff-0.5": 3, "ngff-0.4": 2}
#: Zstandard's level for the small arrays (coordinates, weights): they are written once.
_SMALL_ZSTD_LEVEL = 3


@dataclass(frozen=True)
class StoreFormat:
    """An output store's encoding: ``format`` (``ngff-0.5``, Zarr format 3, or ``ngff-0.4``, Zarr
    format 2) and ``checksum`` (``crc32c`` or ``none``). Build it with :meth:`of` to get each
    format's default checksum.

    Raises
    ------
    InputError
        ``crc32c`` with ``ngff-0.4``: Zarr v2 has no checksum its readers share.
    """

    format: OutputFormat = "ngff-0.5"
    checksum: OutputChecksum = "crc32c"

    def __post_init__(self) -> None:
        parse_choice("output.format", self.format, OUTPUT_FORMATS)
        parse_choice("output.checksum", self.checksum, OUTPUT_CHECKSUMS)
        if self.zarr_format == 2 and self.checksum != "none":
            raise InputError(
                f"output.checksum: {self.checksum} needs format ngff-0.5 (Zarr v2 readers have no "
                "checksum codec); use checksum: none with format ngff-0.4"
            )

    @classmethod
    def of(cls, format: Any = "ngff-0.5", checksum: Any = None) -> StoreFormat:
        """The encoding for ``format`` and ``checksum`` (``None``: the format's default),
        both checked by :func:`~featuremap._validation.parse_choice`."""
        name = parse_choice("format", format, OUTPUT_FORMATS)
        if checksum is None:
            return cls(name, _DEFAULT_CHECKSUM[name])
        return cls(name, parse_choice("checksum", checksum, OUTPUT_CHECKSUMS))

    @property
    def zarr_format(self) -> Literal[2, 3]:
        return _ZARR_FORMAT[self.format]

    @property
    def ngff_version(self) -> str:
        """``"0.5"`` or ``"0.4"``."""
        return self.format.removeprefix("ngff-")

    # -- arrays -------------------------------------------------------------------------------

    def feature_compressors(self, codec: OutputCodec, level: int) -> Any:
        """The ``compressors`` of ``features``: Blosc ``codec`` (``lz4``, ``zstd``) at ``level``
        with byte shuffle, or none, then the checksum; ``auto`` is decided before
        (:mod:`featuremap.io.codec_choice`)."""
        if codec == "auto":
            raise ValueError("output.codec auto is decided before the arrays are made")
        if codec == "none":
            return self._checked(None)
        if self.zarr_format == 2:
            import numcodecs

            return self._checked(
                numcodecs.Blosc(cname=codec, clevel=level, shuffle=numcodecs.Blosc.SHUFFLE)
            )
        import zarr.codecs

        return self._checked(zarr.codecs.BloscCodec(cname=codec, clevel=level, shuffle="shuffle"))

    def small_compressors(self) -> Any:
        """The ``compressors`` of the small arrays (coordinates, weights): Zstandard, then the
        checksum."""
        if self.zarr_format == 2:
            import numcodecs

            return self._checked(numcodecs.Zstd(level=_SMALL_ZSTD_LEVEL))
        import zarr.codecs

        return self._checked(zarr.codecs.ZstdCodec(level=_SMALL_ZSTD_LEVEL))

    def _checked(self, compressor: Any) -> Any:
        """``compressor`` followed by the checksum: a list in format 3; format 2 takes one
        compressor (or ``None``) and never a checksum."""
        if self.zarr_format == 2:
            return compressor
        import zarr.codecs

        codecs = [] if compressor is None else [compressor]
        if self.checksum == "crc32c":
            codecs.append(zarr.codecs.Crc32cCodec())
        return codecs

    def chunking(
        self, chunks: Sequence[int], shards: Sequence[int] | None, compressors: Any
    ) -> dict[str, Any]:
        """The ``create_array`` arguments that chunk (and shard) an array compressed by
        ``compressors`` (:meth:`feature_compressors`). A shard's index gets the array's checksum
        too: Zarr's default index codecs add crc32c, which ``checksum: none`` leaves out (its
        readers may lack crc32c), so the sharding codec is then built here, index unchecked."""
        if shards is None or self.checksum == "crc32c":
            return {"chunks": tuple(chunks), "shards": shards, "compressors": compressors}
        import zarr.codecs

        sharding = zarr.codecs.ShardingCodec(
            chunk_shape=tuple(chunks),
            codecs=[zarr.codecs.BytesCodec(), *compressors],
            index_codecs=[zarr.codecs.BytesCodec()],
        )
        return {"chunks": tuple(shards), "serializer": sharding, "compressors": None}

    def naming(self, dims: Sequence[str]) -> dict[str, Any]:
        """The ``create_array`` arguments that name an array's dimensions and its chunk keys:
        ``dimension_names`` in format 3; xarray's ``_ARRAY_DIMENSIONS`` attribute and ``/``
        separated keys (NGFF 0.4 requires them; Zarr v2's default is ``.``) in format 2."""
        if self.zarr_format == 3:
            return {"dimension_names": list(dims)}
        return {
            "attributes": {"_ARRAY_DIMENSIONS": list(dims)},
            "chunk_key_encoding": {"name": "v2", "separator": "/"},
        }

    def unmasked(self) -> dict[str, Any]:
        """The ``create_array`` arguments of an array whose every value is data (coordinates,
        weights): no ``fill_value`` in format 2, whose readers (xarray, netCDF) take it for a
        missing-value mark -- Zarr's default ``0.0`` would read a coordinate of 0 as NaN.
        xarray does not read a format 3 fill value so: nothing to change there."""
        return {"fill_value": None} if self.zarr_format == 2 else {}

    def text_dtype(self, values: np.ndarray) -> Any:
        """The stored type of text (``values`` of a NumPy ``U`` type), as xarray reads it back.

        Format 2 keeps NumPy's fixed-width ``<U`` type, part of Zarr v2, which GDAL reads (the
        labels become each band's ``DIM_c_VALUE``); its variable-length ``|O`` strings it
        cannot. Format 3 has no text type in the core spec: Zarr's ``string`` (vlen-utf8) is the
        one with an extension spec (``fixed_length_utf32`` has none, and Zarr warns that it may
        change); GDAL 3.12 and earlier read neither in Zarr v3 (OSGeo/gdal#13782).
        """
        return values.dtype if self.zarr_format == 2 else str

    # -- records ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "checksum": self.checksum}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoreFormat:
        """The encoding recorded by :meth:`to_dict` (stores from before it: ``ngff-0.5``)."""
        return cls.of(data.get("format", "ngff-0.5"), data.get("checksum"))


#: ``ngff-0.5`` with ``crc32c``: what a store is unless ``output.format`` / ``checksum`` say.
DEFAULT_FORMAT = StoreFormat()
