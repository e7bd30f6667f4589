"""The pipeline file's schema: each key checked where it stands, with its place in every error.

Every refused value raises one :class:`~featuremap.errors.InputError` line naming its place, e.g.
``layers[1].conv.stride: must be an integer >= 1 or a list [y, x] of them, got -1`` (layers are
counted from 0, like the YAML list); the values themselves are checked by the shared ``parse_*``
validators (:mod:`featuremap._validation`). :class:`InputSpec` and :class:`OutputSpec` are the
stores; the ``layers`` list is parsed by :mod:`featuremap.pipeline.layer_specs` with the helpers here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from featuremap._validation import (
    is_integer,
    parse_choice,
    parse_int,
    parse_sizes,
    parse_text,
    suggestion,
)
from featuremap._vocabulary import (
    OUTPUT_CHECKSUMS,
    OUTPUT_CODECS,
    OUTPUT_DTYPES,
    OUTPUT_FORMATS,
    OutputChecksum,
    OutputCodec,
    OutputDtype,
    OutputFormat,
)
from featuremap.errors import InputError, describe, spoken
from featuremap.io import InputSelection
from featuremap.io.axes import AxesSpec, parse_axes_spec
from featuremap.io.formats import StoreFormat
from featuremap.io.pyramid import PyramidOptions, parse_pyramid
from featuremap.io.sizing import OutputOptions

__all__ = [
    "InputSpec",
    "OutputSpec",
    "choice_field",
    "field_value",
    "join",
    "mapping",
    "parse_channels",
    "parse_level",
    "parse_region",
    "resolve_path",
    "sizes_field",
]

T = TypeVar("T")

INPUT_KEYS = ("store", "array", "axes", "level", "region", "channels", "channel_axis", "series")
OUTPUT_KEYS = (
    "store",
    "chunks",
    "dtype",
    "codec",
    "level",
    "shards",
    "format",
    "checksum",
    "pyramid",
)


# -- placing errors -------------------------------------------------------------------------


def join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def mapping(
    value: Any, where: str, keys: Sequence[str], required: Sequence[str] = ()
) -> Mapping[str, Any]:
    """Check that ``value`` is a mapping with only ``keys`` and every ``required`` one."""
    if not isinstance(value, Mapping):
        raise InputError(
            f"{where or 'pipeline'}: must be a mapping with keys {', '.join(keys)}, got {describe(value)}"
        )
    for key in value:
        if key not in keys:
            raise InputError(
                f"{where or 'pipeline'}: unknown key {describe(key)}{suggestion(key, keys)}; "
                f"allowed keys: {', '.join(keys)}"
            )
    for key in required:
        if key not in value:
            raise InputError(f"{join(where, key)}: missing (required in {where or 'the pipeline'})")
    return value


def field_value(where: str, key: str, parse: Callable[[Any], T], value: Any) -> T:
    """Run ``parse(value)``; re-raise its :class:`InputError` with the key's place in front.

    The ``parse_*`` validators name the parameter themselves (``stride must be ...``); the
    place (``layers[1].conv.stride: must be ...``) replaces that name.
    """
    try:
        return parse(value)
    except InputError as error:
        message = str(error)
        if message.startswith(f"{key} "):
            message = message[len(key) + 1 :]
        raise InputError(f"{join(where, key)}: {message}") from None


def _text(key: str) -> Callable[[Any], str | None]:
    """An optional non-empty string (``None`` stays ``None``)."""
    return lambda value: None if value is None else parse_text(key, value)


def sizes_field(key: str, ndim: int) -> Callable[[Any], list[int]]:
    """One integer, or one per spatial axis of a rank-``ndim`` layer, as a list."""
    return lambda value: list(parse_sizes(key, value, ndim))


def choice_field(key: str, options: Sequence[str]) -> Callable[[Any], str]:
    return lambda value: parse_choice(key, value, options)


def resolve_path(path: str, base_dir: Path) -> str:
    """An absolute local path (relative ones against ``base_dir``); URLs are kept as given."""
    if path.startswith("file://"):  # a file URL works like the path it names
        path = path[len("file://") :]
    elif "://" in path:
        return path
    expanded = Path(path).expanduser()
    return os.path.normpath(expanded if expanded.is_absolute() else base_dir / expanded)


# -- the parts of a pipeline -------------------------------------------------------------------


def parse_region(value: Any) -> dict[str, tuple[int | None, int | None]]:
    """``{axis: [start, stop]}`` (``null`` for an open end, one index for a single plane), or the
    command line's ``z=10:20,y=0:4096``; axis names are checked against the input later."""
    if isinstance(value, str):
        items = [_region_item(item) for item in value.split(",") if item.strip()]
        names = [name for name, _ in items]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:  # a dict would keep the last silently
            raise InputError(
                f"axis {twice[0]!r} is given twice in the region {value!r}; give each axis once"
            )
        value = dict(items)
    if not isinstance(value, Mapping) or not value:
        raise InputError(
            f"must be a mapping of axis to [start, stop], e.g. {{z: [10, 20], y: [0, 4096]}}"
            f"{spoken(' (--region z=10:20,y=0:4096)', '')}, got {describe(value)}"
        )
    region: dict[str, tuple[int | None, int | None]] = {}
    for name, interval in value.items():
        if is_integer(interval):
            interval = [int(interval), int(interval) + 1]
        ends_ok = isinstance(interval, (list, tuple)) and len(interval) == 2
        if not ends_ok or not all(
            end is None or (is_integer(end) and int(end) >= 0) for end in interval
        ):
            raise InputError(
                f"{name}: must be [start, stop] of pixel indices >= 0 (stop excluded) or one index, "
                f"got {describe(interval)}"
            )
        start, stop = (None if end is None else int(end) for end in interval)
        if start is not None and stop is not None and stop <= start:
            raise InputError(f"{name}: stop {stop} must be larger than start {start}")
        region[str(name)] = (start, stop)
    return region


