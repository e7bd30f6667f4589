"""The ``eigenvalues`` layer kind: the eigenvalues of symmetric tensors given by their unique
components, pointwise (:class:`~featuremap.engine.layers.reduce.Pointwise`).

**Component order.** The input features are consecutive groups of the unique components of a
symmetric ``ndim x ndim`` tensor over the spatial axes, its upper triangle row by row
(:func:`~featuremap.engine.kernels.tensor_components`), axes ``z, y, x``::

    2-D, 3 per group: [T_yy, T_yx, T_xx]                   Hessian: [∂yy, ∂yx, ∂xx]
    3-D, 6 per group: [T_zz, T_zy, T_zx, T_yy, T_yx, T_xx] Hessian: [∂zz, ∂zy, ∂zx, ∂yy, ∂yx, ∂xx]

-- the Gaussian second derivatives in the order of their orders ``(o_z, o_y, o_x)``, descending
(:func:`~featuremap.engine.kernels.derivative_orders`: ``(2, 0), (1, 1), (0, 2)`` in 2-D), and
the products ``g_a g_b``, ``a <= b``, of a gradient ``(g_z, g_y, g_x)`` for a structure tensor
(``product`` with those pairs). Each group gives its ``ndim`` eigenvalues in descending order, so
``groups x 3 -> groups x 2`` features in 2-D and ``groups x 6 -> groups x 3`` in 3-D.

Computed in float64 inside the block (:func:`~featuremap.engine.kernels.symmetric_eigenvalues`,
closed form), returned as float32; NaN propagates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from featuremap._typing import Array
from featuremap._validation import parse_int
from featuremap.engine.kernels import array_namespace, symmetric_eigenvalues, tensor_size
from featuremap.engine.labels import derived
from featuremap.engine.layers._base import FeatureDescription, Window
from featuremap.engine.layers.reduce import Pointwise, feature_axis
from featuremap.errors import InputError

__all__ = ["EigenvaluesLayer"]

_ORDERS = {2: "[yy, yx, xx]", 3: "[zz, zy, zx, yy, yx, xx]"}


@dataclass(frozen=True)
class EigenvaluesLayer(Pointwise):
    """The eigenvalues, descending, of the symmetric ``rank x rank`` tensors whose unique
    components are consecutive groups of the input features (module docstring).

    The tensors' axes are the spatial axes, so ``rank`` is the layer's rank too (:attr:`ndim`):
    a stack of 2-D layers takes 2x2 tensors, a stack of 3-D layers 3x3 ones.
    """

    rank: int = 2

    kind: ClassVar[str] = "eigenvalues"

    @classmethod
    def create(cls, ndim: Any = 2) -> EigenvaluesLayer:
        """``ndim`` (2 or 3): the tensors' and the stack's spatial rank (a pipeline's default is
        the rank of the conv layer before it).

        Raises
        ------
        InputError
            ``ndim must be an integer >= 2 and <= 3, ...``.
        """
        return cls(parse_int("ndim", ndim, minimum=2, maximum=3))

    @property
    def ndim(self) -> int:
        """The tensors' rank, which is the stack's: 2 (``y, x``) or 3 (``z, y, x``)."""
        return self.rank

    def out_channels(self, in_channels: int) -> int:
        size = tensor_size(self.rank)
        if in_channels % size:
            raise InputError(
                f"the eigenvalues of {self.rank}-D tensors take groups of {size} components "
                f"{_ORDERS[self.rank]}, but the input has {in_channels} features"
            )
        return in_channels // size * self.rank

    def apply_padded(self, x: Array, window: Window) -> Array:
        xp = array_namespace(x)
        axis = x.ndim + feature_axis(window)
        size, groups = tensor_size(self.rank), x.shape[axis] // tensor_size(self.rank)
        tensors = x.reshape(*x.shape[:axis], groups, size, *x.shape[axis + 1 :])
        values = symmetric_eigenvalues(tensors, axis=axis + 1, dtype=xp.float32)
        return values.reshape(*x.shape[:axis], groups * self.rank, *x.shape[axis + 1 :])

    def describe(self) -> dict[str, Any]:
        return self._described(self.kind, ndim=self.rank)

    def describe_features(
        self, inputs: Sequence[FeatureDescription], channel_names: Sequence[str] | None
    ) -> list[FeatureDescription]:
        """``eigenvalues(a, …, f) [k]`` of each group's components, ``k`` from the largest."""
        size = tensor_size(self.rank)
        return [
            derived("eigenvalues", inputs[start : start + size], component=k)
            for start in range(0, len(inputs), size)
            for k in range(self.rank)
        ]
