"""Plain banks: ``random`` (seeded normal weights), ``box`` (mean filter), ``identity``; 2-D or 3-D.

Each takes ``ndim`` (2: kernels ``(ky, kx)``, 3: ``(kz, ky, kx)``) and a ``size`` that is one side
for every axis or one per axis (``[ky, kx]``, ``[kz, ky, kx]``).
"""

from __future__ import annotations

import math

import numpy as np

from featuremap.banks._params import (
    boolean,
    integer,
    kernel_sizes,
    optional,
    parameter_name,
    per_axis,
    real,
)
from featuremap.banks._registry import NDIM, Filters, Parameter, register

__all__: list[str] = []


def _sides(bank: str, size: int | list[int], ndim: int) -> tuple[int, ...]:
    """The kernel's side on each axis, ``size`` checked against ``ndim``."""
    return tuple(per_axis(parameter_name(bank, "size"), size, ndim))


@register(
    "random",
    "seeded normal random filters (NumPy PCG64), e.g. for random-feature baselines",
    Parameter("n", 8, "number of filters J", integer(1, 65536)),
    Parameter("size", 3, "kernel side, or one per axis", kernel_sizes()),
    Parameter("in_channels", 1, "input channels C of every filter", integer(1, 65536)),
    Parameter(
        "seed", 0, "random seed (same seed, same weights on every machine)", integer(0, 2**63 - 1)
    ),
    Parameter("bias", False, "also draw a normal bias per filter", boolean()),
    Parameter(
        "std",
        None,
        "standard deviation (default 1/sqrt(fan_in), fan_in = in_channels times the kernel's "
        "weights)",
        optional(real(0.0, open_minimum=True)),
    ),
    NDIM,
    shape=lambda n, size, in_channels, ndim, **_: (n, in_channels, *_sides("random", size, ndim)),
)
def _random(
    n: int,
    size: int | list[int],
    in_channels: int,
    seed: int,
    bias: bool,
    std: float | None,
    ndim: int,
) -> Filters:
    shape = (n, in_channels, *_sides("random", size, ndim))
    scale = std if std is not None else 1.0 / math.sqrt(math.prod(shape[1:]))
    generator = np.random.default_rng(seed)
    weight = scale * generator.standard_normal(shape)
    bias_values = scale * generator.standard_normal(n) if bias else None
    descriptions = [{"name": "random", "index": j} for j in range(n)]
    return Filters(weight, descriptions, bias=bias_values, derived={"std": scale})


@register(
    "box",
    "mean filter: every weight 1 / (number of weights)",
    Parameter("size", 3, "kernel side, or one per axis", kernel_sizes()),
    NDIM,
    shape=lambda size, ndim: (1, 1, *_sides("box", size, ndim)),
)
def _box(size: int | list[int], ndim: int) -> Filters:
    sides = _sides("box", size, ndim)
    return Filters(np.full((1, 1, *sides), 1.0 / math.prod(sides)), [{"name": "box", "size": size}])


@register(
    "identity",
    "a centred 1: passes the input through (with padding 'same')",
    Parameter("size", 1, "kernel side (odd), or one per axis", kernel_sizes(odd=True)),
    NDIM,
    shape=lambda size, ndim: (1, 1, *_sides("identity", size, ndim)),
)
def _identity(size: int | list[int], ndim: int) -> Filters:
    sides = _sides("identity", size, ndim)
    weight = np.zeros((1, 1, *sides))
    weight[(0, 0, *(side // 2 for side in sides))] = 1.0
    return Filters(weight, [{"name": "identity"}])
