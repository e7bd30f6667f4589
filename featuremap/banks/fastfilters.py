"""fastfilters2's 1-D Gaussian-derivative kernels: the default kernels of ilastik's pixel features
(DESIGN section 8, ``kernels: fastfilters``).

These are the kernels of ``fastfilters2.compute_filters`` (ilastik/fastfilters2, ``gaussian_kernel``
and ``kernel_radius`` in ``cpp/fastfilters2.cpp``), written here in float64 as *correlation*
weights ``w[x]``, ``x = -r .. r`` (a response is ``sum_x w[x] * image[i + x]``):

* radius ``r = ceil((3 + order / 2) * sigma)``: ``ceil(3 sigma)``, ``ceil(3.5 sigma)``,
  ``ceil(4 sigma)`` for orders 0, 1, 2 (each order its own radius, unlike SciPy's
  ``int(4 sigma + 0.5)`` for every order);
* order 0: ``g(x) = exp(-x^2 / 2 sigma^2)`` normalised to ``sum w = 1``;
* order 1: ``x * g(x)`` scaled so that ``sum x * w = 1``: odd, positive for ``x > 0``, so a
  correlation gives ``+d/dx`` (exactly 1 on a unit ramp), the sign of SciPy's ``order=1``;
* order 2: ``(x^2 / sigma^2 - 1) * g(x)``, its mean over the ``2r + 1`` samples removed (so
  ``sum w = 0`` exactly: a constant has no second derivative), then scaled so that
  ``sum x^2 * w = 2`` (exactly 2 on ``x^2``): even, negative at the centre.

fastfilters2 computes the same numbers in double and stores them as float32 between its steps
(the sampled values, the mean-removed values, the normalised values), so its kernels are these
rounded to float32: within one float32 ulp of the kernel's largest value (checked against the
kernel values of fastfilters2's own tests, sigma 0.3 to 10, orders 0 to 2). Its continuous prefactors ``1 / (sqrt(2 pi) sigma)``
and ``-1 / sigma^2`` cancel in the normalisations and are left out here.

The normalisation of order 1 is computed from ``g`` relative to ``g(1)`` (the same kernel up to
rounding): for a tiny sigma ``g(1)`` underflows and ``x * g / sum(x^2 g)`` would be ``0 / 0``;
relative to ``g(1)`` it tends to ``[-1/2, 0, 1/2]``, the central difference.
"""

from __future__ import annotations

import math

import numpy as np

from featuremap.banks._params import derived_kernel_size
from featuremap.errors import InputError, describe

__all__ = ["ORDERS", "fastfilters_kernel_1d", "fastfilters_radius"]

#: The derivative orders fastfilters2 has kernels for.
ORDERS = (0, 1, 2)


def _check(sigma: float, order: int) -> None:
    try:
        valid = math.isfinite(sigma) and sigma > 0
    except TypeError:  # not a number
        valid = False
    if not valid:
        raise InputError(
            f"fastfilters kernel sigma must be a finite number > 0, got {describe(sigma)}"
        )
    if order not in ORDERS:
        raise InputError(f"fastfilters kernel order must be 0, 1 or 2, got {describe(order)}")


def fastfilters_radius(sigma: float, order: int, bank: str = "gaussian") -> int:
    """fastfilters2's ``kernel_radius``: ``ceil((3 + order / 2) * sigma)`` (in double, as in C++).

    A kernel side ``2 r + 1`` larger than :data:`~featuremap.banks._params.MAX_KERNEL_SIZE`
    raises one :class:`InputError` line naming ``bank``.
    """
    _check(sigma, order)
    side = derived_kernel_size(
        f"bank {bank!r} kernel size 2*ceil((3+order/2)*sigma)+1 (kernels: fastfilters)",
        (3 + 0.5 * order) * sigma,
        math.ceil,
        f"order {order}, sigma {sigma:g}; lower sigma",
    )
    return (side - 1) // 2


def fastfilters_kernel_1d(sigma: float, order: int, radius: int | None = None) -> np.ndarray:
    """Correlation weights (float64, length ``2 * radius + 1``) of fastfilters2's Gaussian
    derivative of ``order`` (0, 1 or 2) at ``sigma`` (pixels).

    ``radius``: fastfilters2's :func:`fastfilters_radius` by default; another radius samples the
    same formula on ``[-radius, radius]`` and normalises it there (a fixed ``size``).
    """
    _check(sigma, order)
    if radius is None:
        radius = fastfilters_radius(sigma, order)
    if radius < 1 and order > 0:
        raise InputError(f"fastfilters kernel of order {order} needs a radius >= 1, got {radius}")
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    half_inverse_variance = 0.5 / (sigma * sigma)
    if order == 0:
        weights = np.exp(-half_inverse_variance * x * x)
        return weights / weights.sum()
    if order == 1:
        # x = 0 has weight 0: its exponent is clipped to 0, not exp(+1 / 2 sigma^2).
        weights = x * np.exp(-half_inverse_variance * np.maximum(x * x - 1.0, 0.0))
        return weights / (x * weights).sum()
    weights = (2.0 * half_inverse_variance * x * x - 1.0) * np.exp(-half_inverse_variance * x * x)
    weights -= weights.mean()
    return weights / (0.5 * (x * x * weights).sum())