def _region_item(item: str) -> tuple[str, Any]:
    name, _, bounds = item.partition("=")
    if not bounds:
        raise InputError(f"region item {item!r} must be AXIS=START:STOP or AXIS=INDEX")
    if ":" not in bounds:
        return name.strip(), _int_text(bounds)
    start, stop = bounds.split(":", 1)
    return name.strip(), [
        _int_text(start) if start.strip() else None,
        _int_text(stop) if stop.strip() else None,
    ]


def _int_text(text: str) -> int | str:
    return int(text) if text.strip().lstrip("-").isdigit() else text


def parse_channels(value: Any) -> tuple[int | str, ...]:
    """Channel indices or labels: one, a list, or the command line's ``0,2`` / ``DAPI,GFP``."""
    if isinstance(value, str):
        value = [_int_text(item.strip()) for item in value.split(",") if item.strip()]
    items = value if isinstance(value, list) else [value]
    if not items or not all(
        (is_integer(v) and int(v) >= 0) or (isinstance(v, str) and v) for v in items
    ):
        raise InputError(
            f"must be channel indices (integers >= 0) or labels, e.g. [0, 2] or [DAPI, GFP], got {describe(value)}"
        )
    return tuple(int(v) if is_integer(v) else v for v in items)


def parse_level(value: Any) -> int | str:
    """An OME-Zarr resolution level: its index (0 = full resolution) or its dataset path."""
    if isinstance(value, str) and value:
        return int(value) if value.isdigit() else value
    return parse_int("level", value, minimum=0)


def _axes_value(spec: AxesSpec) -> str | list[str] | dict[str, str]:
    """A parsed ``axes`` in the pipeline file's form (letters where every kind has one)."""
    if isinstance(spec, Mapping):
        return dict(spec)
    return "".join(spec) if all(len(kind) == 1 for kind in spec) else list(spec)


