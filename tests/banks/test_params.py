"""Bank parameter values (``featuremap.banks._params``): each bad value is a one-line input error
naming the bank, the parameter, what is allowed and what was given; NumPy scalars are accepted and
stored as plain Python."""

from __future__ import annotations

import json

import numpy as np
import pytest

import featuremap.banks as banks
from featuremap.errors import InputError


@pytest.mark.parametrize(
    ("name", "params", "pattern"),
    [
        (
            "gabor",
            {"size": 4},
            r"bank 'gabor' parameter 'size' must be an odd integer >= 1 and <= 1025, got 4",
        ),
        ("gabor", {"size": True}, r"parameter 'size' must be an odd integer"),
        (
            "gabor",
            {"frequencies": [0.1, 0.7]},
            r"'frequencies' \(each element\) must be a finite number > 0 and <= 0.5, got 0.7",
        ),
        ("gabor", {"frequencies": []}, r"'frequencies' must be a non-empty list"),
        ("gabor", {"orientations": 4, "angles": [0.0]}, r"orientations or angles, not both"),
        (
            "gaussian",
            {"sigmas": [1.0, -2.0]},
            r"'sigmas' \(each element\) must be a finite number > 0, got -2.0",
        ),
        ("gaussian", {"sigmas": "1"}, r"'sigmas' must be a non-empty list of numbers > 0, got '1'"),
        (
            "gaussian",
            {"orders": [[1, 2]]},
            r"'orders' must be a non-empty list of distinct \[oy, ox\] pairs",
        ),
        ("gaussian", {"orders": [[0, 1], [0, 1]]}, r"repeated \[0, 1\]"),
        (
            "gaussian",
            {"truncate": float("nan")},
            r"'truncate' must be a finite number > 0, got nan",
        ),
        ("dog", {"k": 1}, r"'k' must be a number > 0 other than 1"),
        ("laplacian", {"neighbours": 5}, r"'neighbours' must be one of 4, 6, 8, 26, got 5"),
        (
            "laplacian",
            {"neighbours": 6},
            r"'neighbours' must be 4 or 8 for ndim 2; 6 or 26 for ndim 3, got 6 with ndim 2",
        ),
        ("sobel", {"normalize": 1}, r"'normalize' must be true or false, got 1"),
        ("lm", {"variant": "lms"}, r"'variant' must be one of 'LML', 'LMS', got 'lms'"),
        ("ilastik", {"features": ["gaussian", "edges"]}, r"unknown 'edges'"),
        ("random", {"seed": -1}, r"'seed' must be an integer >= 0"),
        ("random", {"n": 2.0}, r"'n' must be an integer >= 1 and <= 65536, got 2.0"),
        ("identity", {"size": 2}, r"'size' must be an odd integer"),
        ("file", {}, r"bank 'file' parameter 'path' is required"),
    ],
)
def test_bad_values_are_one_line_input_errors(name, params, pattern):
    with pytest.raises(InputError, match=pattern) as caught:
        banks.get(name, **params)
    assert "\n" not in str(caught.value)


def test_numpy_scalars_are_accepted_and_stored_as_plain_python():
    bank = banks.get(
        "gaussian", sigmas=[np.float32(1.5)], orders=[[np.int64(1), 0]], size=np.int64(9)
    )
    assert bank.params["size"] == 9
    assert type(bank.params["size"]) is int
    assert type(bank.params["sigmas"][0]) is float
    json.dumps(bank.to_dict())
