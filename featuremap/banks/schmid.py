"""The Schmid bank ``schmid``: 13 rotation-invariant filters (VGG's ``makeSfilters.m``).

``F(r, sigma, tau) = cos(pi * tau * r / sigma) * exp(-r^2 / (2 sigma^2))``, then made zero-mean
and unit-L1 (the reference's ``F0`` is that mean subtraction), for the 13 ``(sigma, tau)`` pairs of
Schmid (2001), "Constructing models for content-based image retrieval".
"""

from __future__ import annotations

import math

import numpy as np

from featuremap.banks._registry import Filters, register
from featuremap.banks._vgg import normalise, reference_grid
from featuremap.banks.lm import SIZE

__all__ = ["SCHMID_PAIRS"]

SCHMID_PAIRS = (
    (2, 1), (4, 1), (4, 2), (6, 1), (6, 2), (6, 3), (8, 1), (8, 2), (8, 3),
    (10, 1), (10, 2), (10, 3), (10, 4),
)  # fmt: skip


def schmid_filter(size: int, sigma: float, tau: float) -> np.ndarray:
    """One Schmid filter, ``normalise``-d."""
    x, y = reference_grid(size)
    radius = np.hypot(x, y)
    envelope = np.exp(-radius * radius / (2 * sigma * sigma))
    return normalise(np.cos(radius * (math.pi * tau / sigma)) * envelope)


@register(
    "schmid",
    "Schmid's 13 rotation-invariant filters (makeSfilters.m)",
    SIZE,
    shape=lambda size: (len(SCHMID_PAIRS), 1, size, size),
)
def _schmid(size: int) -> Filters:
    kernels = [schmid_filter(size, sigma, tau) for sigma, tau in SCHMID_PAIRS]
    descriptions = [
        {"name": "schmid", "sigma": float(sigma), "tau": float(tau)} for sigma, tau in SCHMID_PAIRS
    ]
    return Filters(np.stack(kernels)[:, None], descriptions)
