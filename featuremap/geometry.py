"""Public face of :mod:`featuremap.engine.geometry`: per-layer and stack geometry (DESIGN
section 2)."""

from featuremap.engine.geometry import *  # noqa: F403  (the public face re-exports all)
from featuremap.engine.geometry import __all__ as __all__
