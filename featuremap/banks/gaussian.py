"""Gaussian-derivative banks: ``gaussian`` (derivatives up to order 2), ``log`` and ``dog``; 2-D or 3-D.

The kernels are SciPy's discrete Gaussians (``scipy.ndimage.gaussian_filter``): the Gaussian is
sampled on ``[-r, r]``, normalised to sum 1 over those samples, and derivatives are the exact
derivatives of the sampled continuous Gaussian times that normalisation. The radius is
``r = int(truncate * sigma + 0.5)`` (SciPy's rule, ``truncate = 4``) unless ``size`` fixes it.

A bank filter is applied by cross-correlation, so the weights are SciPy's convolution kernels
mirrored: correlating an image with a ``gaussian`` bank filter of order ``(oy, ox)`` gives exactly
``gaussian_filter(image, sigma, order=(oy, ox))``. Every ``gaussian`` filter is the outer product of
two 1-D kernels (rank 1), so an engine can apply it as two 1-D passes. Smaller kernels are zero-padded
to the bank's common size, centred, which keeps them rank 1.

Volumes: with ``ndim: 3`` the filters are ``(kz, ky, kx)``, orders ``[oz, oy, ox]``, and each filter
is the outer product of three 1-D kernels, equal to ``gaussian_filter(volume, (sz, sy, sx),
order=(oz, oy, ox))``. A sigma may be one per axis, for anisotropic voxels, and in physical units
(:mod:`featuremap.banks._sigmas`); the radius is SciPy's on each axis, so a kernel's sides differ,
and the bank's common size is the largest on each axis. A description's ``sigma`` is the sigma in
pixels (a number when it is the same on every axis, else one per axis) and, for a sigma given in
physical units, ``sigma_physical`` the sigma as given.

Kernel families: ``kernels: scipy`` (the default, above) or ``kernels: fastfilters``, fastfilters2's
kernels (ilastik's pixel features, :mod:`featuremap.banks.fastfilters`): each axis's kernel has the
radius ``ceil((3 + o/2) * sigma)`` of its own derivative order ``o`` on that axis (``truncate`` does
not apply and must stay 4; ``size`` fixes every radius, the kernels normalised on that window), so
the bank's common size is the largest over its orders. :func:`derivative_kernel` builds one rank-1
filter of either family, :func:`kernel_1d` one axis of it.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from featuremap._validation import is_integer
from featuremap.banks._params import NDIMS, axes, choice, parameter_name
from featuremap.banks._registry import Filters, Parameter, register
from featuremap.banks._sigmas import (
    POSITIVE,
    SIGMA_PARAMETERS,
    SIGMAS,
    SIZE,
    TRUNCATE,
    Scale,
    Scales,
    kernel_radius,
    recorded_spacing,
)
from featuremap.banks.fastfilters import fastfilters_kernel_1d, fastfilters_radius
from featuremap.errors import InputError, describe

__all__ = [
    "ALL_ORDERS",
    "KERNEL_FAMILIES",
    "all_orders",
    "derivative_kernel",
    "derivative_radius",
    "difference_of_gaussians",
    "dog_kernel",
    "gaussian_1d",
    "gaussian_kernel",
    "kernel_1d",
    "laplacian_of_gaussian",
    "stack_centred",
    "unit_order",
]


def all_orders(ndim: int, highest: int = 2) -> list[list[int]]:
    """Every derivative order with a sum of at most ``highest``: smoothing first, then by sum, and
    within a sum the outer axes' derivatives first (``[1, 0]`` before ``[0, 1]``)."""
    return [
        list(order)
        for total in range(highest + 1)
        for order in sorted(itertools.product(range(total + 1), repeat=ndim), reverse=True)
        if sum(order) == total
    ]


#: Every derivative order ``[oy, ox]`` with ``oy + ox <= 2``, smoothing first.
ALL_ORDERS = tuple(all_orders(2))


def unit_order(ndim: int, axis: int, order: int) -> list[int]:
    """The derivative of ``order`` along ``axis`` alone: ``unit_order(3, 0, 2) == [2, 0, 0]``."""
    return [order if index == axis else 0 for index in range(ndim)]


def gaussian_1d(sigma: float, order: int, radius: int) -> np.ndarray:
    """Correlation weights (float64, length ``2 * radius + 1``) of SciPy's 1-D Gaussian derivative.

    Equal to ``scipy.ndimage._filters._gaussian_kernel1d(sigma, order, radius)[::-1]``: the sampled
    Gaussian ``phi`` normalised to sum 1, times the polynomial ``q`` with ``d^n/dx^n phi = q * phi``.
    """
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    variance = sigma * sigma
    phi = np.exp(-0.5 * x * x / variance)
    phi /= phi.sum()
    # Derivatives of exp(-x^2 / 2 s^2) up to order 2, written out (SciPy builds the same polynomials).
    polynomial = {
        0: np.ones_like(x),
        1: -x / variance,
        2: (x * x - variance) / (variance * variance),
    }
    return (polynomial[order] * phi)[::-1]