@dataclass(frozen=True)
class InputSpec:
    """Where the images come from and which part of them is read (``input.*``).

    ``store`` and ``array`` locate the array (an OME-Zarr image group needs no ``array``);
    ``axes``, ``level``, ``region`` and ``channels`` select and describe it
    (:class:`featuremap.io.InputSelection`); ``series`` picks the image of a bioformats2raw
    layout (default 0); ``channel_axis`` is the older way to place the channel axis of an
    unnamed array.
    """

    store: str | None = None
    array: str | None = None
    channel_axis: int | None = None
    axes: AxesSpec | None = None
    level: int | str | None = None
    region: Mapping[str, tuple[int | None, int | None]] = field(default_factory=dict)
    channels: tuple[int | str, ...] | None = None
    series: int | None = None

    def selection(self) -> InputSelection:
        """What :func:`featuremap.io.open_input` reads."""
        return InputSelection(
            axes=self.axes,
            level=self.level,
            region=dict(self.region),
            channels=self.channels,
            channel_axis=self.channel_axis,
            series=self.series,
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "store": self.store,
            "array": self.array,
            "channel_axis": self.channel_axis,
        }
        if self.axes is not None:
            data["axes"] = _axes_value(self.axes)
        if self.level is not None:
            data["level"] = self.level
        if self.region:
            data["region"] = {name: list(interval) for name, interval in self.region.items()}
        if self.channels is not None:
            data["channels"] = list(self.channels)
        if self.series is not None:
            data["series"] = self.series
        return data

    @classmethod
    def from_dict(
        cls, data: Any, *, base_dir: Path | None = None, where: str = "input"
    ) -> InputSpec:
        spec = mapping({} if data is None else data, where, INPUT_KEYS)
        store = field_value(where, "store", _text("store"), spec.get("store"))

        def optional(key: str, parse: Callable[[Any], Any]) -> Any:
            value = spec.get(key)
            return None if value is None else field_value(where, key, parse, value)

        return cls(
            store=None if store is None else resolve_path(store, base_dir or Path.cwd()),
            array=field_value(where, "array", _text("array"), spec.get("array")),
            channel_axis=optional("channel_axis", lambda v: parse_int("channel_axis", v)),
            axes=optional("axes", parse_axes_spec),
            level=optional("level", parse_level),
            region=optional("region", parse_region) or {},
            channels=optional("channels", parse_channels),
            series=optional("series", lambda v: parse_int("series", v, minimum=0)),
        )


@dataclass(frozen=True)
class OutputSpec:
    """Where the features go and how they are stored (``output.*``): a Zarr store, the spatial
    chunk size ``(y, x)``, the stored ``dtype`` (``float32``, ``float16``), the ``codec``
    (``auto``: chosen per array from a sample, :mod:`featuremap.io.codec_choice`; ``lz4``,
    ``zstd``, ``none``) and its ``level``, ``shards`` (``auto``, ``false`` or a
    ``[y, x]`` shard shape in output pixels), the store's ``format`` (``ngff-0.5``: Zarr v3, or
    ``ngff-0.4``: Zarr v2, never sharded) and ``checksum`` (``crc32c``, the default of
    ``ngff-0.5``, or ``none``, the only one of ``ngff-0.4``). ``chunks`` and
    ``shards`` have one size per spatial axis: ``[z, y, x]`` for a stack of 3-D layers; ``chunks``
    may name the feature axis first (``[feature, z, y, x]``), so that a viewer reads one feature
    without decoding the others (``feature_chunks``; by default, in ``ngff-0.5``, one feature per
    chunk, each block one shard). ``pyramid`` (``{levels: auto|N, method: mean|max}``) adds multiscale
    levels (:mod:`featuremap.io.pyramid`)."""

    store: str | None = None
    chunks: tuple[int, ...] | None = None
    dtype: OutputDtype = "float32"
    codec: OutputCodec = "auto"
    level: int | None = None
    shards: tuple[int, ...] | str | None = "auto"
    feature_chunks: int | None = None
    format: OutputFormat = "ngff-0.5"
    checksum: OutputChecksum = "crc32c"
    pyramid: PyramidOptions | None = None

    def options(self) -> OutputOptions:
        """How the job stores its features."""
        return OutputOptions(
            chunks=self.chunks,
            dtype=self.dtype,
            codec=self.codec,
            codec_level=self.level,
            shards=self.shards,
            feature_chunks=self.feature_chunks,
            format=self.format,
            checksum=self.checksum,
            pyramid=self.pyramid,
        )

    def to_dict(self) -> dict[str, Any]:
        feature = [] if self.feature_chunks is None else [self.feature_chunks]
        # no pyramid, no key: the fingerprints of pipelines without one stay what they were
        pyramid = {} if self.pyramid is None else {"pyramid": self.pyramid.to_dict()}
        return {
            "store": self.store,
            "chunks": None if self.chunks is None else [*feature, *self.chunks],
            "dtype": self.dtype,
            "codec": self.codec,
            "level": self.level,
            "shards": self.shards
            if isinstance(self.shards, str) or self.shards is None
            else list(self.shards),
            "format": self.format,
            "checksum": self.checksum,
            **pyramid,
        }

    @classmethod
    def from_dict(
        cls, data: Any, *, base_dir: Path | None = None, where: str = "output", ndim: int = 2
    ) -> OutputSpec:
        spec = mapping({} if data is None else data, where, OUTPUT_KEYS)
        store = field_value(where, "store", _text("store"), spec.get("store"))
        chunks = spec.get("chunks")
        feature_chunks = None
        if isinstance(chunks, list) and len(chunks) == ndim + 1:  # [feature, *spatial]
            feature_chunks = field_value(
                where, "chunks", lambda v: parse_int("chunks (feature)", v, minimum=1), chunks[0]
            )
            chunks = chunks[1:]
        codec, level = _codec_and_level(where, spec)
        shards = field_value(
            where, "shards", lambda v: _shards(v, ndim), spec.get("shards", "auto")
        )
        if feature_chunks is not None and shards is None:
            raise InputError(
                f"{join(where, 'shards')}: chunks that name the feature axis need shards (each "
                "block of all features is one shard of feature chunks); use shards: auto"
            )
        store_format = _store_format(where, spec)
        output = cls(
            store=None if store is None else resolve_path(store, base_dir or Path.cwd()),
            chunks=None
            if chunks is None
            else field_value(where, "chunks", lambda v: parse_sizes("chunks", v, ndim), chunks),
            dtype=field_value(
                where,
                "dtype",
                lambda v: parse_choice("dtype", v, OUTPUT_DTYPES),
                spec.get("dtype", "float32"),
            ),
            codec=codec,
            level=level,
            shards=shards,
            feature_chunks=feature_chunks,
            format=store_format.format,
            checksum=store_format.checksum,
            pyramid=field_value(where, "pyramid", parse_pyramid, spec.get("pyramid")),
        )
        output.options()  # refuses sharding where the format has none, before anything runs
        return output


