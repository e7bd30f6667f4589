"""Sigmas of the Gaussian banks (``gaussian``, ``log``, ``dog``, ``ilastik``): their parameters,
and their resolution into sigmas per axis in pixels and kernel radii per axis.

Each entry of ``sigmas`` is one number (the same on every axis) or one per spatial axis (``[sy, sx]``
or, with ``ndim: 3``, ``[sz, sy, sx]``). With ``sigma_units: physical`` the sigmas are in the
input's physical units and are divided, axis by axis, by the pixel size ``spacing`` (one number or
one per axis, which the pipeline fills in from the input's OME-NGFF scale); without ``spacing`` that
is an input error. ``spacing`` is ignored, and not recorded, for sigmas in pixels. A kernel's radius
on each axis is SciPy's ``int(truncate * sigma + 0.5)`` unless ``size`` fixes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from featuremap.banks._params import (
    choice,
    derived_kernel_size,
    kernel_sizes,
    one_or_per_axis,
    optional,
    parameter_name,
    per_axis,
    real,
    real_or_axis_list,
)
from featuremap.banks._registry import NDIM, Parameter
from featuremap.errors import InputError

__all__ = [
    "POSITIVE",
    "SIGMAS",
    "SIGMA_PARAMETERS",
    "SIGMA_UNITS",
    "SIZE",
    "TRUNCATE",
    "Scale",
    "Scales",
    "kernel_radius",
    "recorded_spacing",
]


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


SIGMA_UNITS = ("pixels", "physical")


@dataclass(frozen=True)
class Scale:
    """One entry of ``sigmas``, resolved: ``pixels`` per axis, and the entry as it was given."""

    pixels: tuple[float, ...]
    asked: float | list[float]
    physical: bool

    def describe(self) -> dict[str, Any]:
        """``sigma`` in pixels (a number when equal on every axis) and, for a sigma given in
        physical units, ``sigma_physical`` as given."""
        same = len(set(self.pixels)) == 1
        description: dict[str, Any] = {"sigma": self.pixels[0] if same else list(self.pixels)}
        if self.physical:
            description["sigma_physical"] = self.asked
        return description


def _pixel_size(
    bank: str, ndim: int, sigma_units: str, spacing: float | list[float] | None
) -> tuple[float, ...] | None:
    """The pixel size per axis that physical sigmas are divided by, ``None`` for pixel sigmas."""
    sizes = None if spacing is None else per_axis(parameter_name(bank, "spacing"), spacing, ndim)
    if sigma_units == "pixels":
        return None
    if sizes is None:
        raise InputError(
            f"{parameter_name(bank, 'sigma_units')} is 'physical' but the input's pixel spacing "
            "is not known (no 'spacing' given): give sigma in pixels (sigma_units: pixels) or "
            "read an input with physical units (an OME-NGFF scale)"
        )
    return sizes


@dataclass(frozen=True)
class Scales:
    """A bank's ``sigmas`` resolved against its ``ndim``, ``sigma_units``, ``spacing``, ``size``
    and ``truncate``: the sigmas per axis in pixels, and each kernel's radius per axis."""

    bank: str
    scales: tuple[Scale, ...]
    truncate: float
    size: tuple[int, ...] | None

    @classmethod
    def resolve(
        cls,
        bank: str,
        sigmas: list[Any],
        ndim: int,
        sigma_units: str,
        spacing: float | list[float] | None,
        truncate: float,
        size: int | list[int] | None = None,
    ) -> Scales:
        """Check the per-axis lists against ``ndim`` and convert physical sigmas to pixels; a
        contradiction is one :class:`InputError` line."""
        pixel_size = _pixel_size(bank, ndim, sigma_units, spacing)
        where = parameter_name(bank, "sigmas") + " (each element)"
        scales = []
        for asked in sigmas:
            sigma = per_axis(where, asked, ndim)
            if pixel_size is not None:
                sigma = tuple(s / p for s, p in zip(sigma, pixel_size, strict=True))
            scales.append(Scale(tuple(float(s) for s in sigma), asked, pixel_size is not None))
        sides = None if size is None else per_axis(parameter_name(bank, "size"), size, ndim)
        return cls(bank, tuple(scales), truncate, sides)

    def radius(self, sigma: Sequence[float]) -> tuple[int, ...]:
        """The kernel radius on each axis for ``sigma`` (pixels, per axis)."""
        sizes = self.size or (None,) * len(sigma)
        return tuple(
            kernel_radius(s, self.truncate, side, self.bank)
            for s, side in zip(sigma, sizes, strict=True)
        )

    def sides(self, ratios: Iterable[float] = (1.0,)) -> tuple[int, ...]:
        """The bank's common kernel sides: the largest radius on each axis over every sigma times
        every ratio (``(1, k)`` for a difference of Gaussians), checked."""
        radii = [
            self.radius([r * s for s in scale.pixels]) for scale in self.scales for r in ratios
        ]
        return tuple(2 * max(axis) + 1 for axis in zip(*radii, strict=True))

    def shape(self, per_scale: int, ratios: Iterable[float] = (1.0,)) -> tuple[int, ...]:
        """The weight shape of a single-channel bank of ``per_scale`` filters per sigma."""
        return (len(self.scales) * per_scale, 1, *self.sides(ratios))


POSITIVE = real(0.0, open_minimum=True)
SIGMAS = Parameter(
    "sigmas",
    [1.0, 2.0, 4.0],
    "Gaussian standard deviations, in pixels unless sigma_units; each a number or one per axis, "
    "[sy, sx] or [sz, sy, sx]",
    real_or_axis_list(POSITIVE, "a number > 0", "numbers > 0"),
)
# `size: None` stays None in Bank.params (the weight's shape tells the size): a fixed size changes
# every filter's radius, so recording the derived size would not rebuild the same bank.
SIZE = Parameter(
    "size",
    None,
    "kernel side (odd) or one per axis, one radius for every sigma; default: each sigma its own "
    "radius",
    optional(kernel_sizes(odd=True)),
)
TRUNCATE = Parameter(
    "truncate", 4.0, "kernel radius in sigmas when size is not given (SciPy's truncate)", POSITIVE
)
SIGMA_UNIT = Parameter(
    "sigma_units",
    "pixels",
    "'pixels', or 'physical': sigmas in the input's units, divided by its pixel spacing",
    choice(SIGMA_UNITS),
    omit_default=True,
)
SPACING = Parameter(
    "spacing",
    None,
    "pixel size per axis ([y, x] or [z, y, x]) for sigma_units physical; the pipeline fills it in "
    "from the input's scale",
    optional(one_or_per_axis(POSITIVE, "a finite number > 0")),
    omit_default=True,
)
#: The parameters that say how the sigmas are given: ``ndim``, ``sigma_units`` and ``spacing``.
SIGMA_PARAMETERS = (NDIM, SIGMA_UNIT, SPACING)


def recorded_spacing(sigma_units: str) -> dict[str, Any]:
    """What a builder records of ``spacing``: nothing (``None``, left out) for pixel sigmas."""
    return {"spacing": None} if sigma_units == "pixels" else {}
