"""The Leung-Malik bank ``lm``: 48 filters, as Varma & Zisserman's ``makeLMfilters.m`` builds them.

In the reference's order: 18 first-derivative ("edge") filters -- 3 scales x 6 orientations,
orientation fastest --, then 18 second-derivative ("bar") filters in the same order, then for
each of 4 basic scales ``s``: a Gaussian (``s``), a LoG (``s``) and a LoG (``3 s``), i.e. 4 Gaussians
and 8 LoGs. Oriented filters are elongated 3:1 (sigma ``3 s`` along, ``s`` across). Every filter is
zero-mean and unit-L1 -- the Gaussians too, as in the reference's ``normalise``.

Variants: ``LML`` (the published code; basic scales sqrt(2), 2, 2 sqrt(2), 4) and ``LMS`` (basic
scales 1, sqrt(2), 2, 2 sqrt(2)). Derivative filters use the first three basic scales.

``orientation`` is the reference's angle ``pi * i / 6``; with ``x`` = column and ``y`` = up, the
filter's long axis points along ``(x, y) = (cos a, -sin a)``, i.e. ``(column, row) = (cos a, sin a)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from featuremap.banks._params import choice, kernel_size
from featuremap.banks._registry import Filters, Parameter, register
from featuremap.banks._vgg import (
    fspecial_gaussian,
    fspecial_log,
    normalise,
    oriented_filter,
)

__all__ = ["oriented_bank"]

N_ORIENTATIONS = 6
BASIC_SCALES = {
    "LML": [math.sqrt(2) ** i for i in (1, 2, 3, 4)],
    "LMS": [math.sqrt(2) ** i for i in (0, 1, 2, 3)],
}


def oriented_bank(scales: list[float], size: int) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Edge then bar filters at ``scales`` x 6 orientations, the reference's order and descriptions."""
    kernels, descriptions = [], []
    for order, kind in ((1, "edge"), (2, "bar")):
        for scale in scales:
            for index in range(N_ORIENTATIONS):
                angle = math.pi * index / N_ORIENTATIONS
                kernels.append(oriented_filter(scale, order, angle, size))
                descriptions.append(
                    {
                        "name": kind,
                        "sigma": [3 * scale, scale],
                        "orientation": angle,
                        "order": order,
                    }
                )
    return kernels, descriptions


SIZE = Parameter("size", 49, "kernel side (odd); the reference uses 49", kernel_size(3, odd=True))
#: Filters of the ``lm`` bank: 36 oriented, 4 Gaussians and 8 LoGs.
N_LM_FILTERS = 48


@register(
    "lm",
    "Leung-Malik bank: 36 oriented edge/bar, 8 LoG, 4 Gaussian filters (makeLMfilters.m)",
    Parameter(
        "variant",
        "LML",
        "'LML' (large, the published code) or 'LMS' (small)",
        choice(("LML", "LMS")),
    ),
    SIZE,
    shape=lambda size, **_: (N_LM_FILTERS, 1, size, size),
)
def _lm(variant: str, size: int) -> Filters:
    scales = BASIC_SCALES[variant]
    kernels, descriptions = oriented_bank(scales[:3], size)
    for scale in scales:
        kernels += [
            normalise(fspecial_gaussian(size, scale)),
            normalise(fspecial_log(size, scale)),
            normalise(fspecial_log(size, 3 * scale)),
        ]
        descriptions += [
            {"name": "gaussian", "sigma": scale},
            {"name": "log", "sigma": scale},
            {"name": "log", "sigma": 3 * scale},
        ]
    return Filters(np.stack(kernels)[:, None], descriptions)
