"""Oracles for the filter banks (``tests/banks/``): a bank applied as the engine applies it."""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

import featuremap.banks as banks
from support.torch_reference import torch

#: The test image of the reference comparisons (SciPy, scikit-image).
IMAGE = np.random.default_rng(5).standard_normal((40, 44))


def correlate_torch(image: np.ndarray, bank: banks.Bank) -> np.ndarray:
    """torch conv2d in float64 on (C, H, W) with the bank's weight, bias and groups."""
    t = torch()
    result = t.nn.functional.conv2d(
        t.from_numpy(image[None].astype(np.float64)),
        t.from_numpy(bank.weight.astype(np.float64)),
        None if bank.bias is None else t.from_numpy(bank.bias.astype(np.float64)),
        groups=bank.groups,
    )
    return result[0].numpy()


def correlate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """A bank filter applied as the engine does (cross-correlation), zero padding, float64."""
    return ndi.correlate(image, kernel.astype(np.float64), mode="constant")


def assert_float32_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to the bank's float32 rounding, relative to the response's scale."""
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-6 * np.abs(expected).max())


def second_singular_ratio(kernel: np.ndarray) -> float:
    """Second over first singular value: 0 for a separable (rank 1) kernel."""
    singular = np.linalg.svd(kernel.astype(np.float64), compute_uv=False)
    return singular[1] / singular[0]
