"""ilastik's pixel features as the layer that computes them (DESIGN section 8).

:class:`PixelFeatures` holds a ``features`` layer's parameters -- the features, the scales (σ per
axis), the rank and the kernel family -- and :meth:`PixelFeatures.layers` builds the engine's
:class:`~featuremap.engine.layers.features.FeaturesLayer`: every distinct Gaussian derivative the
features need, each computed once with its own 1-D kernels (``G_σ`` for ``gaussian`` and ``dog``
with ``G_0.66σ``, ``∂_a G_σ`` for the gradient magnitude and the structure tensor, ``∂_a ∂_b G_σ``
for the LoG and the Hessian), and per feature the op that finishes it (LoG sums, DoG
differences, gradient magnitudes, Hessian eigenvalues, copies; per structure tensor the
products of its gradients, mirrored at the true image border, smoothed with ``G_σ/2``, and their
eigenvalues). One layer: the receptive field is the widest feature's (101 for ilastik's set,
the σ 10 structure tensor), not the sum of stages.

Until issue #20 the features took five layers (a conv of every derivative with 81 taps, the
products and the other features pointwise, a depthwise smoothing conv passing 37 of its 55
channels through a one-tap kernel, the eigenvalues pointwise): 12.3 s for ilastik's set on
2048^2 on one thread; see :mod:`featuremap.engine.layers.features` for now.

Channels: for each input channel, the features in the order given, each over its scales in the
order given, each with its channels (``ndim`` eigenvalues, descending). With the default scales
(ilastik's seven), σ 0.3 is used for ``gaussian`` only, as in ilastik.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from featuremap.banks._sigmas import kernel_radius
from featuremap.banks.fastfilters import fastfilters_kernel_1d
from featuremap.banks.gaussian import gaussian_1d
from featuremap.engine.kernels.eigenvalues import derivative_orders
from featuremap.engine.layers import Layer
from featuremap.engine.layers.features import Derivative, FeaturesLayer, TensorOp
from featuremap.engine.layers.pointwise import PointwiseOp
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
#: One Gaussian derivative: its scale and its order along each axis.
DerivativeKey = tuple[Sigma, tuple[int, ...]]


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

    # -- the stack ---------------------------------------------------------------------------------

    def _axes(self) -> list[tuple[int, ...]]:
        """The first-order derivative of each axis, ``e_a``."""
        return [tuple(int(a == b) for b in range(self.ndim)) for a in range(self.ndim)]

    def _plan(
        self,
    ) -> tuple[list[DerivativeKey], list[tuple[str, Sigma, str, list[DerivativeKey]]]]:
        """The distinct derivatives, and per output group ``(feature, σ, op, derivatives)`` in
        output order (op: the pointwise op, or ``structure`` for a structure tensor)."""
        derivatives: dict[DerivativeKey, None] = {}
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
        """The engine's layer computing the features of each of ``in_channels`` channels."""
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
        responses = tuple(
            Derivative(
                tuple(self.kernel_1d(s, o) for s, o in zip(sigma, order, strict=True)),
                {"sigma": _shown(sigma), "order": list(order), "kernels": self.kernels},
            )
            for sigma, order in derivatives
        )
        return [FeaturesLayer(responses, tuple(ops), in_channels)]

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
