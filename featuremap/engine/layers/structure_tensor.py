"""The ``structure_tensor`` layer kind: the pixel features' second stage when it holds structure
tensors (DESIGN section 8).

Its ops, in output order, are :class:`~featuremap.engine.layers.pointwise.PointwiseOp` s (LoG
and DoG sums, gradient magnitudes, Hessian eigenvalues, copies) and :class:`TensorOp` s: the
gradient channels ``g_a`` (one per spatial axis, ``z, y, x``) of a structure tensor, whose
products ``g_a g_b`` are smoothed with a separable kernel (``G_σ/2``) and give the tensor's
eigenvalues, descending, in float64 (:func:`~featuremap.engine.layers.pointwise.write_eigenvalues`).

The layer's kernel is the widest smoothing window (``same``, ``reflect``): its input is the first
stage's responses mirrored at the true image border, and because a product of mirrored responses
is the mirrored product, the smoothing mirrors the tensor field at the border, exactly as a
separate smoothing layer after the products would -- without the products, the responses passed
along beside them and a last pointwise layer ever existing as whole arrays. The work runs tile
by tile (rows in 2-D, ``(z, y)`` blocks in 3-D) on the threads of
:mod:`~featuremap.engine.kernels._threads`: per tile the products of the tile and its margin,
their smoothing (:func:`~featuremap.engine.kernels.conv2d_valid` / ``conv3d_valid``, the
separable path), and the eigenvalues, written into the one output.

Measured (2-core AMD EPYC, OpenBLAS Haswell, one thread, ilastik's full set on 2048²): this layer
0.6 s where the three layers it replaces took 2.7 s (pointwise 1.0 s, the depthwise smoothing conv
-- 37 of its 55 channels passed through one-tap kernels -- 1.3 s, the last pointwise layer
0.44 s); with the first stage's trimmed conv the whole set went from 12.3 s to 0.99 s
(``python benchmarks/pixel_features.py --only 2d``; fastfilters2 1.01 s).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from featuremap._typing import Array
from featuremap.engine.geometry import LayerGeometry, resolve_layer
from featuremap.engine.kernels import (
    array_namespace,
    check_fits,
    conv2d_valid,
    conv3d_valid,
    tensor_components,
)
from featuremap.engine.kernels._threads import blas_threads, run_tiles
from featuremap.engine.layers._base import FeatureDescription, Window
from featuremap.engine.layers.pointwise import (
    BAND_PIXELS,
    PointwiseOp,
    compute_ops,
    count_outputs,
    write_eigenvalues,
)
from featuremap.errors import InputError

__all__ = ["StructureTensorLayer", "TensorOp"]

#: A tile's margin is at most this fraction of its extent along each tiled axis (where the
#: axis is long enough): products and smoothing passes recomputed in the margin stay few.
MARGIN_SHARE = 0.125


@dataclass(frozen=True, eq=False)
class TensorOp:
    """A structure tensor: gradient channels ``inputs`` (one per spatial axis), the 1-D kernels
    ``smoothing`` (one per axis, odd length, centred) of the separable kernel smoothing their
    products, and the description of its eigenvalues (``component`` added to each)."""

    inputs: tuple[int, ...]
    smoothing: tuple[np.ndarray, ...]
    description: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.inputs) not in (2, 3) or len(self.smoothing) != len(self.inputs):
            raise InputError(
                "a structure tensor takes one gradient channel and one smoothing kernel per "
                f"spatial axis (2 or 3), got {len(self.inputs)} and {len(self.smoothing)}"
            )
        if any(k.ndim != 1 or len(k) % 2 == 0 for k in self.smoothing):
            raise InputError("structure tensor smoothing kernels must be 1-D, of odd length")

    @property
    def outputs(self) -> int:
        return len(self.inputs)

    @property
    def radius(self) -> tuple[int, ...]:
        return tuple(len(k) // 2 for k in self.smoothing)

    def weight(self) -> np.ndarray:
        """The depthwise smoothing weight ``(components, 1, *kernel)``: one per product."""
        kernel = np.ones(())
        for k in self.smoothing:
            kernel = np.multiply.outer(kernel, k)
        components = len(tensor_components(len(self.inputs)))
        return np.broadcast_to(kernel, (components, 1, *kernel.shape)).astype(np.float32)

    def descriptions(self) -> list[FeatureDescription]:
        return [{**self.description, "component": k} for k in range(self.outputs)]


Op = PointwiseOp | TensorOp


@dataclass(frozen=True, eq=False)
class StructureTensorLayer:
    """Pointwise ops and smoothed structure tensors' eigenvalues (module docstring)."""

    ops: tuple[Op, ...]
    name: str = "features"

    kind: ClassVar[str] = "structure_tensor"
    pad_value: ClassVar[float] = 0.0

    def __post_init__(self) -> None:
        ranks = {len(op.inputs) for op in self.ops if isinstance(op, TensorOp)}
        if len(ranks) != 1:
            raise InputError(
                "a structure_tensor layer needs structure tensors of one spatial rank, got "
                f"{sorted(ranks)}"
            )

    @property
    def ndim(self) -> int:
        return len(self._tensors()[0].inputs)

    @property
    def halo(self) -> tuple[int, ...]:
        """The widest smoothing radius along each axis: the layer's padding."""
        return tuple(max(axis) for axis in zip(*(op.radius for op in self._tensors()), strict=True))

    def _tensors(self) -> list[TensorOp]:
        return [op for op in self.ops if isinstance(op, TensorOp)]

    def out_channels(self, in_channels: int) -> int:
        return count_outputs(self.ops, in_channels, self.name)

    def geometry(self, shape: Sequence[int]) -> LayerGeometry:
        kernel = tuple(2 * h + 1 for h in self.halo)
        ones = (1,) * self.ndim
        geometry = resolve_layer(kernel, ones, ones, "same", shape, "reflect")
        check_fits("reflect", geometry.padding, shape)
        return geometry

    def apply_padded(self, x: Array, window: Window) -> Array:
        xp = array_namespace(x)
        x = xp.asarray(x, dtype=xp.float32)
        ndim, halo = self.ndim, self.halo
        axis = x.ndim - 1 - ndim
        size = tuple(n - 2 * h for n, h in zip(x.shape[axis + 1 :], halo, strict=True))
        outputs = sum(op.outputs for op in self.ops)
        out = xp.empty((*x.shape[:axis], outputs, *size), dtype=xp.float32)
        starts = np.cumsum([0] + [op.outputs for op in self.ops])
        pointwise = [
            (op, int(start))
            for op, start in zip(self.ops, starts, strict=False)
            if isinstance(op, PointwiseOp)
        ]
        tensors = [
            (op, int(start))
            for op, start in zip(self.ops, starts, strict=False)
            if isinstance(op, TensorOp)
        ]
        work = [
            (lead, tile)
            for lead in np.ndindex(*x.shape[:axis])
            for tile in _tiles(size, halo, xp is np)
        ]

        def run(item: tuple[tuple[int, ...], tuple[slice, ...]]) -> None:
            lead, tile = item
            image, target = x[lead], out[lead]
            centre = tuple(slice(t.start + h, t.stop + h) for t, h in zip(tile, halo, strict=True))
            for op, start in pointwise:
                compute_ops(
                    [op],
                    image[(slice(None), *centre)],
                    target[(slice(start, start + op.outputs), *tile)],
                )
            for tensor, start in tensors:
                _tensor(
                    tensor, image, tile, halo, target[(slice(start, start + tensor.outputs), *tile)]
                )

        run_tiles(run, work, parallel=xp is np)
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "type": "structure_tensor",
            "name": self.name,
            "ops": [
                ["structure_tensor", list(op.inputs), [len(k) for k in op.smoothing]]
                if isinstance(op, TensorOp)
                else [op.kind, list(op.inputs)]
                for op in self.ops
            ],
            "padding_spec": "same",
        }

    def to_dict(self) -> dict[str, Any]:
        kernel = [2 * h + 1 for h in self.halo]
        ones = [1] * self.ndim
        return {
            **self.describe(),
            "kernel_size": kernel,
            "stride": ones,
            "padding": "same",
            "dilation": ones,
            "padding_mode": "reflect",
            "smoothing": [
                [k.tolist() for k in op.smoothing] for op in self.ops if isinstance(op, TensorOp)
            ],
        }

    def describe_features(
        self, inputs: Sequence[FeatureDescription], channel_names: Sequence[str] | None
    ) -> list[FeatureDescription]:
        """Each op's own descriptions (the ``features`` layer names every output)."""
        return [description for op in self.ops for description in op.descriptions()]