def gaussian_kernel(
    sigma: Sequence[float], order: Sequence[int], radius: Sequence[int]
) -> np.ndarray:
    """Rank-1 correlation weights of ``gaussian_filter(., sigma, order)``, one entry per axis.

    The outer product of the 1-D kernels (:func:`gaussian_1d`) of the axes, outermost first: shape
    ``(2 * radius[0] + 1, ...)``, as many axes as ``order`` has entries.
    """
    kernels = (gaussian_1d(s, o, r) for s, o, r in zip(sigma, order, radius, strict=True))
    return functools.reduce(np.multiply.outer, kernels)


#: The Gaussian kernel families: SciPy's ``gaussian_filter`` and fastfilters2's (ilastik's).
KERNEL_FAMILIES = ("scipy", "fastfilters")


def derivative_radius(
    sigma: float, order: int, *, kernels: str, truncate: float = 4.0, bank: str = "gaussian"
) -> int:
    """The radius of a 1-D kernel of ``kernels``: SciPy's ``int(truncate * sigma + 0.5)`` for
    every order, or fastfilters2's ``ceil((3 + order / 2) * sigma)`` (``truncate`` unused)."""
    if kernels == "fastfilters":
        return fastfilters_radius(sigma, order, bank)
    if kernels == "scipy":
        return kernel_radius(sigma, truncate, None, bank)
    raise InputError(
        f"kernels must be one of {', '.join(KERNEL_FAMILIES)}, got {describe(kernels)}"
    )


def kernel_1d(
    sigma: float, order: int, *, kernels: str, radius: int | None = None, truncate: float = 4.0
) -> np.ndarray:
    """Correlation weights (float64, ``2 * radius + 1``) of the Gaussian derivative of ``order``
    (0, 1 or 2) of ``kernels`` (:data:`KERNEL_FAMILIES`); ``radius`` defaults to the family's rule
    (:func:`derivative_radius`). Both families give ``+d/dx`` for order 1 (positive to the right).
    """
    if radius is None:
        radius = derivative_radius(sigma, order, kernels=kernels, truncate=truncate)
    if kernels == "fastfilters":
        return fastfilters_kernel_1d(sigma, order, radius)
    if kernels == "scipy":
        return gaussian_1d(sigma, order, radius)
    raise InputError(
        f"kernels must be one of {', '.join(KERNEL_FAMILIES)}, got {describe(kernels)}"
    )


def derivative_kernel(
    sigma: Sequence[float],
    order: Sequence[int],
    *,
    kernels: str,
    radius: Sequence[int] | None = None,
    truncate: float = 4.0,
) -> np.ndarray:
    """Rank-1 correlation weights of the Gaussian derivative ``order`` (one entry per axis,
    outermost first) at ``sigma`` (pixels, one per axis) of ``kernels``: the outer product of the
    axes' :func:`kernel_1d`, each with its own radius (``radius`` per axis, or the family's rule
    for that axis's sigma and order). ``kernels="scipy"`` with SciPy's radii is
    :func:`gaussian_kernel`."""
    radii = [None] * len(order) if radius is None else list(radius)
    axes_kernels = (
        kernel_1d(s, o, kernels=kernels, radius=r, truncate=truncate)
        for s, o, r in zip(sigma, order, radii, strict=True)
    )
    return functools.reduce(np.multiply.outer, axes_kernels)


