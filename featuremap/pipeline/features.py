"""ilastik's pixel features as the stack of layers they are (DESIGN section 8).

:class:`PixelFeatures` holds a ``features`` layer's parameters -- the features, the scales (σ per
axis), the rank and the kernel family -- and :meth:`PixelFeatures.layers` builds the engine's
layers that compute them, each stage folding the true image border itself:

1. one ``conv`` (``same``, ``reflect``) with every distinct Gaussian derivative the features need,
   each rank 1 (so the separable paths apply), each computed once: ``G_σ`` for ``gaussian`` and
   ``dog`` (with ``G_0.66σ``), ``∂_a G_σ`` for the gradient magnitude and the structure tensor,
   ``∂_a ∂_b G_σ`` for the LoG and the Hessian;
2. a ``pointwise`` layer: LoG sums, DoG differences, gradient magnitudes, Hessian eigenvalues,
   and the structure tensor's products ``g_a g_b``;
3. only with ``structure_tensor_eigenvalues``: a depthwise ``conv`` (``same``, ``reflect``)
   smoothing each product with ``G_σ/2`` -- it mirrors the tensor field at the border, not the
   input -- and passing the other channels through (a one-tap kernel);
4. then a ``pointwise`` layer: the structure tensors' eigenvalues, and every output in its place.

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

from featuremap.banks.fastfilters import fastfilters_kernel_1d
from featuremap.banks.gaussian import gaussian_1d, kernel_radius
from featuremap.engine.kernels.eigenvalues import derivative_orders, tensor_components
from featuremap.engine.layers import ConvLayer, Layer
from featuremap.engine.layers.pointwise import PointwiseLayer, PointwiseOp
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
        stage2: list[PointwiseOp] = []
        final: list[PointwiseOp] = []
        smoothed: dict[int, Sigma] = {}  # stage-2 channel -> the σ of its structure tensor
        position = 0
        for channel, (feature, sigma, op, needed) in itertools.product(range(in_channels), groups):
            inputs = tuple(channel * len(derivatives) + index[d] for d in needed)
            description = self._description(feature, sigma, channel, in_channels)
            if op == "structure":
                for a, b in tensor_components(self.ndim):
                    stage2.append(PointwiseOp("product", (inputs[a], inputs[b])))
                    smoothed[position] = sigma
                    position += 1
                members = tuple(range(position - len(tensor_components(self.ndim)), position))
                final.append(PointwiseOp("eigenvalues", members, description))
                continue
            computed = PointwiseOp(op, inputs, description)  # type: ignore[arg-type]
            stage2.append(computed)
            final += [
                PointwiseOp("copy", (position + k,), d)
                for k, d in enumerate(computed.descriptions())
            ]
            position += computed.outputs
        layers: list[Layer] = [
            self._first_conv(derivatives, in_channels),
            PointwiseLayer(tuple(stage2), name="features"),
        ]
        if smoothed:
            layers += [
                self._smoothing(position, smoothed),
                PointwiseLayer(tuple(final), name="features"),
            ]
        return layers

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

    def _smoothing(self, channels: int, smoothed: dict[int, Sigma]) -> ConvLayer:
        """Stage 3: each structure tensor's products smoothed by ``G_σ/2`` (mirrored at the
        border of the tensor field), every other channel passed on (a one-tap kernel)."""
        zero = (0,) * self.ndim
        delta = np.ones((1,) * self.ndim)
        kernels = _padded(
            [
                self.kernel((tuple(s / 2 for s in smoothed[i]), zero)) if i in smoothed else delta
                for i in range(channels)
            ]
        )
        return ConvLayer.create(
            kernels[:, None],
            padding="same",
            padding_mode="reflect",
            groups=channels,
            bank={"name": "features: structure tensor smoothing"},
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
