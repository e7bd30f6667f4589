"""The pipeline file's schema: each key checked where it stands, with its place in every error.

Every refused value raises one :class:`~featuremap.errors.InputError` line naming its place, e.g.
``layers[1].conv.stride: must be an integer >= 1 or a pair [y, x] of them, got -1`` (layers are
counted from 0, like the YAML list); the values themselves are checked by the shared ``parse_*``
validators (:mod:`featuremap._validation`). :func:`parse_layers` returns the normalised layer
specs, every default filled in; :class:`InputSpec` and :class:`OutputSpec` the stores.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from featuremap._validation import (
    is_integer,
    parse_bool,
    parse_choice,
    parse_int,
    parse_pair,
    parse_text,
    suggestion,
)
from featuremap._vocabulary import CHANNEL_MODES, POOL_OPS, REDUCE_OPS
from featuremap.errors import InputError, describe
from featuremap.geometry import parse_padding, parse_padding_mode
from featuremap.io import InputSelection
from featuremap.io.axes import AxesSpec, parse_axes_spec
from featuremap.layers import PoolLayer, ReduceLayer, parse_activation

__all__ = [
    "BANK_PATH_PARAMS",
    "InputSpec",
    "OutputSpec",
    "field_value",
    "mapping",
    "parse_channels",
    "parse_layers",
    "parse_level",
    "parse_region",
    "resolve_path",
]

T = TypeVar("T")

INPUT_KEYS = ("store", "array", "axes", "level", "region", "channels", "channel_axis")
OUTPUT_KEYS = ("store", "chunks")
LAYER_KINDS = ("conv", "pool", "reduce")
CONV_KEYS = (
    "bank",
    "stride",
    "padding",
    "dilation",
    "padding_mode",
    "activation",
    "channels",
    "flip",
    "bias",
)
POOL_KEYS = ("type", "kernel_size", "stride", "padding")
REDUCE_KEYS = ("op", "groups")
#: Bank parameters that name files, resolved against the pipeline's folder.
BANK_PATH_PARAMS = ("path",)


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


def _pair(key: str) -> Callable[[Any], list[int]]:
    return lambda value: list(parse_pair(key, value))


def _choice(key: str, options: Sequence[str]) -> Callable[[Any], str]:
    return lambda value: parse_choice(key, value, options)


def _padding(value: Any) -> str | list[list[int]]:
    parsed = parse_padding(value)
    return parsed if isinstance(parsed, str) else [list(pair) for pair in parsed]


def _bias(value: Any) -> bool | float | list[float] | None:
    """``None`` (bank's own), ``False`` (none), a number or a list of numbers."""
    allowed = "false (no bias), a number or a list of numbers (omit it to keep the bank's own bias)"

    def number(item: Any) -> bool:
        return isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item)

    if value is None or value is False:
        return value
    if number(value):
        return float(value)
    if isinstance(value, list) and value and all(number(item) for item in value):
        return [float(item) for item in value]
    raise InputError(f"must be {allowed}, got {describe(value)}")


def resolve_path(path: str, base_dir: Path) -> str:
    """An absolute local path (relative ones against ``base_dir``); URLs are kept as given."""
    if "://" in path:
        return path
    expanded = Path(path).expanduser()
    return os.path.normpath(expanded if expanded.is_absolute() else base_dir / expanded)


# -- the parts of a pipeline -------------------------------------------------------------------


