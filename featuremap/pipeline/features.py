"""ilastik's pixel features as the stack of layers they are (DESIGN section 8).

:class:`PixelFeatures` holds a ``features`` layer's parameters -- the features, the scales (σ per
axis), the rank and the kernel family -- and :meth:`PixelFeatures.layers` builds the engine's
layers that compute them, each stage folding the true image border itself:

1. one ``conv`` (``same``, ``reflect``) with every distinct Gaussian derivative the features need,
   each rank 1 (so the separable paths apply), each computed once: ``G_σ`` for ``gaussian`` and
   ``dog`` (with ``G_0.66σ``), ``∂_a G_σ`` for the gradient magnitude and the structure tensor,
   ``∂_a ∂_b G_σ`` for the LoG and the Hessian. The kernels are zero-padded to the largest
   (81 x 81 for σ 10, order 2); the separable path trims each back to its own taps;
2. with ``structure_tensor_eigenvalues``: a ``structure_tensor`` layer
   (:mod:`featuremap.engine.layers.structure_tensor`; ``same``, ``reflect``, its kernel the widest
   ``G_σ/2``): every other feature pointwise (LoG sums, DoG differences, gradient magnitudes,
   Hessian eigenvalues, copies), and per structure tensor the products ``g_a g_b`` of the
   mirrored responses -- which are the mirrored products: the smoothing mirrors the tensor field
   at the border, not the input -- smoothed with ``G_σ/2``, and their eigenvalues;
   without it, a ``pointwise`` layer with the other features.

Until issue #20 the structure tensor took three layers after the conv (the products and the
other features pointwise; a depthwise smoothing conv passing 37 of its 55 channels through a
one-tap kernel; the eigenvalues pointwise), and the conv filtered every derivative with 81 taps:
12.3 s for ilastik's set on 2048^2 on one thread; 0.99 s now against fastfilters2's 1.01 s, and
0.11x SciPy's time for the 3-D set at σ 1.6 on 64 x 512^2 (``python
benchmarks/pixel_features.py --only 2d 3d``, 2-core AMD EPYC, OpenBLAS Haswell).

Channels: for each input channel, the features in the order given, each over its scales in the
order given, each with its channels (``ndim`` eigenvalues, descending). With the default scales
(ilastik's seven), σ 0.3 is used for ``gaussian`` only, as in ilastik.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from featuremap.banks._sigmas import kernel_radius
from featuremap.banks.fastfilters import fastfilters_kernel_1d
from featuremap.banks.gaussian import gaussian_1d
from featuremap.engine.kernels.eigenvalues import derivative_orders
from featuremap.engine.layers import ConvLayer, Layer
from featuremap.engine.layers.pointwise import PointwiseLayer, PointwiseOp
from featuremap.engine.layers.structure_tensor import StructureTensorLayer, TensorOp
from featuremap.errors import InputError

__all__ = ["DOG_RATIO", "FEATURES", "ILASTIK_SIGMAS", "KERNELS", "PixelFeatures"]

FEATURES = (
    "gaussian",
    "log",
    "gradient_magnitude",
    "dog",
    "structure_tensor_eigenvalues",
    "hessian_eigenvalues",
)
#: ilastik's scales; σ 0.3 only for ``gaussian`` (ilastik offers no other feature there).
ILASTIK_SIGMAS = (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
KERNELS = ("fastfilters", "scipy")
#: ``dog``: ``G_σ - G_{DOG_RATIO σ}``.
DOG_RATIO = 0.66

#: A scale: σ in pixels along each spatial axis.
Sigma = tuple[float, ...]
#: One Gaussian derivative of stage 1: its scale and its order along each axis.
Derivative = tuple[Sigma, tuple[int, ...]]


@dataclass(frozen=True)
class PixelFeatures:
    """The parameters of a ``features`` layer, parsed (DESIGN section 8).

    ``default_sigmas``: the scales are ilastik's default, so σ 0.3 is for ``gaussian`` only.
    """

    features: tuple[str, ...] = FEATURES
    sigmas: tuple[Sigma, ...] = tuple((s, s) for s in ILASTIK_SIGMAS)
    ndim: int = 2
    kernels: str = "fastfilters"
    default_sigmas: bool = True

    def scales(self, feature: str) -> tuple[Sigma, ...]:
        """The scales ``feature`` is computed at."""
        if self.default_sigmas and feature != "gaussian":
            return tuple(s for s in self.sigmas if max(s) > 0.3)
        return self.sigmas

    # -- kernels -----------------------------------------------------------------------------------

    def kernel_1d(self, sigma: float, order: int) -> np.ndarray:
        """Correlation weights of the 1-D Gaussian derivative of ``order`` at ``sigma``."""
        if self.kernels == "fastfilters":
            return fastfilters_kernel_1d(sigma, order)
        return gaussian_1d(sigma, order, kernel_radius(sigma, 4.0, None, "features"))

    def kernel(self, derivative: Derivative) -> np.ndarray:
        """The rank-1 N-D kernel of one derivative: the outer product of its axes' kernels."""
        sigma, order = derivative
        kernel = np.ones(())
        for s, o in zip(sigma, order, strict=True):
            kernel = np.multiply.outer(kernel, self.kernel_1d(s, o))
        return kernel

    # -- the stack ---------------------------------------------------------------------------------

    def _axes(self) -> list[tuple[int, ...]]:
        """The first-order derivative of each axis, ``e_a``."""
        return [tuple(int(a == b) for b in range(self.ndim)) for a in range(self.ndim)]

    def _plan(self) -> tuple[list[Derivative], list[tuple[str, Sigma, str, list[Derivative]]]]:
        """The distinct derivatives of stage 1, and per output group ``(feature, σ, op,
        derivatives)`` in output order (op: the stage-2 operation, or ``structure`` for a
        structure tensor's products)."""
        derivatives: dict[Derivative, None] = {}
        groups = []
        zero = (0,) * self.ndim
        second = [tuple(o) for o in derivative_orders(self.ndim)]
        for feature in self.features:
            for sigma in self.scales(feature):
                smaller = tuple(DOG_RATIO * s for s in sigma)
                needed, op = {
                    "gaussian": ([(sigma, zero)], "copy"),
                    "log": ([(sigma, tuple(2 * e for e in axis)) for axis in self._axes()], "sum"),
                    "gradient_magnitude": ([(sigma, axis) for axis in self._axes()], "magnitude"),
                    "dog": ([(sigma, zero), (smaller, zero)], "difference"),
                    "structure_tensor_eigenvalues": (
                        [(sigma, axis) for axis in self._axes()],
                        "structure",
                    ),
                    "hessian_eigenvalues": ([(sigma, order) for order in second], "eigenvalues"),
                }[feature]
                derivatives.update(dict.fromkeys(needed))
                groups.append((feature, sigma, op, needed))
        return list(derivatives), groups

    def layers(self, in_channels: int = 1) -> list[Layer]:
        """The engine's layers computing the features of each of ``in_channels`` channels."""
        derivatives, groups = self._plan()
        index = {d: i for i, d in enumerate(derivatives)}
        ops: list[PointwiseOp | TensorOp] = []
        for channel, (feature, sigma, op, needed) in itertools.product(range(in_channels), groups):
            inputs = tuple(channel * len(derivatives) + index[d] for d in needed)
            description = self._description(feature, sigma, channel, in_channels)
            if op == "structure":
                smoothing = tuple(self.kernel_1d(s / 2, 0) for s in sigma)
                ops.append(TensorOp(inputs, smoothing, description))
            else:
                ops.append(PointwiseOp(op, inputs, description))  # type: ignore[arg-type]
        second: Layer
        if any(isinstance(op, TensorOp) for op in ops):
            second = StructureTensorLayer(tuple(ops))
        else:
            second = PointwiseLayer(
                tuple(op for op in ops if isinstance(op, PointwiseOp)), "features"
            )
        return [self._first_conv(derivatives, in_channels), second]

    def _first_conv(self, derivatives: Sequence[Derivative], in_channels: int) -> ConvLayer:
        """Stage 1: every derivative on every input channel (``groups`` = the channels)."""
        kernels = _padded([self.kernel(d) for d in derivatives])
        weight = np.concatenate([kernels] * in_channels)[:, None]
        bank = {
            "name": "features",
            "filters": [
                {"name": "gaussian derivative", "sigma": _shown(s), "order": list(o)}
                for _ in range(in_channels)
                for s, o in derivatives
            ],
        }
        return ConvLayer.create(
            weight, padding="same", padding_mode="reflect", groups=in_channels, bank=bank
        )

    def _description(
        self, feature: str, sigma: Sigma, channel: int, in_channels: int
    ) -> dict[str, Any]:
        description: dict[str, Any] = {"name": feature, "sigma": _shown(sigma)}
        if in_channels > 1:
            description["channel"] = channel
        return description


def _shown(sigma: Sigma) -> float | list[float]:
    """σ as a label shows it: one number when the same on every axis."""
    return sigma[0] if len(set(sigma)) == 1 else list(sigma)


def _padded(kernels: Sequence[np.ndarray]) -> np.ndarray:
    """The kernels zero-padded, centred, to their largest size along each axis, stacked."""
    size = [max(k.shape[a] for k in kernels) for a in range(kernels[0].ndim)]
    stacked = np.zeros((len(kernels), *size), dtype=np.float64)
    for out, kernel in zip(stacked, kernels, strict=True):
        offsets = [(s - k) // 2 for s, k in zip(size, kernel.shape, strict=True)]
        out[tuple(slice(o, o + k) for o, k in zip(offsets, kernel.shape, strict=True))] = kernel
    return stacked


def parse_sigma(value: Any, ndim: int, where: str) -> Sigma:
    """One scale: a number (every axis) or one per axis, each > 0."""
    values = value if isinstance(value, (list, tuple)) else [value] * ndim
    if len(values) != ndim or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise InputError(
            f"{where} must be numbers > 0, each one number or one per axis ({ndim}), got {value!r}"
        )
    return tuple(float(v) for v in values)
