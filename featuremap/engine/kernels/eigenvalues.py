"""Eigenvalues of symmetric 2x2 and 3x3 tensors given by their unique components, in closed form.

**Component order.** A symmetric tensor ``T`` over the spatial axes ``(y, x)`` or ``(z, y, x)``
is given by its upper triangle, row by row (:func:`tensor_components`)::

    2-D: [T_yy, T_yx, T_xx]                          e.g. [∂yy, ∂yx, ∂xx] of a Hessian
    3-D: [T_zz, T_zy, T_zx, T_yy, T_yx, T_xx]        e.g. [∂zz, ∂zy, ∂zx, ∂yy, ∂yx, ∂xx]

which is the order of the Gaussian derivative orders ``(o_z, o_y, o_x)`` sorted in descending
lexicographic order (:func:`derivative_orders`: 2-D ``(2, 0), (1, 1), (0, 2)``) and of the
channel pairs ``(a, b)``, ``a <= b``, of a gradient ``(g_z, g_y, g_x)`` whose products make a
structure tensor (``product: {pairs: ...}`` with :func:`tensor_components`).

**Method.** 2-D: ``m ± hypot((T_yy - T_xx) / 2, T_yx)`` with ``m`` the mean of the diagonal. 3-D:
the trigonometric closed form (Smith 1961) on the deviator ``S = T - (tr T / 3) I``, with the
angle taken by ``atan2`` from both invariants rather than by ``acos`` of their ratio::

    3θ = atan2(sqrt(Δ), 3·sqrt(3)·det S),   λ_k = tr T / 3 + 2·|S| / sqrt(6) · cos(θ - 2πk/3)

(``|S|`` the Frobenius norm), ``k = 0, 1, -1`` giving descending order. The discriminant
``Δ = Π (λ_i - λ_j)²`` is computed as a sum of squares, never as a difference: by Cauchy-Binet
it is the Gram determinant of ``I, S, S²`` in an orthonormal basis of the symmetric matrices,
``3 · Σ_{r<s} (s_r t_s - s_s t_r)²`` over the five trace-free coordinates ``s`` of ``S`` and ``t``
of ``S²``. Each term is exact to rounding of the matrix norm's cube, so ``sqrt(Δ)`` is too, and
nearly equal eigenvalues keep an error of a few ulps of the norm -- where ``acos`` of a ratio
near 1 loses half the digits. The deviator is scaled to norm 1 first (no overflow in ``Δ``),
a zero deviator (``T = c I``) gives ``c`` three times. NaN propagates; computed in float64.

The work is elementwise, in chunks through a reused float64 workspace: on NumPy cache-sized
ones on the threads of :func:`~featuremap.engine.kernels._threads.run_tiles`, on CuPy large ones.
Measured on 2**24 random 3x3 tensors (2 cores): 0.8-1.0 s against 10.8 s for
``numpy.linalg.eigvalsh``, within 2e-15 of it relative to the matrix norm.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Sequence
from types import ModuleType

import numpy

from featuremap._typing import Array
from featuremap.engine.kernels._namespace import array_namespace
from featuremap.engine.kernels._threads import run_tiles
from featuremap.errors import InputError

__all__ = [
    "derivative_orders",
    "symmetric_eigenvalues",
    "tensor_components",
    "tensor_size",
]

#: Tensors per chunk: NumPy works through 17 float64 rows of this length per thread, reused
#: from chunk to chunk (fresh temporaries would page-fault each time: 3x slower); CuPy in one go.
CHUNK = 1 << 13
GPU_CHUNK = 1 << 20
#: The smallest deviator norm scaled to 1; a smaller (or zero) one is scaled by 1 / _TINY.
_TINY = 1e-150

_SQRT6 = math.sqrt(6.0)
#: ``c_r² c_q²`` of the ten minors ``(r, q)``, ``r < q``, in ``itertools.combinations`` order.
_MINOR_WEIGHTS = (0.75, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 4.0, 4.0, 4.0)


def tensor_components(ndim: int) -> list[tuple[int, int]]:
    """The axis pairs ``(a, b)``, ``a <= b``, of a symmetric ``ndim x ndim`` tensor's unique
    components, in the order they are given (axes counted ``z, y, x`` = 0, 1, 2 in 3-D,
    ``y, x`` = 0, 1 in 2-D): 2-D ``(0, 0), (0, 1), (1, 1)``."""
    _check_ndim(ndim)
    return list(itertools.combinations_with_replacement(range(ndim), 2))


def derivative_orders(ndim: int) -> list[tuple[int, ...]]:
    """The second-derivative orders per axis (``(o_z, o_y, o_x)``) of a Hessian's unique
    components, in the order they are given: 2-D ``(2, 0), (1, 1), (0, 2)``."""
    return [
        tuple(int(axis == a) + int(axis == b) for axis in range(ndim))
        for a, b in tensor_components(ndim)
    ]


def tensor_size(ndim: int) -> int:
    """The number of unique components of a symmetric ``ndim x ndim`` tensor: 3 or 6."""
    _check_ndim(ndim)
    return ndim * (ndim + 1) // 2


def _check_ndim(ndim: int) -> None:
    if ndim not in (2, 3):
        raise InputError(f"eigenvalues are computed for 2x2 or 3x3 tensors, got ndim {ndim}")


def symmetric_eigenvalues(components: Array, axis: int = 0, dtype: object = None) -> Array:
    """The eigenvalues, in descending order, of the symmetric tensors whose unique components
    lie along ``axis`` of ``components`` (3 of a 2x2 tensor, 6 of a 3x3 one, ordered as
    :func:`tensor_components`).

    Parameters
    ----------
    components : array (NumPy or CuPy)
        ``axis`` of length 3 or 6; any other axes, any real dtype. Finite components should
        stay below ``1e150`` in magnitude (their squares are formed in float64).
    axis : int
        Where the components lie; the eigenvalues take their place (length 2 or 3).
    dtype : dtype, optional
        Of the result; default float64, the precision of the computation.

    Returns
    -------
    array
        ``components``'s shape with ``axis`` of length 2 or 3, of the array's module.

    Raises
    ------
    InputError
        Where ``axis`` does not hold 3 or 6 components.
    """
    xp = array_namespace(components)
    size = components.shape[axis]
    if size not in (3, 6):
        raise InputError(
            f"a symmetric tensor has 3 (2-D) or 6 (3-D) unique components, got {size} along axis {axis}"
        )
    ndim, solve, rows = (2, _eigenvalues_2d, 5) if size == 3 else (3, _eigenvalues_3d, 17)
    moved = xp.moveaxis(components, axis, 0)
    flat = moved.reshape(size, -1)
    count = flat.shape[1]
    out = xp.empty((ndim, count), dtype=dtype or xp.float64)
    step = max(min(count, CHUNK if xp is numpy else GPU_CHUNK), 1)
    scratch = threading.local()  # one workspace per thread, reused from chunk to chunk

    def work(start: int) -> None:
        stop = min(start + step, count)
        if getattr(scratch, "rows", None) is None:
            scratch.rows = xp.empty((rows, step), dtype=xp.float64)
        workspace = scratch.rows[:, : stop - start]
        workspace[:size] = flat[:, start:stop]
        with numpy.errstate(invalid="ignore", divide="ignore"):  # NaN/inf propagate quietly
            for row, values in zip(out[:, start:stop], solve(xp, list(workspace)), strict=True):
                row[...] = values

    run_tiles(work, range(0, count, step), parallel=xp is numpy)
    return xp.moveaxis(out.reshape(ndim, *moved.shape[1:]), 0, axis)


def _eigenvalues_2d(xp: ModuleType, rows: Sequence[Array]) -> list[Array]:
    """``rows[:3] = [T_yy, T_yx, T_xx]`` -> ``[λ_0, λ_1]``, descending (``rows`` overwritten)."""
    yy, yx, xx, mean, radius = rows
    xp.add(yy, xx, out=mean)
    mean *= 0.5
    yy -= xx
    yy *= 0.5
    xp.hypot(yy, yx, out=radius)
    xp.add(mean, radius, out=yy)
    xp.subtract(mean, radius, out=xx)
    return [yy, xx]


def _eigenvalues_3d(xp: ModuleType, rows: Sequence[Array]) -> list[Array]:
    """``rows[:6] = [T_zz, T_zy, T_zx, T_yy, T_yx, T_xx]`` -> ``[λ_0, λ_1, λ_2]``, descending
    (``rows``, the workspace, is overwritten).

    With the deviator ``D`` scaled to norm 1, the trace-free coordinates of ``D`` are
    ``c ⊙ ŝ`` and those of ``D²`` are ``c ⊙ t̂``, ``c² = (1/2, 3/2, 2, 2, 2)``, where ``ŝ = (D_zz
    - D_yy, D_xx, D_zy, D_zx, D_yx)`` and ``t̂ = ((D²)_zz - (D²)_yy, (2 (D²)_xx - (D²)_zz -
    (D²)_yy) / 3, (D²)_zy, (D²)_zx, (D²)_yx)`` (the trace of ``D`` being 0); the discriminant is
    ``3 Σ_{r<q} c_r² c_q² (ŝ_r t̂_q - ŝ_q t̂_r)²``.
    """
    dz, zy, zx, dy, yx, dx, mean, norm, s0, t0, t1, t2, t3, t4, angle, a, b = rows
    _scaled_deviator(xp, rows[:6], mean, norm, a)
    xp.subtract(dz, dy, out=s0)
    _combine(xp, t0, a, [(-1, dx, s0), (1, zx, zx), (-1, yx, yx)])
    third = 1.0 / 3.0
    _combine(
        xp,
        t1,
        a,
        [
            (third, dx, dx),
            (2 * third, dz, dy),
            (third, zx, zx),
            (third, yx, yx),
            (-2 * third, zy, zy),
        ],
    )
    _combine(xp, t2, a, [(1, zx, yx), (-1, zy, dx)])
    _combine(xp, t3, a, [(1, zy, yx), (-1, zx, dy)])
    _combine(xp, t4, a, [(1, zy, zx), (-1, yx, dz)])
    _root_discriminant(xp, angle, (s0, dx, zy, zx, yx), (t0, t1, t2, t3, t4), a, b)
    # det D by its first row: D_zz (D_yy D_xx - D_yx²) + D_zy (D²)_zy + D_zx (D²)_zx
    _combine(xp, a, b, [(1, dy, dx), (-1, yx, yx)])
    a *= dz
    _combine(xp, a, b, [(1, zy, t2), (1, zx, t3)], accumulate=True)
    a *= 3.0 * math.sqrt(3.0)
    xp.arctan2(angle, a, out=angle)
    angle *= 1.0 / 3.0  # θ in [0, π/3]
    return _from_angle(xp, mean, norm, angle, (t0, t1, t2, a, b))


def _scaled_deviator(
    xp: ModuleType, tensor: Sequence[Array], mean: Array, norm: Array, scale: Array
) -> None:
    """Make ``tensor`` (6 rows) its deviator scaled to Frobenius norm 1, in place: ``mean``
    the diagonal's, ``norm`` the deviator's norm (``scale`` is scratch)."""
    zz, zy, zx, yy, yx, xx = tensor
    xp.add(zz, yy, out=mean)
    mean += xx
    mean *= 1.0 / 3.0
    for diagonal in (zz, yy, xx):
        diagonal -= mean
    _combine(
        xp,
        norm,
        scale,
        [(1, zz, zz), (1, yy, yy), (1, xx, xx), (2, zy, zy), (2, zx, zx), (2, yx, yx)],
    )
    xp.sqrt(norm, out=norm)
    xp.maximum(norm, _TINY, out=scale)  # a zero deviator stays zero, NaN stays NaN
    xp.divide(1.0, scale, out=scale)
    for component in tensor:
        component *= scale


def _root_discriminant(
    xp: ModuleType, out: Array, s: tuple[Array, ...], t: tuple[Array, ...], a: Array, b: Array
) -> None:
    """``out = sqrt(3 Σ_{r<q} c_r² c_q² (s_r t_q - s_q t_r)²)``, a sum of squares (``a``, ``b``
    scratch)."""
    out[...] = 0.0
    for (r, q), weight in zip(itertools.combinations(range(5), 2), _MINOR_WEIGHTS, strict=True):
        xp.multiply(s[r], t[q], out=a)
        xp.multiply(s[q], t[r], out=b)
        a -= b
        a *= a
        a *= 3.0 * weight
        out += a
    xp.sqrt(out, out=out)


def _from_angle(
    xp: ModuleType, mean: Array, norm: Array, angle: Array, rows: tuple[Array, ...]
) -> list[Array]:
    """``mean + 2 |D| / sqrt(6) · cos(θ - 2πk/3)`` for ``k = 0, 1, -1``, descending, in ``rows``
    (five scratch rows, ``angle`` and ``norm`` overwritten)."""
    first, second, third, a, b = rows
    norm *= 1.0 / _SQRT6
    xp.cos(angle, out=a)
    a *= norm  # |D| / sqrt(6) · cos θ
    xp.sin(angle, out=b)
    b *= norm
    b *= math.sqrt(3.0)  # |D| / sqrt(6) · sqrt(3) sin θ
    xp.multiply(a, 2.0, out=first)
    first += mean
    xp.subtract(b, a, out=second)  # 2 cos(θ - 2π/3) = sqrt(3) sin θ - cos θ
    second += mean
    xp.add(a, b, out=third)  # 2 cos(θ + 2π/3) = -(cos θ + sqrt(3) sin θ)
    xp.subtract(mean, third, out=third)
    # equal eigenvalues may come out an ulp apart in either order: sort the two pairs that can
    xp.maximum(first, second, out=a)
    xp.minimum(first, second, out=b)
    xp.maximum(b, third, out=first)
    xp.minimum(b, third, out=second)
    return [a, first, second]


def _combine(
    xp: ModuleType,
    out: Array,
    scratch: Array,
    terms: list[tuple[float, Array, Array]],
    *,
    accumulate: bool = False,
) -> None:
    """``out = Σ weight · a · b`` over ``terms`` (``out +=`` with ``accumulate``), through
    ``scratch``, without allocating."""
    for index, (weight, a, b) in enumerate(terms):
        target = out if index == 0 and not accumulate else scratch
        xp.multiply(a, b, out=target)
        if weight not in (1, -1):
            target *= weight
        if target is scratch:
            if weight == -1:
                out -= scratch
            else:
                out += scratch
        elif weight == -1:
            xp.negative(out, out=out)
