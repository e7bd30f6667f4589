"""3 x 3 derivative banks: ``sobel``, ``scharr``, ``prewitt`` (y then x) and ``laplacian``; 2-D or 3-D.

Each derivative filter is ``outer(derivative, smoothing)`` (y) or ``outer(smoothing, derivative)``
(x) with ``derivative = [-1, 0, 1]`` as correlation weights, so a response is positive where the
image increases down (y) or to the right (x). Unnormalised weights equal ``scipy.ndimage.sobel`` /
``prewitt`` (smoothing ``[1, 2, 1]``, ``[1, 1, 1]``; Scharr ``[3, 10, 3]``); with ``normalize``
the smoothing sums to 1, as in ``skimage.filters.sobel`` / ``scharr`` / ``prewitt``.

With ``ndim: 3`` the filters are 3 x 3 x 3: the derivative along z, y, x, each smoothed along the
two other axes (``scipy.ndimage.sobel(volume, axis)``), and the Laplacian's neighbours are 6 (faces,
``scipy.ndimage.laplace``) or 26.
"""

from __future__ import annotations

import functools

import numpy as np

from featuremap.banks._params import NDIMS, axes, boolean, choice, optional, parameter_name
from featuremap.banks._registry import NDIM, Filters, Parameter, register
from featuremap.errors import InputError

__all__ = ["SMOOTHING"]

DERIVATIVE = np.array([-1.0, 0.0, 1.0])
SMOOTHING = {
    "sobel": np.array([1.0, 2.0, 1.0]),
    "scharr": np.array([3.0, 10.0, 3.0]),
    "prewitt": np.array([1.0, 1.0, 1.0]),
}
NORMALIZE = Parameter(
    "normalize",
    False,
    "divide the smoothing weights by their sum (scikit-image's weights)",
    boolean(),
)


def _outer(kernels: list[np.ndarray]) -> np.ndarray:
    return functools.reduce(np.multiply.outer, kernels)


def _derivatives(name: str, normalize: bool, ndim: int) -> Filters:
    """The derivative along each axis, outermost first, smoothed along the others."""
    smoothing = SMOOTHING[name] / (SMOOTHING[name].sum() if normalize else 1.0)
    kernels, descriptions = [], []
    for axis, axis_name in enumerate(axes(ndim)):
        kernels.append(_outer([DERIVATIVE if a == axis else smoothing for a in range(ndim)]))
        order = [int(a == axis) for a in range(ndim)]
        descriptions.append({"name": f"{name}_{axis_name}", "order": order})
    return Filters(np.stack(kernels)[:, None], descriptions)


def _register_derivatives(name: str, reference: str) -> None:
    summary = f"{name.capitalize()} y and x (ndim 3: z, y, x) derivatives, 3x3 ({reference})"
    register(name, summary, NORMALIZE, NDIM)(
        lambda normalize, ndim: _derivatives(name, normalize, ndim)
    )


_register_derivatives("sobel", "scipy.ndimage.sobel")
_register_derivatives("scharr", "skimage.filters.scharr with normalize")
_register_derivatives("prewitt", "scipy.ndimage.prewitt")

SECOND_DIFFERENCE = np.array([1.0, -2.0, 1.0])
CENTRE = np.array([0.0, 1.0, 0.0])
#: The neighbour counts of the Laplacian per ndim: the faces only, or every neighbour.
NEIGHBOURS = {ndim: (2 * ndim, 3**ndim - 1) for ndim in NDIMS}


def laplacian_kernel(neighbours: int, ndim: int) -> np.ndarray:
    """The discrete Laplacian on ``ndim`` axes: the second difference along each axis summed
    (``neighbours == 2 * ndim``), or every neighbour minus ``neighbours`` times the centre."""
    if neighbours == 2 * ndim:
        terms = (
            _outer([SECOND_DIFFERENCE if a == axis else CENTRE for a in range(ndim)])
            for axis in range(ndim)
        )
        return functools.reduce(np.add, terms)
    kernel = np.ones((3,) * ndim)
    kernel[(1,) * ndim] = -float(neighbours)
    return kernel


def _neighbours(neighbours: int | None, ndim: int) -> int:
    """``neighbours``, the faces by default; refused if it does not fit ``ndim``."""
    if neighbours is None:
        return NEIGHBOURS[ndim][0]
    if neighbours not in NEIGHBOURS[ndim]:
        allowed = "; ".join(f"{a} or {b} for ndim {n}" for n, (a, b) in NEIGHBOURS.items())
        raise InputError(
            f"{parameter_name('laplacian', 'neighbours')} must be {allowed}, got {neighbours} "
            f"with ndim {ndim}"
        )
    return neighbours


@register(
    "laplacian",
    "discrete Laplacian, 3x3, 4-neighbour (scipy.ndimage.laplace) or 8-neighbour (ndim 3: 6 or 26)",
    Parameter(
        "neighbours",
        None,
        "4 or 8 (ndim 3: 6 or 26); default 4 (ndim 3: 6)",
        optional(choice(sorted({n for pair in NEIGHBOURS.values() for n in pair}))),
    ),
    NDIM,
)
def _laplacian(neighbours: int | None, ndim: int) -> Filters:
    neighbours = _neighbours(neighbours, ndim)
    return Filters(
        laplacian_kernel(neighbours, ndim)[None, None],
        [{"name": "laplacian", "neighbours": neighbours}],
        derived={"neighbours": neighbours},
    )
