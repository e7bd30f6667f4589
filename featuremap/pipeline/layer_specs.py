"""The ``layers`` list of a pipeline file: each conv, pool and reduce layer checked key by key,
its bank built once so that bad parameters fail at load, every default filled in.

Errors name the layer's place (``layers[1].conv.stride: ...``, counted from 0 like the YAML
list). The banks of one pipeline are bounded together (:data:`MAX_PIPELINE_WEIGHTS`) on top of
each bank's own limits, and a pipeline has at most :data:`MAX_LAYERS` layers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featuremap._validation import parse_bool, parse_choice, suggestion
from featuremap._vocabulary import CHANNEL_MODES, POOL_OPS, REDUCE_OPS
from featuremap.engine.geometry import parse_padding, parse_padding_mode
from featuremap.engine.layers import PoolLayer, ReduceLayer, parse_activation
from featuremap.errors import InputError, describe
from featuremap.pipeline.schema import (
    choice_field,
    field_value,
    join,
    mapping,
    pair_field,
    resolve_path,
)

__all__ = ["BANK_PATH_PARAMS", "MAX_LAYERS", "MAX_PIPELINE_WEIGHTS", "parse_layers"]

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
#: The most layers a pipeline may have.
MAX_LAYERS = 256
#: The most weights the banks of one pipeline may hold together, before they are expanded to the
#: input's channels: 2**26, 256 MiB of float32 (each bank alone is bounded by the banks' limits).
MAX_PIPELINE_WEIGHTS = 1 << 26


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


@dataclass
class _WeightBudget:
    """The weights of the banks parsed so far, against :data:`MAX_PIPELINE_WEIGHTS`."""

    used: int = 0

    def spend(self, where: str, weights: int) -> None:
        self.used += weights
        if self.used > MAX_PIPELINE_WEIGHTS:
            raise InputError(
                f"{where}: the banks up to here hold {self.used} weights together; a pipeline "
                f"may hold at most {MAX_PIPELINE_WEIGHTS} (256 MiB of float32)"
            )


def _parse_bank(
    value: Any, where: str, base_dir: Path, budget: _WeightBudget | None = None
) -> dict[str, Any]:
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
        bank = banks.get(name, **params)
    except InputError as error:
        raise InputError(f"{where}: {error}") from None
    if budget is not None:
        budget.spend(where, bank.weight.size)
    return {"type": name, **params}


def _parse_conv(
    value: Any, where: str, base_dir: Path, budget: _WeightBudget | None = None
) -> dict[str, Any]:
    spec = mapping(value, where, CONV_KEYS, required=("bank",))
    return {
        "bank": _parse_bank(spec["bank"], join(where, "bank"), base_dir, budget),
        "stride": field_value(where, "stride", pair_field("stride"), spec.get("stride", 1)),
        "padding": field_value(where, "padding", _padding, spec.get("padding", 0)),
        "dilation": field_value(where, "dilation", pair_field("dilation"), spec.get("dilation", 1)),
        "padding_mode": field_value(
            where, "padding_mode", parse_padding_mode, spec.get("padding_mode", "zeros")
        ),
        "activation": field_value(
            where, "activation", parse_activation, spec.get("activation", "none")
        ),
        "channels": field_value(
            where,
            "channels",
            choice_field("channels", CHANNEL_MODES),
            spec.get("channels", "per_channel"),
        ),
        "flip": field_value(
            where, "flip", lambda v: parse_bool("flip", v), spec.get("flip", False)
        ),
        "bias": field_value(where, "bias", _bias, spec.get("bias")),
    }


def _parse_pool(value: Any, where: str) -> dict[str, Any]:
    spec = mapping(value, where, POOL_KEYS, required=("type", "kernel_size"))
    op = field_value(where, "type", choice_field("type", POOL_OPS), spec["type"])
    kernel = field_value(where, "kernel_size", pair_field("kernel_size"), spec["kernel_size"])
    stride = field_value(where, "stride", pair_field("stride"), spec.get("stride", kernel))
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
    if len(value) > MAX_LAYERS:
        raise InputError(f"layers: a pipeline has at most {MAX_LAYERS} layers, got {len(value)}")
    parsed = []
    budget = _WeightBudget()
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
            parsed.append({"conv": _parse_conv(spec, where, base_dir, budget)})
        elif kind == "pool":
            parsed.append({"pool": _parse_pool(spec, where)})
        else:
            parsed.append({"reduce": _parse_reduce(spec, where)})
    return tuple(parsed)
