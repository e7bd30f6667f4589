"""The ``layers`` list of a pipeline file, parsed once into typed layer specs.

Each layer kind is one module here (``conv``, ``pool``, ``reduce``, the pointwise ``activation``,
``eigenvalues`` and ``product``, ``features``), registered by its YAML key
(:func:`~featuremap.pipeline.layers._base.register`): it parses its mapping key by key (errors
name the place, ``layers[1].conv.stride: ...``, counted from 0 like the YAML list), writes it
back, and builds the engine's layer. :func:`parse_layers` reads the list; :func:`build_layers`
turns the specs into the engine's layers for an input's channel count. The banks of one pipeline
are bounded together (:data:`MAX_PIPELINE_WEIGHTS`) on top of each bank's own limits, and a
pipeline has at most :data:`MAX_LAYERS` layers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from featuremap._validation import suggestion
from featuremap.engine.layers import Layer
from featuremap.engine.stack import stack_ndim
from featuremap.errors import InputError, describe
from featuremap.pipeline.layers._base import (
    MAX_PIPELINE_WEIGHTS,
    BuildContext,
    LayerSpec,
    ParseContext,
    kinds,
    spec_class,
)
from featuremap.pipeline.layers.activation import ActivationSpec
from featuremap.pipeline.layers.conv import BANK_PATH_PARAMS, ConvSpec
from featuremap.pipeline.layers.eigenvalues import EigenvaluesSpec
from featuremap.pipeline.layers.features import FeaturesSpec
from featuremap.pipeline.layers.pool import PoolSpec
from featuremap.pipeline.layers.product import ProductSpec
from featuremap.pipeline.layers.reduce import ReduceSpec

__all__ = [
    "BANK_PATH_PARAMS",
    "MAX_LAYERS",
    "MAX_PIPELINE_WEIGHTS",
    "ActivationSpec",
    "ConvSpec",
    "EigenvaluesSpec",
    "FeaturesSpec",
    "LayerSpec",
    "PoolSpec",
    "ProductSpec",
    "ReduceSpec",
    "build_layers",
    "kinds",
    "layers_to_dicts",
    "parse_layers",
]

#: The most layers a pipeline may have.
MAX_LAYERS = 256


def _kind_of(item: Any, where: str) -> str:
    """The one key of a layer's mapping, which must be a registered kind."""
    known = kinds()
    if not isinstance(item, Mapping) or len(item) != 1 or next(iter(item)) not in known:
        keys = list(item) if isinstance(item, Mapping) else item
        hint = suggestion(keys[0], known) if isinstance(item, Mapping) and len(item) == 1 else ""
        raise InputError(
            f"{where}: must have exactly one key, one of {', '.join(known)}, got {describe(keys)}{hint}"
        )
    kind: str = next(iter(item))
    return kind


def parse_layers(value: Any, base_dir: Path) -> tuple[LayerSpec, ...]:
    """The ``layers`` list, every layer parsed and typed (paths resolved against ``base_dir``)."""
    if not isinstance(value, list) or not value:
        raise InputError(
            "layers: must be a non-empty list of layers, each one of "
            f"{', '.join(f'{{{kind}: ...}}' for kind in kinds())}, got {describe(value)}"
        )
    if len(value) > MAX_LAYERS:
        raise InputError(f"layers: a pipeline has at most {MAX_LAYERS} layers, got {len(value)}")
    context = ParseContext(base_dir)
    specs = []
    for index, item in enumerate(value):
        kind = _kind_of(item, f"layers[{index}]")
        specs.append(spec_class(kind).parse(item[kind], f"layers[{index}].{kind}", context))
    stack_ndim(specs)  # 2-D and 3-D layers are not mixed
    return tuple(specs)


def layers_to_dicts(specs: Sequence[LayerSpec]) -> list[dict[str, Any]]:
    """The specs as the file's ``layers`` list, every default filled in."""
    return [{spec.kind: spec.to_dict()} for spec in specs]


def build_layers(
    specs: Sequence[LayerSpec], in_channels: int, spacing: tuple[float, ...] | None = None
) -> list[Layer]:
    """The engine's layers for an input with ``in_channels`` channels, each layer's channel
    count checked against its input's; ``spacing`` is the input's physical pixel size per
    spatial axis, for banks whose sigmas are in physical units.

    Raises
    ------
    InputError
        Naming the layer (``layers[i].conv: ...``) and what does not fit.
    """
    context = BuildContext(in_channels, spacing=spacing)
    layers: list[Layer] = []
    for index, spec in enumerate(specs):
        try:
            built = spec.build(context)  # one layer, or the stack a `features` layer is
            for layer in built if isinstance(built, list) else [built]:
                context.channels = layer.out_channels(context.channels)
                layers.append(layer)
        except InputError as error:
            raise InputError(f"layers[{index}].{spec.kind}: {error}") from None
    return layers