def _store_format(where: str, spec: Mapping[str, Any]) -> StoreFormat:
    """``format`` and ``checksum``, the checksum defaulted by the format (``crc32c`` for
    ``ngff-0.5``, ``none`` for ``ngff-0.4``)."""
    format = field_value(
        where,
        "format",
        lambda v: parse_choice("format", v, OUTPUT_FORMATS),
        spec.get("format", "ngff-0.5"),
    )
    checksum = spec.get("checksum")
    if checksum is not None:
        checksum = field_value(
            where, "checksum", lambda v: parse_choice("checksum", v, OUTPUT_CHECKSUMS), checksum
        )
    return StoreFormat.of(format, checksum)


def _codec_and_level(where: str, spec: Mapping[str, Any]) -> tuple[Any, int | None]:
    """``codec: zstd`` with an optional ``level: 5`` beside it, or ``codec: {name: zstd,
    level: 5}``; the level is Blosc's ``clevel``, 0-9."""
    codec, level = spec.get("codec", "auto"), spec.get("level")
    codec_where = where
    if isinstance(codec, Mapping):
        codec_where = join(where, "codec")
        codec_spec = mapping(codec, codec_where, ("name", "level"), required=("name",))
        if level is not None and "level" in codec_spec:
            raise InputError(f"{join(where, 'level')}: given twice (also as codec.level); keep one")
        codec, level = codec_spec["name"], codec_spec.get("level", level)
    name_key = "name" if codec_where != where else "codec"
    name = field_value(
        codec_where, name_key, lambda v: parse_choice(name_key, v, OUTPUT_CODECS), codec
    )
    if level is None:
        return name, None
    if name == "none":
        raise InputError(f"{join(codec_where, 'level')}: codec none has no level; remove it")
    return name, field_value(
        codec_where, "level", lambda v: parse_int("level", v, minimum=0, maximum=9), level
    )


def _shards(value: Any, ndim: int = 2) -> tuple[int, ...] | str | None:
    """``auto``, ``false`` / ``none`` (no sharding) or a ``[y, x]`` (``[z, y, x]``) shard shape
    in pixels."""
    if value in ("auto",):
        return "auto"
    if value is False or value is None or value == "none":
        return None
    try:
        return parse_sizes("shards", value, ndim)
    except InputError:
        shape = "[z, y, x]" if ndim == 3 else "[y, x]"
        raise InputError(
            f"shards must be auto, false or a shard shape {shape} in output pixels, got {describe(value)}"
        ) from None
