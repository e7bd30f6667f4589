"""3 x 3 derivative banks: ``sobel``, ``scharr``, ``prewitt`` (y then x) and ``laplacian``.

Each derivative filter is ``outer(derivative, smoothing)`` (y) or ``outer(smoothing, derivative)``
(x) with ``derivative = [-1, 0, 1]`` as correlation weights, so a response is positive where the
image increases down (y) or to the right (x). Unnormalised weights equal ``scipy.ndimage.sobel`` /
``prewitt`` (smoothing ``[1, 2, 1]``, ``[1, 1, 1]``; Scharr ``[3, 10, 3]``); with ``normalize``
the smoothing sums to 1, as in ``skimage.filters.sobel`` / ``scharr`` / ``prewitt``.
"""

from __future__ import annotations

import numpy as np

from featuremap.banks._params import boolean, choice
from featuremap.banks._registry import Filters, Parameter, register

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


def _derivative_pair(name: str, normalize: bool) -> Filters:
    smoothing = SMOOTHING[name] / (SMOOTHING[name].sum() if normalize else 1.0)
    weight = np.stack([np.outer(DERIVATIVE, smoothing), np.outer(smoothing, DERIVATIVE)])[:, None]
    descriptions = [
        {"name": f"{name}_y", "order": [1, 0]},
        {"name": f"{name}_x", "order": [0, 1]},
    ]
    return Filters(weight, descriptions)


def _register_derivative_pair(name: str, reference: str) -> None:
    summary = f"{name.capitalize()} y and x derivatives, 3x3 ({reference})"
    register(name, summary, NORMALIZE)(lambda normalize: _derivative_pair(name, normalize))


_register_derivative_pair("sobel", "scipy.ndimage.sobel")
_register_derivative_pair("scharr", "skimage.filters.scharr with normalize")
_register_derivative_pair("prewitt", "scipy.ndimage.prewitt")

LAPLACIAN = {
    4: np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]),
    8: np.array([[1.0, 1.0, 1.0], [1.0, -8.0, 1.0], [1.0, 1.0, 1.0]]),
}


@register(
    "laplacian",
    "discrete Laplacian, 3x3, 4-neighbour (scipy.ndimage.laplace) or 8-neighbour",
    Parameter("neighbours", 4, "4 or 8", choice((4, 8))),
)
def _laplacian(neighbours: int) -> Filters:
    return Filters(
        LAPLACIAN[neighbours][None, None], [{"name": "laplacian", "neighbours": neighbours}]
    )
