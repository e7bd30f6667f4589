"""The ``pointwise`` layer kind: output channels computed voxel by voxel from chosen input channels.

A :class:`PointwiseLayer` is a list of :class:`PointwiseOp` s, each reading some input channels
and giving one or more output channels, in order:

* ``copy`` ``[i]`` -> ``x_i``; ``sum`` ``[i, j, ...]`` -> ``Σ x``; ``difference`` ``[i, j]`` ->
  ``x_i - x_j``; ``magnitude`` ``[i, j, ...]`` -> ``sqrt(Σ x²)``; ``product`` ``[i, j]`` ->
  ``x_i x_j``;
* ``eigenvalues`` of the symmetric tensor whose unique components are the inputs (3 in 2-D, 6 in
  3-D, ordered as :func:`~featuremap.engine.kernels.tensor_components`) -> its eigenvalues,
  descending, computed in float64 (:func:`write_eigenvalues`).

Kernel 1, geometry unchanged (like ``reduce``), any spatial rank. It is the non-linear glue of the
``features`` layer (DESIGN section 8): gradient magnitudes, LoG and DoG sums, the structure
tensor's products and both tensors' eigenvalues, each output described for its label.

Every op writes straight into its channels of one preallocated output (:func:`compute_ops`), in
bands of the first spatial axis on the threads of :mod:`~featuremap.engine.kernels._threads`;
the eigenvalues go through a float64 workspace of :data:`EIGEN_TILE` pixels per thread, reused.
2x2 tensors in closed form here (``m ± sqrt(((a - c) / 2)² + b²)``: 16 ms for 2048² tensors on
one core, against 76 ms through :func:`~featuremap.engine.kernels.symmetric_eigenvalues` and a
stack of the components), 3x3 by :func:`~featuremap.engine.kernels.symmetric_eigenvalues`.
The old second stage of the pixel features (55 outputs from 43 responses on 2048², one thread:
LoG, DoG, gradient magnitudes, Hessian eigenvalues, structure-tensor products): 0.52 s when each
op made its own arrays and the layer stacked them (4.2 s on a process's first call, its fresh
memory), 0.20 s now.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy

from featuremap._typing import Array
from featuremap.engine.geometry import LayerGeometry
from featuremap.engine.kernels import array_namespace
from featuremap.engine.kernels._threads import blas_threads, run_tiles
from featuremap.engine.kernels.eigenvalues import symmetric_eigenvalues
from featuremap.engine.layers._base import FeatureDescription, Window
from featuremap.errors import InputError

__all__ = [
    "EIGEN_TILE",
    "PointwiseLayer",
    "PointwiseOp",
    "compute_ops",
    "count_outputs",
    "write_eigenvalues",
]

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


def _channel(x: Array, axis: int, index: int) -> Array:
    return x[(slice(None),) * axis + (index,)]


def compute_ops(ops: Sequence[PointwiseOp], x: Array, out: Array, axis: int = 0) -> None:
    """Every op of ``ops`` on ``x``, its outputs written in order into ``out``; the channels lie
    along ``axis`` of both (any other axes alike)."""
    position = 0
    for op in ops:
        op.write(
            [_channel(x, axis, i) for i in op.inputs],
            [_channel(out, axis, position + k) for k in range(op.outputs)],
        )
        position += op.outputs


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


def bands(length: int, plane_pixels: int, parallel: bool) -> list[slice]:
    """Bands of the first spatial axis (of ``length``, ``plane_pixels`` per index) for the
    threads: about :data:`BAND_PIXELS` each, at least one per thread; one band off the CPU."""
    if not parallel:
        return [slice(0, length)]
    step = max(1, BAND_PIXELS // max(plane_pixels, 1))
    step = min(step, -(-length // blas_threads()))
    return [slice(start, min(start + step, length)) for start in range(0, length, step)]


def count_outputs(ops: Sequence[Any], in_channels: int, name: str) -> int:
    """The output channels of ``ops`` (each with ``inputs`` and ``outputs``), checking that they
    read only the ``in_channels`` there are."""
    largest = max(i for op in ops for i in op.inputs)
    if largest >= in_channels:
        raise InputError(
            f"the {name} layer reads input channel {largest} but its input has {in_channels}"
        )
    return sum(op.outputs for op in ops)


@dataclass(frozen=True)
class PointwiseLayer:
    """Output channels computed voxel by voxel from input channels (module docstring)."""

    ops: tuple[PointwiseOp, ...]
    name: str = "pointwise"

    kind: ClassVar[str] = "pointwise"
    pad_value: ClassVar[float] = 0.0

    @property
    def ndim(self) -> None:
        """Pointwise: fits a stack of either rank."""
        return None

    def out_channels(self, in_channels: int) -> int:
        return count_outputs(self.ops, in_channels, self.name)

    def geometry(self, shape: Sequence[int]) -> LayerGeometry:
        ones = (1,) * len(shape)
        return LayerGeometry(ones, ones, ones, ((0, 0),) * len(shape), padding_mode="constant")

    def apply_padded(self, x: Array, window: Window) -> Array:
        xp = array_namespace(x)
        axis = x.ndim - 1 - window.ndim
        outputs = sum(op.outputs for op in self.ops)
        out = xp.empty((*x.shape[:axis], outputs, *x.shape[axis + 1 :]), dtype=xp.float32)
        x = xp.asarray(x, dtype=xp.float32)
        spatial = x.shape[axis + 1 :]
        plane = int(numpy.prod(spatial[1:], dtype=numpy.int64))
        work = [
            (lead, band)
            for lead in numpy.ndindex(*x.shape[:axis])
            for band in bands(spatial[0], plane, xp is numpy)
        ]

        def run(item: tuple[tuple[int, ...], slice]) -> None:
            lead, band = item
            compute_ops(self.ops, x[lead][:, band], out[lead][:, band])

        run_tiles(run, work, parallel=xp is numpy)
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "type": "pointwise",
            "name": self.name,
            "ops": [[op.kind, list(op.inputs)] for op in self.ops],
            "padding_spec": [[0, 0], [0, 0]],
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.describe(), **LayerGeometry((1, 1)).to_dict()}

    def describe_features(
        self, inputs: Sequence[FeatureDescription], channel_names: Sequence[str] | None
    ) -> list[FeatureDescription]:
        """Each op's own descriptions (the ``features`` layer names every output)."""
        return [description for op in self.ops for description in op.descriptions()]
