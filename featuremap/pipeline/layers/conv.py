"""``conv`` in a pipeline file: a filter bank, its geometry, activation and bias.

``bank`` (required): ``{type: NAME, **params}`` for any :mod:`featuremap.banks` name (``type:
file`` reads a weight file, its ``path`` relative to the pipeline file); ``stride`` 1; ``padding``
0 (an int, ``[py, px]``, ``[[top, bottom], [left, right]]``, ``same``, ``valid``); ``dilation`` 1;
``padding_mode`` ``zeros`` (one mode, or one per axis: ``{y: replicate, x: circular}``);
``activation`` ``none``; ``channels`` ``per_channel`` (how a
single-channel bank meets a multi-channel input: every filter on every channel, or ``sum`` over
channels); ``flip`` ``false`` (``true``: true convolution); ``bias``: omitted keeps the bank's own
bias (a weight file's ``bias``), ``false`` drops it, a number or a list of ``J`` numbers replaces
it (``J`` = the layer's output features).

The bank is built once, when the file is parsed (bad parameters fail at load), and adapted to the
input's channels when the layer is built. Its weight's rank makes the layer 2-D or 3-D (a bank
with ``ndim: 3``, a ``(J, C, kz, ky, kx)`` weight file), and every per-axis key then has one value
per axis ``z, y, x``. A bank with ``sigma_units: physical`` is built again for the input, its
sigmas divided by the input's pixel spacing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from featuremap import banks
from featuremap._validation import parse_bool, parse_choice, suggestion
from featuremap._vocabulary import CHANNEL_MODES, Activation, ChannelMode, PaddingMode
from featuremap.engine.geometry import modes_spec, parse_padding, parse_padding_mode
from featuremap.engine.layers import ConvLayer, parse_activation
from featuremap.errors import InputError, describe
from featuremap.pipeline.layers._base import BuildContext, ParseContext, register
from featuremap.pipeline.schema import (
    field_value,
    join,
    mapping,
    resolve_path,
    sizes_field,
)

__all__ = ["BANK_PATH_PARAMS", "ConvSpec"]

KEYS = (
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
#: Bank parameters that name files, resolved against the pipeline's folder.
BANK_PATH_PARAMS = ("path",)

#: A conv layer's ``bias`` key: ``None`` (the bank's own), ``False`` (none), one number for every
#: feature, or one per feature.
Bias = Literal[False] | float | list[float] | None


def padding_field(ndim: int) -> Callable[[Any], str | list[list[int]]]:
    """``padding`` as the file keeps it: ``same`` or ``[[lo, hi], ...]`` (one pair per axis)."""

    def parse(value: Any) -> str | list[list[int]]:
        parsed = parse_padding(value, ndim)
        return parsed if isinstance(parsed, str) else [list(pair) for pair in parsed]

    return parse


def _physical(params: Mapping[str, Any]) -> bool:
    """Whether a bank's sigmas are in the input's physical units (built again per input)."""
    return params.get("sigma_units") == "physical"


def _bias(value: Any) -> Bias:
    """``None`` (bank's own), ``False`` (none), a number or a list of numbers."""
    allowed = "false (no bias), a number or a list of numbers (omit it to keep the bank's own bias)"

    def number(item: Any) -> bool:
        return isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item)

    if value is None or value is False:
        return False if value is False else None
    if number(value):
        return float(value)
    if isinstance(value, list) and value and all(number(item) for item in value):
        return [float(item) for item in value]
    raise InputError(f"must be {allowed}, got {describe(value)}")


def _unit_spacing(params: Mapping[str, Any]) -> dict[str, Any]:
    """A stand-in ``spacing`` (1 per axis) that lets a bank in physical units be checked when
    the file is parsed, before the input's spacing is known."""
    if not _physical(params):
        return {}
    ndim = params.get("ndim", 2)
    return {"spacing": [1.0] * ndim} if ndim in (2, 3) else {}


def _parse_bank(value: Any, where: str, context: ParseContext) -> tuple[dict[str, Any], banks.Bank]:
    """``{type: NAME, **params}`` and the bank built from it (once, so bad parameters fail here)."""
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
            params[key] = resolve_path(params[key], context.base_dir)
    try:
        # sigmas in physical units are checked with unit spacing here, built for the input later
        bank = banks.get(name, **params, **_unit_spacing(params))
    except InputError as error:
        raise InputError(f"{where}: {error}") from None
    context.spend(where, bank.weight.size)
    return {"type": name, **params}, bank


