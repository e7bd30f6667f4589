"""Pointwise ops: output channels computed voxel by voxel from chosen response channels.

A :class:`PointwiseOp` reads some channels and gives one or more output channels:

* ``copy`` ``[i]`` -> ``x_i``; ``sum`` ``[i, j, ...]`` -> ``Σ x``; ``difference`` ``[i, j]`` ->
  ``x_i - x_j``; ``magnitude`` ``[i, j, ...]`` -> ``sqrt(Σ x²)``; ``product`` ``[i, j]`` ->
  ``x_i x_j``;
* ``eigenvalues`` of the symmetric tensor whose unique components are the inputs (3 in 2-D, 6 in
  3-D, ordered as :func:`~featuremap.engine.kernels.tensor_components`) -> its eigenvalues,
  descending, computed in float64 (:func:`write_eigenvalues`).

They are the non-linear glue of the ``features`` layer (DESIGN section 8,
:mod:`~featuremap.engine.layers.features`): gradient magnitudes, LoG and DoG sums and the
Hessian's eigenvalues, each output described for its label. Every op writes straight into its
channels of one preallocated output (:meth:`PointwiseOp.write`); the eigenvalues go through a
float64 workspace of :data:`EIGEN_TILE` pixels per thread, reused. 2x2 tensors in closed form
here (``m ± sqrt(((a - c) / 2)² + b²)``: 16 ms for 2048² tensors on one core, against 76 ms
through :func:`~featuremap.engine.kernels.symmetric_eigenvalues` and a stack of the
components), 3x3 by :func:`~featuremap.engine.kernels.symmetric_eigenvalues`. The pixel
features' pointwise stage (55 outputs from 43 responses on 2048², one thread): 0.52 s when
each op made its own arrays and a layer stacked them (4.2 s on a process's first call, its
fresh memory), 0.20 s writing in place.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy

from featuremap._typing import Array
from featuremap.engine.kernels import array_namespace
from featuremap.engine.kernels.eigenvalues import symmetric_eigenvalues
from featuremap.engine.layers._base import FeatureDescription
from featuremap.errors import InputError

__all__ = ["BAND_PIXELS", "EIGEN_TILE", "PointwiseOp", "write_eigenvalues"]

OpKind = Literal["copy", "sum", "difference", "magnitude", "product", "eigenvalues"]

#: How many inputs each kind takes (``None``: one or more).
_ARITY: dict[str, int | None] = {
    "copy": 1,
    "sum": None,
    "difference": 2,
    "magnitude": None,
    "product": 2,
    "eigenvalues": None,
}
#: Pixels per tile of the float64 eigenvalue workspace (a few arrays of it stay in L2).
EIGEN_TILE = 32768
#: Pixels per band handed to a thread (whole rows, planes in 3-D).
BAND_PIXELS = 1 << 18


@dataclass(frozen=True)
class PointwiseOp:
    """One operation: its ``kind``, the input channels it reads, and the description of its
    output (``eigenvalues``: of each of its outputs, with ``component`` added)."""

    kind: OpKind
    inputs: tuple[int, ...]
    description: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arity = _ARITY.get(self.kind, 0)
        if arity == 0 or not self.inputs or (arity is not None and len(self.inputs) != arity):
            raise InputError(f"pointwise op {self.kind!r} cannot take the inputs {self.inputs}")
        if self.kind == "eigenvalues" and len(self.inputs) not in (3, 6):
            raise InputError(
                "pointwise eigenvalues take the 3 (2-D) or 6 (3-D) unique components of a "
                f"symmetric tensor, got {len(self.inputs)} inputs"
            )

    @property
    def outputs(self) -> int:
        """Output channels: 2 or 3 eigenvalues, else 1."""
        if self.kind == "eigenvalues":
            return 2 if len(self.inputs) == 3 else 3
        return 1

    def descriptions(self) -> list[FeatureDescription]:
        if self.kind == "eigenvalues":
            return [{**self.description, "component": k} for k in range(self.outputs)]
        return [dict(self.description)]

    def write(self, values: Sequence[Array], out: Sequence[Array]) -> None:
        """Write the op's outputs into ``out`` (float32 views) from its inputs ``values``."""
        xp = array_namespace(out[0])
        target = out[0]
        if self.kind == "eigenvalues":
            write_eigenvalues(values, out)
        elif self.kind == "copy":
            xp.copyto(target, values[0])
        elif self.kind == "difference":
            xp.subtract(values[0], values[1], out=target)
        elif self.kind == "product":
            xp.multiply(values[0], values[1], out=target)
        elif self.kind == "sum":
            xp.copyto(target, values[0])
            for value in values[1:]:
                target += value
        else:  # magnitude
            xp.multiply(values[0], values[0], out=target)
            for value in values[1:]:
                target += value * value
            xp.sqrt(target, out=target)


