"""Pipeline files: a validated, declarative description of a feature-extraction job.

A pipeline names its input and output stores and a stack of layers (DESIGN section 5)::

    name: gabor-texture
    input:  {store: data/images.zarr, array: images, channel_axis: -3}
    output: {store: out/gabor.zarr, chunks: [512, 512]}
    layers:
      - conv:
          bank: {type: gabor, size: 15, orientations: 8, frequencies: [0.1, 0.2]}
          stride: 2
          padding: same
          activation: abs
      - pool: {type: max, kernel_size: 2, stride: 2}
      - reduce: {op: max, groups: 8}
      - conv:
          bank: {type: file, path: weights/layer2.npz}

Layer keys and their defaults:

``conv``
    ``bank`` (required): ``{type: NAME, **params}`` for any :mod:`featuremap.banks` name (``type:
    file`` reads a weight file, its ``path`` relative to the pipeline file); ``stride`` 1;
    ``padding`` 0 (an int, ``[py, px]``, ``[[top, bottom], [left, right]]``, ``same``, ``valid``);
    ``dilation`` 1; ``padding_mode`` ``zeros``; ``activation`` ``none``; ``channels``
    ``per_channel`` (how a single-channel bank meets a multi-channel input: every filter on every
    channel, or ``sum`` over channels); ``flip`` ``false`` (``true``: true convolution);
    ``bias``: omitted keeps the bank's own bias (a weight file's ``bias``), ``false`` drops it, a
    number or a list of ``J`` numbers replaces it (``J`` = the layer's output features).
``pool``
    ``type`` (required, ``max`` or ``avg``), ``kernel_size`` (required), ``stride`` (default:
    ``kernel_size``), ``padding`` 0.
``reduce``
    ``op`` (required: ``max``, ``mean``, ``sum``) over consecutive groups of features; ``groups``:
    a group size or a list of sizes; omitted, the groups the previous conv layer's bank suggests
    (``mr8``: the maximum over each 6 orientations).

Every refused value raises one :class:`~featuremap.errors.InputError` line naming its place, e.g.
``layers[1].conv.stride: must be an integer >= 1 or a pair [y, x] of them, got -1 (x.yaml)``
(layers are counted from 0, like the YAML list). Paths resolve against the pipeline file's folder
(``load_pipeline(dict)``: the current directory or ``base_dir``); URLs such as ``s3://...`` are
kept as they are.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from featuremap.errors import InputError, describe
from featuremap.geometry import parse_pair, parse_padding, parse_padding_mode

__all__ = ["InputSpec", "OutputSpec", "Pipeline", "load_pipeline"]

PIPELINE_KEYS = ("name", "input", "output", "layers")
INPUT_KEYS = ("store", "array", "channel_axis")
OUTPUT_KEYS = ("store", "chunks")
LAYER_KINDS = ("conv", "pool", "reduce")
CONV_KEYS = (
    "bank", "stride", "padding", "dilation", "padding_mode", "activation", "channels", "flip", "bias",
)
POOL_KEYS = ("type", "kernel_size", "stride", "padding")
REDUCE_KEYS = ("op", "groups")
#: Bank parameters that name files, resolved against the pipeline's folder.
BANK_PATH_PARAMS = ("path",)
FILE_BANK = "file"


# -- small validators --------------------------------------------------------------------------


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _suggestion(word: Any, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(word), list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _mapping(
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
                f"{where or 'pipeline'}: unknown key {describe(key)}{_suggestion(key, keys)}; "
                f"allowed keys: {', '.join(keys)}"
            )
    for key in required:
        if key not in value:
            raise InputError(f"{_join(where, key)}: missing (required in {where or 'the pipeline'})")
    return value


def _field(where: str, key: str, parse: Callable[[Any], Any], value: Any) -> Any:
    """Run ``parse(value)``; re-raise its :class:`InputError` with the key's place in front."""
    try:
        return parse(value)
    except InputError as error:
        message = str(error)
        # Parsers name the parameter themselves ("stride must be ..."); the place replaces it.
        if message.startswith(f"{key} "):
            message = message[len(key) + 1 :]
        raise InputError(f"{_join(where, key)}: {message}") from None


def _text(value: Any, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise InputError(f"must be a non-empty string, got {describe(value)}")
    return value


def _integer(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"must be an integer (e.g. -3), got {describe(value)}")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"must be true or false, got {describe(value)}")
    return value


