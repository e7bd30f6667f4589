"""Plain banks: ``random`` (seeded normal weights), ``box`` (mean filter), ``identity``."""

from __future__ import annotations

import math

import numpy as np

from featuremap.banks._params import boolean, integer, kernel_size, optional, real
from featuremap.banks._registry import Filters, Parameter, register

__all__: list[str] = []


@register(
    "random",
    "seeded normal random filters (NumPy PCG64), e.g. for random-feature baselines",
    Parameter("n", 8, "number of filters J", integer(1, 65536)),
    Parameter("size", 3, "kernel side", kernel_size()),
    Parameter("in_channels", 1, "input channels C of every filter", integer(1, 65536)),
    Parameter(
        "seed", 0, "random seed (same seed, same weights on every machine)", integer(0, 2**63 - 1)
    ),
    Parameter("bias", False, "also draw a normal bias per filter", boolean()),
    Parameter(
        "std",
        None,
        "standard deviation (default 1/sqrt(in_channels*size*size))",
        optional(real(0.0, open_minimum=True)),
    ),
    shape=lambda n, size, in_channels, **_: (n, in_channels, size, size),
)
def _random(
    n: int, size: int, in_channels: int, seed: int, bias: bool, std: float | None
) -> Filters:
    scale = std if std is not None else 1.0 / math.sqrt(in_channels * size * size)
    generator = np.random.default_rng(seed)
    weight = scale * generator.standard_normal((n, in_channels, size, size))
    bias_values = scale * generator.standard_normal(n) if bias else None
    descriptions = [{"name": "random", "index": j} for j in range(n)]
    return Filters(weight, descriptions, bias=bias_values, derived={"std": scale})


@register(
    "box",
    "mean filter: every weight 1/size^2",
    Parameter("size", 3, "kernel side", kernel_size()),
)
def _box(size: int) -> Filters:
    return Filters(
        np.full((1, 1, size, size), 1.0 / (size * size)), [{"name": "box", "size": size}]
    )


@register(
    "identity",
    "a centred 1: passes the input through (with padding 'same')",
    Parameter("size", 1, "kernel side (odd)", kernel_size(odd=True)),
)
def _identity(size: int) -> Filters:
    weight = np.zeros((1, 1, size, size))
    weight[0, 0, size // 2, size // 2] = 1.0
    return Filters(weight, [{"name": "identity"}])
