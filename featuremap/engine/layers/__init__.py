"""Layer kinds: what one layer computes, and where (its geometry).

A layer is a frozen, validated description (weights included for conv), its parameters parsed
once by ``create``. It knows

* its geometry for a given input size (:meth:`~Layer.geometry`, resolving ``"same"`` padding) as
  one :class:`~featuremap.engine.geometry.LayerGeometry` that carries the padding mode too -- the
  border is filled at the true image border only, never at chunk borders, with
  :attr:`~Layer.pad_value` where the mode is a constant;
* how to compute on an input block that is already padded (:meth:`~Layer.apply_padded`);
* how to describe itself and its output features (:meth:`~Layer.describe`,
  :meth:`~Layer.describe_features`).

Each kind is one module here; :data:`LAYER_TYPES` lists them. ``conv`` and ``pool`` have a
kernel; ``reduce``, ``activation``, ``product`` and ``eigenvalues`` are pointwise (kernel 1,
geometry unchanged: :class:`~featuremap.engine.layers.reduce.Pointwise`) and turn responses into
non-linear features; ``features`` computes ilastik's pixel features in one layer
(:mod:`~featuremap.engine.layers.features`). A stack of layers is resolved against an input once by
:func:`featuremap.engine.stack.resolve_stack`.
"""

from featuremap.engine.layers._base import FeatureDescription, Layer, Window, parse_activation
from featuremap.engine.layers.activation import ActivationLayer
from featuremap.engine.layers.conv import ConvLayer
from featuremap.engine.layers.eigenvalues import EigenvaluesLayer
from featuremap.engine.layers.features import FeaturesLayer
from featuremap.engine.layers.pointwise import PointwiseOp
from featuremap.engine.layers.pool import PoolLayer
from featuremap.engine.layers.product import ProductLayer
from featuremap.engine.layers.reduce import ReduceLayer

__all__ = [
    "LAYER_TYPES",
    "ActivationLayer",
    "ConvLayer",
    "EigenvaluesLayer",
    "FeatureDescription",
    "FeaturesLayer",
    "Layer",
    "PointwiseOp",
    "PoolLayer",
    "ProductLayer",
    "ReduceLayer",
    "Window",
    "parse_activation",
]

#: Every layer kind's class, for ``isinstance`` checks of user-given layers.
LAYER_TYPES: tuple[type, ...] = (
    ConvLayer,
    PoolLayer,
    ReduceLayer,
    ActivationLayer,
    ProductLayer,
    EigenvaluesLayer,
    FeaturesLayer,
)
