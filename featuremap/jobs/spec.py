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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from featuremap._validation import (
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
from featuremap.layers import PoolLayer, ReduceLayer, parse_activation

__all__ = [
    "BANK_PATH_PARAMS",
    "InputSpec",
    "OutputSpec",
    "field_value",
    "mapping",
    "parse_layers",
    "resolve_path",
]

T = TypeVar("T")

INPUT_KEYS = ("store", "array", "channel_axis")
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


@dataclass(frozen=True)
class InputSpec:
    """Where the images come from: a Zarr store, the array inside it, and its channel axis."""

    store: str | None = None
    array: str | None = None
    channel_axis: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"store": self.store, "array": self.array, "channel_axis": self.channel_axis}

    @classmethod
    def from_dict(
        cls, data: Any, *, base_dir: Path | None = None, where: str = "input"
    ) -> InputSpec:
        spec = mapping({} if data is None else data, where, INPUT_KEYS)
        store = field_value(where, "store", _text("store"), spec.get("store"))
        channel_axis = spec.get("channel_axis")
        return cls(
            store=None if store is None else resolve_path(store, base_dir or Path.cwd()),
            array=field_value(where, "array", _text("array"), spec.get("array")),
            channel_axis=None
            if channel_axis is None
            else field_value(
                where, "channel_axis", lambda v: parse_int("channel_axis", v), channel_axis
            ),
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


def _parse_reduce(value: Any, where: str) -> dict[str, Any]:
    spec = mapping(value, where, REDUCE_KEYS, required=("op",))
    op = field_value(where, "op", _choice("op", REDUCE_OPS), spec["op"])
    groups = spec.get("groups")
    if groups is not None:
        layer = field_value(where, "groups", lambda g: ReduceLayer.create(op, g), groups)
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