@register
@dataclass(frozen=True)
class ConvSpec:
    """A ``conv`` layer as written, every default filled in; ``built_bank`` is the bank the
    ``bank`` mapping names, built once at parse time (not part of the spec's value)."""

    bank: dict[str, Any]
    stride: list[int]
    padding: str | list[list[int]]
    dilation: list[int]
    padding_mode: PaddingMode | tuple[PaddingMode, ...]
    activation: Activation
    channels: ChannelMode
    flip: bool
    bias: Bias
    built_bank: banks.Bank = field(compare=False, repr=False)

    kind: ClassVar[str] = "conv"

    @property
    def ndim(self) -> int:
        """2 or 3, the bank weight's spatial rank."""
        return int(self.built_bank.weight.ndim) - 2

    @classmethod
    def parse(cls, value: Any, where: str, context: ParseContext) -> ConvSpec:
        spec = mapping(value, where, KEYS, required=("bank",))
        bank, built = _parse_bank(spec["bank"], join(where, "bank"), context)
        ndim = context.ndim = int(built.weight.ndim) - 2
        return cls(
            bank=bank,
            stride=field_value(where, "stride", sizes_field("stride", ndim), spec.get("stride", 1)),
            padding=field_value(where, "padding", padding_field(ndim), spec.get("padding", 0)),
            dilation=field_value(
                where, "dilation", sizes_field("dilation", ndim), spec.get("dilation", 1)
            ),
            padding_mode=field_value(
                where,
                "padding_mode",
                lambda v: parse_padding_mode(v, ndim),
                spec.get("padding_mode", "zeros"),
            ),
            activation=field_value(
                where, "activation", parse_activation, spec.get("activation", "none")
            ),
            channels=field_value(
                where,
                "channels",
                lambda v: parse_choice("channels", v, CHANNEL_MODES),
                spec.get("channels", "per_channel"),
            ),
            flip=field_value(
                where, "flip", lambda v: parse_bool("flip", v), spec.get("flip", False)
            ),
            bias=field_value(where, "bias", _bias, spec.get("bias")),
            built_bank=built,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "bank": dict(self.bank),
            "stride": list(self.stride),
            "padding": self.padding
            if isinstance(self.padding, str)
            else [list(pair) for pair in self.padding],
            "dilation": list(self.dilation),
            "padding_mode": modes_spec(self.padding_mode, self.ndim),
            "activation": self.activation,
            "channels": self.channels,
            "flip": self.flip,
            "bias": list(self.bias) if isinstance(self.bias, list) else self.bias,
        }

    def weight_files(self) -> list[str]:
        return [self.bank[key] for key in BANK_PATH_PARAMS if isinstance(self.bank.get(key), str)]

    def build(self, context: BuildContext) -> ConvLayer:
        """The layer for ``context.channels`` inputs (a bank in physical units built for
        ``context.spacing``); remembers its bank for a reduction."""
        bank = self._bank_for(context).for_channels(context.channels, self.channels)
        layer = ConvLayer.create(
            bank.weight,
            self._bias_for(bank),
            stride=self.stride,
            padding=self.padding
            if isinstance(self.padding, str)
            else tuple(tuple(pair) for pair in self.padding),
            dilation=self.dilation,
            groups=bank.groups,
            padding_mode=self.padding_mode,
            activation=self.activation,
            flip=self.flip,
            bank=bank.to_dict(),
        )
        context.bank = bank
        return layer

    def _bank_for(self, context: BuildContext) -> banks.Bank:
        if not _physical(self.bank):
            return self.built_bank
        params = {key: value for key, value in self.bank.items() if key != "type"}
        spacing = None if context.spacing is None else list(context.spacing)
        return banks.get(self.bank["type"], **params, spacing=spacing)

    def _bias_for(self, bank: banks.Bank) -> Any:
        if self.bias is None:
            return bank.bias
        if self.bias is False:
            return None
        if isinstance(self.bias, float):
            return [self.bias] * bank.out_channels
        if len(self.bias) != bank.out_channels:
            raise InputError(
                f"bias: has {len(self.bias)} values but the layer has {bank.out_channels} output features"
            )
        return self.bias