def parse_region(value: Any) -> dict[str, tuple[int | None, int | None]]:
    """``{axis: [start, stop]}`` (``null`` for an open end, one index for a single plane), or the
    command line's ``z=10:20,y=0:4096``; axis names are checked against the input later."""
    if isinstance(value, str):
        value = dict(_region_item(item) for item in value.split(",") if item.strip())
    if not isinstance(value, Mapping) or not value:
        raise InputError(
            f"must be a mapping of axis to [start, stop], e.g. {{z: [10, 20], y: [0, 4096]}} "
            f"(--region z=10:20,y=0:4096), got {describe(value)}"
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
    (:class:`featuremap.io.InputSelection`); ``channel_axis`` is the older way to place the
    channel axis of an unnamed array.
    """

    store: str | None = None
    array: str | None = None
    channel_axis: int | None = None
    axes: AxesSpec | None = None
    level: int | str | None = None
    region: Mapping[str, tuple[int | None, int | None]] = field(default_factory=dict)
    channels: tuple[int | str, ...] | None = None

    def selection(self) -> InputSelection:
        """What :func:`featuremap.io.open_input` reads."""
        return InputSelection(
            axes=self.axes,
            level=self.level,
            region=dict(self.region),
            channels=self.channels,
            channel_axis=self.channel_axis,
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
        )


@dataclass(frozen=True)
class OutputSpec:
    """Where the features go: a Zarr store, and optionally its spatial chunk size ``(y, x)``."""

    store: str | None = None
    chunks: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"store": self.store, "chunks": None if self.chunks is None else list(self.chunks)}

    @classmethod
    def from_dict(
        cls, data: Any, *, base_dir: Path | None = None, where: str = "output"
    ) -> OutputSpec:
        spec = mapping({} if data is None else data, where, OUTPUT_KEYS)
        store = field_value(where, "store", _text("store"), spec.get("store"))
        chunks = spec.get("chunks")
        return cls(
            store=None if store is None else resolve_path(store, base_dir or Path.cwd()),
            chunks=None
            if chunks is None
            else field_value(where, "chunks", lambda v: parse_pair("chunks", v), chunks),
        )


def _parse_bank(value: Any, where: str, base_dir: Path) -> dict[str, Any]:
    """``{type: NAME, **params}``: the bank is built once here so that bad parameters fail early."""
    from featuremap import banks

    available = banks.names()
    if not isinstance(value, Mapping) or "type" not in value:
        raise InputError(
            f"{where}: must be a mapping with a 'type' (one of {', '.join(available)}) and that "
            f"bank's parameters, e.g. {{type: gabor, size: 15}}, got {describe(value)}"
        )
    name = value["type"]
    if name not in available:
        raise InputError(
            f"{where}.type: unknown filter bank {describe(name)}{suggestion(name, available)}; "
            f"available: {', '.join(available)} (see 'featuremap banks')"
        )
    params = {key: item for key, item in value.items() if key != "type"}
    if "base_dir" in params:
        # The loader resolves `path` against the pipeline's folder; a second base would be ignored.
        raise InputError(
            f"{where}.base_dir: not allowed in a pipeline; paths are relative to the pipeline file"
        )
    for key in BANK_PATH_PARAMS:
        if isinstance(params.get(key), str):
            params[key] = resolve_path(params[key], base_dir)
    try:
        banks.get(name, **params)
    except InputError as error:
        raise InputError(f"{where}: {error}") from None
    return {"type": name, **params}


def _parse_conv(value: Any, where: str, base_dir: Path) -> dict[str, Any]:
    spec = mapping(value, where, CONV_KEYS, required=("bank",))
    return {
        "bank": _parse_bank(spec["bank"], join(where, "bank"), base_dir),
        "stride": field_value(where, "stride", _pair("stride"), spec.get("stride", 1)),
        "padding": field_value(where, "padding", _padding, spec.get("padding", 0)),
        "dilation": field_value(where, "dilation", _pair("dilation"), spec.get("dilation", 1)),
        "padding_mode": field_value(
            where, "padding_mode", parse_padding_mode, spec.get("padding_mode", "zeros")
        ),
        "activation": field_value(
            where, "activation", parse_activation, spec.get("activation", "none")
        ),
        "channels": field_value(
            where,
            "channels",
            _choice("channels", CHANNEL_MODES),
            spec.get("channels", "per_channel"),
        ),
        "flip": field_value(
            where, "flip", lambda v: parse_bool("flip", v), spec.get("flip", False)
        ),
        "bias": field_value(where, "bias", _bias, spec.get("bias")),
    }


def _parse_pool(value: Any, where: str) -> dict[str, Any]:
    spec = mapping(value, where, POOL_KEYS, required=("type", "kernel_size"))
    op = field_value(where, "type", _choice("type", POOL_OPS), spec["type"])
    kernel = field_value(where, "kernel_size", _pair("kernel_size"), spec["kernel_size"])
    stride = field_value(where, "stride", _pair("stride"), spec.get("stride", kernel))
    padding = field_value(where, "padding", _padding, spec.get("padding", 0))
    # Cross-field rule (padding at most half the kernel): the layer itself checks it.
    field_value(where, "padding", lambda _: PoolLayer.create(op, kernel, stride, padding), padding)
    return {"type": op, "kernel_size": kernel, "stride": stride, "padding": padding}


def _reduce_op(value: Any) -> str | list[str]:
    """One reduction, or a list of one per group."""
    if isinstance(value, list) and value:
        return [parse_choice("op", item, REDUCE_OPS) for item in value]
    return parse_choice("op", value, REDUCE_OPS)


def _parse_reduce(value: Any, where: str) -> dict[str, Any]:
    spec = mapping(value, where, REDUCE_KEYS)
    op = spec.get("op")
    if op is not None:
        op = field_value(where, "op", _reduce_op, op)
    groups = spec.get("groups")
    if groups is not None:
        layer = field_value(where, "groups", lambda g: ReduceLayer.create(op or "max", g), groups)
        groups = list(layer.groups)
    return {"op": op, "groups": groups}


def parse_layers(value: Any, base_dir: Path) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or not value:
        raise InputError(
            "layers: must be a non-empty list of layers, each one of "
            f"{{conv: ...}}, {{pool: ...}}, {{reduce: ...}}, got {describe(value)}"
        )
    parsed = []
    for index, item in enumerate(value):
        where = f"layers[{index}]"
        if not isinstance(item, Mapping) or len(item) != 1 or next(iter(item)) not in LAYER_KINDS:
            keys = list(item) if isinstance(item, Mapping) else item
            raise InputError(
                f"{where}: must have exactly one key, one of {', '.join(LAYER_KINDS)}, got {describe(keys)}"
                + (
                    suggestion(keys[0], LAYER_KINDS)
                    if isinstance(item, Mapping) and len(item) == 1
                    else ""
                )
            )
        kind, spec = next(iter(item.items()))
        where = f"{where}.{kind}"
        if kind == "conv":
            parsed.append({"conv": _parse_conv(spec, where, base_dir)})
        elif kind == "pool":
            parsed.append({"pool": _parse_pool(spec, where)})
        else:
            parsed.append({"reduce": _parse_reduce(spec, where)})
    return tuple(parsed)