def stack_centred(kernels: Sequence[np.ndarray]) -> np.ndarray:
    """Stack odd-sided kernels of one rank into ``(J, 1, *sides)``, each centred, zero-padded to
    the largest side on each axis."""
    sides = [max(side) for side in zip(*(kernel.shape for kernel in kernels), strict=True)]
    weight = np.zeros((len(kernels), 1, *sides))
    for index, kernel in enumerate(kernels):
        weight[index, 0][
            tuple(
                slice((s - n) // 2, (s - n) // 2 + n)
                for s, n in zip(sides, kernel.shape, strict=True)
            )
        ] = kernel
    return weight


def laplacian_of_gaussian(sigma: Sequence[float], radius: Sequence[int]) -> np.ndarray:
    """Correlation weights of ``scipy.ndimage.gaussian_laplace(., sigma)``: the sum over the axes
    of the second derivative along each (one rank-1 term per axis)."""
    ndim = len(sigma)
    terms = (gaussian_kernel(sigma, unit_order(ndim, axis, 2), radius) for axis in range(ndim))
    return functools.reduce(np.add, terms)


def difference_of_gaussians(
    sigma: Sequence[float], k: float, radius: Sequence[int], wide_radius: Sequence[int]
) -> np.ndarray:
    """``G(sigma) - G(k * sigma)``, the Gaussians of radii ``radius`` and ``wide_radius``, centred."""
    smoothing = [0] * len(sigma)
    first, second = stack_centred(
        [
            gaussian_kernel(sigma, smoothing, radius),
            gaussian_kernel([k * s for s in sigma], smoothing, wide_radius),
        ]
    )[:, 0]
    return first - second


# -- the gaussian bank ---------------------------------------------------------------------------


def _order_name(order: Sequence[int]) -> str:
    derivative = "".join(axis * o for axis, o in zip(axes(len(order)), order, strict=True))
    return "gaussian" + ("_d" + derivative if derivative else "")


def _parse_orders(value: Any, where: str) -> list[list[int]] | None:
    allowed = (
        "a non-empty list of distinct [oy, ox] pairs (ndim 3: [oz, oy, ox] triples) of integers "
        ">= 0 with oy + ox <= 2"
    )
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise InputError(f"{where} must be {allowed}, got {describe(value)}")
    orders: list[list[int]] = []
    for entry in value:
        valid = (
            isinstance(entry, Sequence)
            and not isinstance(entry, (str, bytes))
            and len(entry) in NDIMS
            and all(is_integer(o) and int(o) >= 0 for o in entry)
            and sum(entry) <= 2
            and len(entry) == len(orders[0] if orders else entry)
        )
        if not valid or [int(o) for o in entry] in orders:
            raise InputError(
                f"{where} must be {allowed}, got {describe(value)} (bad or repeated {describe(entry)})"
            )
        orders.append([int(o) for o in entry])
    return orders


def _orders(orders: list[list[int]] | None, ndim: int) -> list[list[int]]:
    """``orders``, every order of rank ``ndim`` by default; refused if they are of another rank."""
    if orders is None:
        return all_orders(ndim)
    if len(orders[0]) != ndim:
        rank = "[" + ", ".join("o" + axis for axis in axes(ndim)) + "]"
        raise InputError(
            f"{parameter_name('gaussian', 'orders')} must be {rank} lists for ndim {ndim}, "
            f"got {describe(orders)}"
        )
    return orders


def _radius(scales: Scales, scale: Scale, order: Sequence[int], kernels: str) -> tuple[int, ...]:
    """A filter's radius per axis: SciPy's (``truncate`` or ``size``) for every order, or the
    fastfilters radius of each axis's own order unless ``size`` fixes it."""
    if kernels == "scipy":
        return scales.radius(scale.pixels)
    if scales.size is not None:
        return tuple((side - 1) // 2 for side in scales.size)
    return tuple(
        fastfilters_radius(s, o, scales.bank) for s, o in zip(scale.pixels, order, strict=True)
    )


def _resolve(
    sigmas: list[Any],
    orders: list[list[int]] | None,
    size: int | list[int] | None,
    truncate: float,
    kernels: str,
    ndim: int,
    sigma_units: str,
    spacing: float | list[float] | None,
) -> tuple[Scales, list[list[int]]]:
    if kernels == "fastfilters" and truncate != TRUNCATE.default:
        raise InputError(
            f"{parameter_name('gaussian', 'truncate')} applies to kernels: scipy only (fastfilters "
            f"kernels have radius ceil((3 + order/2) * sigma); give size to fix it), got {truncate:g}"
        )
    scales = Scales.resolve("gaussian", sigmas, ndim, sigma_units, spacing, truncate, size)
    return scales, _orders(orders, ndim)


def _gaussian_shape(
    sigmas: list[Any],
    orders: list[list[int]] | None,
    size: int | list[int] | None,
    truncate: float,
    kernels: str,
    ndim: int,
    sigma_units: str,
    spacing: float | list[float] | None,
) -> tuple[int, ...]:
    scales, orders = _resolve(sigmas, orders, size, truncate, kernels, ndim, sigma_units, spacing)
    if kernels == "scipy":
        return scales.shape(len(orders))
    radii = [_radius(scales, scale, order, kernels) for scale in scales.scales for order in orders]
    sides = tuple(2 * max(axis) + 1 for axis in zip(*radii, strict=True))
    return (len(radii), 1, *sides)


@register(
    "gaussian",
    "Gaussian smoothing and derivatives up to order 2 (SciPy's gaussian_filter kernels, or "
    "fastfilters2's; separable)",
    SIGMAS,
    Parameter(
        "orders",
        None,
        "derivative orders [oy, ox] (ndim 3: [oz, oy, ox]) summing to <= 2; default: all of "
        "them, smoothing first",
        _parse_orders,
    ),
    SIZE,
    TRUNCATE,
    Parameter(
        "kernels",
        "scipy",
        "'scipy' (gaussian_filter's, radius int(truncate*sigma+0.5)) or 'fastfilters' "
        "(fastfilters2's, as ilastik: radius ceil((3+order/2)*sigma) per axis)",
        choice(KERNEL_FAMILIES),
        omit_default=True,
    ),
    *SIGMA_PARAMETERS,
    shape=_gaussian_shape,
)
def _gaussian(
    sigmas: list[Any],
    orders: list[list[int]] | None,
    size: int | list[int] | None,
    truncate: float,
    kernels: str,
    ndim: int,
    sigma_units: str,
    spacing: float | list[float] | None,
) -> Filters:
    scales, orders = _resolve(sigmas, orders, size, truncate, kernels, ndim, sigma_units, spacing)
    weights, descriptions = [], []
    for scale in scales.scales:
        for order in orders:
            radius = _radius(scales, scale, order, kernels)
            if kernels == "scipy":
                weights.append(gaussian_kernel(scale.pixels, order, radius))
            else:
                weights.append(
                    derivative_kernel(scale.pixels, order, kernels=kernels, radius=radius)
                )
            descriptions.append(
                {"name": _order_name(order), **scale.describe(), "order": list(order)}
            )
    derived = {"orders": orders, **recorded_spacing(sigma_units)}
    return Filters(stack_centred(weights), descriptions, derived=derived)


# -- log and dog ---------------------------------------------------------------------------------


def _log_shape(
    sigmas: list[Any],
    size: int | list[int] | None,
    truncate: float,
    ndim: int,
    sigma_units: str,
    spacing: float | list[float] | None,
) -> tuple[int, ...]:
    return Scales.resolve("log", sigmas, ndim, sigma_units, spacing, truncate, size).shape(1)


@register(
    "log",
    "Laplacian of Gaussian (SciPy's gaussian_laplace kernels; negative centre)",
    SIGMAS,
    SIZE,
    TRUNCATE,
    *SIGMA_PARAMETERS,
    shape=_log_shape,
)
def _log(
    sigmas: list[Any],
    size: int | list[int] | None,
    truncate: float,
    ndim: int,
    sigma_units: str,
    spacing: float | list[float] | None,
) -> Filters:
    scales = Scales.resolve("log", sigmas, ndim, sigma_units, spacing, truncate, size)
    kernels = [laplacian_of_gaussian(s.pixels, scales.radius(s.pixels)) for s in scales.scales]
    descriptions = [{"name": "log", **s.describe(), "order": 2} for s in scales.scales]
    return Filters(stack_centred(kernels), descriptions, derived=recorded_spacing(sigma_units))


def _parse_ratio(value: Any, where: str) -> float:
    ratio = POSITIVE(value, where)
    if ratio == 1.0:
        raise InputError(
            f"{where} must be a number > 0 other than 1 (k = 1 gives a zero filter), got {describe(value)}"
        )
    return float(ratio)


def dog_kernel(scales: Scales, scale: Scale, k: float) -> np.ndarray:
    """``G(sigma) - G(k * sigma)`` of one of ``scales``, each Gaussian with its own radius."""
    wide = [k * s for s in scale.pixels]
    return difference_of_gaussians(
        scale.pixels, k, scales.radius(scale.pixels), scales.radius(wide)
    )


def _dog_shape(
    sigmas: list[Any],
    k: float,
    size: int | list[int] | None,
    truncate: float,
    ndim: int,
    sigma_units: str,
    spacing: float | list[float] | None,
) -> tuple[int, ...]:
    scales = Scales.resolve("dog", sigmas, ndim, sigma_units, spacing, truncate, size)
    return scales.shape(1, ratios=(1.0, k))


@register(
    "dog",
    "difference of Gaussians G(sigma) - G(k * sigma) (SciPy's gaussian_filter kernels)",
    SIGMAS,
    Parameter("k", 1.6, "ratio of the second Gaussian's sigma to the first", _parse_ratio),
    SIZE,
    TRUNCATE,
    *SIGMA_PARAMETERS,
    shape=_dog_shape,
)
def _dog(
    sigmas: list[Any],
    k: float,
    size: int | list[int] | None,
    truncate: float,
    ndim: int,
    sigma_units: str,
    spacing: float | list[float] | None,
) -> Filters:
    scales = Scales.resolve("dog", sigmas, ndim, sigma_units, spacing, truncate, size)
    kernels = [dog_kernel(scales, scale, k) for scale in scales.scales]
    descriptions = [{"name": "dog", **s.describe(), "k": k} for s in scales.scales]
    return Filters(stack_centred(kernels), descriptions, derived=recorded_spacing(sigma_units))
