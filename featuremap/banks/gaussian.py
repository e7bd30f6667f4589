"""Gaussian-derivative banks: ``gaussian`` (derivatives up to order 2), ``log`` and ``dog``.

The kernels are SciPy's discrete Gaussians (``scipy.ndimage.gaussian_filter``): the Gaussian is
sampled on ``[-r, r]``, normalised to sum 1 over those samples, and derivatives are the exact
derivatives of the sampled continuous Gaussian times that normalisation. The radius is
``r = int(truncate * sigma + 0.5)`` (SciPy's rule, ``truncate = 4``) unless ``size`` fixes it.

A bank filter is applied by cross-correlation, so the weights are SciPy's convolution kernels
mirrored: correlating an image with a ``gaussian`` bank filter of order ``(oy, ox)`` gives exactly
``gaussian_filter(image, sigma, order=(oy, ox))``. Every ``gaussian`` filter is the outer product of
two 1-D kernels (rank 1), so an engine can apply it as two 1-D passes. Smaller kernels are zero-padded
to the bank's common size, centred, which keeps them rank 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from featuremap._validation import is_integer
from featuremap.banks._params import derived_kernel_size, kernel_size, optional, real, real_list
from featuremap.banks._registry import Filters, Parameter, register
from featuremap.errors import InputError, describe

__all__ = [
    "ALL_ORDERS",
    "difference_of_gaussians",
    "gaussian_1d",
    "gaussian_2d",
    "kernel_radius",
    "laplacian_of_gaussian",
    "square_shape",
    "stack_centred",
]

#: Every derivative order ``[oy, ox]`` with ``oy + ox <= 2``, smoothing first.
ALL_ORDERS = ([0, 0], [1, 0], [0, 1], [2, 0], [1, 1], [0, 2])


def kernel_radius(sigma: float, truncate: float, size: int | None, bank: str = "gaussian") -> int:
    """Half-width of a Gaussian kernel: SciPy's ``int(truncate * sigma + 0.5)``, or fixed by ``size``.

    A derived kernel larger than :data:`~featuremap.banks._params.MAX_KERNEL_SIZE` raises one
    :class:`InputError` line naming ``bank``, before anything is allocated.
    """
    if size is not None:
        return (size - 1) // 2
    side = derived_kernel_size(
        f"bank {bank!r} kernel size 2*int(truncate*sigma+0.5)+1",
        truncate * sigma,
        lambda half: int(half + 0.5),
        f"truncate {truncate:g}, sigma {sigma:g}; lower sigma or truncate, or give size"
        if bank != "ilastik"
        else f"truncate {truncate:g}, sigma {sigma:g}; lower sigma or truncate",
    )
    return (side - 1) // 2


def _side(bank: str, sigmas: Sequence[float], truncate: float, size: int | None) -> int:
    """The common kernel side of a bank of these sigmas (the largest radius), checked."""
    return 2 * max(kernel_radius(s, truncate, size, bank) for s in sigmas) + 1


def square_shape(filters: int, side: int) -> tuple[int, int, int, int]:
    """``(filters, 1, side, side)``: the weight shape of a single-channel bank."""
    return filters, 1, side, side


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


def gaussian_2d(sigma: float, order: Sequence[int], radius: int) -> np.ndarray:
    """Rank-1 2-D correlation weights of ``gaussian_filter(., sigma, order=(oy, ox))``."""
    order_y, order_x = order
    return np.outer(gaussian_1d(sigma, order_y, radius), gaussian_1d(sigma, order_x, radius))


def stack_centred(kernels: Sequence[np.ndarray]) -> np.ndarray:
    """Stack square odd kernels of different sizes into ``(J, 1, k, k)``, each centred, zero-padded."""
    size = max(kernel.shape[0] for kernel in kernels)
    weight = np.zeros((len(kernels), 1, size, size))
    for index, kernel in enumerate(kernels):
        margin = (size - kernel.shape[0]) // 2
        weight[index, 0, margin : size - margin, margin : size - margin] = kernel
    return weight


def _order_name(order: Sequence[int]) -> str:
    order_y, order_x = order
    return "gaussian" + ("_d" + "y" * order_y + "x" * order_x if order_y + order_x else "")


def _parse_orders(value: Any, where: str) -> list[list[int]]:
    allowed = "a non-empty list of distinct [oy, ox] pairs of integers >= 0 with oy + ox <= 2"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise InputError(f"{where} must be {allowed}, got {describe(value)}")
    orders: list[list[int]] = []
    for pair in value:
        valid = (
            isinstance(pair, Sequence)
            and not isinstance(pair, (str, bytes))
            and len(pair) == 2
            and all(is_integer(o) and int(o) >= 0 for o in pair)
            and sum(pair) <= 2
        )
        if not valid or [int(o) for o in pair] in orders:
            raise InputError(
                f"{where} must be {allowed}, got {describe(value)} (bad or repeated {describe(pair)})"
            )
        orders.append([int(o) for o in pair])
    return orders


POSITIVE = real(0.0, open_minimum=True)
SIGMAS = Parameter(
    "sigmas",
    [1.0, 2.0, 4.0],
    "Gaussian standard deviations in pixels",
    real_list(POSITIVE, "numbers > 0"),
)
# `size: None` stays None in Bank.params (the weight's shape tells the size): a fixed size changes
# every filter's radius, so recording the derived size would not rebuild the same bank.
SIZE = Parameter(
    "size",
    None,
    "kernel side (odd), one radius for every sigma; default: each sigma its own radius",
    optional(kernel_size(odd=True)),
)
TRUNCATE = Parameter(
    "truncate", 4.0, "kernel radius in sigmas when size is not given (SciPy's truncate)", POSITIVE
)


@register(
    "gaussian",
    "Gaussian smoothing and derivatives up to order 2 (SciPy's gaussian_filter kernels, separable)",
    SIGMAS,
    Parameter(
        "orders",
        [list(o) for o in ALL_ORDERS],
        "derivative orders [oy, ox], oy + ox <= 2",
        _parse_orders,
    ),
    SIZE,
    TRUNCATE,
    shape=lambda sigmas, orders, size, truncate: square_shape(
        len(sigmas) * len(orders), _side("gaussian", sigmas, truncate, size)
    ),
)
def _gaussian(
    sigmas: list[float], orders: list[list[int]], size: int | None, truncate: float
) -> Filters:
    kernels, descriptions = [], []
    for sigma in sigmas:
        radius = kernel_radius(sigma, truncate, size)
        for order in orders:
            kernels.append(gaussian_2d(sigma, order, radius))
            descriptions.append({"name": _order_name(order), "sigma": sigma, "order": list(order)})
    return Filters(stack_centred(kernels), descriptions)


def laplacian_of_gaussian(sigma: float, radius: int) -> np.ndarray:
    """Correlation weights of ``scipy.ndimage.gaussian_laplace(., sigma)`` (sum of two rank-1 terms)."""
    return gaussian_2d(sigma, (2, 0), radius) + gaussian_2d(sigma, (0, 2), radius)


@register(
    "log",
    "Laplacian of Gaussian (SciPy's gaussian_laplace kernels; negative centre)",
    SIGMAS,
    SIZE,
    TRUNCATE,
    shape=lambda sigmas, size, truncate: square_shape(
        len(sigmas), _side("log", sigmas, truncate, size)
    ),
)
def _log(sigmas: list[float], size: int | None, truncate: float) -> Filters:
    kernels = [laplacian_of_gaussian(s, kernel_radius(s, truncate, size)) for s in sigmas]
    descriptions = [{"name": "log", "sigma": s, "order": 2} for s in sigmas]
    return Filters(stack_centred(kernels), descriptions)


def difference_of_gaussians(
    sigma: float, k: float, truncate: float, size: int | None
) -> np.ndarray:
    """``G(sigma) - G(k * sigma)``, each Gaussian with its own SciPy radius, centred."""
    first, second = stack_centred(
        [gaussian_2d(s, (0, 0), kernel_radius(s, truncate, size)) for s in (sigma, k * sigma)]
    )[:, 0]
    return first - second


def _parse_ratio(value: Any, where: str) -> float:
    ratio = POSITIVE(value, where)
    if ratio == 1.0:
        raise InputError(
            f"{where} must be a number > 0 other than 1 (k = 1 gives a zero filter), got {describe(value)}"
        )
    return float(ratio)


@register(
    "dog",
    "difference of Gaussians G(sigma) - G(k * sigma) (SciPy's gaussian_filter kernels)",
    SIGMAS,
    Parameter("k", 1.6, "ratio of the second Gaussian's sigma to the first", _parse_ratio),
    SIZE,
    TRUNCATE,
    shape=lambda sigmas, k, size, truncate: square_shape(
        len(sigmas), _side("dog", [*sigmas, *(k * s for s in sigmas)], truncate, size)
    ),
)
def _dog(sigmas: list[float], k: float, size: int | None, truncate: float) -> Filters:
    kernels = [difference_of_gaussians(s, k, truncate, size) for s in sigmas]
    descriptions = [{"name": "dog", "sigma": s, "k": k} for s in sigmas]
    return Filters(stack_centred(kernels), descriptions)
