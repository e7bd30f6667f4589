"""Pointwise activations of DESIGN section 1, in place on float arrays (NaN stays NaN)."""

from __future__ import annotations

from types import ModuleType

import numpy

from featuremap._typing import Array
from featuremap._vocabulary import ACTIVATIONS
from featuremap.engine.kernels._namespace import array_namespace
from featuremap.errors import InputError, describe

__all__ = ["activate"]


def _sigmoid(xp: ModuleType, x: Array) -> Array:
    # exp of -|x| never overflows; both branches are then accurate, also far in the tails.
    decay = xp.exp(-xp.abs(x))
    ratio = decay / (1 + decay)
    return xp.where(x >= 0, 1 - ratio, ratio)


def activate(name: str, x: Array) -> Array:
    """Apply activation ``name`` to ``x``, possibly in place; returns the result.

    Raises
    ------
    InputError
        For a name not in :data:`ACTIVATIONS`.
    """
    if name not in ACTIVATIONS:
        raise InputError(
            f"activation must be one of {', '.join(ACTIVATIONS)}, got {describe(name)}"
        )
    xp = array_namespace(x)
    if name == "none":
        return x
    if name == "relu":
        return xp.maximum(x, 0, out=x)
    if name == "sigmoid":
        return _sigmoid(xp, x)
    if name == "sqrt":
        with numpy.errstate(invalid="ignore"):  # a negative value is NaN, quietly as in torch
            return xp.sqrt(x, out=x)
    return {"tanh": xp.tanh, "abs": xp.abs, "square": xp.square}[name](x, out=x)
