"""``eigenvalues`` in a pipeline file: ``ndim`` given, or the rank of the conv before it."""

from __future__ import annotations

from pathlib import Path

import pytest

from featuremap.engine.layers import EigenvaluesLayer
from featuremap.errors import InputError
from featuremap.pipeline.layers import build_layers, layers_to_dicts, parse_layers

BOX_2D = {"conv": {"bank": {"type": "box"}}}
BOX_3D = {"conv": {"bank": {"type": "box", "ndim": 3}}}


def layers(*items):
    return parse_layers(list(items), Path.cwd())


@pytest.mark.parametrize(("conv", "ndim", "size"), [(BOX_2D, 2, 3), (BOX_3D, 3, 6)])
def test_the_rank_defaults_to_the_convs_and_round_trips(conv, ndim, size):
    squares = {"product": {"pairs": [[0, 0]] * size}}  # one tensor of components x²
    specs = layers(conv, squares, {"eigenvalues": {}})
    assert layers_to_dicts(specs)[2] == {"eigenvalues": {"ndim": ndim}}
    assert layers(*layers_to_dicts(specs)) == specs
    assert specs[2].ndim == ndim
    built = build_layers(specs, 1)
    assert built[2] == EigenvaluesLayer(ndim)
    assert built[2].out_channels(size) == ndim


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (
            [BOX_2D, {"eigenvalues": {"ndim": 4}}],
            r"^layers\[1\].eigenvalues.ndim: must be an integer >= 2 and <= 3, got 4$",
        ),
        ([BOX_2D, {"eigenvalues": {"rank": 2}}], r"^layers\[1\].eigenvalues: unknown key 'rank'"),
        (
            [BOX_2D, {"eigenvalues": {"ndim": 3}}],
            r"layers\[0\].conv is a 2-D layer but layers\[1\].eigenvalues is a 3-D one",
        ),
    ],
)
def test_refusals_name_the_place(items, message):
    with pytest.raises(InputError, match=message):
        layers(*items)


def test_a_channel_count_that_is_not_whole_tensors_is_refused_at_build():
    specs = layers(BOX_2D, {"eigenvalues": {}})
    with pytest.raises(
        InputError,
        match=r"^layers\[1\].eigenvalues: the eigenvalues of 2-D tensors take groups of 3 "
        r"components \[yy, yx, xx\], but the input has 2 features$",
    ):
        build_layers(specs, 2)