def _choice(options: Sequence[str]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options or isinstance(value, bool):
            raise InputError(
                f"must be one of {', '.join(options)}, got {describe(value)}{_suggestion(value, options)}"
            )
        return value

    return parse


def _pair(name: str, minimum: int = 1) -> Callable[[Any], list[int]]:
    return lambda value: list(parse_pair(name, value, minimum=minimum))


def _padding(value: Any) -> str | list[list[int]]:
    parsed = parse_padding(value)
    return parsed if isinstance(parsed, str) else [list(pair) for pair in parsed]


def _bias(value: Any) -> bool | float | list[float] | None:
    """``None`` (bank's own), ``False`` (none), a number or a list of numbers."""
    allowed = (
        "false (no bias), a number or a list of numbers (omit it to keep the bank's own bias)"
    )

    def number(item: Any) -> bool:
        return isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item)

    if value is None or value is False:
        return value
    if number(value):
        return float(value)
    if isinstance(value, list) and value and all(number(item) for item in value):
        return [float(item) for item in value]
    raise InputError(f"must be {allowed}, got {describe(value)}")


def _resolve_path(path: str, base_dir: Path) -> str:
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
    def from_dict(cls, data: Any, *, base_dir: Path | None = None, where: str = "input") -> InputSpec:
        spec = _mapping({} if data is None else data, where, INPUT_KEYS)
        store = _field(where, "store", _text, spec.get("store"))
        return cls(
            store=None if store is None else _resolve_path(store, base_dir or Path.cwd()),
            array=_field(where, "array", _text, spec.get("array")),
            channel_axis=_field(where, "channel_axis", _integer, spec.get("channel_axis")),
        )


@dataclass(frozen=True)
class OutputSpec:
    """Where the features go: a Zarr store, and optionally its spatial chunk size ``(y, x)``."""

    store: str | None = None
    chunks: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"store": self.store, "chunks": None if self.chunks is None else list(self.chunks)}

    @classmethod
    def from_dict(cls, data: Any, *, base_dir: Path | None = None, where: str = "output") -> OutputSpec:
        spec = _mapping({} if data is None else data, where, OUTPUT_KEYS)
        store = _field(where, "store", _text, spec.get("store"))
        chunks = spec.get("chunks")
        return cls(
            store=None if store is None else _resolve_path(store, base_dir or Path.cwd()),
            chunks=None if chunks is None else tuple(_field(where, "chunks", _pair("chunks"), chunks)),
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
            f"{where}.type: unknown filter bank {describe(name)}{_suggestion(name, available)}; "
            f"available: {', '.join(available)} (see 'featuremap banks')"
        )
    params = {key: item for key, item in value.items() if key != "type"}
    if "base_dir" in params:
        # The loader resolves `path` against the pipeline's folder; a second base would be ignored.
        raise InputError(f"{where}.base_dir: not allowed in a pipeline; paths are relative to the pipeline file")
    for key in BANK_PATH_PARAMS:
        if isinstance(params.get(key), str):
            params[key] = _resolve_path(params[key], base_dir)
    try:
        banks.get(name, **params)
    except InputError as error:
        raise InputError(f"{where}: {error}") from None
    return {"type": name, **params}


def _parse_conv(value: Any, where: str, base_dir: Path) -> dict[str, Any]:
    from featuremap.banks import CHANNEL_MODES
    from featuremap.layers import parse_activation

    spec = _mapping(value, where, CONV_KEYS, required=("bank",))
    return {
        "bank": _parse_bank(spec["bank"], _join(where, "bank"), base_dir),
        "stride": _field(where, "stride", _pair("stride"), spec.get("stride", 1)),
        "padding": _field(where, "padding", _padding, spec.get("padding", 0)),
        "dilation": _field(where, "dilation", _pair("dilation"), spec.get("dilation", 1)),
        "padding_mode": _field(where, "padding_mode", parse_padding_mode, spec.get("padding_mode", "zeros")),
        "activation": _field(where, "activation", parse_activation, spec.get("activation", "none")),
        "channels": _field(where, "channels", _choice(CHANNEL_MODES), spec.get("channels", "per_channel")),
        "flip": _field(where, "flip", _boolean, spec.get("flip", False)),
        "bias": _field(where, "bias", _bias, spec.get("bias")),
    }


def _parse_pool(value: Any, where: str) -> dict[str, Any]:
    from featuremap.layers import POOL_OPS, PoolLayer

    spec = _mapping(value, where, POOL_KEYS, required=("type", "kernel_size"))
    op = _field(where, "type", _choice(POOL_OPS), spec["type"])
    kernel = _field(where, "kernel_size", _pair("kernel_size"), spec["kernel_size"])
    stride = _field(where, "stride", _pair("stride"), spec.get("stride", kernel))
    padding = _field(where, "padding", _padding, spec.get("padding", 0))
    # Cross-field rule (padding at most half the kernel): the layer itself checks it.
    _field(where, "padding", lambda _: PoolLayer.create(op, kernel, stride, padding), padding)
    return {"type": op, "kernel_size": kernel, "stride": stride, "padding": padding}