def _tiles(shape: Sequence[int], pixels: int) -> Iterator[tuple[Any, ...]]:
    """Indices of 2-D tiles ``(rows, last axis)`` of about ``pixels`` covering ``shape``."""
    *lead, rows, cols = shape
    step = max(1, pixels // max(cols, 1))
    for index in numpy.ndindex(*lead):
        for r0 in range(0, rows, step):
            yield (*index, slice(r0, min(r0 + step, rows)))


_workspace = threading.local()


def _scratch(rows: int, size: int) -> numpy.ndarray:
    """This thread's float64 workspace of ``rows`` x ``size``, reused from call to call."""
    buffer = getattr(_workspace, "buffer", None)
    if buffer is None or buffer.size < rows * size:
        buffer = numpy.empty(rows * max(size, EIGEN_TILE))
        _workspace.buffer = buffer
    return buffer[: rows * size].reshape(rows, size)


def write_eigenvalues(components: Sequence[Any], out: Sequence[Any]) -> None:
    """The eigenvalues, descending, of the symmetric tensors of unique ``components`` (3 or 6
    arrays of one shape, in :func:`~featuremap.engine.kernels.tensor_components` order) into
    ``out`` (2 or 3 arrays of that shape), computed in float64 tile by tile."""
    xp = array_namespace(out[0])
    if xp is not numpy:  # CuPy: in one piece
        values: Any = symmetric_eigenvalues(xp.stack(list(components)), axis=0, dtype=xp.float32)
        for target, value in zip(out, values, strict=True):
            target[...] = value
        return
    for tile in _tiles(out[0].shape, EIGEN_TILE):
        parts = [c[tile] for c in components]
        targets = [o[tile] for o in out]
        if len(parts) == 3:
            _eigenvalues_2x2(parts, targets)
        else:
            stacked = _scratch(6, targets[0].size).reshape(6, *targets[0].shape)
            for row, part in zip(stacked, parts, strict=True):
                row[...] = part
            eigen: Any = symmetric_eigenvalues(stacked, axis=0, dtype=numpy.float32)
            for target, value in zip(targets, eigen, strict=True):
                target[...] = value


def _eigenvalues_2x2(parts: Sequence[Any], out: Sequence[Any]) -> None:
    """``[a, b, c]`` = ``[T_yy, T_yx, T_xx]`` -> ``m ± r``, ``h = (a - c) / 2``, ``m = a - h``,
    ``r = sqrt(h² + b²)``, in float64 (float32 inputs: the squares cannot overflow); NaN
    propagates. The inputs are copied into the float64 workspace first: the arithmetic then runs
    in place on contiguous float64 rows (16 ms for 2048² tensors on one core, 19 ms casting
    inside each ufunc)."""
    a, b, c = _scratch(3, parts[0].size).reshape(3, *parts[0].shape)
    for target, part in zip((a, b, c), parts, strict=True):
        target[...] = part
    with numpy.errstate(invalid="ignore", over="ignore"):
        numpy.subtract(a, c, out=c)
        c *= 0.5  # h
        a -= c  # m
        c *= c
        b *= b
        c += b
        numpy.sqrt(c, out=c)  # r
        numpy.add(a, c, out=out[0], casting="unsafe")
        numpy.subtract(a, c, out=out[1], casting="unsafe")