def _tiles(size: Sequence[int], halo: Sequence[int], parallel: bool) -> list[tuple[slice, ...]]:
    """Output tiles: the leading axes (``y`` in 2-D; ``z``, ``y`` in 3-D) in blocks of about
    :data:`BAND_PIXELS` output pixels, each at least ``2 halo / MARGIN_SHARE`` long where the
    axis allows; the last axis whole. One tile off the CPU; at least one per thread."""
    if not parallel:
        return [tuple(slice(0, n) for n in size)]
    *lead, width = size
    steps = [
        min(n, max(1, math.ceil(2 * h / MARGIN_SHARE))) for n, h in zip(lead, halo, strict=False)
    ]
    budget = max(1, BAND_PIXELS // max(width, 1))
    # grow the first axes' blocks up to the budget, the last of them first
    for a in reversed(range(len(steps))):
        others = math.prod(steps) // steps[a]
        steps[a] = min(lead[a], max(steps[a], budget // max(others, 1)))
    threads = blas_threads()
    while math.prod(-(-n // s) for n, s in zip(lead, steps, strict=True)) < threads:
        splittable = [a for a, s in enumerate(steps) if s > 1]
        if not splittable:
            break
        a = max(splittable, key=lambda a: steps[a] / lead[a])
        steps[a] = -(-steps[a] // 2)
    ranges = [
        [slice(s, min(s + step, n)) for s in range(0, n, step)]
        for n, step in zip(lead, steps, strict=True)
    ]
    blocks: list[tuple[slice, ...]] = [()]
    for options in ranges:
        blocks = [(*b, r) for b in blocks for r in options]
    return [(*b, slice(0, width)) for b in blocks]


def _tensor(
    op: TensorOp, image: Array, tile: tuple[slice, ...], halo: tuple[int, ...], out: Any
) -> None:
    """The eigenvalues of ``op``'s smoothed structure tensor on output ``tile`` of ``image`` (one
    image's padded input ``(C, *spatial)``), written into ``out (ndim, *tile)``."""
    xp = array_namespace(image)
    region = tuple(
        slice(t.start + h - r, t.stop + h + r)
        for t, h, r in zip(tile, halo, op.radius, strict=True)
    )
    gradient = [image[(i, *region)] for i in op.inputs]
    pairs = tensor_components(len(op.inputs))
    products = xp.empty((len(pairs), *gradient[0].shape), dtype=xp.float32)
    for product, (a, b) in zip(products, pairs, strict=True):
        xp.multiply(gradient[a], gradient[b], out=product)
    weight = xp.asarray(op.weight())
    conv = conv2d_valid if len(op.inputs) == 2 else conv3d_valid
    smoothed: Any = conv(products, weight, groups=len(pairs))
    write_eigenvalues(list(smoothed), list(out))
