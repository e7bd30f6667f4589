"""Building blocks of the Oxford VGG texture banks (Varma & Zisserman's ``makeLMfilters.m``,
``makeRFSfilters.m``, ``makeSfilters.m``) and of MATLAB's ``fspecial`` they call.

The reference samples filters on ``[x, y] = meshgrid(-h:h, h:-1:-h)``: ``x`` is the column offset
and ``y`` points *up* (row 0 is ``y = h``). Oriented filters are evaluated on the points rotated
by ``[c -s; s c]``; their long axis (sigma ``3 * scale``) lies along the rotated x axis and the
derivative is taken across it. Every filter is then made zero-mean and unit-L1 (``normalise``).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["fspecial_gaussian", "fspecial_log", "normalise", "oriented_filter", "reference_grid"]

#: MATLAB's ``eps`` (spacing of doubles at 1), used by ``fspecial`` to cut negligible tails.
MATLAB_EPS = float(np.finfo(np.float64).eps)


def reference_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of the reference: ``x[row, col] = col - h``, ``y[row, col] = h - row``."""
    half = (size - 1) / 2
    offsets = np.arange(size, dtype=np.float64) - half
    return np.meshgrid(offsets, -offsets)


def normalise(kernel: np.ndarray) -> np.ndarray:
    """The reference's ``normalise``: subtract the mean, divide by the sum of absolute values."""
    centred = kernel - kernel.mean()
    return centred / np.abs(centred).sum()


def _gauss1d(sigma: float, x: np.ndarray, order: int) -> np.ndarray:
    variance = sigma * sigma
    gaussian = np.exp(-x * x / (2 * variance)) / math.sqrt(math.pi * 2 * variance)
    if order == 1:
        return -gaussian * x / variance
    if order == 2:
        return gaussian * (x * x - variance) / (variance * variance)
    return gaussian


def oriented_filter(scale: float, order: int, angle: float, size: int) -> np.ndarray:
    """The reference's ``makefilter(scale, 0, order, rotpts, size)`` at ``angle`` (radians).

    Gaussian of sigma ``3 * scale`` along the rotated x axis times the ``order``-th derivative of a
    Gaussian of sigma ``scale`` along the rotated y axis; ``normalise``-d.
    """
    x, y = reference_grid(size)
    cos, sin = math.cos(angle), math.sin(angle)
    along, across = cos * x - sin * y, sin * x + cos * y
    return normalise(_gauss1d(3 * scale, along, 0) * _gauss1d(scale, across, order))


def fspecial_gaussian(size: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)``."""
    x, y = reference_grid(size)
    kernel = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    kernel[kernel < MATLAB_EPS * kernel.max()] = 0
    return kernel / kernel.sum()


def fspecial_log(size: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('log', size, sigma)``: Laplacian of Gaussian, made to sum to zero."""
    x, y = reference_grid(size)
    variance = sigma * sigma
    radius2 = x * x + y * y
    gaussian = fspecial_gaussian(size, sigma)
    kernel = gaussian * (radius2 - 2 * variance) / (variance * variance)
    return kernel - kernel.sum() / kernel.size
