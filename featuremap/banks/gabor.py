"""The ``gabor`` bank, matching ``skimage.filters.gabor_kernel`` sample for sample.

A filter of frequency ``f`` (cycles per pixel), orientation ``theta`` and phase ``phi`` is::

    g(y, x) = exp(-(u^2 + v^2) / (2 sigma^2)) / (2 pi sigma^2) * cos(2 pi f u - phi)
    u = x cos(theta) + y sin(theta),   v = -x sin(theta) + y cos(theta)

with ``x`` the column and ``y`` the row offset from the centre (rows downward), as in scikit-image.
Phase 0 is the real part of scikit-image's complex kernel and phase pi/2 its imaginary part, so
the default phases give the quadrature pair whose squared sum is the Gabor energy. Without an
explicit ``sigma``, ``sigma = (1/pi) sqrt(ln 2 / 2) (2^b + 1) / (2^b - 1) / f`` for bandwidth ``b``
(scikit-image's default, ``b = 1``). All filters share one size, by default the one scikit-image
needs for the widest filter: ``2 * ceil(n_stds * sigma) + 1``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from featuremap.banks._params import (
    derived_kernel_size,
    integer,
    kernel_size,
    optional,
    real,
    real_list,
)
from featuremap.banks._registry import Filters, Parameter, register
from featuremap.errors import InputError, describe

__all__ = ["gabor_filter", "sigma_for_bandwidth"]


def sigma_for_bandwidth(frequency: float, bandwidth: float) -> float:
    """Envelope sigma of a Gabor filter with the given frequency and octave bandwidth."""
    spread = 2**bandwidth - 1
    if spread <= 0.0:  # a bandwidth too small for a float: an infinitely wide envelope
        return math.inf
    prefactor = math.sqrt(math.log(2) / 2) / math.pi * (2**bandwidth + 1) / spread
    return prefactor / frequency


def gabor_filter(
    size: int, frequency: float, theta: float, phase: float, sigma: float
) -> np.ndarray:
    """One ``size x size`` Gabor filter (float64), centred."""
    half = size // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    u = x * math.cos(theta) + y * math.sin(theta)
    v = -x * math.sin(theta) + y * math.cos(theta)
    envelope = np.exp(-0.5 * (u * u + v * v) / (sigma * sigma)) / (2 * math.pi * sigma * sigma)
    return envelope * np.cos(2 * math.pi * frequency * u - phase)


def _sigmas(frequencies: list[float], bandwidth: float, sigma: float | None) -> list[float]:
    """The envelope sigma of each frequency; refused if one is not finite (tiny f or bandwidth)."""
    sigmas = [
        sigma if sigma is not None else sigma_for_bandwidth(f, bandwidth) for f in frequencies
    ]
    for frequency, envelope_sigma in zip(frequencies, sigmas, strict=True):
        if not math.isfinite(envelope_sigma):
            raise InputError(
                f"bank 'gabor' envelope sigma of frequency {frequency:g} with bandwidth "
                f"{bandwidth:g} is not a finite number; give a larger frequency or bandwidth, or sigma"
            )
    return sigmas


def _size(size: int | None, sigmas: list[float], n_stds: float) -> int:
    """The kernel side: ``size``, or ``2 * ceil(n_stds * sigma) + 1`` of the widest filter,
    refused past :data:`~featuremap.banks._params.MAX_KERNEL_SIZE` before it is used."""
    if size is not None:
        return size
    return derived_kernel_size(
        "bank 'gabor' kernel size 2*ceil(n_stds*sigma)+1",
        n_stds * max(sigmas),
        math.ceil,
        f"n_stds {n_stds:g}, largest sigma {max(sigmas):g}; lower sigma or n_stds, "
        "raise the smallest frequency, or give size",
    )


def _shape(
    size: int | None,
    orientations: int | None,
    angles: list[float] | None,
    frequencies: list[float],
    phases: list[float],
    bandwidth: float,
    sigma: float | None,
    n_stds: float,
) -> tuple[int, int, int, int]:
    n_angles = len(angles) if angles is not None else orientations or 8
    side = _size(size, _sigmas(frequencies, bandwidth, sigma), n_stds)
    return len(frequencies) * n_angles * len(phases), 1, side, side


@register(
    "gabor",
    "Gabor filters (scikit-image's gabor_kernel): frequencies x orientations x phases",
    Parameter(
        "size",
        None,
        "kernel side (odd); default 2*ceil(n_stds*sigma)+1 of the widest filter",
        optional(kernel_size(odd=True)),
    ),
    Parameter(
        "orientations",
        None,
        "number of orientations k*pi/n, k = 0..n-1 (default 8 unless angles)",
        optional(integer(1, 360)),
    ),
    Parameter(
        "angles",
        None,
        "explicit orientations in radians (instead of orientations)",
        optional(real_list(real(), "numbers")),
    ),
    Parameter(
        "frequencies",
        [0.1, 0.2],
        "spatial frequencies in cycles per pixel, 0 < f <= 0.5",
        real_list(real(0.0, 0.5, open_minimum=True), "numbers in (0, 0.5]"),
    ),
    Parameter(
        "phases",
        [0.0, math.pi / 2],
        "phases in radians: 0 = even (real part), pi/2 = odd (imaginary part)",
        real_list(real(), "numbers"),
    ),
    Parameter(
        "bandwidth",
        1.0,
        "octave bandwidth that sets sigma when sigma is not given",
        real(0.0, 8.0, open_minimum=True),
    ),
    Parameter(
        "sigma",
        None,
        "envelope sigma in pixels of every filter (default: from bandwidth and frequency)",
        optional(real(0.0, open_minimum=True)),
    ),
    Parameter(
        "n_stds",
        3.0,
        "default kernel half-width in sigmas (scikit-image's n_stds)",
        real(0.0, open_minimum=True),
    ),
    shape=_shape,
)
def _gabor(
    size: int | None,
    orientations: int | None,
    angles: list[float] | None,
    frequencies: list[float],
    phases: list[float],
    bandwidth: float,
    sigma: float | None,
    n_stds: float,
) -> Filters:
    if orientations is not None and angles is not None:
        raise InputError(
            "bank 'gabor' takes orientations or angles, not both "
            f"(got orientations={orientations}, angles={describe(angles)})"
        )
    derived: dict[str, Any] = {}
    if angles is None:
        orientations = 8 if orientations is None else orientations
        angles = [math.pi * k / orientations for k in range(orientations)]
        derived["orientations"] = orientations
    sigmas = _sigmas(frequencies, bandwidth, sigma)
    if size is None:
        size = derived["size"] = _size(None, sigmas, n_stds)
    kernels, descriptions = [], []
    for frequency, envelope_sigma in zip(frequencies, sigmas, strict=False):
        for theta in angles:
            for phase in phases:
                kernels.append(gabor_filter(size, frequency, theta, phase, envelope_sigma))
                descriptions.append(
                    {
                        "name": "gabor",
                        "frequency": frequency,
                        "orientation": theta,
                        "phase": phase,
                        "sigma": envelope_sigma,
                    }
                )
    return Filters(np.stack(kernels)[:, None], descriptions, derived=derived)
