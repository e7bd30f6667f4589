"""The ``ilastik`` bank: the linear filters behind ilastik's standard pixel-classification features.

Per scale ``sigma``, in this order (``features`` selects a subset):

* ``gaussian`` -- Gaussian smoothing;
* ``log`` -- Laplacian of Gaussian;
* ``gradient`` -- Gaussian gradient, y then x (first derivatives of Gaussian);
* ``hessian`` -- Hessian of Gaussian, yy, xy, xx (second derivatives);
* ``dog`` -- difference of Gaussians ``G(sigma) - G(0.66 sigma)``, ilastik's definition.

With ``ndim: 3`` the filters are 3-D: the gradient is z, y, x and the Hessian zz, yz, xz, yy, xy,
xx. ``sigmas``, ``sigma_units`` and ``spacing`` are those of :mod:`featuremap.banks._sigmas`
(a sigma per axis for anisotropic voxels, physical units divided by the pixel spacing).

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

from featuremap.banks._params import axes, real_or_axis_list
from featuremap.banks._registry import Filters, Parameter, register
from featuremap.banks._sigmas import (
    POSITIVE,
    SIGMA_PARAMETERS,
    TRUNCATE,
    Scale,
    Scales,
    recorded_spacing,
)
from featuremap.banks.gaussian import (
    all_orders,
    dog_kernel,
    gaussian_kernel,
    laplacian_of_gaussian,
    stack_centred,
    unit_order,
)
from featuremap.errors import InputError, describe

__all__ = ["FEATURES", "ILASTIK_SCALES", "feature_filters"]

#: ilastik's scales; the default leaves out 10.0 (an 81 x 81 kernel).
ILASTIK_SCALES = (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
#: ilastik's DoG: G(sigma) - G(DOG_RATIO * sigma).
DOG_RATIO = 0.66
#: The features, in output order.
FEATURES = ("gaussian", "log", "gradient", "hessian", "dog")

#: A filter of a feature: its name and derivative order, or ``None`` for a non-separable filter.
FeatureFilter = tuple[str, list[int] | None]


def _derivative_name(order: list[int]) -> str:
    """``xy`` for ``[1, 1]``, ``zz`` for ``[2, 0, 0]``: the axes innermost first, as ilastik."""
    return "".join(
        axis * o for axis, o in reversed(list(zip(axes(len(order)), order, strict=True)))
    )


def feature_filters(feature: str, ndim: int) -> list[FeatureFilter]:
    """The filters of ``feature`` on ``ndim`` axes: the gradient z (ndim 3), y, x; the Hessian's
    unique components yy, xy, xx (ndim 3: zz, yz, xz, yy, xy, xx)."""
    if feature == "gradient":
        return [(f"gradient_{axis}", unit_order(ndim, i, 1)) for i, axis in enumerate(axes(ndim))]
    if feature == "hessian":
        second = [order for order in all_orders(ndim) if sum(order) == 2]
        return [(f"hessian_{_derivative_name(order)}", order) for order in second]
    return [(feature, [0] * ndim if feature == "gaussian" else None)]


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


def _shape(
    sigmas: list[Any],
    features: list[str],
    truncate: float,
    ndim: int,
    sigma_units: str,
    spacing: float | list[float] | None,
) -> tuple[int, ...]:
    scales = Scales.resolve("ilastik", sigmas, ndim, sigma_units, spacing, truncate)
    return scales.shape(sum(len(feature_filters(feature, ndim)) for feature in features))


def _kernel(name: str, order: list[int] | None, scales: Scales, scale: Scale) -> np.ndarray:
    radius = scales.radius(scale.pixels)
    if order is not None:
        return gaussian_kernel(scale.pixels, order, radius)
    if name == "log":
        return laplacian_of_gaussian(scale.pixels, radius)
    return dog_kernel(scales, scale, DOG_RATIO)


@register(
    "ilastik",
    "ilastik's linear pixel features: Gaussian, LoG, gradient, Hessian, DoG per scale",
    Parameter(
        "sigmas",
        list(ILASTIK_SCALES[:-1]),
        "scales in pixels unless sigma_units (ilastik offers 0.3 0.7 1.0 1.6 3.5 5.0 10.0); each "
        "a number or one per axis, [sy, sx] or [sz, sy, sx]",
        real_or_axis_list(POSITIVE, "a number > 0", "numbers > 0"),
    ),
    Parameter(
        "features",
        list(FEATURES),
        "which features; output order is always " + ", ".join(FEATURES),
        _parse_features,
    ),
    TRUNCATE,
    *SIGMA_PARAMETERS,
    shape=_shape,
)
def _ilastik(
    sigmas: list[Any],
    features: list[str],
    truncate: float,
    ndim: int,
    sigma_units: str,
    spacing: float | list[float] | None,
) -> Filters:
    scales = Scales.resolve("ilastik", sigmas, ndim, sigma_units, spacing, truncate)
    kernels, descriptions = [], []
    for scale in scales.scales:
        for feature in (feature for feature in FEATURES if feature in features):
            for name, order in feature_filters(feature, ndim):
                kernels.append(_kernel(name, order, scales, scale))
                description = {"name": name, **scale.describe(), "feature": feature}
                if order is not None:
                    description["order"] = order
                descriptions.append(description)
    return Filters(stack_centred(kernels), descriptions, derived=recorded_spacing(sigma_units))