def _parse_reduce(value: Any, where: str) -> dict[str, Any]:
    from featuremap.layers import REDUCE_OPS, ReduceLayer

    spec = _mapping(value, where, REDUCE_KEYS, required=("op",))
    op = _field(where, "op", _choice(REDUCE_OPS), spec["op"])
    groups = spec.get("groups")
    if groups is not None:
        layer = _field(where, "groups", lambda g: ReduceLayer.create(op, g), groups)
        groups = list(layer.groups)
    return {"op": op, "groups": groups}


def _parse_layers(value: Any, base_dir: Path) -> tuple[dict[str, Any], ...]:
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
                + (_suggestion(keys[0], LAYER_KINDS) if isinstance(item, Mapping) and len(item) == 1 else "")
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


# -- the pipeline ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline. Build it with :func:`load_pipeline`.

    Attributes
    ----------
    name : str
    input, output : InputSpec, OutputSpec
        Store paths are absolute (or URLs); ``None`` where the command line must give them.
    layers : tuple of dict
        Normalised layer specs, ``{"conv": {...}}``, ``{"pool": {...}}`` or ``{"reduce": {...}}``,
        every default filled in; the same schema as the file, so ``to_dict()`` loads back.
    source : str or None
        Absolute path of the YAML file, if the pipeline came from one.
    base_dir : pathlib.Path
        The folder relative paths were resolved against.
    """

    name: str
    input: InputSpec
    output: OutputSpec
    layers: tuple[dict[str, Any], ...]
    source: str | None = None
    base_dir: Path = field(default_factory=Path.cwd)

    def with_overrides(
        self, *, input: str | None = None, array: str | None = None, output: str | None = None
    ) -> Pipeline:
        """A copy with the input store, input array or output store replaced.

        These come from the command line, so relative paths resolve against the current
        directory, not the pipeline's folder.
        """
        cwd = Path.cwd()
        inputs, outputs = self.input, self.output
        if input is not None:
            inputs = replace(inputs, store=_resolve_path(_field("", "--input", _text, input), cwd))
        if array is not None:
            inputs = replace(inputs, array=_field("", "--array", _text, array))
        if output is not None:
            outputs = replace(outputs, store=_resolve_path(_field("", "--output", _text, output), cwd))
        return replace(self, input=inputs, output=outputs)

    def to_dict(self) -> dict[str, Any]:
        """The pipeline as run: normalised, JSON-serialisable, loadable by :func:`load_pipeline`."""
        return {
            "name": self.name,
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "layers": copy.deepcopy(list(self.layers)),
        }

    def weight_files(self) -> list[str]:
        """Local weight files the layers read, in layer order."""
        return [
            layer["conv"]["bank"][key]
            for layer in self.layers
            if "conv" in layer
            for key in BANK_PATH_PARAMS
            if isinstance(layer["conv"]["bank"].get(key), str)
        ]

    def fingerprint(self) -> str:
        """sha256 (hex) of what determines the result: the pipeline and its weight files' bytes.

        The output store's path is left out, so a store that was moved still resumes.
        """
        data = self.to_dict()
        data["output"]["store"] = None
        digest = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
        for path in self.weight_files():
            try:
                digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
            except OSError as error:
                raise self._error(f"cannot read weight file {path!r}: {error.strerror}") from None
        return digest.hexdigest()

    def build_layers(self, in_channels: int) -> list[Any]:
        """Instantiate the layers for an input with ``in_channels`` channels.

        Banks are built (weight files read) and adapted to the channel count, and every layer's
        channel count is checked against its input's. Geometry needs the image size and is
        checked by :func:`featuremap.layers.stack_geometry`.

        Raises
        ------
        InputError
            Naming the layer (``layers[i].conv``) and what does not fit.
        """
        from featuremap.layers import PoolLayer, ReduceLayer

        layers: list[Any] = []
        channels, suggested_groups = in_channels, None
        for index, spec in enumerate(self.layers):
            kind, params = next(iter(spec.items()))
            where = f"layers[{index}].{kind}"
            try:
                if kind == "conv":
                    layer, suggested_groups = _build_conv(params, channels)
                elif kind == "pool":
                    layer = PoolLayer.create(
                        params["type"], params["kernel_size"], params["stride"], params["padding"]
                    )
                else:
                    groups = params["groups"] or suggested_groups
                    if groups is None:
                        raise InputError(
                            "groups: missing, and the previous conv layer's bank suggests none; "
                            "give a group size or a list of sizes"
                        )
                    layer = ReduceLayer.create(params["op"], groups)
                channels = layer.out_channels(channels)
            except InputError as error:
                raise self._error(f"{where}: {error}") from None
            layers.append(layer)
        return layers

    def _error(self, message: str) -> InputError:
        return InputError(f"{message} ({self.source})" if self.source else message)


def _build_conv(params: Mapping[str, Any], in_channels: int) -> tuple[Any, tuple[int, ...] | None]:
    """A :class:`~featuremap.layers.ConvLayer` and the reduce groups its bank suggests."""
    from featuremap import banks
    from featuremap.layers import ConvLayer

    spec = dict(params["bank"])
    bank = banks.get(spec.pop("type"), **spec).for_channels(in_channels, params["channels"])
    bias = params["bias"]
    if bias is None:
        bias = bank.bias
    elif bias is False:
        bias = None
    elif isinstance(bias, float):
        bias = [bias] * bank.out_channels
    elif len(bias) != bank.out_channels:
        raise InputError(
            f"bias: has {len(bias)} values but the layer has {bank.out_channels} output features"
        )
    layer = ConvLayer.create(
        bank.weight,
        bias,
        stride=params["stride"],
        padding=params["padding"] if isinstance(params["padding"], str) else tuple(map(tuple, params["padding"])),
        dilation=params["dilation"],
        groups=bank.groups,
        padding_mode=params["padding_mode"],
        activation=params["activation"],
        flip=params["flip"],
        bank=bank.to_dict(),
    )
    return layer, bank.reduce_groups


# -- loading -----------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys (a silent overwrite hides a typo)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise InputError(
                    f"duplicate key {describe(key)} at line {key_node.start_mark.line + 1}"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"pipeline file {str(path)!r} not found") from None
    except IsADirectoryError:
        raise InputError(f"pipeline {str(path)!r} is a directory; give a YAML file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read pipeline file {str(path)!r}: {error}") from None


def _parse_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.constructor.ConstructorError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(
            f"YAML tag{where} is not allowed: {error.problem} (pipelines are read with a safe loader; "
            f"use plain mappings, lists, strings and numbers)"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InputError(f"invalid YAML{where}: {problem}") from None


def _parse_pipeline(data: Any, base_dir: Path, source: str | None, default_name: str) -> Pipeline:
    spec = _mapping(data, "", PIPELINE_KEYS, required=("layers",))
    return Pipeline(
        name=_field("", "name", _text, spec.get("name")) or default_name,
        input=InputSpec.from_dict(spec.get("input"), base_dir=base_dir),
        output=OutputSpec.from_dict(spec.get("output"), base_dir=base_dir),
        layers=_parse_layers(spec["layers"], base_dir),
        source=source,
        base_dir=base_dir,
    )


def load_pipeline(
    path_or_dict: str | os.PathLike[str] | Mapping[str, Any] | Pipeline, *, base_dir: str | os.PathLike[str] | None = None
) -> Pipeline:
    """Read and validate a pipeline from a YAML file or a mapping.

    Parameters
    ----------
    path_or_dict : path, mapping or Pipeline
        A YAML file (read with a safe loader), or the same structure as a mapping. A
        :class:`Pipeline` is returned unchanged.
    base_dir : path, optional
        Folder relative paths resolve against: default the YAML file's folder, or the current
        directory for a mapping.

    Returns
    -------
    Pipeline

    Raises
    ------
    InputError
        One line naming the key and its place (and the file), and what is allowed.
    """
    if isinstance(path_or_dict, Pipeline):
        return path_or_dict
    if isinstance(path_or_dict, Mapping):
        folder = Path(base_dir) if base_dir is not None else Path.cwd()
        return _parse_pipeline(path_or_dict, folder.absolute(), None, "pipeline")
    if not isinstance(path_or_dict, (str, os.PathLike)):
        raise InputError(
            f"a pipeline must be a YAML file path or a mapping, got {describe(path_or_dict)}"
        )
    path = Path(path_or_dict)
    folder = Path(base_dir) if base_dir is not None else path.parent
    text = _read_text(path)  # its errors name the file already
    try:
        data = _parse_yaml(text)
        return _parse_pipeline(data, folder.absolute(), str(path.absolute()), path.stem)
    except InputError as error:
        raise InputError(f"{error} ({path})") from None
