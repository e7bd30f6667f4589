"""The ``ilastik`` bank: the linear filters behind ilastik's standard pixel-classification features.

Per scale ``sigma``, in this order (``features`` selects a subset):

* ``gaussian`` -- Gaussian smoothing;
* ``log`` -- Laplacian of Gaussian;
* ``gradient`` -- Gaussian gradient, y then x (first derivatives of Gaussian);
* ``hessian`` -- Hessian of Gaussian, yy, xy, xx (second derivatives);
* ``dog`` -- difference of Gaussians ``G(sigma) - G(0.66 sigma)``, ilastik's definition.

ilastik's other standard features are *not* linear filters and so are not in the bank; they are
computed from these responses: Gaussian gradient magnitude = sqrt(gradient_y^2 + gradient_x^2);
Hessian of Gaussian eigenvalues = eigenvalues of [[yy, xy], [xy, xx]] per pixel; structure tensor
eigenvalues = eigenvalues of the Gaussian-smoothed outer product of the gradient (a product of
responses, smoothed again). The kernels are SciPy's discrete Gaussians (see
:mod:`featuremap.banks.gaussian`), not VIGRA's, so values differ slightly from ilastik's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from featuremap.banks._params import real_list
from featuremap.banks._registry import Filters, Parameter, register
from featuremap.banks.gaussian import (
    POSITIVE,
    TRUNCATE,
    difference_of_gaussians,
    gaussian_2d,
    kernel_radius,
    laplacian_of_gaussian,
    square_shape,
    stack_centred,
)
from featuremap.errors import InputError, describe

__all__ = ["FEATURES", "ILASTIK_SCALES"]

#: ilastik's scales; the default leaves out 10.0 (an 81 x 81 kernel).
ILASTIK_SCALES = (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
#: ilastik's DoG: G(sigma) - G(DOG_RATIO * sigma).
DOG_RATIO = 0.66
#: feature -> (filter names, derivative orders or None for non-separable filters)
FEATURES = {
    "gaussian": (("gaussian", [0, 0]),),
    "log": (("log", None),),
    "gradient": (("gradient_y", [1, 0]), ("gradient_x", [0, 1])),
    "hessian": (("hessian_yy", [2, 0]), ("hessian_xy", [1, 1]), ("hessian_xx", [0, 2])),
    "dog": (("dog", None),),
}


def _parse_features(value: Any, where: str) -> list[str]:
    allowed = "a non-empty list of distinct names from " + ", ".join(FEATURES)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise InputError(f"{where} must be {allowed}, got {describe(value)}")
    for item in items:
        if not isinstance(item, str) or item not in FEATURES:
            raise InputError(
                f"{where} must be {allowed}, got {describe(value)} (unknown {describe(item)})"
            )
    if len(set(items)) != len(items):
        raise InputError(f"{where} must be {allowed}, got {describe(value)}")
    return list(items)


def _shape(sigmas: list[float], features: list[str], truncate: float) -> tuple[int, int, int, int]:
    filters = len(sigmas) * sum(len(FEATURES[feature]) for feature in features)
    side = 2 * max(kernel_radius(s, truncate, None, "ilastik") for s in sigmas) + 1
    return square_shape(filters, side)


def _kernel(name: str, order: list[int] | None, sigma: float, truncate: float) -> np.ndarray:
    radius = kernel_radius(sigma, truncate, None)
    if order is not None:
        return gaussian_2d(sigma, order, radius)
    if name == "log":
        return laplacian_of_gaussian(sigma, radius)
    return difference_of_gaussians(sigma, DOG_RATIO, truncate, None)


@register(
    "ilastik",
    "ilastik's linear pixel features: Gaussian, LoG, gradient, Hessian, DoG per scale",
    Parameter(
        "sigmas",
        list(ILASTIK_SCALES[:-1]),
        "scales in pixels (ilastik offers 0.3 0.7 1.0 1.6 3.5 5.0 10.0)",
        real_list(POSITIVE, "numbers > 0"),
    ),
    Parameter(
        "features",
        list(FEATURES),
        "which features; output order is always " + ", ".join(FEATURES),
        _parse_features,
    ),
    TRUNCATE,
    shape=_shape,
)
def _ilastik(sigmas: list[float], features: list[str], truncate: float) -> Filters:
    kernels, descriptions = [], []
    for sigma in sigmas:
        for feature in FEATURES:
            if feature not in features:
                continue
            for name, order in FEATURES[feature]:
                kernels.append(_kernel(name, order, sigma, truncate))
                description = {"name": name, "sigma": sigma, "feature": feature}
                if order is not None:
                    description["order"] = list(order)
                descriptions.append(description)
    return Filters(stack_centred(kernels), descriptions)
