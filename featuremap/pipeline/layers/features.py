"""``features`` in a pipeline file: ilastik's pixel features (DESIGN section 8).

``{set: ilastik, sigmas: [...], features: [...], ndim: 2|3, kernels: fastfilters|scipy}``:
``features`` (default all six, in :data:`~featuremap.pipeline.features.FEATURES` order) at each
scale of ``sigmas`` (pixels; one number or one per axis; default ilastik's seven, σ 0.3 for
``gaussian`` only), in 2-D or 3-D, with fastfilters2's kernels (default) or SciPy's. It builds
the engine's ``features`` layer that computes them
(:meth:`~featuremap.pipeline.features.PixelFeatures.layers`), whose halo is the widest feature's
and whose stages each fold the true image border.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from featuremap._validation import parse_choice, parse_int
from featuremap.engine.layers import Layer
from featuremap.errors import InputError, describe
from featuremap.pipeline.features import (
    FEATURES,
    ILASTIK_SIGMAS,
    KERNELS,
    PixelFeatures,
    parse_sigma,
)
from featuremap.pipeline.layers._base import BuildContext, ParseContext, register
from featuremap.pipeline.schema import field_value, mapping

__all__ = ["FeaturesSpec"]

KEYS = ("set", "sigmas", "features", "ndim", "kernels")


def _features(value: Any) -> tuple[str, ...]:
    """A non-empty list of distinct feature names."""
    if (
        not isinstance(value, list)
        or not value
        or len(set(map(str, value))) != len(value)
        or any(item not in FEATURES for item in value)
    ):
        raise InputError(
            f"features must be a list of distinct names from {', '.join(FEATURES)}, "
            f"got {describe(value)}"
        )
    return tuple(value)


def _sigmas(value: Any, ndim: int) -> tuple[tuple[float, ...], ...]:
    if not isinstance(value, list) or not value:
        raise InputError(f"sigmas must be a non-empty list, got {describe(value)}")
    return tuple(parse_sigma(item, ndim, f"sigmas[{i}]") for i, item in enumerate(value))


@register
@dataclass(frozen=True)
class FeaturesSpec:
    """A ``features`` layer as written; ``sigmas`` ``None`` for ilastik's default scales."""

    set: str
    sigmas: list[Any] | None
    features: list[str]
    ndim: int
    kernels: str

    kind: ClassVar[str] = "features"

    @classmethod
    def parse(cls, value: Any, where: str, context: ParseContext) -> FeaturesSpec:
        spec = mapping(value, where, KEYS)
        field_value(
            where, "set", lambda v: parse_choice("set", v, ("ilastik",)), spec.get("set", "ilastik")
        )
        ndim = field_value(
            where, "ndim", lambda v: parse_int("ndim", v, minimum=2, maximum=3), spec.get("ndim", 2)
        )
        sigmas = spec.get("sigmas")
        if sigmas is not None:
            field_value(where, "sigmas", lambda v: _sigmas(v, ndim), sigmas)
        features = field_value(where, "features", _features, spec.get("features", list(FEATURES)))
        kernels = field_value(
            where,
            "kernels",
            lambda v: parse_choice("kernels", v, KERNELS),
            spec.get("kernels", "fastfilters"),
        )
        context.ndim = ndim
        made = cls("ilastik", sigmas, list(features), ndim, kernels)
        field_value(where, "sigmas", lambda _: made.pixel_features().layers(1), sigmas)
        return made

    def pixel_features(self) -> PixelFeatures:
        """The parameters, parsed (scales per axis)."""
        given = self.sigmas is not None
        sigmas = _sigmas(self.sigmas if given else list(ILASTIK_SIGMAS), self.ndim)
        return PixelFeatures(
            tuple(self.features), sigmas, self.ndim, self.kernels, default_sigmas=not given
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "set": self.set,
            "sigmas": None if self.sigmas is None else list(self.sigmas),
            "features": list(self.features),
            "ndim": self.ndim,
            "kernels": self.kernels,
        }

    def weight_files(self) -> list[str]:
        return []

    def build(self, context: BuildContext) -> list[Layer]:
        """The layer that computes the features of each of ``context.channels`` channels."""
        return self.pixel_features().layers(context.channels)
