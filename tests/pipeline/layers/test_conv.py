"""``conv`` in a pipeline file: parsed once into a typed spec, its bank built once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from featuremap import banks
from featuremap.engine.layers import ConvLayer
from featuremap.errors import InputError
from featuremap.pipeline.layers import ConvSpec, build_layers, parse_layers
from featuremap.pipeline.layers._base import BuildContext, ParseContext


def parse(value, base_dir=Path("/data")):
    return ConvSpec.parse(value, "layers[0].conv", ParseContext(base_dir))


def test_defaults_typed_and_written_back():
    spec = parse({"bank": {"type": "gabor", "size": 7, "orientations": 2}, "stride": 2})
    assert spec.stride == [2, 2]
    assert spec.padding == [[0, 0], [0, 0]]
    assert spec.built_bank.weight.shape[-2:] == (7, 7)
    again = parse(spec.to_dict())
    assert again == spec  # the built bank is not part of the value
    assert again.to_dict() == spec.to_dict()


def test_the_bank_is_built_once(monkeypatch):
    built = []
    original = banks.get

    def counting(name, **params):
        built.append(name)
        return original(name, **params)

    monkeypatch.setattr(banks, "get", counting)
    specs = parse_layers([{"conv": {"bank": {"type": "gaussian", "sigmas": [1.0]}}}], Path.cwd())
    build_layers(specs, 3)
    build_layers(specs, 1)
    assert built == ["gaussian"]


def test_build_adapts_the_bank_to_the_channels_and_remembers_it():
    spec = parse({"bank": {"type": "box", "size": 3}, "channels": "per_channel", "bias": 0.5})
    context = BuildContext(channels=3)
    layer = spec.build(context)
    assert isinstance(layer, ConvLayer)
    assert layer.weight.shape == (3, 1, 3, 3)
    assert layer.groups == 3
    np.testing.assert_array_equal(layer.bias, [0.5, 0.5, 0.5])
    assert context.bank is not None
    assert context.bank.out_channels == 3


def test_paths_resolve_against_the_pipeline_folder(tmp_path):
    np.savez(tmp_path / "w.npz", weight=np.ones((2, 1, 3, 3), np.float32))
    spec = parse({"bank": {"type": "file", "path": "w.npz"}}, tmp_path)
    assert spec.bank["path"] == str(tmp_path / "w.npz")
    assert spec.weight_files() == [str(tmp_path / "w.npz")]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"bank": {"type": "gabr"}},
            r"layers\[0\].conv.bank.type: unknown filter bank 'gabr'.*gabor",
        ),
        ({"bank": {"type": "box"}, "stride": 0}, r"layers\[0\].conv.stride: must be"),
        ({"bank": {"type": "box"}, "bias": "x"}, r"layers\[0\].conv.bias: must be false"),
        ({"bank": {"type": "box"}, "colour": 1}, r"layers\[0\].conv: unknown key 'colour'"),
        ({"stride": 1}, r"layers\[0\].conv.bank: missing"),
    ],
)
def test_refusals_name_their_place(value, message):
    with pytest.raises(InputError, match=message):
        parse(value)


def test_a_bias_of_the_wrong_length_is_refused_when_built():
    spec = parse({"bank": {"type": "box"}, "bias": [1.0, 2.0]})
    with pytest.raises(
        InputError, match=r"layers\[0\].conv: bias: has 2 values but the layer has 1"
    ):
        build_layers([spec], 1)
