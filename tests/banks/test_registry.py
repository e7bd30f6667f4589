"""The bank registry (``featuremap.banks._registry``): names, metadata, determinism, one-line errors
for unknown banks and parameters, size limits (the values themselves: ``test_params.py``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import featuremap.banks as banks
from featuremap.errors import InputError

BUILT_IN = [name for name in banks.names() if name != "file"]


def test_names_sorted_and_complete():
    names = banks.names()
    assert names == sorted(names)
    expected = {"gabor", "gaussian", "log", "dog", "sobel", "scharr", "prewitt", "laplacian", "lm",
                "schmid", "mr8", "rfs", "ilastik", "random", "box", "identity", "file"}  # fmt: skip
    assert expected <= set(names)


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_bank_builds_consistently(name):
    bank = banks.get(name)
    n_filters = bank.weight.shape[0]
    assert bank.weight.dtype == np.float32
    assert bank.weight.ndim == 4
    assert bank.weight.shape[2] % 2 == 1
    assert bank.weight.shape[2] == bank.weight.shape[3]
    assert len(bank.filters) == n_filters
    assert all("name" in f for f in bank.filters)
    assert np.isfinite(bank.weight).all()
    assert not bank.weight.flags.writeable
    assert bank.bias is None or bank.bias.shape == (n_filters,)
    # metadata is JSON and rebuilding from the recorded params gives the same weights (determinism)
    metadata = json.loads(json.dumps(bank.to_dict()))
    assert metadata["shape"] == list(bank.weight.shape)
    assert metadata["name"] == name
    rebuilt = banks.get(name, **metadata["params"])
    np.testing.assert_array_equal(rebuilt.weight, bank.weight)


@pytest.mark.parametrize("name", banks.names())
def test_describe_lists_every_parameter(name):
    info = banks.describe(name)
    assert info.name == name
    assert info.summary
    assert "\n" not in info.summary
    assert all(len(row) == 3 and row[2] for row in info.parameters)
    assert banks.BankInfo.from_dict(info.to_dict()) == info


def test_unknown_bank_names_alternatives():
    with pytest.raises(
        InputError,
        match=r"unknown filter bank 'gabr' \(did you mean 'gabor'\?\); available banks: box, ",
    ):
        banks.get("gabr")
    with pytest.raises(InputError, match="unknown filter bank"):
        banks.describe("nope")


def test_unknown_parameter_lists_parameters():
    with pytest.raises(InputError) as caught:
        banks.get("gabor", sizes=5)
    message = str(caught.value)
    assert message.startswith(
        "bank 'gabor' has no parameter 'sizes' (did you mean 'size'?); its parameters are: size, orientations, angles"
    )
    assert "\n" not in message


# -- limits: refused from the parameters, before any weight is allocated (issue #12) -------------

LIMITS = [
    ("gabor", {"size": 1027}, r"'size' must be an odd integer >= 1 and <= 1025, got 1027"),
    ("gaussian", {"size": 1027}, r"'size' must be an odd integer >= 1 and <= 1025"),
    (
        "gabor",
        {"sigma": 171.0},
        (
            r"bank 'gabor' kernel size 2\*ceil\(n_stds\*sigma\)\+1 must be <= 1025, got 1027 "
            r"\(n_stds 3, largest sigma 171; lower sigma or n_stds, raise the smallest frequency, "
            r"or give size\)$"
        ),
    ),
    ("gabor", {"frequencies": [1e-300]}, r"kernel size .* must be <= 1025, got about 3\.37e\+300"),
    ("gabor", {"n_stds": 1e300}, r"kernel size .* must be <= 1025, got about 1\.12e\+301"),
    ("gabor", {"bandwidth": 1e-300}, r"envelope sigma of frequency 0\.1 .* is not a finite number"),
    (
        "gabor",
        {"orientations": 360, "frequencies": [0.1] * 92, "size": 1},
        r"bank 'gabor' would have 66240 filters \(weight 66240 x 1 x 1 x 1\); at most 65536",
    ),
    (
        "gabor",
        {"size": 1023},
        (
            r"bank 'gabor' would hold 32 x 1 x 1023 x 1023 = 33488928 weights; at most 16777216 "
            r"\(64 MiB of float32\) are allowed"
        ),
    ),
    (
        "gabor",
        {"phases": [0.0] * 1025},
        r"'phases' must be a non-empty list of numbers, at most 1024 of them, got .* \(1025 of them\)",
    ),
    (
        "gaussian",
        {"sigmas": [128.5]},
        (
            r"bank 'gaussian' kernel size 2\*int\(truncate\*sigma\+0\.5\)\+1 must be <= 1025, got 1029 "
            r"\(truncate 4, sigma 128\.5; lower sigma or truncate, or give size\)"
        ),
    ),
    ("gaussian", {"truncate": 1e308, "sigmas": [10.0]}, r"got about inf"),
    ("log", {"truncate": 600.0, "sigmas": [1.0]}, r"bank 'log' kernel size .* got 1201"),
    ("dog", {"sigmas": [100.0], "k": 1.3}, r"bank 'dog' kernel size .* got 1041 .*sigma 130"),
    (
        "ilastik",
        {"sigmas": [200.0]},
        r"bank 'ilastik' kernel size .* got 1601 .*lower sigma or truncate\)$",
    ),
    ("random", {"n": 4096, "size": 65}, r"bank 'random' would hold 4096 x 1 x 65 x 65 = 17305600"),
    ("random", {"n": 65536, "in_channels": 65536}, r"would hold 65536 x 65536 x 3 x 3"),
    ("lm", {"size": 593}, r"bank 'lm' would hold 48 x 1 x 593 x 593 = 16879152 weights"),
    ("mr8", {"size": 1025}, r"bank 'mr8' would hold 38 x 1 x 1025 x 1025"),
    ("ilastik", {"features": [["gaussian"]]}, r"unknown \['gaussian'\]"),
]


@pytest.mark.parametrize(("name", "params", "pattern"), LIMITS)
def test_oversized_banks_are_refused_before_they_are_built(name, params, pattern):
    with pytest.raises(InputError, match=pattern) as caught:
        banks.get(name, **params)
    assert "\n" not in str(caught.value)
    assert len(str(caught.value)) < 300


def test_banks_at_the_limits_build():
    assert banks.get("gabor", size=723, orientations=8).weight.shape == (32, 1, 723, 723)
    assert banks.get(
        "gabor", sigma=170.0, frequencies=[0.1], orientations=1, phases=[0.0]
    ).weight.shape == (1, 1, 1021, 1021)
    assert banks.get("gaussian", sigmas=[128.0], orders=[[0, 0]]).weight.shape == (1, 1, 1025, 1025)
    assert banks.get("random", n=65536, size=16).weight.shape == (65536, 1, 16, 16)


# -- 2-D banks keep their params (pipelines' fingerprints hash them) and rebuild in 3-D ----------

#: (bank, params, the params recorded, one filter's description, its index)
PINNED_2D_PARAMS = [
    (
        "gaussian",
        {"sigmas": [1.5]},
        (
            '{"sigmas": [1.5], "orders": [[0, 0], [1, 0], [0, 1], [2, 0], [1, 1], [0, 2]], '
            '"size": null, "truncate": 4.0}'
        ),
        (4, '{"name": "gaussian_dyx", "sigma": 1.5, "order": [1, 1]}'),
    ),
    ("log", {"size": 9}, '{"sigmas": [1.0, 2.0, 4.0], "size": 9, "truncate": 4.0}', None),
    (
        "dog",
        {},
        '{"sigmas": [1.0, 2.0, 4.0], "k": 1.6, "size": null, "truncate": 4.0}',
        (2, '{"name": "dog", "sigma": 4.0, "k": 1.6}'),
    ),
    (
        "ilastik",
        {"sigmas": [1.0], "features": ["hessian"]},
        '{"sigmas": [1.0], "features": ["hessian"], "truncate": 4.0}',
        (1, '{"name": "hessian_xy", "sigma": 1.0, "feature": "hessian", "order": [1, 1]}'),
    ),
    (
        "random",
        {"n": 2},
        (
            '{"n": 2, "size": 3, "in_channels": 1, "seed": 0, "bias": false, '
            '"std": 0.3333333333333333}'
        ),
        None,
    ),
    ("box", {}, '{"size": 3}', (0, '{"name": "box", "size": 3}')),
    ("identity", {"size": 3}, '{"size": 3}', None),
    ("laplacian", {}, '{"neighbours": 4}', (0, '{"name": "laplacian", "neighbours": 4}')),
    ("sobel", {}, '{"normalize": false}', (1, '{"name": "sobel_x", "order": [0, 1]}')),
]


@pytest.mark.parametrize(("name", "params", "recorded", "described"), PINNED_2D_PARAMS)
def test_2d_params_and_descriptions_are_pinned(name, params, recorded, described):
    bank = banks.get(name, **params)
    assert json.dumps(bank.params) == recorded
    assert bank.weight.ndim == 4
    if described is not None:
        index, description = described
        assert json.dumps(bank.filters[index]) == description
    # the new parameters at their defaults, given explicitly, change nothing
    explicit = banks.get(name, **params, ndim=2)
    assert json.dumps(explicit.params) == recorded
    np.testing.assert_array_equal(explicit.weight, bank.weight)


def _parameter_names(name):
    return [row[0] for row in banks.describe(name).parameters]


VOLUME_BANKS = [name for name in BUILT_IN if "ndim" in _parameter_names(name)]


def test_volume_banks():
    assert set(VOLUME_BANKS) == {
        "gaussian", "log", "dog", "ilastik", "random", "box", "identity",
        "sobel", "scharr", "prewitt", "laplacian",
    }  # fmt: skip


@pytest.mark.parametrize("name", VOLUME_BANKS)
def test_every_3d_bank_builds_consistently(name):
    params = {"sigmas": [1.0, [0.5, 1.0, 2.0]]} if "sigmas" in _parameter_names(name) else {}
    bank = banks.get(name, ndim=3, **params)
    assert bank.ndim == 3
    assert bank.weight.shape[2:] == bank.kernel_size
    assert all(side % 2 == 1 for side in bank.kernel_size)
    assert len(bank.filters) == bank.out_channels
    assert np.isfinite(bank.weight).all()
    metadata = json.loads(json.dumps(bank.to_dict()))
    assert metadata["params"]["ndim"] == 3
    rebuilt = banks.get(name, **metadata["params"])
    np.testing.assert_array_equal(rebuilt.weight, bank.weight)
    assert rebuilt.filters == bank.filters
