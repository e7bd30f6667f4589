"""The layer-kind registry: a new kind is one registered module, and the list parser takes it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from featuremap.engine.layers import PoolLayer
from featuremap.errors import InputError
from featuremap.pipeline.layers import (
    MAX_LAYERS,
    build_layers,
    kinds,
    layers_to_dicts,
    parse_layers,
)
from featuremap.pipeline.layers._base import _KINDS, ParseContext, register


def test_the_shipped_kinds():
    assert {"conv", "features", "pool", "reduce"} <= set(kinds())
    assert list(kinds()) == sorted(kinds())


def test_a_new_kind_is_one_registered_class(monkeypatch):
    monkeypatch.setattr("featuremap.pipeline.layers._base._KINDS", dict(_KINDS))

    @register
    @dataclass(frozen=True)
    class HalveSpec:  # a 2x2 average pool under another name
        kind: ClassVar[str] = "halve"
        ndim: ClassVar[int] = 2  # a 2-D layer

        @classmethod
        def parse(cls, value: Any, where: str, context: ParseContext) -> HalveSpec:
            if value != {}:
                raise InputError(f"{where}: takes no keys")
            return cls()

        def to_dict(self) -> dict[str, Any]:
            return {}

        def build(self, context: Any) -> PoolLayer:
            return PoolLayer.create("avg", 2)

        def weight_files(self) -> list[str]:
            return []

    specs = parse_layers([{"conv": {"bank": {"type": "box"}}}, {"halve": {}}], Path.cwd())
    assert layers_to_dicts(specs)[1] == {"halve": {}}
    built = build_layers(specs, 1)
    assert built[1].kernel_size == (2, 2)
    with pytest.raises(InputError, match=r"layers\[0\].halve: takes no keys"):
        parse_layers([{"halve": {"x": 1}}], Path.cwd())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "layers: must be a non-empty list"),
        ([{"conv": {}, "pool": {}}], r"layers\[0\]: must have exactly one key"),
        ([{"pol": {}}], r"layers\[0\]: must have exactly one key.*did you mean 'pool'"),
        ([{"pool": {"type": "max", "kernel_size": 2}}] * (MAX_LAYERS + 1), "at most 256 layers"),
    ],
)
def test_list_refusals(value, message):
    with pytest.raises(InputError, match=message):
        parse_layers(value, Path.cwd())


def test_the_banks_of_a_pipeline_are_bounded_together():
    context = ParseContext(Path.cwd())
    context.spend("layers[0].conv.bank", 1 << 25)
    context.spend("layers[1].conv.bank", 1 << 25)  # exactly the limit
    with pytest.raises(InputError, match=r"layers\[2\].conv.bank: the banks up to here hold"):
        context.spend("layers[2].conv.bank", 1)
