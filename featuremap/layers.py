"""Public face of :mod:`featuremap.engine.layers`: the layer kinds (conv, pool, reduce,
activation, product, eigenvalues, and the pointwise program of the ``features`` layer)."""

from featuremap.engine.layers import *  # noqa: F403  (the public face re-exports all)
from featuremap.engine.layers import __all__ as __all__
