"""The ``features`` layer kind: ilastik's pixel features in one layer (DESIGN section 8).

A :class:`FeaturesLayer` holds the distinct Gaussian derivatives its features need (rank-1
kernels, each with its own radius) and its ops, in output order: :class:`PointwiseOp` s (LoG and
DoG sums, gradient magnitudes, Hessian eigenvalues, copies) and :class:`TensorOp` s -- a structure
tensor: the gradient responses ``g_a`` (one per spatial axis, ``z, y, x``), whose products
``g_a g_b`` are smoothed with a separable kernel (``G_σ/2``) and give the tensor's eigenvalues,
descending, in float64 (:func:`~featuremap.engine.layers.pointwise.write_eigenvalues`). An op's
inputs are *response channels*: ``channel * len(derivatives) + derivative``.

One layer, so the receptive field is the widest feature's, not a sum of stages: the layer's
halo along an axis is the larger of the widest derivative a pointwise op reads (``ceil(4σ)`` for
σ 10's Hessian: 40) and the widest gradient plus its smoothing (35 + 15 for σ 10's structure
tensor: 50, receptive field 101). Its input is mirrored (``reflect``) at the true image border by
the engine; inside, each stage folds the true border itself:

* the responses the pointwise ops read are computed on the output block only (the separable
  path, :func:`~featuremap.engine.kernels.conv2d_valid` / ``conv3d_valid``, each kernel trimmed
  to its own taps);
* the gradients of the structure tensors are computed on the block widened by the smoothing
  radius but clipped to the image (where the layer's :class:`Window` says the border is), and
  their products are mirrored at the true border before the smoothing -- so the smoothing mirrors
  the *tensor field*, not the input (mirroring the input instead leaves the off-diagonal up to
  61 % wrong near the border).

A gradient both a structure tensor and a gradient magnitude read is computed once (on the wider
region). The ops run tile by tile (rows in 2-D, ``(z, y)`` blocks in 3-D) on the threads of
:mod:`~featuremap.engine.kernels._threads`: per tile the products of the tile and its margin,
their smoothing and the eigenvalues, written into the one output.

Measured (2-core AMD EPYC, OpenBLAS Haswell, one thread, ilastik's full set on 2048²,
``python benchmarks/pixel_features.py --only 2d``): 0.99 s as the two layers this one replaced
(a conv of every derivative, then the products, smoothing and pointwise ops; fastfilters2 1.01 s),
where the first stack of five layers took 12.3 s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
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
from featuremap.engine.layers.pointwise import BAND_PIXELS, PointwiseOp, write_eigenvalues
from featuremap.errors import InputError

__all__ = ["Derivative", "FeaturesLayer", "TensorOp"]

#: A tile's margin is at most this fraction of its extent along each tiled axis (where the
#: axis is long enough): products and smoothing passes recomputed in the margin stay few.
MARGIN_SHARE = 0.125


def _outer(kernels: Sequence[np.ndarray]) -> np.ndarray:
    """The N-D rank-1 kernel of 1-D ``kernels`` (one per axis)."""
    kernel = np.ones(())
    for k in kernels:
        kernel = np.multiply.outer(kernel, k)
    return kernel


def _check_odd(kernels: Sequence[np.ndarray], what: str) -> None:
    if any(k.ndim != 1 or len(k) % 2 == 0 for k in kernels):
        raise InputError(f"{what} kernels must be 1-D, of odd length")


@dataclass(frozen=True, eq=False)
class Derivative:
    """One Gaussian derivative response: its 1-D kernels (one per axis, odd length, centred)
    and its description (``{"sigma": ..., "order": [...]}``) for the store."""

    kernels: tuple[np.ndarray, ...]
    description: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_odd(self.kernels, "derivative")

    @property
    def radius(self) -> tuple[int, ...]:
        return tuple(len(k) // 2 for k in self.kernels)


@dataclass(frozen=True, eq=False)
class TensorOp:
    """A structure tensor: gradient response channels ``inputs`` (one per spatial axis), the
    1-D kernels ``smoothing`` (one per axis, odd length, centred) of the separable kernel
    smoothing their products, and the description of its eigenvalues (``component`` added)."""

    inputs: tuple[int, ...]
    smoothing: tuple[np.ndarray, ...]
    description: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.inputs) not in (2, 3) or len(self.smoothing) != len(self.inputs):
            raise InputError(
                "a structure tensor takes one gradient channel and one smoothing kernel per "
                f"spatial axis (2 or 3), got {len(self.inputs)} and {len(self.smoothing)}"
            )
        _check_odd(self.smoothing, "structure tensor smoothing")

    @property
    def outputs(self) -> int:
        return len(self.inputs)

    @property
    def radius(self) -> tuple[int, ...]:
        return tuple(len(k) // 2 for k in self.smoothing)

    def weight(self) -> np.ndarray:
        """The depthwise smoothing weight ``(components, 1, *kernel)``: one per product."""
        kernel = _outer(self.smoothing)
        components = len(tensor_components(len(self.inputs)))
        return np.broadcast_to(kernel, (components, 1, *kernel.shape)).astype(np.float32)

    def descriptions(self) -> list[FeatureDescription]:
        return [{**self.description, "component": k} for k in range(self.outputs)]


Op = PointwiseOp | TensorOp


@dataclass(frozen=True)
class _Bank:
    """Some of the derivatives, computed together on one region: their indices, and the
    weight ``(in_channels * len(indices), 1, *kernel)`` (zero-padded to the widest, so
    ``groups = in_channels``; the separable path trims each back to its own taps)."""

    indices: tuple[int, ...]
    weight: np.ndarray

    @property
    def radius(self) -> tuple[int, ...]:
        return tuple(n // 2 for n in self.weight.shape[2:])


@dataclass(frozen=True, eq=False)
class FeaturesLayer:
    """Gaussian derivatives, pointwise ops and structure tensors in one layer (module docstring).

    ``in_channels``: the image channels, each filtered with every derivative.
    """

    derivatives: tuple[Derivative, ...]
    ops: tuple[Op, ...]
    in_channels: int = 1
    name: str = "features"

    kind: ClassVar[str] = "features"
    pad_value: ClassVar[float] = 0.0

    def __post_init__(self) -> None:
        ranks = {len(d.kernels) for d in self.derivatives}
        if len(ranks) != 1 or not ranks <= {2, 3}:
            raise InputError(
                "a features layer needs Gaussian derivatives of one spatial rank (2 or 3), got "
                f"{sorted(ranks)}"
            )
        responses = self.in_channels * len(self.derivatives)
        largest = max(i for op in self.ops for i in op.inputs)
        if largest >= responses:
            raise InputError(
                f"the {self.name} layer's ops read response {largest} but it computes {responses}"
            )

    @property
    def ndim(self) -> int:
        return len(self.derivatives[0].kernels)

    # -- the plan: which derivative is computed where ------------------------------------------

    def _tensors(self) -> list[TensorOp]:
        return [op for op in self.ops if isinstance(op, TensorOp)]

    def _bank(self, indices: Sequence[int]) -> _Bank:
        kernels = [_outer(self.derivatives[i].kernels) for i in indices]
        size = [max((k.shape[a] for k in kernels), default=1) for a in range(self.ndim)]
        stacked = np.zeros((len(kernels), *size), dtype=np.float32)
        for out, kernel in zip(stacked, kernels, strict=True):
            offsets = [(s - k) // 2 for s, k in zip(size, kernel.shape, strict=True)]
            out[tuple(slice(o, o + k) for o, k in zip(offsets, kernel.shape, strict=True))] = kernel
        weight = np.concatenate([stacked] * self.in_channels)[:, None]
        return _Bank(tuple(indices), np.ascontiguousarray(weight))

    @cached_property
    def _banks(self) -> tuple[_Bank, _Bank]:
        """The derivatives read on the output block only, and the structure tensors' gradients
        (read on the block widened by the smoothing)."""
        count = len(self.derivatives)
        gradients = {i % count for op in self._tensors() for i in op.inputs}
        others = {i % count for op in self.ops for i in op.inputs} - gradients
        return self._bank(sorted(others)), self._bank(sorted(gradients))

    @cached_property
    def smoothing_radius(self) -> tuple[int, ...]:
        """The widest structure tensor smoothing along each axis (0 without one)."""
        radii = [op.radius for op in self._tensors()] or [(0,) * self.ndim]
        return tuple(max(axis) for axis in zip(*radii, strict=True))

    @cached_property
    def halo(self) -> tuple[int, ...]:
        """The layer's padding along each axis: what its widest feature reads around a pixel."""
        block, field_bank = self._banks
        widened = [
            r + s if field_bank.indices else 0
            for r, s in zip(field_bank.radius, self.smoothing_radius, strict=True)
        ]
        inner = block.radius if block.indices else (0,) * self.ndim
        return tuple(max(a, b) for a, b in zip(inner, widened, strict=True))

    # -- the Layer protocol ----------------------------------------------------------------------

    def out_channels(self, in_channels: int) -> int:
        if in_channels != self.in_channels:
            raise InputError(
                f"the {self.name} layer was built for {self.in_channels} input channel(s) but its "
                f"input has {in_channels}"
            )
        return sum(op.outputs for op in self.ops)

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
        field_start = tuple(
            max(o - s, 0) for o, s in zip(window.origin, self.smoothing_radius, strict=True)
        )
        field_stop = tuple(
            min(o + n + s, length)
            for o, n, s, length in zip(
                window.origin, size, self.smoothing_radius, window.input_size, strict=True
            )
        )
        block_bank, field_bank = self._banks
        # both regions in the padded input's coordinates: output index o sits at o - origin + halo
        block = self._responses(
            x, block_bank, [(h, h + n) for h, n in zip(halo, size, strict=True)]
        )
        field = self._responses(
            x,
            field_bank,
            [
                (a - o + h, b - o + h)
                for a, b, o, h in zip(field_start, field_stop, window.origin, halo, strict=True)
            ],
        )
        # a response channel's values on output-local ``region`` (the field is offset)
        offsets = (
            (0,) * ndim,
            tuple(o - a for o, a in zip(window.origin, field_start, strict=True)),
        )
        sources = self._sources(block_bank, field_bank)
        responses = (block, field)
        out = xp.empty((*x.shape[:axis], sum(op.outputs for op in self.ops), *size), xp.float32)
        starts = np.cumsum([0] + [op.outputs for op in self.ops])
        work = [
            (lead, tile)
            for lead in np.ndindex(*x.shape[:axis])
            for tile in _tiles(size, self.smoothing_radius, xp is np)
        ]

        def run(item: tuple[tuple[int, ...], tuple[slice, ...]]) -> None:
            lead, tile = item

            def channel(i: int, region: tuple[slice, ...]) -> Array:
                which, index = sources[i]
                shifted = tuple(
                    slice(r.start + d, r.stop + d)
                    for r, d in zip(region, offsets[which], strict=True)
                )
                values: Any = responses[which]  # a source exists where an op reads it
                return values[lead][(index, *shifted)]

            target = out[lead]
            for op, start in zip(self.ops, starts, strict=False):
                outputs = [target[(int(start) + k, *tile)] for k in range(op.outputs)]
                if isinstance(op, PointwiseOp):
                    op.write([channel(i, tile) for i in op.inputs], outputs)
                else:
                    _tensor(op, channel, tile, window, outputs)

        run_tiles(run, work, parallel=xp is np)
        return out

    def _responses(self, x: Array, bank: _Bank, region: Sequence[tuple[int, int]]) -> Array | None:
        """``bank``'s responses on ``region`` (per axis ``[start, stop)`` of the padded input)."""
        if not bank.indices:
            return None
        xp = array_namespace(x)
        crop = tuple(slice(a - r, b + r) for (a, b), r in zip(region, bank.radius, strict=True))
        conv = conv2d_valid if self.ndim == 2 else conv3d_valid
        return conv(x[(..., *crop)], xp.asarray(bank.weight), groups=self.in_channels)

    def _sources(self, block: _Bank, field: _Bank) -> dict[int, tuple[int, int]]:
        """Response channel -> (0 block / 1 field, its channel in that bank's responses)."""
        count = len(self.derivatives)
        sources = {}
        for which, bank in enumerate((block, field)):
            for position, derivative in enumerate(bank.indices):
                for channel in range(self.in_channels):
                    sources[channel * count + derivative] = (
                        which,
                        channel * len(bank.indices) + position,
                    )
        return sources

    def describe(self) -> dict[str, Any]:
        return {
            "type": "features",
            "name": self.name,
            "derivatives": [dict(d.description) for d in self.derivatives],
            "ops": [
                ["structure_tensor", list(op.inputs), [len(k) for k in op.smoothing]]
                if isinstance(op, TensorOp)
                else [op.kind, list(op.inputs)]
                for op in self.ops
            ],
            "padding_spec": "same",
        }

    def to_dict(self) -> dict[str, Any]:
        ones = [1] * self.ndim
        return {
            **self.describe(),
            "kernel_size": [2 * h + 1 for h in self.halo],
            "stride": ones,
            "padding": "same",
            "dilation": ones,
            "padding_mode": "reflect",
            "taps": [[len(k) for k in d.kernels] for d in self.derivatives],
        }

    def describe_features(
        self, inputs: Sequence[FeatureDescription], channel_names: Sequence[str] | None
    ) -> list[FeatureDescription]:
        """Each op's own descriptions (the layer names every output)."""
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
    op: TensorOp,
    channel: Callable[[int, tuple[slice, ...]], Array],
    tile: tuple[slice, ...],
    window: Window,
    out: list[Array],
) -> None:
    """The eigenvalues of ``op``'s smoothed structure tensor on output ``tile``, written into
    ``out`` (one view per eigenvalue). ``channel(i, region)``: response ``i`` on an output-local
    region inside the image. The products are mirrored at the true image border."""
    wanted = [(t.start - r, t.stop + r) for t, r in zip(tile, op.radius, strict=True)]
    inside = [
        (max(a, -o), min(b, n - o))
        for (a, b), o, n in zip(wanted, window.origin, window.input_size, strict=True)
    ]
    gradient = [channel(i, tuple(slice(a, b) for a, b in inside)) for i in op.inputs]
    xp = array_namespace(gradient[0])
    pairs = tensor_components(len(op.inputs))
    products = xp.empty((len(pairs), *(b - a for a, b in wanted)), dtype=xp.float32)
    valid = tuple(slice(a - w, b - w) for (a, b), (w, _) in zip(inside, wanted, strict=True))
    for product, (a, b) in zip(products, pairs, strict=True):
        xp.multiply(gradient[a], gradient[b], out=product[valid])
    _mirror(
        products,
        [v.start for v in valid],
        [w[1] - i[1] for w, i in zip(wanted, inside, strict=True)],
    )
    conv = conv2d_valid if len(op.inputs) == 2 else conv3d_valid
    smoothed: Any = conv(products, xp.asarray(op.weight()), groups=len(pairs))
    write_eigenvalues(list(smoothed), out)


def _mirror(values: Array, low: Sequence[int], high: Sequence[int]) -> None:
    """Fill ``values (C, *spatial)``'s first ``low[a]`` and last ``high[a]`` entries along each
    spatial axis ``a`` by reflecting the inside about its edge pixel (``reflect``, SciPy's
    ``mirror``), axis by axis, so corners reflect along both."""
    xp = array_namespace(values)
    for axis, (lo, hi) in enumerate(zip(low, high, strict=True), start=1):
        n = values.shape[axis]

        def at(start: int, stop: int, axis: int = axis) -> tuple[slice, ...]:
            return (slice(None),) * axis + (slice(start, stop),)

        if lo:
            values[at(0, lo)] = xp.flip(values[at(lo + 1, 2 * lo + 1)], axis=axis)
        if hi:
            values[at(n - hi, n)] = xp.flip(values[at(n - 2 * hi - 1, n - hi - 1)], axis=axis)
